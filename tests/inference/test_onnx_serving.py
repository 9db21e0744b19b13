import json

from xdistil.inference.onnx_serving import ServeOptions, run_onnx_prediction


def test_exports_when_needed_then_serves_and_reports_latency(distilled_pairwise_dir, tmp_path):
    requests = tmp_path / "requests.txt"
    requests.write_text("the movie is good\tthe film is great\nthe plot is bad\tthe cast is good\n"
                        "a film is awful\ta movie is bad\n")
    out = tmp_path / "predictions.txt"
    result = run_onnx_prediction(str(distilled_pairwise_dir), None,
                                 ServeOptions(pred_file=str(requests), output_file=str(out), compare=True, warmup=1))
    report = json.loads((distilled_pairwise_dir / "onnx" / "latency.json").read_text())
    assert report == json.loads(json.dumps(result["latency"]))
    served = "onnx_int8" if (distilled_pairwise_dir / "onnx" / "model.int8.onnx").exists() else "onnx_fp32"
    assert set(report["latency_ms"]) == {"onnx_int8", "onnx_fp32", "tf_fp32"} if served == "onnx_int8" \
        else {"onnx_fp32", "tf_fp32"}
    for summary in report["latency_ms"].values():
        assert summary["requests"] == 3 and 0 < summary["p50"] <= summary["p90"] <= summary["p99"]
    assert report["label_agreement_with_tf"]["onnx_fp32"] == 1.0
    assert report["cpu"]["cores"] >= 1
    rows = out.read_text().splitlines()
    assert len(rows) == 3 and all(r.split("\t")[0] in ("0", "1") for r in rows)
