"""What GET /metadata says: the task, its labels, the served model, its export, and the service's settings."""
from __future__ import annotations

import dataclasses
import os


def export_summary(report: dict) -> dict:
    """The parts of a checked export report (onnx/export.json) a client may want to see."""
    fusion = report.get("fusion", {})
    quantization = report.get("quantization", {})
    metric = report.get("metric")
    return {
        "sizes_bytes": report.get("sizes", {}),
        "fused_operators": {name: count for name, count in fusion.items()
                            if isinstance(count, int) and not isinstance(count, bool) and count},
        "cls_only_last_layer": fusion.get("cls_only_last_layer"),
        "fp32_vs_tf_max_abs_logit_diff": report.get("parity", {}).get("fp32_vs_tf_max_abs_logit_diff"),
        "dev_file": report.get("dev_file"),
        "dev_metric": metric,
        "dev_scores": {model: scores.get(metric) for model, scores in report.get("dev_scores", {}).items()},
        "quantization": {key: quantization.get(key) for key in ("mode", "per_channel", "shipped",
                                                                "label_agreement_with_tf")},
    }


def service_metadata(settings, service) -> dict:
    """/metadata of one worker (`worker_pid` says which answered)."""
    from xdistil.inference.onnx_serving import cpu_info
    from xdistil.model_dir import ONNX_FILES

    options = settings.options
    model_file = ONNX_FILES[settings.precision]
    return {
        "task": service.task.kind,
        "labels": list(service.labels),
        "served_model": {"precision": settings.precision, "file": model_file,
                         "bytes": settings.export_summary.get("sizes_bytes", {}).get(model_file)},
        "encoding": dataclasses.asdict(service.predictor.encoding),
        "export": settings.export_summary,
        "service": {"workers": options.workers, "intra_op_threads": settings.intra_op_threads,
                    "warmup_requests": settings.warmup,
                    "micro_batching": {"max_batch_size": options.max_batch_size,
                                       "max_delay_ms": options.max_delay_ms} if settings.batching else None,
                    "limits": {"max_request_chars": options.max_request_chars,
                               "max_request_inputs": options.max_request_inputs,
                               "max_body_bytes": options.max_body_bytes}},
        "cpu": cpu_info(),
        "worker_pid": os.getpid(),
    }
