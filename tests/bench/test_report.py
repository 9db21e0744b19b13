"""bench/report.py on small synthetic result files: joining, table, scatter plot (no models)."""
import json

import pytest

from bench import report


def _latency(task="demo/ner"):
    timed = {"teacher_tf_fp32_padded": 80.0, "teacher_tf_fp32": 16.0, "student_tf_fp32": 8.0,
             "student_onnx_fp32": 5.0, "student_onnx_int8": 4.0}
    return {"benchmark": "latency", "task": task, "requests": 3, "test_file": f"{task}/test.tsv",
            "padded_teacher_seq_len": 128, "cpu": {"model": "Test CPU", "cores": 2, "flags": ["avx2"]},
            "threads": {"onnxruntime_intra_op": 1}, "instances": {"instances": 2, "throughput_per_s": 400.0},
            "sizes_mb": {"teacher_tf_fp32": 90.0, "teacher_tf_fp32_padded": 90.0, "student_tf_fp32": 69.0,
                         "student_onnx_fp32": 68.9, "student_onnx_int8": 17.3},
            "latency_ms": {name: {"p50": p50, "p99": 2 * p50, "latencies_ms": [p50]} for name, p50 in timed.items()}}


def _accuracy(task, metric, models):
    return {"benchmark": "accuracy", "task": task, "metric": metric, "sizes_mb": {"student_tf_fp32": 1.5},
            "scores": {name: {"dev": {metric: dev}, "test": {metric: test}} for name, (dev, test) in models.items()}}


@pytest.fixture
def results_dir(tmp_path):
    files = {
        "ner.json": _latency(),
        "ner_accuracy.json": _accuracy("demo/ner", "f1", {
            "teacher_tf_fp32": (0.96, 0.92), "student_tf_fp32": (0.965, 0.922),
            "student_onnx_fp32": (0.965, 0.922), "student_onnx_int8": (0.959, 0.907),
            "student_onnx_int8_batch1": (0.957, 0.911)}),
        "cls_accuracy.json": _accuracy("demo/cls", "accuracy", {"student_tf_fp32": (0.8, 0.75)}),
        "distill_cost.json": {"benchmark": "distill_cost", "runs": {}},
        "other.json": [1, 2, 3],
    }
    for name, payload in files.items():
        (tmp_path / name).write_text(json.dumps(payload))
    return tmp_path


def test_rows_join_latency_and_accuracy_by_name(results_dir):
    results = report.load_results(results_dir)
    assert sorted(results) == ["cls", "ner"]
    rows = report.build_rows(results)
    ner = {r["model"]: r for r in rows if r["name"] == "ner"}
    assert list(ner) == ["teacher_tf_fp32_padded", "teacher_tf_fp32", "student_tf_fp32", "student_onnx_fp32",
                         "student_onnx_int8", "student_onnx_int8_batch1"]
    assert ner["teacher_tf_fp32_padded"]["test"] == pytest.approx(0.92)  # the padded teacher is the teacher
    assert ner["student_onnx_int8"]["speedup"] == pytest.approx(20.0)
    assert ner["student_onnx_int8_batch1"]["p50"] == 4.0  # batch-1 scores go with the batch-1 timing
    assert ner["student_onnx_int8"]["size_mb"] == 17.3
    assert ner["student_tf_fp32"]["size_mb"] == 69.0  # the latency file's sizes win
    (cls,) = [r for r in rows if r["name"] == "cls"]
    assert (cls["p50"], cls["speedup"], cls["dev"], cls["size_mb"]) == (None, None, 0.8, 1.5)


def test_markdown_table(results_dir):
    results = report.load_results(results_dir)
    table = report.markdown_table(report.build_rows(results), results)
    lines = table.splitlines()
    assert lines[0] == "| " + " | ".join(report.COLUMNS) + " |"
    assert "| demo/ner (f1) [ner] | student_onnx_int8 | 95.90 | 90.70 | 4.00 | 8.00 | 20.0 | 17.3 |" in lines
    assert "| demo/cls (accuracy) [cls] | student_tf_fp32 | 80.00 | 75.00 | – | – | – | 1.5 |" in lines
    assert "int8 x2 processes: 400 requests/s" in table


def test_write_report_table_and_scatter(results_dir, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out" / "table.md"
    table, plot = report.write_report(results_dir, out)
    assert out.read_text() == table
    assert plot == out.parent / "accuracy_vs_latency.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scatter_without_timed_scores_writes_nothing(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"name": "x", "model": "m", "metric": "f1", "p50": None, "dev": 0.5, "test": None}]
    assert report.scatter_plot(rows, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_every_run_gets_a_marker_and_no_two_runs_the_same_colour_and_marker():
    names = [f"run_{i:02d}" for i in range(25)]
    markers = report.series_markers(reversed(names))
    assert list(markers) == names  # every run is drawn (once only ten were, and the rest left out silently)
    styles = {(i % 10, markers[name]) for i, name in enumerate(names)}  # matplotlib's colour cycle, in plot order
    assert len(styles) == len(names)


def test_pruning_results_become_curves_in_the_scatter(results_dir, tmp_path):
    pytest.importorskip("matplotlib")
    models = {"ner": {"p50_ms": 4.0, "scores": {"dev": {"f1": 0.96}, "test": {"f1": 0.92}}},
              "ner_h6": {"p50_ms": 2.5, "scores": {"dev": {"f1": 0.95}, "test": {"f1": 0.91}}},
              "ner_h9": {"p50_ms": 3.0, "scores": {"dev": {"f1": 0.90}}}}
    (results_dir / "pruning_ner.json").write_text(json.dumps({"benchmark": "pruning", "name": "pruning_ner",
                                                              "metric": "f1", "models": models}))
    assert report.pruning_curves(results_dir) == {
        "pruning_ner": [(4.0, 0.92, "ner"), (3.0, 0.90, "ner_h9"), (2.5, 0.91, "ner_h6")]}
    assert "pruning_ner" not in report.load_results(results_dir)  # not a latency or accuracy result
    _, plot = report.write_report(results_dir, tmp_path / "table.md")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
