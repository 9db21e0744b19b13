"""int8 quantization of exported (and preferably fused) ONNX models, pruned and written atomically."""
from pathlib import Path

import numpy as np
import onnx

from xdistil.export.graph_edit import node_counts_by_type, remove_unused_nodes
from xdistil.io_utils import atomic_write_via

# onnx shape inference knows no com.microsoft ops (Attention, SkipLayerNormalization, ...), so the
# tensors after them have no type; in these models every such tensor is float32.
_EXTRA_OPTIONS = {"DefaultTensorType": onnx.TensorProto.FLOAT}
_ONNX_INT_DTYPES = {onnx.TensorProto.INT32: np.int32, onnx.TensorProto.INT64: np.int64}


def _write_pruned(quantize, in_path, out_path) -> dict:
    """Run `quantize(temp_path)`, prune what it wrote (the quantized operators leave inputs of the
    fp32 ones unread, e.g. EmbedLayerNormalization's position ids) and move it to `out_path`.

    Returns input/output paths, sizes in bytes and the quantized graph's node counts by op type.
    """
    node_counts = {}

    def write(tmp):
        quantize(tmp)
        model = onnx.load(tmp)
        remove_unused_nodes(model)
        onnx.save(model, tmp)
        node_counts.update(node_counts_by_type(model))

    atomic_write_via(out_path, write)
    in_bytes, out_bytes = Path(in_path).stat().st_size, Path(out_path).stat().st_size
    return {"in_path": str(in_path), "out_path": str(out_path), "in_bytes": in_bytes,
            "out_bytes": out_bytes, "ratio": round(out_bytes / in_bytes, 4), "node_counts": node_counts}


def quantize_dynamic_int8(in_path, out_path, per_channel: bool = True, reduce_range: bool = False,
                          nodes_to_exclude=None) -> dict:
    """Dynamic quantization: int8 (QInt8) weights, activations quantized at run time.

    On a fused graph this also quantizes Attention (QAttention) and EmbedLayerNormalization.
    Returns input/output paths, sizes in bytes and "node_counts" (nodes by op type).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    return _write_pruned(lambda tmp: quantize_dynamic(
        str(in_path), tmp, per_channel=per_channel, reduce_range=reduce_range,
        weight_type=QuantType.QInt8, nodes_to_exclude=list(nodes_to_exclude or []),
        extra_options=_EXTRA_OPTIONS), in_path, out_path)


class FeedsCalibrationReader:
    """A CalibrationDataReader (onnxruntime accepts any class with `get_next`) over feature
    dicts, each fed with only the inputs the model declares, cast to their integer dtype."""

    def __init__(self, model_path, calibration_feeds):
        graph = onnx.load(str(model_path), load_external_data=False).graph
        initializers = {tensor.name for tensor in graph.initializer}
        self._inputs = {i.name: _ONNX_INT_DTYPES[i.type.tensor_type.elem_type]
                        for i in graph.input if i.name not in initializers}
        self._feeds = list(calibration_feeds)
        self._position = 0

    def get_next(self):
        if self._position >= len(self._feeds):
            return None
        features = self._feeds[self._position]
        self._position += 1
        return {name: np.asarray(features[name]).astype(dtype, copy=False)
                for name, dtype in self._inputs.items()}

    def rewind(self):
        self._position = 0

    def __len__(self):
        return len(self._feeds)


def quantize_static_int8(in_path, out_path, calibration_feeds, nodes_to_exclude=None) -> dict:
    """Static QDQ quantization (uint8 activations, int8 weights) calibrated with MinMax.

    `calibration_feeds` is a list of dicts of `[batch, sequence]` integer arrays
    (input_ids, attention_mask, token_type_ids); extra keys are ignored. Returns what
    `quantize_dynamic_int8` does.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not calibration_feeds:
        raise ValueError("static quantization needs at least one calibration batch")
    reader = FeedsCalibrationReader(in_path, calibration_feeds)
    return _write_pruned(lambda tmp: quantize_static(
        str(in_path), tmp, reader, quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=list(nodes_to_exclude or []), extra_options=_EXTRA_OPTIONS), in_path, out_path)
