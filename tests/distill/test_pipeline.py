"""End-to-end distillation runs on tiny random teachers: the model-directory contract."""
import xdistil  # noqa: F401

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import FAST_RUN, write_task, write_tiny_bert
from xdistil.config import DistilConfig, read_run_config
from xdistil.distill.pipeline import run_distillation
from xdistil.tasks import get_task


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("teacher"), hidden_size=32, num_layers=2, num_heads=4)


def _config(tmp_path, teacher_dir, kind, **overrides):
    task = write_task(tmp_path / "task", kind)
    settings = {**FAST_RUN, **overrides}
    return DistilConfig.from_settings(str(tmp_path / "out"), task=str(task), task_kind=kind,
                                      transfer_file=str(task / "transfer.txt"), pt_teacher_checkpoint=str(teacher_dir),
                                      **settings)


pytestmark = pytest.mark.slow


def test_ner_run_writes_the_model_directory(tmp_path, teacher_dir):
    config = _config(tmp_path, teacher_dir, "ner", hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, distil_multi_hidden_states=True, distil_attention=True,
                     attention_loss="kl", compress_word_embedding=True, freeze_word_embedding=True,
                     student_init="random")
    metrics = run_distillation(config)
    out = tmp_path / "out"
    for name in ("xtremedistil-config.json", "metrics.json", "word_embedding.npy", "model/config.json",
                 "model/tf_model.h5", "model/tokenizer.json", "teacher/config.json"):
        assert (out / name).exists(), name
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "logs").rglob("*"))
    assert (out / "checkpoints" / "finetune" / "DONE.json").exists()
    saved = read_run_config(out)
    assert saved["labels"] == ["O", "B-LOC", "B-PER", "I-LOC"] and saved["status"] == "done"
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    assert on_disk["student"]["start"] == {"from": "random", "reason": "--student_init random",
                                           "word_embedding": "the teacher's, svd-compressed"}
    for who in ("teacher", "student"):
        for split in ("dev", "test"):
            assert 0.0 <= on_disk[who][split]["f1"] <= 1.0
    assert set(on_disk["student"]["test"]["per_type"]) <= {"LOC", "PER"}
    assert {"representation", "logit", "finetune"} <= set(on_disk["stages"])
    assert "dev" in on_disk["stages"]["finetune"]["history"][0]

    # The frozen compressed embedding is exactly the SVD of the fine-tuned teacher's matrix.
    from xdistil.models.embedding_compression import compress_embedding
    from xdistil.models.loading import load_task_model, word_embedding_variable
    teacher = load_task_model(str(out / "teacher"), get_task("ner"), saved["labels"])
    expected, _ = compress_embedding(word_embedding_variable(teacher).numpy(), 16, "svd")
    np.testing.assert_allclose(np.load(out / "word_embedding.npy"), expected, rtol=1e-5, atol=1e-6)

    # The student loads with plain transformers, no xdistil import.
    script = ("import os; os.environ['TF_USE_LEGACY_KERAS']='1'\n"
              "from transformers import TFAutoModelForTokenClassification, AutoTokenizer\n"
              f"m = TFAutoModelForTokenClassification.from_pretrained({str(out / 'model')!r})\n"
              f"t = AutoTokenizer.from_pretrained({str(out / 'model')!r})\n"
              "print(m.config.id2label[1], m(t(['john works in paris'], return_tensors='tf')).logits.shape)")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "B-LOC (1, 6, 4)" in result.stdout

    # Running the same command again finds every stage done and trains nothing.
    again = run_distillation(config)
    assert again["student"]["dev"] == metrics["student"]["dev"]


@pytest.mark.parametrize("kind", ["pairwise", "classification"])
def test_text_tasks_with_student_from_teacher_layers(tmp_path, teacher_dir, kind):
    config = _config(tmp_path, teacher_dir, kind, student_layers_from_teacher=(1,), logit_loss="kl",
                     temperature=2.0, representation_epochs=0)
    metrics = run_distillation(config)
    assert 0.0 <= metrics["teacher"]["dev"]["accuracy"] <= 1.0
    assert set(metrics["student"]["test"]) == {"accuracy", "macro_f1"}
    assert set(metrics["stages"]) == {"logit", "finetune"}  # 0 representation epochs: the stage is skipped


def test_a_narrowed_copy_of_teacher_layers_distils_into_a_plain_narrow_model(tmp_path, teacher_dir, caplog):
    from transformers import TFBertForTokenClassification

    config = _config(tmp_path, teacher_dir, "ner", student_layers_from_teacher=(0,), hidden_size=16,
                     trim_vocabulary=True, distil_multi_hidden_states=True, distil_attention=True)
    with caplog.at_level("INFO", logger="xdistil.distill.pipeline"):
        metrics = run_distillation(config)
    # stage 1 distils the copy's layer from the teacher layer it was cut from (the default --layer_mapping auto)
    assert "layer mapping (student, teacher): [(1, 1)]" in caplog.text
    assert set(metrics["stages"]) == {"representation", "logit", "finetune"}
    student = TFBertForTokenClassification.from_pretrained(str(tmp_path / "out" / "model"))
    assert (student.config.hidden_size, student.config.num_attention_heads, student.config.intermediate_size,
            student.config.num_hidden_layers) == (16, 2, 32, 1)
    assert metrics["student"]["parameters"] == student.count_params() < metrics["teacher"]["parameters"]
    assert metrics["student"]["start"] == {"from": "teacher_layers", "layers": [0], "sizes": {"hidden_size": 16}}


def test_mixed_bfloat16_run_is_finite_and_close_to_float32(tmp_path, teacher_dir):
    results = {}
    for policy in ("float32", "mixed_bfloat16"):
        config = _config(tmp_path / policy, teacher_dir, "classification", student_layers_from_teacher=(0, 1),
                         opt_policy=policy, distil_multi_hidden_states=True, teacher_epochs=1, finetune_epochs=1)
        results[policy] = run_distillation(config)
    train_losses = {policy: [epoch["train_loss"] for stage in m["stages"].values() for epoch in stage["history"]]
                    for policy, m in results.items()}
    import tf_keras
    tf_keras.mixed_precision.set_global_policy("float32")
    f32, bf16 = results["float32"], results["mixed_bfloat16"]
    assert len(train_losses["float32"]) == len(train_losses["mixed_bfloat16"]) >= 3
    assert np.all(np.isfinite(train_losses["mixed_bfloat16"]))
    np.testing.assert_allclose(train_losses["mixed_bfloat16"], train_losses["float32"], rtol=0.1, atol=0.02)
    assert abs(f32["teacher"]["dev"]["accuracy"] - bf16["teacher"]["dev"]["accuracy"]) <= 0.15
    assert abs(f32["student"]["dev"]["accuracy"] - bf16["student"]["dev"]["accuracy"]) <= 0.15


def test_distilbert_teacher_without_token_types(tmp_path, tiny_bert_dir):
    """A non-BERT encoder (DistilBERT: other layer names, no token_type_ids) distils end to end."""
    from transformers import BertTokenizerFast, DistilBertConfig, TFDistilBertModel

    teacher_dir = tmp_path / "distilbert"
    config = DistilBertConfig(vocab_size=BertTokenizerFast.from_pretrained(str(tiny_bert_dir)).vocab_size,
                              dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64,
                              dropout=0.0, attention_dropout=0.0)
    model = TFDistilBertModel(config)
    model(model.dummy_inputs)
    model.save_pretrained(str(teacher_dir))
    BertTokenizerFast.from_pretrained(str(tiny_bert_dir)).save_pretrained(str(teacher_dir))
    run = _config(tmp_path, teacher_dir, "ner", student_layers_from_teacher=(1,), distil_multi_hidden_states=True,
                  distil_attention=True, teacher_epochs=1, finetune_epochs=1)
    metrics = run_distillation(run)
    assert metrics["student"]["parameters"] < metrics["teacher"]["parameters"]
    assert (tmp_path / "out" / "model" / "config.json").exists()
    assert '"model_type": "distilbert"' in (tmp_path / "out" / "model" / "config.json").read_text()


def test_without_teacher_logit_cache_the_teacher_runs_per_stage(tmp_path, teacher_dir):
    config = _config(tmp_path, teacher_dir, "classification", student_layers_from_teacher=(1,),
                     representation_epochs=0, logit_epochs=2, teacher_logit_cache=False)
    metrics = run_distillation(config)
    assert not (tmp_path / "out" / "cache" / "teacher_logits").exists()
    assert len(metrics["stages"]["logit"]["history"]) == 2


def test_a_resumed_run_reads_the_teacher_scores_instead_of_evaluating_again(tmp_path, teacher_dir, monkeypatch):
    from xdistil.task_data import Evaluator

    config = _config(tmp_path, teacher_dir, "classification", student_layers_from_teacher=(1,),
                     representation_epochs=0, logit_epochs=1)
    metrics = run_distillation(config)
    scores = json.loads((tmp_path / "out" / "cache" / "teacher_scores.json").read_text())["scores"]
    assert scores == {"dev": metrics["teacher"]["dev"], "test": metrics["teacher"]["test"]}
    evaluated = []
    original = Evaluator.__call__
    monkeypatch.setattr(Evaluator, "__call__", lambda self, split: evaluated.append(self) or original(self, split))
    resumed = run_distillation(config)
    assert resumed["teacher"]["dev"] == metrics["teacher"]["dev"]
    assert resumed["teacher"]["test"] == metrics["teacher"]["test"]
    # the 1-layer student's dev and test only: the 2-layer teacher's scores were read
    assert [e.predictor.model.config.num_hidden_layers for e in evaluated] == [1, 1]


def test_a_run_reusing_another_runs_trimmed_teacher_neither_copies_nor_scores_nor_runs_it(tmp_path, teacher_dir,
                                                                                          monkeypatch):
    """Its dev and test scores, and its logits of the same transfer data, are the first run's; with augmented
    copies added to that data, the teacher runs on the copies alone."""
    from xdistil.inference.predict import TFPredictor
    from xdistil.task_data import Evaluator

    first = _config(tmp_path / "first", teacher_dir, "classification", student_layers_from_teacher=(1,),
                    representation_epochs=0, logit_epochs=1, trim_vocabulary=True)
    metrics = run_distillation(first)
    task = tmp_path / "first" / "task"
    second = DistilConfig.from_settings(
        str(tmp_path / "second"), task=str(task), task_kind="classification", transfer_file=str(task / "transfer.txt"),
        pt_teacher_checkpoint=str(first.path / "teacher"),
        **{**FAST_RUN, "student_layers_from_teacher": (1,), "representation_epochs": 0, "logit_epochs": 1,
           "trim_vocabulary": True})
    evaluated, predicted = [], []
    original = Evaluator.__call__
    monkeypatch.setattr(Evaluator, "__call__", lambda self, split: evaluated.append(self) or original(self, split))
    original_logits = TFPredictor.logits
    monkeypatch.setattr(TFPredictor, "logits", lambda self, features, *args, **kwargs:
                        predicted.append((self.model, len(features.input_ids))) or
                        original_logits(self, features, *args, **kwargs))
    reused = run_distillation(second)
    assert not (second.path / "teacher").exists()  # the same vocabulary: the first run's teacher as it is
    assert {m.config.num_hidden_layers for m, _ in predicted} <= {1}  # the teacher's logits were copied
    logits = sorted((first.path / "cache" / "teacher_logits").glob("chunk_*.npy"))
    assert logits and [p.name for p in logits] == \
        [p.name for p in sorted((second.path / "cache" / "teacher_logits").glob("chunk_*.npy"))]
    for chunk in logits:
        np.testing.assert_array_equal(np.load(chunk), np.load(second.path / "cache" / "teacher_logits" / chunk.name))
    assert reused["teacher"]["source"] == str(first.path / "teacher")
    assert {split: reused["teacher"][split] for split in ("dev", "test")} == \
        {split: metrics["teacher"][split] for split in ("dev", "test")}
    # the 1-layer student was scored (every epoch and at the end), the 2-layer teacher never
    assert evaluated and {e.predictor.model.config.num_hidden_layers for e in evaluated} == {1}

    third = DistilConfig.from_settings(str(tmp_path / "third"), **{**second.flat_settings(), "augment_transfer": 1})
    predicted.clear()
    run_distillation(third)
    teacher_rows = sum(rows for model, rows in predicted if model.config.num_hidden_layers == 2)
    first_rows = np.concatenate([np.load(p) for p in sorted((first.path / "cache" / "teacher_logits").glob("rows_*"))])
    third_rows = np.concatenate([np.load(p) for p in sorted((third.path / "cache" / "teacher_logits").glob("rows_*"))])
    assert len(third_rows) == 2 * len(first_rows)  # each transfer row and its copy
    assert 0 < teacher_rows == np.isin(third_rows, first_rows, invert=True).sum() <= len(first_rows)

    # crops come after the copies and leave them as they were; lent the third run's cache as well, the teacher
    # runs on the crops alone
    fourth = DistilConfig.from_settings(str(tmp_path / "fourth"), **{**third.flat_settings(), "augment_crops": 1,
                                                                     "teacher_logits_from": str(third.path)})
    predicted.clear()
    run_distillation(fourth)
    teacher_rows = sum(rows for model, rows in predicted if model.config.num_hidden_layers == 2)
    fourth_rows = np.concatenate([np.load(p) for p in sorted((fourth.path / "cache" / "teacher_logits").glob("rows_*"))])
    assert len(fourth_rows) == 3 * len(first_rows)  # each transfer row, its copy and its crop
    np.testing.assert_array_equal(fourth_rows.reshape(-1, 3)[:, :2], third_rows.reshape(-1, 2))
    assert np.isin(fourth_rows.reshape(-1, 3)[:, 2], third_rows, invert=True).mean() > 0.9
    assert 0 < teacher_rows == np.isin(fourth_rows, third_rows, invert=True).sum() <= len(first_rows)


def test_roberta_teacher_with_byte_level_bpe(tmp_path):
    """A RoBERTa teacher (BPE needing add_prefix_space for pre-split words, positions offset by the
    padding index, one token type) distils end to end on NER."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaTokenizerFast, TFRobertaModel

    from conftest import WORDS

    teacher_dir = tmp_path / "roberta"
    teacher_dir.mkdir()
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([" ".join(WORDS)] * 20, vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(teacher_dir))
    tokenizer = RobertaTokenizerFast(vocab_file=str(teacher_dir / "vocab.json"),
                                     merges_file=str(teacher_dir / "merges.txt"))
    tokenizer.save_pretrained(str(teacher_dir))
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=80, type_vocab_size=1,
                           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = TFRobertaModel(config)
    model(model.dummy_inputs)
    model.save_pretrained(str(teacher_dir))
    run = _config(tmp_path, teacher_dir, "ner", student_layers_from_teacher=(1,), distil_multi_hidden_states=True,
                  teacher_epochs=1, finetune_epochs=1)
    metrics = run_distillation(run)
    assert '"model_type": "roberta"' in (tmp_path / "out" / "model" / "config.json").read_text()
    assert 0.0 <= metrics["student"]["test"]["f1"] <= 1.0


def test_a_teacher_no_better_than_the_trivial_baseline_stops_the_run(tmp_path, teacher_dir):
    """Every dev label is the train majority label, so no teacher can beat always predicting it: the run
    stops after the teacher, before any student is built, saying what to change; --allow_weak_teacher goes on."""
    import collections

    from xdistil.distill.pipeline import WeakTeacherError

    config = _config(tmp_path, teacher_dir, "classification", student_layers_from_teacher=(1,),
                     teacher_epochs=1, allow_weak_teacher=False)
    train_labels = [line.rsplit("\t", 1)[1] for line in (tmp_path / "task" / "train.tsv").read_text().splitlines()]
    majority = collections.Counter(train_labels).most_common(1)[0][0]
    dev = tmp_path / "task" / "dev.tsv"
    dev.write_text("".join(line.rsplit("\t", 1)[0] + f"\t{majority}\n" for line in dev.read_text().splitlines()))
    with pytest.raises(WeakTeacherError, match=rf"above the trivial baseline \(always '{majority}': 1.0000\)") \
            as caught:
        run_distillation(config)
    assert "--teacher_epochs" in caught.value.what and "--allow_weak_teacher" in caught.value.what
    out = tmp_path / "out"
    assert (out / "teacher" / "config.json").exists() and not (out / "metrics.json").exists()
    assert not (out / "checkpoints" / "representation").exists()
    go_on = dataclasses.replace(config, teacher=dataclasses.replace(config.teacher, allow_weak_teacher=True))
    metrics = run_distillation(go_on)  # resumes: the fine-tuned teacher is reused
    assert metrics["trivial_baseline"]["accuracy"] == 1.0


def test_teacher_min_steps_gives_small_folders_enough_updates(tmp_path, teacher_dir):
    config = _config(tmp_path, teacher_dir, "classification", student_layers_from_teacher=(1,), teacher_epochs=1,
                     teacher_min_steps=20, representation_epochs=0, logit_epochs=1, finetune_epochs=1)
    run_distillation(config)
    teacher = json.loads((tmp_path / "out" / "checkpoints" / "teacher" / "DONE.json").read_text())
    assert teacher["steps"] >= 20 and teacher["epochs"] == 4  # 48 examples, batch 8: 6 steps an epoch


def test_teacher_trainable_layers_fine_tunes_only_the_top_layers_and_the_head(tmp_path, teacher_dir):
    """--teacher_trainable_layers 1 on a 2-layer teacher: layer 1 and the head change, layer 0 and the
    embeddings are saved exactly as pretrained."""
    from xdistil.models.loading import load_task_model

    config = _config(tmp_path, teacher_dir, "classification", student_layers_from_teacher=(1,), teacher_epochs=1,
                     teacher_trainable_layers=1, representation_epochs=0, logit_epochs=1, finetune_epochs=1)
    run_distillation(config)
    labels = read_run_config(tmp_path / "out")["labels"]

    def weights(path):
        model = load_task_model(str(path), get_task("classification"), labels)
        return {v.name.split("/", 1)[1]: v.numpy() for v in model.weights}

    before, after = weights(teacher_dir), weights(tmp_path / "out" / "teacher")
    changed = {name for name in before if not np.array_equal(before[name], after[name])}
    assert changed and all("layer_._1/" in name or "classifier" in name or "pooler" in name for name in changed)
    assert any("layer_._1/" in name for name in changed)
    assert not any("layer_._0/" in name or "embeddings" in name for name in changed)


def test_augmented_transfer_data_is_cached_and_replayed(tmp_path, teacher_dir):
    """--augment_transfer 2: every transfer line is followed by two augmented copies; the teacher's logits
    are cached for all of them, and a resumed (identical) run finds the same cache."""
    from xdistil.distill.teacher_cache import TeacherLogitCache

    config = _config(tmp_path, teacher_dir, "ner", student_layers_from_teacher=(1,), augment_transfer=2,
                     augment_replace_prob=1.0, representation_epochs=0, logit_epochs=1, finetune_epochs=1)
    run_distillation(config)
    cache_dir = tmp_path / "out" / "cache" / "teacher_logits"
    rows = TeacherLogitCache(cache_dir, {}, owner=False).chunk_rows()
    assert sum(rows.values()) == 3 * 64  # 64 transfer sentences of 4-5 words: one row each
    meta = json.loads((cache_dir / "meta.json").read_text())
    assert meta["augmentation"]["copies"] == 2 and len(meta["augmentation"]["neighbour_table"]) == 64
    stamps = {p.name: p.stat().st_mtime_ns for p in cache_dir.glob("chunk_*.npy")}
    run_distillation(config)
    assert {p.name: p.stat().st_mtime_ns for p in cache_dir.glob("chunk_*.npy")} == stamps


def test_the_first_token_state_is_cached_after_the_logits_and_distilled_into_a_narrower_student(tmp_path,
                                                                                                 teacher_dir):
    """--first_token_state_weight: each cached row is the teacher's logits then its last hidden state at [CLS]
    (width 32), and stage 2 trains a 16-wide student against both through a projection it does not keep."""
    from xdistil.distill.teacher_cache import TeacherLogitCache
    from xdistil.models.forward import TFLogits
    from xdistil.models.loading import load_task_model, model_inputs
    from xdistil.preflight import check_distillation

    config = _config(tmp_path, teacher_dir, "classification", student_layers_from_teacher=(1,), hidden_size=16,
                     representation_epochs=0, logit_epochs=2, finetune_epochs=1, first_token_state_weight=1.0)
    metrics = run_distillation(config)
    out = tmp_path / "out"
    cache = TeacherLogitCache(out / "cache" / "teacher_logits", {}, owner=False)
    cached = np.concatenate([cache.get(i) for i in sorted(cache.chunk_rows())]).astype(np.float32)
    labels = read_run_config(out)["labels"]
    assert cached.shape[1] == len(labels) + 32
    assert json.loads((out / "cache" / "teacher_logits" / "meta.json").read_text())["first_token_state"] is True

    inputs = check_distillation(config)
    task = inputs.task
    teacher = load_task_model(str(out / "teacher"), task, labels)
    reader = inputs.transfer_reader(config.data.distil_chunk_size, config.data.max_transfer_lines)
    features = [task.encode(inputs.tokenizer, examples, {}, config.data.encoding)[0] for _, examples in
                reader.chunks(0)]
    ids = np.concatenate([f.input_ids for f in features])
    batch = {"input_ids": ids, "attention_mask": np.concatenate([f.attention_mask for f in features]),
             "token_type_ids": np.concatenate([f.token_type_ids for f in features])}
    np.testing.assert_allclose(cached[:, :len(labels)], TFLogits(teacher)(batch), atol=2e-2, rtol=1e-2)
    state = teacher(model_inputs(teacher, batch), output_hidden_states=True).hidden_states[-1][:, 0].numpy()
    np.testing.assert_allclose(cached[:, len(labels):], state, atol=2e-2, rtol=1e-2)

    history = metrics["stages"]["logit"]["history"]
    assert len(history) == 2 and all(np.isfinite(epoch["train_loss"]) for epoch in history)
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert metrics["student"]["parameters"] < metrics["teacher"]["parameters"]
    from transformers import TFBertForSequenceClassification
    student = TFBertForSequenceClassification.from_pretrained(str(out / "model"))
    assert student.config.hidden_size == 16
    assert not any("state_projection" in w.name for w in student.weights)


def test_a_general_distillation_starts_task_distillations(tmp_path, teacher_dir):
    """Stage 1 alone on unlabeled text (no task) gives a plain encoder; a task run starts from it, and a
    trimmed task run takes it in through --remap_student_vocabulary."""
    from transformers import TFAutoModel

    task = write_task(tmp_path / "task", "classification")
    general = DistilConfig.from_settings(
        str(tmp_path / "general"), general_distillation=True, transfer_file=str(task / "transfer.txt"),
        pt_teacher_checkpoint=str(teacher_dir), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        compress_word_embedding=True, distil_multi_hidden_states=True,
        **{**FAST_RUN, "representation_epochs": 2})
    metrics = run_distillation(general)
    assert set(metrics["stages"]) == {"representation"} and metrics["general_distillation"]
    assert metrics["student"]["start"]["layers"] == [0, 1]  # both teacher layers, cut to width 16
    losses = [epoch["train_loss"] for epoch in metrics["stages"]["representation"]["history"]]
    assert len(losses) == 2 and losses[1] < losses[0]
    encoder = TFAutoModel.from_pretrained(str(tmp_path / "general" / "model"))
    assert type(encoder).__name__ == "TFBertModel" and encoder.config.hidden_size == 16

    for name, extra in (("task_run", {}), ("trimmed_run", {"trim_vocabulary": True, "remap_student_vocabulary": True})):
        config = DistilConfig.from_settings(
            str(tmp_path / name), task=str(task), task_kind="classification", transfer_file=str(task / "transfer.txt"),
            pt_teacher_checkpoint=str(teacher_dir), pt_student_checkpoint=str(tmp_path / "general" / "model"),
            **{**FAST_RUN, **extra})
        result = run_distillation(config)
        assert result["student"]["parameters"] < result["teacher"]["parameters"]
        assert result["student"]["start"]["checkpoint"] == str(tmp_path / "general" / "model")
    assert result["vocabulary"]["pieces_kept"] < result["vocabulary"]["pieces_before"]


def test_an_extra_trimming_corpus_needs_the_number_of_its_pieces_to_keep(tmp_path):
    from xdistil.errors import ConfigError

    common = dict(task="t", pt_teacher_checkpoint="t", student_layers_from_teacher=(0,), trim_vocabulary=True)
    with pytest.raises(ConfigError, match="keeps only its --trim_vocabulary_top_n most frequent") as caught:
        DistilConfig.from_settings(str(tmp_path), trim_vocabulary_corpus="corpus.txt", **common)
    assert caught.value.flag == "--trim_vocabulary_corpus"
    with pytest.raises(ConfigError, match="needs --trim_vocabulary_corpus") as caught:
        DistilConfig.from_settings(str(tmp_path), trim_vocabulary_top_n=5, **common)
    assert caught.value.flag == "--trim_vocabulary_top_n"
    # without --trim_vocabulary the corpus is not read at all: that is said first, not the missing count
    with pytest.raises(ConfigError, match="is read only with --trim_vocabulary"):
        DistilConfig.from_settings(str(tmp_path), trim_vocabulary_corpus="corpus.txt",
                                   **{**common, "trim_vocabulary": False})
    config = DistilConfig.from_settings(str(tmp_path), trim_vocabulary_corpus="corpus.txt", trim_vocabulary_top_n=5,
                                        **common)
    assert (config.data.trim_vocabulary_corpus, config.data.trim_vocabulary_top_n) == ("corpus.txt", 5)


def test_general_distillation_settings_are_checked(tmp_path):
    from xdistil.errors import ConfigError

    with pytest.raises(ConfigError, match="takes no --task"):
        DistilConfig.from_settings(str(tmp_path), general_distillation=True, task="t", transfer_file="x",
                                   pt_teacher_checkpoint="t", student_layers_from_teacher=(0,))
    with pytest.raises(ConfigError, match="learns from --transfer_file alone"):
        DistilConfig.from_settings(str(tmp_path), general_distillation=True, pt_teacher_checkpoint="t",
                                   student_layers_from_teacher=(0,))
    with pytest.raises(ConfigError, match="a value is required") as caught:
        DistilConfig.from_settings(str(tmp_path), pt_teacher_checkpoint="t", student_layers_from_teacher=(0,))
    assert caught.value.flag == "--task"
