"""run_predict_onnx.py's serving: requests one at a time from a file or stdin, latency reported."""
from __future__ import annotations

import dataclasses
import logging
import os
import platform
from pathlib import Path

from xdistil.config import Section, setting
from xdistil.errors import ConfigError
from xdistil.inference.online import (STDIN_NAME, OnlinePredictor, iter_request_lines, latency_summary,
                                      serve_instances, serve_interleaved)
from xdistil.io_utils import atomic_write_json, atomic_write_text
from xdistil.model_dir import ONNX_FILES, ModelDirectory

log = logging.getLogger(__name__)
ONNX_INT8 = ONNX_FILES["int8"]


@dataclasses.dataclass(frozen=True)
class ServeOptions(Section):
    """How run_predict_onnx.py answers requests."""

    pred_file: str | None = setting(None, "Requests, one per line, in the transfer-file format; - for stdin.")
    output_file: str | None = setting(None, "Predictions (default: <model_dir>/onnx/predictions.txt).")
    serve_model: str = setting("int8", "Which ONNX model serves the requests.", choices=("int8", "fp32"))
    intra_op_threads: int = setting(1, "onnxruntime intra-op threads per session.", minimum=1)
    instances: int = setting(1, "Also measure N single-thread sessions in parallel processes.", minimum=1)
    warmup: int = setting(10, "Untimed warm-up requests.", minimum=0)
    compare: bool = setting(False, "Also time TF fp32 and the other ONNX model, interleaved, in the same run.")


def cpu_info() -> dict:
    """CPU model, core count and the SIMD flags that matter for int8 kernels."""
    flags, model = set(), platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in wanted if f in flags]}


def limit_tf_threads(threads: int) -> bool:
    """Give TensorFlow `threads` intra-op threads and one inter-op thread, like the onnxruntime sessions.

    Possible only before TensorFlow starts; returns False (and warns) when it is too late.
    """
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        return True
    except RuntimeError:
        log.warning("TensorFlow was already running: its thread counts stay as they were")
        return False


def tf_threads() -> dict:
    import tensorflow as tf

    return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}


def _label_agreement(outputs: list[str], reference: list[str]) -> float:
    """Share of requests with the same labels (the probability column, if any, is ignored)."""
    same = sum(a.split("\t")[0] == b.split("\t")[0] for a, b in zip(outputs, reference))
    return same / max(1, len(reference))


def served_precision(export_report: dict, requested: str) -> str:
    """The model that serves: int8 when asked for and shipped (it passed the accuracy gate), else fp32."""
    if requested == "int8" and ONNX_INT8 not in export_report["files"]:
        log.warning("no int8 model (it failed the accuracy gate, or quantization was off): serving fp32")
        return "fp32"
    return requested


def run_onnx_prediction(model_dir: ModelDirectory, export_report: dict, options: ServeOptions) -> dict:
    """Serve --pred_file one request at a time with the checked export; write predictions and latency.json."""
    served = served_precision(export_report, options.serve_model)
    source = STDIN_NAME if options.pred_file == "-" else options.pred_file
    lines = list(iter_request_lines(options.pred_file))
    if options.instances > max(1, len(lines)):
        raise ConfigError("instances", f"--instances {options.instances} is more than the {len(lines)} requests")
    threads = options.intra_op_threads
    predictors = {f"onnx_{served}": OnlinePredictor.from_onnx(model_dir, model_dir.onnx_path(served), threads)}
    if options.compare:
        other = "fp32" if served == "int8" else "int8"
        if model_dir.onnx_path(other).name in export_report["files"]:
            predictors[f"onnx_{other}"] = OnlinePredictor.from_onnx(model_dir, model_dir.onnx_path(other), threads)
        predictors["tf_fp32"] = OnlinePredictor.from_tf(model_dir, model_dir.load_tf_model())
    runs = serve_interleaved(predictors, lines, options.warmup, source)  # one predictor: served in order
    outputs = runs[f"onnx_{served}"].outputs
    report = {"served_model": str(model_dir.onnx_path(served)), "pred_file": source, "intra_op_threads": threads,
              "warmup_requests": min(options.warmup, len(lines)), "cpu": cpu_info(),
              "timed_path": "parse + tokenize + forward at the request's own length + post-process",
              "latency_ms": {name: latency_summary(run.latencies_ms) for name, run in runs.items()}}
    if options.compare:
        report["tf_threads"] = tf_threads()  # 0 = TensorFlow's default (all cores)
        report["label_agreement_with_tf"] = {name: _label_agreement(run.outputs, runs["tf_fp32"].outputs)
                                             for name, run in runs.items() if name != "tf_fp32"}
    if options.instances > 1:
        multi = serve_instances(model_dir.path, model_dir.onnx_path(served), lines, options.instances, options.warmup,
                                source)
        if multi.pop("outputs") != outputs:
            raise RuntimeError("multi-instance outputs differ from single-instance outputs")
        report["instances"] = multi
    atomic_write_json(model_dir.onnx_dir / "latency.json", report)
    output_file = options.output_file or str(model_dir.onnx_dir / "predictions.txt")
    atomic_write_text(output_file, "".join(line + "\n" for line in outputs))
    for name, summary in report["latency_ms"].items():
        if summary["requests"]:
            log.info("%s: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, %.1f requests/s", name, summary["p50"],
                     summary["p90"], summary["p99"], summary["throughput_per_s"])
    log.info("%d requests answered, predictions in %s", len(outputs), output_file)
    if "instances" in report:
        log.info("%d instances: %.1f requests/s", options.instances, report["instances"]["throughput_per_s"])
    return {"latency": report, "output_file": output_file}
