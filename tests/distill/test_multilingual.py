"""Multilingual teachers with SentencePiece tokenizers through the whole pipeline: tiny random XLM-R and
e5-style (BERT encoder + XLM-R tokenizer) teachers, trimmed vocabularies, all three stages, the saved
student loaded by plain transformers, its ONNX export (fused, int8) and batch-1 serving."""
import json

import numpy as np
import pytest

from conftest import FAST_RUN
from tiny_models import write_multilingual_task, write_tiny_xlmr
from xdistil.config import DistilConfig
from xdistil.distill.pipeline import run_distillation
from xdistil.export.student_export import ExportOptions, export_student
from xdistil.inference.online import OnlinePredictor, serve
from xdistil.model_dir import ModelDirectory

pytestmark = pytest.mark.slow


def _distil(root, kind, architecture, **settings):
    teacher = write_tiny_xlmr(root / "teacher", architecture=architecture)
    task = write_multilingual_task(root / "task", kind)
    config = DistilConfig.from_settings(str(root / "out"), task=str(task), task_kind=kind,
                                        transfer_file=str(task / "transfer.txt"), pt_teacher_checkpoint=str(teacher),
                                        **{**FAST_RUN, "seq_len": 32, **settings})
    return run_distillation(config), root / "out", task, teacher, config


def _requests(task, model_dir):
    examples = model_dir.read_labeled(task / "test.tsv")
    return [(i, model_dir.task.unlabeled_line(e)) for i, e in enumerate(examples, start=1)]


@pytest.mark.parametrize("kind, architecture, student", [
    ("ner", "bert", {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "student_init": "random",
                     "compress_word_embedding": True, "distil_multi_hidden_states": True, "distil_attention": True}),
    ("pairwise", "xlm-roberta", {"student_layers_from_teacher": (1,)}),
    ("classification", "bert", {"student_layers_from_teacher": (0, 1), "distil_multi_hidden_states": True}),
])
def test_trimmed_multilingual_distillation_exports_and_serves(tmp_path, kind, architecture, student):
    from transformers import AutoTokenizer, TFAutoModel

    metrics, out, task, teacher_dir, config = _distil(tmp_path, kind, architecture, trim_vocabulary=True, **student)
    vocabulary = metrics["vocabulary"]
    full = AutoTokenizer.from_pretrained(str(teacher_dir))
    assert vocabulary["pieces_before"] == len(full) and vocabulary["pieces_kept"] < len(full)
    assert vocabulary["unknown_rate_test"]["trimmed"] == vocabulary["unknown_rate_test"]["full"]
    assert {"representation", "logit", "finetune"} <= set(metrics["stages"])

    # Plain transformers load the student, whose vocabulary is the trimmed one, and its tokenizer segments
    # the task's text as the teacher's full tokenizer does (ids through the kept-piece table).
    tokenizer = AutoTokenizer.from_pretrained(str(out / "model"))
    model = TFAutoModel.from_pretrained(str(out / "model"))
    assert len(tokenizer) == model.config.vocab_size == vocabulary["pieces_kept"]
    kept = np.load(out / "vocabulary" / "kept_piece_ids.npy")
    text = (task / "test.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")[0]
    if kind == "ner":
        words = text.split()
        assert kept[tokenizer(words, is_split_into_words=True)["input_ids"]].tolist() == \
            full(words, is_split_into_words=True)["input_ids"]
    else:
        assert kept[tokenizer(text)["input_ids"]].tolist() == full(text)["input_ids"]

    # ONNX: exported, checked against TF, quantized; batch-1 serving gives TF's labels.
    model_dir = ModelDirectory.load(out)
    report = export_student(model_dir, ExportOptions(batch_size=8, max_accuracy_drop=100.0))
    assert report["parity"]["fp32_vs_tf_max_abs_logit_diff"] <= 1e-4
    assert report["fusion"]["SkipLayerNormalization"] >= 2 * model.config.num_hidden_layers
    requests = _requests(task, model_dir)
    onnx_outputs, _ = serve(OnlinePredictor.from_onnx(model_dir, model_dir.onnx_path("fp32")), requests, warmup=0)
    tf_outputs, _ = serve(OnlinePredictor.from_tf(model_dir, model_dir.load_tf_model()), requests, warmup=0)
    assert [line.split("\t")[0] for line in onnx_outputs] == [line.split("\t")[0] for line in tf_outputs]
    assert json.loads((out / "metrics.json").read_text())["vocabulary"] == vocabulary

    # The trimmed vocabulary is part of the run: the same command again resumes (here: finds it done).
    assert run_distillation(config)["vocabulary"] == vocabulary


def test_cjk_characters_are_labelled_on_their_own_pieces(tmp_path):
    """The e5 trap: pre-split Chinese characters come out as a bare "▁" + the character. The run drops the
    bare pieces (--bare_word_marker drop, the default), so every character's label is on the character."""
    from transformers import AutoTokenizer

    _, out, task, _, _ = _distil(tmp_path, "ner", "bert", student_layers_from_teacher=(1,))
    model_dir = ModelDirectory.load(out)
    assert model_dir.encoding.bare_word_marker == "drop"
    examples = model_dir.read_labeled(task / "dev.tsv")
    features = model_dir.encode(examples)
    tokenizer = AutoTokenizer.from_pretrained(str(out / "model"))
    labelled = features.input_ids[features.word_ids >= 0]
    assert "\u2581" not in tokenizer.convert_ids_to_tokens(labelled.tolist())
    assert (features.word_ids >= 0).sum() == sum(len(e.tokens) for e in examples)
