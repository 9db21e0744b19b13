"""Export a model directory's student to fused fp32 and int8 ONNX, checked against TensorFlow on dev.

Writes `<model_dir>/onnx/`: model.tf2onnx.onnx (raw export), model.onnx (fused fp32),
model.int8.onnx (quantized, when it passes the accuracy gate) and export.json.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from xdistil.evaluate import PRIMARY_METRIC
from xdistil.export.fusion import optimize_for_cpu, require_fusion
from xdistil.export.onnx_export import export_to_onnx
from xdistil.export.parity import max_abs_logit_diff, onnx_session
from xdistil.export.quantize import quantize_dynamic_int8, quantize_static_int8
from xdistil.inference.predict import ONNXPredictor, TFPredictor, batch_arrays
from xdistil.inference.student import StudentBundle
from xdistil.io_utils import atomic_write_json

log = logging.getLogger(__name__)

BERT_FAMILY = ("bert", "electra", "roberta", "xlm-roberta", "camembert")
PARITY_TOLERANCE = 1e-4
QUANTIZABLE_OPS = ("MatMul", "Attention", "Gemm", "EmbedLayerNormalization")


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    opset: int = 17
    int64_inputs: bool = False
    quantization: str = "dynamic"  # "dynamic" | "static" | "none"
    per_channel: bool = True  # one scale per output column: far closer to fp32 at the same speed
    reduce_range: bool = False
    calibration_file: str | None = None
    calibration_size: int = 256
    max_accuracy_drop: float = 1.0  # points of the task's primary metric (x100)
    eval_file: str | None = None
    batch_size: int = 32


def export_student(model_dir: str, options: ExportOptions = ExportOptions()) -> dict:
    """Export, fuse, quantize and check the student of `model_dir`; returns (and writes) the report."""
    bundle = StudentBundle.load(model_dir)
    onnx_dir = Path(model_dir) / "onnx"
    raw, fp32, int8 = onnx_dir / "model.tf2onnx.onnx", onnx_dir / "model.onnx", onnx_dir / "model.int8.onnx"
    export = export_to_onnx(bundle.model_path, raw, bundle.kind, options.opset, options.int64_inputs)
    fusion = optimize_for_cpu(raw, fp32, export["num_heads"], export["hidden_size"],
                              cls_only_last_layer=bundle.kind != "ner")
    report = {"export": export, "fusion": fusion, "sizes": {"tf2onnx_fp32": raw.stat().st_size,
                                                           "fused_fp32": fp32.stat().st_size}}
    if export["model_type"] in BERT_FAMILY:
        require_fusion(fusion, export["num_layers"])
    else:
        log.warning("%s is not BERT-family: fusion counts %s", export["model_type"], fusion)

    dev = _dev_split(bundle, options)
    tf_model = bundle.load_tf_model()
    tf_logits = TFPredictor(tf_model, options.batch_size).logits(dev.features)
    fp32_logits = ONNXPredictor(onnx_session(fp32), options.batch_size).logits(dev.features)
    parity = _max_abs_diff(tf_logits, fp32_logits, dev.features)
    report["parity"] = {"dev_rows": len(dev.features), "fp32_vs_tf_max_abs_logit_diff": parity,
                        "tolerance": PARITY_TOLERANCE}
    if not parity <= PARITY_TOLERANCE:
        raise RuntimeError(f"ONNX fp32 logits differ from TensorFlow by {parity:.3g} > {PARITY_TOLERANCE:g}")
    metric = PRIMARY_METRIC[bundle.kind]
    scores = {"tf": dev.score(tf_logits), "onnx_fp32": dev.score(fp32_logits)}
    report["dev_file"] = dev.path
    report["metric"] = metric
    if options.quantization != "none":
        report["quantization"] = _quantize_with_gate(bundle, options, fp32, int8, dev, tf_logits, scores, metric)
        if int8.exists():
            report["sizes"]["int8"] = int8.stat().st_size
    report["dev_scores"] = scores
    atomic_write_json(onnx_dir / "export.json", report)
    return report


@dataclasses.dataclass
class _DevSplit:
    path: str
    examples: list
    features: object
    bundle: StudentBundle

    def score(self, logits) -> dict:
        return self.bundle.score(self.examples, self.bundle.predictions(logits, self.features, self.examples))


def _dev_split(bundle: StudentBundle, options: ExportOptions) -> _DevSplit:
    path = options.eval_file or str(Path(bundle.task or "") / "dev.tsv")
    if not Path(path).exists():
        raise FileNotFoundError(f"no dev file at {path}: give --eval_file (the accuracy gate needs labeled data)")
    examples = bundle.read_labeled(path)
    return _DevSplit(path, examples, bundle.encode(examples), bundle)


def _max_abs_diff(a, b, features) -> float:
    mask = features.attention_mask if a.ndim == 3 else None
    return max_abs_logit_diff(a, b, mask)


def _labels(logits, features) -> np.ndarray:
    """Predicted label ids at the positions that count (NER: first sub-tokens)."""
    if logits.ndim == 3:
        return logits.argmax(-1)[features.word_ids >= 0]
    return logits.argmax(-1)


def _quantize(options, fp32, int8, exclude, calibration):
    if options.quantization == "static":
        return quantize_static_int8(fp32, int8, calibration, nodes_to_exclude=exclude)
    return quantize_dynamic_int8(fp32, int8, options.per_channel, options.reduce_range, nodes_to_exclude=exclude)


def _quantize_with_gate(bundle, options, fp32, int8, dev, tf_logits, scores, metric) -> dict:
    """Quantize; if the dev score drops more than allowed, keep the most sensitive nodes (from the top
    of the network down) in fp32, and if nothing passes, ship no int8 model."""
    import onnx

    calibration = _calibration_feeds(bundle, options) if options.quantization == "static" else None
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
        agreement = float(np.mean(_labels(int8_logits, dev.features) == _labels(tf_logits, dev.features)))
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
    log.error("int8 model loses more than %.2f points on dev even with every node in fp32 excluded step by "
              "step; no int8 model shipped (serve model.onnx)", options.max_accuracy_drop)
    return {"mode": options.quantization, "attempts": attempts, "shipped": False}


def _calibration_feeds(bundle: StudentBundle, options: ExportOptions) -> list[dict]:
    """Calibration batches from the first lines of the transfer file (or --calibration_file)."""
    from xdistil.config import load_run_config
    from xdistil.data.transfer import TransferChunkReader

    path = options.calibration_file or load_run_config(bundle.model_dir).get("transfer_file")
    if not path:
        raise ValueError("static quantization needs --calibration_file (the run had no transfer file)")
    _, examples = next(TransferChunkReader(path, bundle.kind, options.calibration_size).chunks(0))
    features = bundle.encode(examples)
    return [batch_arrays(features, np.arange(i, min(len(features), i + 16)))
            for i in range(0, len(features), 16)]
