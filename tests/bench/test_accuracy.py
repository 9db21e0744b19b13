"""bench/accuracy.py scores each model as it is used; int8 "as served" runs each request at its exact length."""
import shutil

import numpy as np
import pytest

from bench import accuracy
from bench.common import STUDENT_ONNX_FP32, STUDENT_ONNX_INT8, STUDENT_TF, TEACHER
from conftest import copy_model_dir
from xdistil.errors import ConfigError
from xdistil.export.student_export import ExportOptions, export_student
from xdistil.model_dir import ModelDirectory


@pytest.mark.slow
def test_int8_as_served_sees_each_request_at_its_own_length(distilled_pairwise_dir, tmp_path):
    model_dir = ModelDirectory.load(copy_model_dir(distilled_pairwise_dir, tmp_path / "pairwise"))
    export = export_student(model_dir, ExportOptions(batch_size=8, max_accuracy_drop=100.0))
    predictors = accuracy.build_predictors(model_dir, export, str(model_dir.path / "teacher"), batch_size=8)
    _, served = predictors["student_onnx_int8_batch1"]
    shapes = []
    forward = served.forward
    served.forward = lambda arrays: shapes.append(arrays["input_ids"].shape) or forward(arrays)
    examples = model_dir.read_labeled(export["dev_file"])
    features = model_dir.encode(examples)
    logits = served.logits(features)
    assert shapes == [(1, length) for length in features.attention_mask.sum(axis=1).tolist()]
    # The same scores as the export's gate, which ran int8 the way it is served.
    score = model_dir.score(examples, model_dir.predictions(logits, features, examples))
    assert score == export["dev_scores"]["onnx_int8"]

    # Each model's fidelity: the share of dev rows where it predicts the teacher's label.
    scores = accuracy.score_all(predictors, {"dev": export["dev_file"]}, model_dir)
    assert scores[TEACHER]["dev"]["agreement_with_teacher"] == {"requests": 1.0}
    teacher_bundle, teacher = predictors[TEACHER]
    _, student = predictors[STUDENT_TF]
    teacher_labels = teacher.logits(teacher_bundle.encode(examples)).argmax(-1)
    student_labels = student.logits(features).argmax(-1)
    assert scores[STUDENT_TF]["dev"]["agreement_with_teacher"]["requests"] == \
        float((teacher_labels == student_labels).mean())
    assert scores["student_onnx_int8_batch1"]["dev"]["accuracy"] == export["dev_scores"]["onnx_int8"]["accuracy"]

    # On the run's own transfer rows: each student against the argmax of the teacher logits the run cached.
    transfer = accuracy.transfer_agreement(model_dir, predictors, batch_size=8)
    assert set(transfer) == {STUDENT_TF, STUDENT_ONNX_FP32, STUDENT_ONNX_INT8}
    cached = np.concatenate([np.load(path) for path in
                             sorted((model_dir.path / "cache" / "teacher_logits").glob("chunk_*.npy"))])
    transfer_rows = model_dir.encode(model_dir.read_unlabeled(model_dir.record["transfer_files"][0]))
    agreeing = student.logits(transfer_rows).argmax(-1) == cached.astype(np.float32).argmax(-1)
    assert transfer[STUDENT_TF] == {"rows": len(cached), "agreement_with_teacher": pytest.approx(agreeing.mean())}
    # A run whose transfer file has moved is measured where the file is now.
    moved = tmp_path / "moved_transfer.txt"
    shutil.copyfile(model_dir.record["transfer_files"][0], moved)
    model_dir.record["transfer_files"] = [str(tmp_path / "gone.txt")]  # as the run recorded a file moved since
    with pytest.raises(ConfigError, match="gone.txt of the run .* is not there any more") as caught:
        accuracy.transfer_agreement(model_dir, predictors, batch_size=8)
    assert caught.value.flag == "--source_transfer_file"
    assert accuracy.transfer_agreement(model_dir, predictors, batch_size=8, source_transfer_file=str(moved)) == transfer
    # A run with no transfer file of its own has no transfer rows to measure.
    model_dir.record["transfer_files"], model_dir.record["inputs"]["transfer"] = None, None
    with pytest.raises(ConfigError, match="had no transfer file of its own") as caught:
        accuracy.transfer_agreement(model_dir, predictors, batch_size=8)
    assert caught.value.flag == "--transfer_agreement"
