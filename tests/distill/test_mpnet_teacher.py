"""An MPNet teacher (the all-mpnet-base-v2 layout: relative position bias, <s>/</s> specials, no token
types) through every stage into a narrower, shallower BERT student from scratch with the teacher's
tokenizer and SVD-compressed word embeddings; the student exported fused and int8 and served."""
import pytest

from conftest import FAST_RUN, write_task, write_tiny_mpnet
from xdistil.config import DistilConfig
from xdistil.distill.pipeline import run_distillation
from xdistil.export.student_export import ExportOptions, export_student
from xdistil.inference.online import OnlinePredictor, serve
from xdistil.model_dir import ModelDirectory

pytestmark = pytest.mark.slow

BERT_STUDENT = dict(student_architecture="bert", hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32, compress_word_embedding=True, distil_multi_hidden_states=True,
                    distil_attention=True)


@pytest.mark.parametrize("kind", ["ner", "pairwise"])
def test_mpnet_teacher_into_a_bert_student_exports_and_serves(tmp_path, kind):
    from transformers import AutoConfig, AutoTokenizer, TFAutoModel

    teacher = write_tiny_mpnet(tmp_path / "teacher", hidden_size=32, num_layers=2, num_heads=4)
    task = write_task(tmp_path / "task", kind)
    config = DistilConfig.from_settings(str(tmp_path / "out"), task=str(task), task_kind=kind,
                                        transfer_file=str(task / "transfer.txt"), pt_teacher_checkpoint=str(teacher),
                                        **{**FAST_RUN, **BERT_STUDENT})
    metrics = run_distillation(config)
    assert {"representation", "logit", "finetune"} <= set(metrics["stages"])
    assert metrics["stages"]["representation"]["history"][-1]["train_loss"] > 0

    out = tmp_path / "out"
    student_config = AutoConfig.from_pretrained(str(out / "model"))
    assert student_config.model_type == "bert" and student_config.hidden_size == 16
    assert AutoConfig.from_pretrained(str(out / "teacher")).model_type == "mpnet"
    assert student_config.vocab_size == len(AutoTokenizer.from_pretrained(str(teacher)))
    assert TFAutoModel.from_pretrained(str(out / "model")).config.num_hidden_layers == 1

    model_dir = ModelDirectory.load(out)
    report = export_student(model_dir, ExportOptions(batch_size=8, max_accuracy_drop=100.0))
    assert report["parity"]["fp32_vs_tf_max_abs_logit_diff"] <= 1e-4
    assert report["fusion"]["SkipLayerNormalization"] >= 2
    examples = model_dir.read_labeled(task / "test.tsv")
    requests = [(i, model_dir.task.unlabeled_line(e)) for i, e in enumerate(examples, start=1)]
    onnx_outputs, _ = serve(OnlinePredictor.from_onnx(model_dir, model_dir.onnx_path("fp32")), requests, warmup=0)
    tf_outputs, _ = serve(OnlinePredictor.from_tf(model_dir, model_dir.load_tf_model()), requests, warmup=0)
    assert [line.split("\t")[0] for line in onnx_outputs] == [line.split("\t")[0] for line in tf_outputs]


def test_an_mpnet_student_from_teacher_layers_distils(tmp_path):
    """The teacher's own architecture as the student (relative position bias copied with the layers)."""
    teacher = write_tiny_mpnet(tmp_path / "teacher", hidden_size=32, num_layers=2, num_heads=4)
    task = write_task(tmp_path / "task", "classification")
    config = DistilConfig.from_settings(str(tmp_path / "out"), task=str(task), task_kind="classification",
                                        transfer_file=str(task / "transfer.txt"), pt_teacher_checkpoint=str(teacher),
                                        **{**FAST_RUN, "student_layers_from_teacher": (1,),
                                           "distil_multi_hidden_states": True, "distil_attention": True})
    metrics = run_distillation(config)
    assert metrics["student"]["parameters"] < metrics["teacher"]["parameters"]
    assert ModelDirectory.load(tmp_path / "out").load_tf_model().config.model_type == "mpnet"


def test_teacher_trainable_layers_leaves_the_shared_relative_position_bias_frozen(tmp_path):
    """MPNet's relative position bias is read by every layer: training it with only the top layers would
    backpropagate through all of them, so --teacher_trainable_layers leaves it with the frozen layers."""
    import types

    from xdistil.distill.pipeline import teacher_trained_variables
    from xdistil.models.loading import load_task_model
    from xdistil.tasks import get_task

    teacher = load_task_model(str(write_tiny_mpnet(tmp_path / "teacher")), get_task("classification"), ["a", "b"])
    teacher(teacher.dummy_inputs)
    names = [v.name for v in teacher_trained_variables(teacher, types.SimpleNamespace(teacher_trainable_layers=1))]
    assert any("layer_._1/" in name for name in names) and any("classifier" in name for name in names)
    assert not any("layer_._0/" in name or "relative_attention_bias" in name or "embeddings" in name
                   for name in names)
    everything = teacher_trained_variables(teacher, types.SimpleNamespace(teacher_trainable_layers=None))
    assert any("relative_attention_bias" in v.name for v in everything)
