"""What the toolkit's batch-1 serving path costs over a minimal loop on the same model, TensorFlow and ONNX:

    .venv/bin/python bench/serving_overhead.py --model_dirs out/demo_ner out/rt_polarity_small --max_requests 300

For each model directory (exported) and each engine (the TF student in fp32; the served int8 ONNX model), the same
test requests go, interleaved request by request, through

- served: `OnlinePredictor.predict_line` (parse, encode at the exact length, forward, post-process), and
- minimal loop: fast tokenizer -> the same forward -> argmax -> the same output line (bench/peer_route.py's
  `MinimalLoop`, what a user writes around a model),

with one forward per engine shared by both (TF: the toolkit's traced `TFLogits` function; ONNX: one session), so
the ratio is the serving path's own cost. One intra-op thread for both engines. Clocks: wall and process CPU time
(TensorFlow computes on its own threads; other processes' preemption does not count). Outputs are checked equal.
Writes bench/results/<name>.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
TARGET = 1.05  # served / minimal loop (issue 12)


class TFSession:
    """A traced TF forward (`TFLogits`) behind onnxruntime's session interface, for `MinimalLoop`."""

    def __init__(self, logits):
        self.logits = logits

    def get_inputs(self):
        return [SimpleNamespace(name=name, type="tensor(int32)") for name in self.logits.names]

    def run(self, _, feeds):
        return [self.logits.function(*[feeds[name] for name in self.logits.names])["logits"].numpy()]


def measure_model(model_dir_path: str, max_requests: int, warmup: int) -> dict:
    from transformers import AutoTokenizer

    from bench.latency import request_lines
    from bench.peer_route import MinimalLoop, minimal_loop_max_length, time_ratio
    from xdistil.inference.online import OnlinePredictor, latency_summary, time_interleaved
    from xdistil.inference.onnx_runtime import onnx_session, session_feeder
    from xdistil.model_dir import ModelDirectory
    from xdistil.models.forward import TFLogits

    model_dir = ModelDirectory.load(model_dir_path)
    model_dir.checked_export()
    kind = model_dir.task.kind
    test_file = model_dir.default_file("test")
    lines = request_lines(model_dir, test_file, max_requests)
    max_length = minimal_loop_max_length(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir.model_path)
    tf_logits = TFLogits(model_dir.load_tf_model())
    session = onnx_session(model_dir.onnx_path("int8"), intra_op_threads=1)
    served = {"tf_fp32": OnlinePredictor(model_dir, tf_logits),
              "onnx_int8": OnlinePredictor(model_dir, session_feeder(session))}
    minimal = {"tf_fp32": MinimalLoop(tokenizer, TFSession(tf_logits), model_dir.labels, kind, max_length),
               "onnx_int8": MinimalLoop(tokenizer, session, model_dir.labels, kind, max_length)}
    calls = {}
    for engine in served:
        calls[f"{engine}_served"] = lambda i, p=served[engine]: p.predict_line(lines[i][1], lines[i][0], test_file)
        calls[f"{engine}_minimal_loop"] = lambda i, loop=minimal[engine]: loop(lines[i][1])
    runs = time_interleaved(calls, len(lines), warmup)  # process CPU time: TensorFlow computes on its own threads
    result = {"model_dir": model_dir_path, "kind": kind, "requests": len(lines), "timings": {}, "engines": {}}
    for name, run in runs.items():
        result["timings"][name] = {"wall_ms": latency_summary(run.latencies_ms),
                                   "process_cpu_ms": latency_summary(run.cpu_ms)}
    for engine in served:
        served_run, loop_run = runs[f"{engine}_served"], runs[f"{engine}_minimal_loop"]
        cpu = time_ratio(served_run.cpu_ms, loop_run.cpu_ms)
        result["engines"][engine] = {
            "served_vs_minimal_loop": {"process_cpu": cpu,
                                       "wall": time_ratio(served_run.latencies_ms, loop_run.latencies_ms)},
            "within_target": cpu["median_per_request"] <= TARGET,
            "same_outputs": sum(a == b for a, b in zip(served_run.outputs, loop_run.outputs)) / len(lines)}
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dirs", nargs="+", required=True, help="Distilled, exported model directories.")
    parser.add_argument("--max_requests", type=int, default=300, help="Requests: the first N test examples.")
    parser.add_argument("--warmup", type=int, default=10, help="Untimed warm-up requests per timed call.")
    parser.add_argument("--name", default="serving_overhead", help="Results: bench/results/<name>.json.")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import xdistil  # noqa: F401  (first: selects Keras 2 before TensorFlow loads)
    from xdistil.inference.onnx_serving import cpu_info, limit_tf_threads

    limit_tf_threads(1)
    from bench.common import RESULTS_DIR, load_average, write_result

    load_before = load_average()
    models = {path: measure_model(path, args.max_requests, args.warmup) for path in args.model_dirs}
    report = {"benchmark": "serving_overhead", "cpu": cpu_info(), "target": TARGET,
              "threads": {"tensorflow_intra_op": 1, "onnxruntime_intra_op": 1},
              "order": "interleaved request by request (A B C D, B C D A, ...)",
              "clocks": "wall (time.perf_counter) and process CPU (time.process_time); ratios of process CPU",
              "load_average_before_after": [load_before, load_average()], "models": models}
    write_result(RESULTS_DIR / f"{args.name}.json", report)
    for path, model in models.items():
        for engine, e in model["engines"].items():
            ratio = e["served_vs_minimal_loop"]
            print(f"{path:28s} {engine:10s} served / minimal loop: process CPU x{ratio['process_cpu']['median_per_request']:.3f}"
                  f" (totals x{ratio['process_cpu']['of_totals']:.3f}), wall x{ratio['wall']['median_per_request']:.3f}; "
                  f"same outputs {e['same_outputs']:.1%}")


if __name__ == "__main__":
    main()
