"""Pruned students against their unpruned student: int8 latency in one interleaved run, and their scores:

    python bench/pruning.py --model_dirs out/demo_ner,out/demo_ner_h6f50,out/demo_ner_h9f75 --name pruning_demo_ner

The first directory is the reference. Every request is one test sentence at its own length (parse + tokenize
+ int8 forward + post-process timed), served by each model in turn (A B C, B C A, ...). Dev and test are
scored with each int8 model as served, one request at a time. Writes bench/results/<name>.json and
<name>.png (score against p50; bench/report.py draws the same curve into accuracy_vs_latency.png).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `python bench/...`
import xdistil  # noqa: F401  (first: selects Keras 2 before TensorFlow loads)

from absl import app, flags, logging

from bench.accuracy import split_files
from bench.common import RESULTS_DIR, load_average, read_json, write_result
from bench.latency import request_lines

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_list("model_dirs", None, "Model directories with onnx/ exported; the first is the reference.")
    flags.DEFINE_integer("max_requests", 300, "Requests: the first N examples of the reference's test file.")
    flags.DEFINE_integer("warmup", 10, "Untimed warm-up requests per model.")
    flags.DEFINE_integer("intra_op_threads", 1, "onnxruntime intra-op threads.")
    flags.DEFINE_string("name", None, "Results name: bench/results/<name>.json.")
    flags.mark_flags_as_required(["model_dirs", "name"])


def describe(model_dir, export: dict) -> dict:
    """What was pruned (nothing for an unpruned student) and the multiply-adds per token."""
    pruning = export.get("pruning")
    config = read_json(model_dir.model_path / "config.json")
    return {"heads_per_layer": pruning["heads_per_layer"] if pruning else [config["num_attention_heads"]] *
            config["num_hidden_layers"],
            "neurons_per_layer": pruning["neurons_per_layer"] if pruning else [config["intermediate_size"]] *
            config["num_hidden_layers"],
            "dropped_layers": pruning["dropped_layers"] if pruning else [],
            "multiply_adds_per_token": pruning["multiply_adds_per_token"]["after"] if pruning else None,
            "fused_operators": {k: v for k, v in export["fusion"].items() if isinstance(v, int) and v}}


def int8_scores(model_dir) -> dict:
    """{split: scores} of the int8 model over the task's dev and test files, one request at a time."""
    from xdistil.inference.onnx_runtime import onnx_session
    from xdistil.inference.predict import ONNXPredictor

    predictor = ONNXPredictor(onnx_session(model_dir.onnx_path("int8")), batch_size=1, length_multiple=1)
    scores = {}
    for split, path in split_files(model_dir).items():
        examples = model_dir.read_labeled(path)
        features = model_dir.encode(examples)
        scores[split] = model_dir.score(examples, model_dir.predictions(predictor.logits(features), features,
                                                                          examples))
    return scores


def plot_curve(models: dict, metric: str, title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for split, marker in (("test", "o"), ("dev", "s")):
        points = sorted((m["p50_ms"], 100 * m["scores"][split][metric], name) for name, m in models.items()
                        if split in m["scores"])
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker, label=f"{split} {metric}")
            for x, y, name in points:
                ax.annotate(name, (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    ax.set_xlabel("int8 p50 latency per request, ms (batch 1)")
    ax.set_ylabel(f"{metric} x100")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_benchmark(model_dirs: list[str], max_requests: int, warmup: int, threads: int, name: str) -> dict:
    from xdistil.inference.online import OnlinePredictor, latency_summary, serve_interleaved
    from xdistil.inference.onnx_serving import cpu_info
    from xdistil.model_dir import ModelDirectory

    directories = {Path(d).name: ModelDirectory.load(d) for d in model_dirs}
    exports = {n: d.checked_export() for n, d in directories.items()}  # a stale export is never measured
    reference_name, reference = next(iter(directories.items()))
    test_file = reference.default_file("test")
    lines = request_lines(reference, test_file, max_requests)
    predictors = {n: OnlinePredictor.from_onnx(d, d.onnx_path("int8"), threads) for n, d in directories.items()}
    load_before = load_average()
    runs = serve_interleaved(predictors, lines, warmup, test_file)
    load_after = load_average()
    metric = reference.task.metric
    models = {}
    for model_name, model_dir in directories.items():
        summary = latency_summary(runs[model_name].latencies_ms)
        models[model_name] = {"p50_ms": summary["p50"], "p90_ms": summary["p90"], "p99_ms": summary["p99"],
                              "scores": int8_scores(model_dir), **describe(model_dir, exports[model_name])}
    base = models[reference_name]
    for model in models.values():
        model["p50_speedup_vs_reference"] = base["p50_ms"] / model["p50_ms"]
        model["score_change_points"] = {split: 100 * (model["scores"][split][metric] - base["scores"][split][metric])
                                        for split in model["scores"] if split in base["scores"]}
    report = {"benchmark": "pruning", "name": name, "reference": reference_name, "metric": metric,
              "kind": reference.task.kind, "test_file": test_file, "requests": len(lines),
              "order": "interleaved request by request (A B C, B C A, ...)",
              "timed_path": "parse + tokenize + int8 forward + post-process, batch 1",
              "threads": {"onnxruntime_intra_op": threads}, "cpu": cpu_info(),
              "load_average_before_after": [load_before, load_after], "models": models}
    write_result(RESULTS_DIR / f"{name}.json", report)
    plot_curve(models, metric, f"{name}: pruning targets, int8, {len(lines)} requests", RESULTS_DIR / f"{name}.png")
    return report


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    report = run_benchmark(FLAGS.model_dirs, FLAGS.max_requests, FLAGS.warmup, FLAGS.intra_op_threads, FLAGS.name)
    for model, m in report["models"].items():
        logging.info("%-22s p50 %6.2f ms  x%.2f  %s", model, m["p50_ms"], m["p50_speedup_vs_reference"],
                     "  ".join(f"{s} {report['metric']} {v[report['metric']]:.4f} ({m['score_change_points'][s]:+.2f})"
                               for s, v in m["scores"].items()))


if __name__ == "__main__":
    define_flags()
    app.run(main)
