"""run_predict_onnx.py: export when the model directory has no checked export, then serve and report."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import copy_model_dir
from xdistil.errors import ConfigError
from xdistil.export.student_export import ExportOptions, export_student
from xdistil.inference.onnx_serving import ServeOptions, run_onnx_prediction
from xdistil.model_dir import ModelDirectory

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = "the movie is good\tthe film is great\nthe plot is bad\tthe cast is good\na film is awful\ta movie is bad\n"


@pytest.fixture(scope="module")
def exported_pairwise(distilled_pairwise_dir, tmp_path_factory):
    """A private copy of the pairwise model directory, exported."""
    copy = copy_model_dir(distilled_pairwise_dir, tmp_path_factory.mktemp("serving") / "model_dir")
    model_dir = ModelDirectory.load(copy)
    return model_dir, export_student(model_dir, ExportOptions(batch_size=8))


@pytest.mark.slow
def test_exports_when_needed_then_serves_and_reports_latency(distilled_pairwise_dir, tmp_path):
    copy = copy_model_dir(distilled_pairwise_dir, tmp_path / "model_dir")
    assert not (copy / "onnx").exists()
    requests = tmp_path / "requests.txt"
    requests.write_text(REQUESTS)
    out = tmp_path / "predictions.txt"
    result = subprocess.run([sys.executable, str(ROOT / "run_predict_onnx.py"), f"--model_dir={copy}",
                             f"--pred_file={requests}", f"--output_file={out}", "--compare", "--warmup=1"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no ONNX export yet" in result.stderr and "exporting now" in result.stderr
    export = json.loads((copy / "onnx" / "export.json").read_text())
    report = json.loads((copy / "onnx" / "latency.json").read_text())
    served = "onnx_int8" if export["quantization"]["shipped"] else "onnx_fp32"
    expected = {"onnx_int8", "onnx_fp32", "tf_fp32"} if served == "onnx_int8" else {"onnx_fp32", "tf_fp32"}
    assert set(report["latency_ms"]) == expected
    assert report["served_model"].endswith("model.int8.onnx" if served == "onnx_int8" else "model.onnx")
    for summary in report["latency_ms"].values():
        assert summary["requests"] == 3 and 0 < summary["p50"] <= summary["p90"] <= summary["p99"]
    assert report["label_agreement_with_tf"]["onnx_fp32"] == 1.0
    assert report["cpu"]["cores"] >= 1
    rows = out.read_text().splitlines()
    assert len(rows) == 3 and all(r.split("\t")[0] in ("0", "1") for r in rows)


def test_zero_requests_are_a_valid_input(exported_pairwise, tmp_path):
    model_dir, export = exported_pairwise
    requests = tmp_path / "empty.txt"
    requests.write_text("")
    out = tmp_path / "out.txt"
    result = run_onnx_prediction(model_dir, export, ServeOptions(pred_file=str(requests), output_file=str(out)))
    assert out.read_text() == ""
    assert all(summary == {"requests": 0} for summary in result["latency"]["latency_ms"].values())


def test_more_instances_than_requests_names_the_flag(exported_pairwise, tmp_path):
    model_dir, export = exported_pairwise
    requests = tmp_path / "requests.txt"
    requests.write_text(REQUESTS)
    with pytest.raises(ConfigError, match="more than the 3 requests") as caught:
        run_onnx_prediction(model_dir, export, ServeOptions(pred_file=str(requests), instances=4))
    assert caught.value.flag == "--instances"


def test_served_outputs_come_from_the_checked_model(exported_pairwise, tmp_path):
    model_dir, export = exported_pairwise
    requests = tmp_path / "requests.txt"
    requests.write_text(REQUESTS)
    fp32 = run_onnx_prediction(model_dir, export, ServeOptions(pred_file=str(requests), serve_model="fp32",
                                                               output_file=str(tmp_path / "fp32.txt")))
    assert fp32["latency"]["served_model"].endswith("model.onnx")
    assert len((tmp_path / "fp32.txt").read_text().splitlines()) == 3
