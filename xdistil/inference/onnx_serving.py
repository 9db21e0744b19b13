"""run_predict_onnx.py's work: export if needed, then serve requests one at a time and report latency."""
from __future__ import annotations

import dataclasses
import logging
import os
import platform
from pathlib import Path

from xdistil.export.student_export import ExportOptions, export_student
from xdistil.inference.online import (STDIN_NAME, OnlinePredictor, iter_request_lines, latency_summary, serve,
                                      serve_instances, serve_interleaved)
from xdistil.inference.student import StudentBundle
from xdistil.io_utils import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    pred_file: str | None = None
    output_file: str | None = None
    serve_model: str = "int8"  # "int8" | "fp32"
    intra_op_threads: int = 1
    instances: int = 1
    warmup: int = 10
    compare: bool = False  # also time TF fp32 and the other ONNX model, interleaved, in the same run


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


def onnx_paths(model_dir: str) -> dict:
    onnx_dir = Path(model_dir) / "onnx"
    return {"fp32": onnx_dir / "model.onnx", "int8": onnx_dir / "model.int8.onnx"}


def run_onnx_prediction(model_dir: str, export: ExportOptions | None, serve_options: ServeOptions) -> dict:
    """Export (when asked or when there is no ONNX model yet), then serve --pred_file at batch 1."""
    paths = onnx_paths(model_dir)
    result = {}
    if serve_options.compare:  # before the export starts TensorFlow, or the setting cannot be made
        limit_tf_threads(serve_options.intra_op_threads)
    if export is not None or not paths["fp32"].exists():
        result["export"] = export_student(model_dir, export or ExportOptions())
    if not serve_options.pred_file:
        return result
    served = serve_options.serve_model
    if served == "int8" and not paths["int8"].exists():
        log.warning("no int8 model (not exported, or it failed the accuracy gate): serving fp32")
        served = "fp32"
    bundle = StudentBundle.load(model_dir)
    source = STDIN_NAME if serve_options.pred_file == "-" else serve_options.pred_file
    lines = list(iter_request_lines(serve_options.pred_file))
    threads = serve_options.intra_op_threads
    predictors = {f"onnx_{served}": OnlinePredictor.from_onnx(bundle, paths[served], threads)}
    if serve_options.compare:
        other = "fp32" if served == "int8" else "int8"
        if paths[other].exists():
            predictors[f"onnx_{other}"] = OnlinePredictor.from_onnx(bundle, paths[other], threads)
        predictors["tf_fp32"] = OnlinePredictor.from_tf(bundle, bundle.load_tf_model())
        runs = serve_interleaved(predictors, lines, serve_options.warmup, source)
    else:
        runs = {name: serve(p, lines, serve_options.warmup, source) for name, p in predictors.items()}
    outputs = runs[f"onnx_{served}"][0]
    report = {"served_model": str(paths[served]), "pred_file": source, "intra_op_threads": threads,
              "warmup_requests": min(serve_options.warmup, len(lines)), "cpu": cpu_info(),
              "timed_path": "parse + tokenize + forward at the request's own length + post-process",
              "latency_ms": {name: latency_summary(latencies) for name, (_, latencies) in runs.items()}}
    if serve_options.compare:
        report["tf_threads"] = tf_threads()  # 0 = TensorFlow's default (all cores)
        report["label_agreement_with_tf"] = {name: _label_agreement(out, runs["tf_fp32"][0])
                                             for name, (out, _) in runs.items() if name != "tf_fp32"}
    if serve_options.instances > 1:
        multi = serve_instances(model_dir, paths[served], lines, serve_options.instances, serve_options.warmup,
                                source)
        if multi.pop("outputs") != outputs:
            raise RuntimeError("multi-instance outputs differ from single-instance outputs")
        report["instances"] = multi
    atomic_write_json(Path(model_dir) / "onnx" / "latency.json", report)
    output_file = serve_options.output_file or str(Path(model_dir) / "onnx" / "predictions.txt")
    atomic_write_text(output_file, "".join(line + "\n" for line in outputs))
    result.update(latency=report, output_file=output_file)
    for name, summary in report["latency_ms"].items():
        log.info("%s: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, %.1f requests/s", name, summary["p50"],
                 summary["p90"], summary["p99"], summary["throughput_per_s"])
    if "instances" in report:
        log.info("%d instances: %.1f requests/s", serve_options.instances, report["instances"]["throughput_per_s"])
    return result
