"""Exporting a distilled model directory: fused fp32 + int8 ONNX, parity and the accuracy gate."""
import json

import pytest

from conftest import copy_model_dir
from xdistil.export.student_export import ExportOptions, export_student
from xdistil.model_dir import ModelDirectory


def test_export_writes_fused_models_and_report(distilled_ner_dir, tmp_path):
    copy = copy_model_dir(distilled_ner_dir, tmp_path / "ner")
    report = export_student(ModelDirectory.load(copy), ExportOptions(batch_size=8))
    onnx_dir = copy / "onnx"
    assert (onnx_dir / "model.onnx").exists() and (onnx_dir / "model.int8.onnx").exists()
    assert json.loads((onnx_dir / "export.json").read_text()) == json.loads(json.dumps(report))
    assert report["fusion"]["Attention"] == 1 and report["fusion"]["SkipLayerNormalization"] == 2
    assert report["parity"]["fp32_vs_tf_max_abs_logit_diff"] <= 1e-4
    assert report["sizes"]["model.int8.onnx"] < report["sizes"]["model.onnx"]
    assert set(report["dev_scores"]) == {"tf", "onnx_fp32", "onnx_int8"}
    assert report["dev_scores"]["onnx_fp32"]["f1"] == pytest.approx(report["dev_scores"]["tf"]["f1"])
    gate = report["quantization"]
    assert gate["shipped"] and 0.0 <= gate["label_agreement_with_tf"] <= 1.0


def test_gate_that_nothing_passes_ships_no_int8_model(distilled_pairwise_dir, tmp_path):
    # A negative allowance cannot be met (int8 would have to beat fp32 on dev): every exclusion
    # step is tried, then int8 is withheld rather than shipped.
    copy = copy_model_dir(distilled_pairwise_dir, tmp_path / "pairwise")
    report = export_student(ModelDirectory.load(copy), ExportOptions(max_accuracy_drop=-100.0, batch_size=8))
    gate = report["quantization"]
    assert not gate["shipped"]
    assert not (copy / "onnx" / "model.int8.onnx").exists() and "model.int8.onnx" not in report["files"]
    assert gate["attempts"][0]["excluded_nodes"] == 0
    assert gate["attempts"][-1]["excluded_nodes"] > gate["attempts"][0]["excluded_nodes"]
    import onnx

    from xdistil.export.student_export import QUANTIZABLE_OPS
    graph = onnx.load(str(copy / "onnx" / "model.onnx")).graph
    quantizable = sum(node.op_type in QUANTIZABLE_OPS for node in graph.node)
    assert all(attempt["excluded_nodes"] < quantizable for attempt in gate["attempts"])  # never all fp32
    assert "onnx_int8" not in report["dev_scores"]
