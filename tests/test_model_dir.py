"""The model directory as a contract: checked when read, never reused for another run, never serving a stale
or unchecked ONNX model."""
import json

import pytest

from conftest import copy_model_dir
from xdistil.config import CONFIG_FILE, SECTIONS, DistilConfig, read_run_config
from xdistil.errors import ConfigError, ModelDirectoryError
from xdistil.export.student_export import ExportOptions, export_student
from xdistil.model_dir import ModelDirectory, beside_teacher, claim_run_directory


@pytest.fixture
def pairwise_copy(distilled_pairwise_dir, tmp_path):
    return copy_model_dir(distilled_pairwise_dir, tmp_path / "model_dir")


def test_a_flat_config_of_an_older_directory_is_migrated(pairwise_copy):
    payload = json.loads((pairwise_copy / CONFIG_FILE).read_text())
    flat = {key: value for key, value in payload.items() if key not in SECTIONS and key != "format_version"}
    for name in SECTIONS:
        flat.update(payload[name])
    (pairwise_copy / CONFIG_FILE).write_text(json.dumps(flat))
    model_dir = ModelDirectory.load(pairwise_copy)
    assert model_dir.task.kind == "pairwise" and model_dir.seq_len == 16
    config = DistilConfig.from_dict(read_run_config(pairwise_copy))
    assert config.data.seq_len == 16 and config.student.student_layers_from_teacher == (1,)


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / CONFIG_FILE).write_text('{"data": {"task_kind": "pairwise"'), "unreadable"),
    (lambda d: (d / CONFIG_FILE).write_text(json.dumps({"format_version": 2, "data": {"task_kind": "pairwise"}})),
     "incomplete: missing seq_len, labels"),
    (lambda d: (d / CONFIG_FILE).unlink(), "not an xdistil model directory"),
])
def test_a_broken_config_is_named(pairwise_copy, damage, message):
    damage(pairwise_copy)
    with pytest.raises(ModelDirectoryError, match=message) as caught:
        ModelDirectory.load(pairwise_copy)
    assert caught.value.where == str(pairwise_copy / CONFIG_FILE)


def test_missing_model_and_truncated_weights_are_named(pairwise_copy):
    weights = pairwise_copy / "model" / "tf_model.h5"
    weights.write_bytes(weights.read_bytes()[:5000])
    model_dir = ModelDirectory.load(pairwise_copy)
    with pytest.raises(ModelDirectoryError, match="damaged or truncated") as caught:
        model_dir.load_tf_model()
    assert caught.value.where == str(weights)
    (pairwise_copy / "model" / "config.json").unlink()
    with pytest.raises(ModelDirectoryError, match="no student model"):
        ModelDirectory.load(pairwise_copy)


def test_an_export_is_served_only_while_it_matches_the_student(pairwise_copy):
    model_dir = ModelDirectory.load(pairwise_copy)
    with pytest.raises(ModelDirectoryError, match="no ONNX export yet"):
        model_dir.checked_export()
    report = export_student(model_dir, ExportOptions(batch_size=8))
    assert model_dir.checked_export() == json.loads(json.dumps(report))
    assert set(report["files"]) >= {"model.onnx", "model.tf2onnx.onnx"}

    # A damaged ONNX file is not the one the export wrote.
    int8 = model_dir.onnx_path("int8") if "model.int8.onnx" in report["files"] else model_dir.onnx_path("fp32")
    original = int8.read_bytes()
    int8.write_bytes(original[: len(original) // 2])
    with pytest.raises(ModelDirectoryError, match="not the file the export wrote") as caught:
        model_dir.checked_export()
    assert caught.value.where == str(int8)
    int8.write_bytes(original)

    # The student re-written (the README's "delete checkpoints/finetune and run again"): the export is stale.
    import tensorflow as tf

    model = model_dir.load_tf_model()
    model.classifier.kernel.assign(model.classifier.kernel + tf.ones_like(model.classifier.kernel))
    model.save_pretrained(str(model_dir.model_path))
    with pytest.raises(ModelDirectoryError, match="student changed since the ONNX export"):
        model_dir.checked_export()

    # An export killed before its report: files without export.json are never served.
    (model_dir.onnx_dir / "export.json").unlink()
    with pytest.raises(ModelDirectoryError, match="unfinished export"):
        model_dir.checked_export()


def _config_of(model_dir, **changes):
    flat = DistilConfig.from_dict(read_run_config(model_dir)).flat_settings()
    return DistilConfig.from_settings(str(model_dir), **{**flat, **changes})


def test_a_rerun_with_invalid_settings_changes_nothing(pairwise_copy):
    from xdistil.distill.pipeline import run_distillation

    before = {p: p.read_bytes() for p in pairwise_copy.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="layer 5 does not exist") as caught:
        run_distillation(_config_of(pairwise_copy, seq_len=24, student_layers_from_teacher=(5,)))
    assert caught.value.flag == "--student_layers_from_teacher"
    assert {p: p.read_bytes() for p in pairwise_copy.rglob("*") if p.is_file()} == before


def test_a_rerun_with_other_settings_is_refused_before_writing_unless_overwritten(pairwise_copy):
    from xdistil.distill.pipeline import run_distillation

    before = (pairwise_copy / CONFIG_FILE).read_bytes()
    with pytest.raises(ModelDirectoryError, match=r"--seq_len 16 -> 24.*--overwrite"):
        run_distillation(_config_of(pairwise_copy, seq_len=24))
    assert (pairwise_copy / CONFIG_FILE).read_bytes() == before
    (pairwise_copy / "checkpoints" / "stale.txt").write_text("from the old run")
    run_distillation(_config_of(pairwise_copy, seq_len=24), overwrite=True)  # starts over
    assert read_run_config(pairwise_copy)["data"]["seq_len"] == 24
    assert not (pairwise_copy / "checkpoints" / "stale.txt").exists()


def test_a_directory_of_an_older_version_resumes(pairwise_copy):
    """Made before a setting existed (it had the default's behaviour) and fingerprinted with locations and
    modification times; its transfer files touched since (copied, synced): the same command resumes it."""
    import os

    from xdistil.distill.pipeline import run_distillation

    config = _config_of(pairwise_copy)
    payload = json.loads((pairwise_copy / CONFIG_FILE).read_text())
    newer = {"augment_transfer", "augment_replace_prob", "remap_student_vocabulary", "pt_student_layers"}
    assert {key for section in SECTIONS for key in newer if payload[section].pop(key, KeyError) is not KeyError} == newer
    transfers = payload["inputs"]["transfer"]
    assert isinstance(transfers, list) and transfers
    for fingerprint, path in zip(transfers, payload.pop("transfer_files"), strict=True):
        fingerprint.update(path=path, mtime=1)
        os.utime(path)
    (pairwise_copy / CONFIG_FILE).write_text(json.dumps(payload))
    metrics = json.loads((pairwise_copy / "metrics.json").read_text())
    resumed = run_distillation(config)
    assert resumed["stages"] == metrics["stages"]


def test_a_rerun_on_another_task_is_refused(pairwise_copy, tmp_path):
    """The same rows with the labels renamed: the finished stages must not be reused for it."""
    from xdistil.distill.pipeline import run_distillation

    task = tmp_path / "renamed"
    task.mkdir()
    old_task = read_run_config(pairwise_copy)["data"]["task"]
    for split in ("train", "dev", "test"):
        rows = open(f"{old_task}/{split}.tsv").read()
        (task / f"{split}.tsv").write_text(rows.replace("\t0\n", "\tno\n").replace("\t1\n", "\tyes\n"))
    with pytest.raises(ModelDirectoryError, match=r"labels \['0', '1'\] -> \['no', 'yes'\]; task files changed"):
        run_distillation(_config_of(pairwise_copy, task=str(task)))


def test_claim_run_directory_rules(tmp_path):
    identity = {"settings": {"data": {"seq_len": 16}}, "labels": ["a"], "inputs": {"train": "x"}}
    same = lambda payload: identity  # noqa: E731
    assert claim_run_directory(tmp_path / "new", identity, same, overwrite=False) == "new"
    stranger = tmp_path / "home"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(ModelDirectoryError, match="not an xdistil model directory"):
        claim_run_directory(stranger, identity, same, overwrite=True)
    assert (stranger / "notes.txt").exists()  # --overwrite never deletes what is not a model directory


def test_the_scores_and_logits_of_a_runs_teacher_are_looked_for_in_that_run(tmp_path):
    from xdistil.distill.teacher_cache import CACHE_DIR
    from xdistil.distill.teacher_scores import SCORES_FILE

    (tmp_path / "run" / "teacher").mkdir(parents=True)
    teacher = str(tmp_path / "run" / "teacher")
    assert beside_teacher(teacher, SCORES_FILE) == [tmp_path / "run" / "cache" / "teacher_scores.json"]
    assert beside_teacher(teacher, CACHE_DIR) == [tmp_path / "run" / "cache" / "teacher_logits"]
    assert beside_teacher("pypi:all_mpnet_base_v2", SCORES_FILE) == []
    assert beside_teacher("pypi:all_mpnet_base_v2", CACHE_DIR) == []
