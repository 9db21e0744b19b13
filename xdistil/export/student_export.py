"""Export a model directory's student to fused fp32 and int8 ONNX, checked against TensorFlow on dev.

Writes `<model_dir>/onnx/`: model.tf2onnx.onnx (raw export), model.onnx (fused fp32),
model.int8.onnx (quantized, when it passes the accuracy gate) and, last, export.json: what the
files were built from (a fingerprint of model/, the options) and their sizes and hashes. An export
killed at any point leaves no export.json, and the files without it are never served.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from xdistil.config import Section, setting
from xdistil.export.fusion import optimize_for_cpu, require_fusion
from xdistil.export.onnx_export import export_to_onnx
from xdistil.export.parity import max_abs_logit_diff
from xdistil.export.quantize import quantize_dynamic_int8, quantize_static_int8
from xdistil.inference.onnx_runtime import onnx_session
from xdistil.inference.predict import ONNXPredictor, TFPredictor, batch_arrays
from xdistil.io_utils import atomic_write_json
from xdistil.fingerprints import file_sha256
from xdistil.model_dir import EXPORT_REPORT, ModelDirectory
from xdistil.models.bert_conversion import BERT_FAMILY
from xdistil.pruning.plan import PruningPlan

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4
QUANTIZABLE_OPS = ("MatMul", "Attention", "Gemm", "EmbedLayerNormalization")
RAW_FILE = "model.tf2onnx.onnx"


@dataclasses.dataclass(frozen=True)
class ExportOptions(Section):
    """How run_predict_onnx.py exports, fuses, quantizes and checks a student."""

    opset: int = setting(17, "ONNX opset.", minimum=17)
    int64_inputs: bool = setting(False, "int64 model inputs instead of int32.")
    quantization: str = setting("dynamic", "int8 quantization.", choices=("dynamic", "static", "none"))
    per_channel: bool = setting(True, "Per-channel int8 weights (one scale per output column; --noper_channel: one "
                                      "per matrix).")
    reduce_range: bool = setting(False, "7-bit weights (for CPUs without VNNI that saturate).")
    calibration_file: str | None = setting(None, "Static quantization: calibration text (default: the transfer "
                                                 "data).")
    calibration_size: int = setting(256, "Static quantization: calibration lines.", minimum=1)
    max_accuracy_drop: float = setting(1.0, "Largest dev drop (points of the task metric x100) an int8 model may "
                                            "have to ship.")
    eval_file: str | None = setting(None, "Labeled file for parity and the gate (default: the task's dev.tsv).")
    batch_size: int = setting(32, "Batch size of the parity check.", minimum=1, flag=False)


def export_student(model_dir: ModelDirectory, options: ExportOptions = ExportOptions()) -> dict:
    """Export, fuse, quantize and check the student of `model_dir`; returns (and writes, last) the report."""
    onnx_dir = model_dir.onnx_dir
    onnx_dir.mkdir(parents=True, exist_ok=True)
    (onnx_dir / EXPORT_REPORT).unlink(missing_ok=True)  # the files about to change are unchecked until the end
    fingerprint = model_dir.student_fingerprint()
    raw, fp32, int8 = onnx_dir / RAW_FILE, model_dir.onnx_path("fp32"), model_dir.onnx_path("int8")
    int8.unlink(missing_ok=True)
    tf_model = model_dir.load_tf_model(float32=True)
    export = export_to_onnx(tf_model, raw, options.opset, options.int64_inputs)
    plan = PruningPlan.read(model_dir.model_path)  # a pruned student's zeroed heads and neurons are cut out
    fusion = optimize_for_cpu(raw, fp32, export["num_heads"], export["hidden_size"],
                              cls_only_last_layer=model_dir.task.cls_only_export, pruning=plan)
    report = {"export": export, "fusion": fusion}
    if plan is not None:
        report["pruning"] = {**plan.summary(), "multiply_adds_per_token": plan.multiply_adds_per_token(
            model_dir.seq_len)}
    if export["model_type"] in BERT_FAMILY:
        require_fusion(fusion, export["num_layers"])
    else:
        log.warning("%s is not BERT-family: fusion counts %s", export["model_type"], fusion)

    dev = _DevSplit.read(model_dir, options.eval_file)
    tf_logits = TFPredictor(tf_model, options.batch_size).logits(dev.features)
    fp32_logits = ONNXPredictor(onnx_session(fp32), options.batch_size).logits(dev.features)
    mask = dev.features.attention_mask if model_dir.task.token_level else None
    parity = max_abs_logit_diff(tf_logits, fp32_logits, mask)
    report["parity"] = {"dev_rows": len(dev.features), "fp32_vs_tf_max_abs_logit_diff": parity,
                        "tolerance": PARITY_TOLERANCE}
    if not parity <= PARITY_TOLERANCE:
        raise RuntimeError(f"ONNX fp32 logits differ from TensorFlow by {parity:.3g} > {PARITY_TOLERANCE:g}")
    scores = {"tf": dev.score(tf_logits), "onnx_fp32": dev.score(fp32_logits)}
    report.update(dev_file=dev.path, metric=model_dir.task.metric)
    if options.quantization != "none":
        report["quantization"] = _quantize_with_gate(model_dir, options, fp32, int8, dev, tf_logits, scores)
    report["dev_scores"] = scores
    shipped = [path for path in (raw, fp32, int8) if path.exists()]
    report["sizes"] = {path.name: path.stat().st_size for path in shipped}
    report["files"] = {path.name: {"bytes": path.stat().st_size, "sha256": file_sha256(path)} for path in shipped}
    report["student_fingerprint"] = fingerprint
    report["options"] = dataclasses.asdict(options)
    atomic_write_json(onnx_dir / EXPORT_REPORT, report)
    return report


@dataclasses.dataclass
class _DevSplit:
    """The labeled file the export is checked on, read and encoded."""

    path: str
    examples: list
    features: object
    model_dir: ModelDirectory

    @classmethod
    def read(cls, model_dir: ModelDirectory, eval_file: str | None) -> "_DevSplit":
        path = eval_file or model_dir.default_file("dev")
        examples = model_dir.read_labeled(path)
        return cls(path, examples, model_dir.encode(examples), model_dir)

    def score(self, logits) -> dict:
        return self.model_dir.score(self.examples, self.model_dir.predictions(logits, self.features, self.examples))


def _quantize(options, fp32, int8, exclude, calibration):
    if options.quantization == "static":
        return quantize_static_int8(fp32, int8, calibration, nodes_to_exclude=exclude)
    return quantize_dynamic_int8(fp32, int8, options.per_channel, options.reduce_range, nodes_to_exclude=exclude)


def _quantize_with_gate(model_dir, options, fp32, int8, dev, tf_logits, scores) -> dict:
    """Quantize; if the dev score drops more than allowed, keep the most sensitive nodes (from the top
    of the network down) in fp32, and if nothing passes, ship no int8 model."""
    import onnx

    task, metric = model_dir.task, model_dir.task.metric
    calibration = _calibration_feeds(model_dir, options) if options.quantization == "static" else None
    nodes = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type in QUANTIZABLE_OPS]
    attempts = []
    # Exclusion candidates: nothing, then growing tails of the graph (head first, then the top layers),
    # never all of it: a model with every node kept in fp32 is not an int8 model.
    tails = [0] + [k for k in (1, 2, 4, 8, 16, 32) if k < len(nodes)]
    for tail in tails:
        exclude = nodes[len(nodes) - tail:] if tail else []
        sizes = _quantize(options, fp32, int8, exclude, calibration)
        # Dynamic int8 quantizes activations over the whole input, so score it as it is served:
        # one request at a time, at its own length.
        int8_logits = ONNXPredictor(onnx_session(int8), batch_size=1, length_multiple=1).logits(dev.features)
        score = dev.score(int8_logits)
        drop = 100.0 * (scores["onnx_fp32"][metric] - score[metric])
        agreement = float(np.mean(task.predicted_ids(int8_logits, dev.features)
                                  == task.predicted_ids(tf_logits, dev.features)))
        attempts.append({"excluded_nodes": len(exclude), "dev_score": score[metric], "drop_points": drop,
                         "label_agreement_with_tf": agreement})
        log.info("int8 (%d nodes kept in fp32): dev %s %.4f, drop %.2f points, label agreement %.4f",
                 len(exclude), metric, score[metric], drop, agreement)
        if drop <= options.max_accuracy_drop:
            scores["onnx_int8"] = score
            return {"mode": options.quantization, "per_channel": options.per_channel,
                    "reduce_range": options.reduce_range, "excluded_nodes": exclude, "attempts": attempts,
                    "label_agreement_with_tf": agreement, "shipped": True, "sizes": sizes}
    int8.unlink()
    log.error("int8 model loses more than %.2f points on dev even with up to %d of its %d quantizable nodes kept in "
              "fp32; no int8 model shipped (model.onnx is served)", options.max_accuracy_drop, tails[-1], len(nodes))
    return {"mode": options.quantization, "attempts": attempts, "shipped": False}


def _calibration_feeds(model_dir: ModelDirectory, options: ExportOptions) -> list[dict]:
    """Calibration batches from the first lines of the transfer data (or --calibration_file)."""
    from xdistil.data.transfer import TransferChunkReader

    path = options.calibration_file or model_dir.record["data"].get("transfer_file")
    if not path:
        from xdistil.errors import ConfigError

        raise ConfigError("calibration_file", "static quantization needs --calibration_file (the run had no "
                                              "transfer file)")
    _, examples = next(TransferChunkReader(path, model_dir.task, options.calibration_size).chunks(0))
    features = model_dir.encode(examples)
    return [batch_arrays(features, np.arange(i, min(len(features), i + 16)))
            for i in range(0, len(features), 16)]
