"""Export a HuggingFace TF task model (token or sequence classification) to ONNX with tf2onnx.

The graph takes `input_ids`, `attention_mask` and, where the model uses segments,
`token_type_ids`, all `[batch, sequence]` with both axes dynamic, and returns one float32
output named `logits`.
"""
from pathlib import Path

import numpy as np

from xdistil.io_utils import atomic_write_via
from xdistil.models.forward import TFLogits


def _convert_erfc(ctx, node, name, args):
    """tf2onnx handler for TF `Erfc` (exact GELU lowers to it): erfc(x) = 1 - erf(x)."""
    from tf2onnx import utils

    node.type = "Erf"
    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
    one = ctx.make_const(utils.make_name(f"{name}_one"), np.array(1, dtype=dtype))
    sub = ctx.insert_new_node_on_output("Sub", node.output[0], name=utils.make_name(f"{name}_1_minus"),
                                        inputs=[one.output[0], node.output[0]])
    ctx.copy_shape(node.output[0], sub.output[0])
    ctx.set_dtype(sub.output[0], ctx.get_dtype(node.output[0]))


def save_onnx_atomic(model, path) -> int:
    """Write an ONNX model atomically; return its size in bytes."""
    import onnx

    return atomic_write_via(path, lambda tmp: onnx.save(model, tmp))


def encoder_shape(config) -> dict:
    """Layers, hidden size and heads of a HF config (BERT or DistilBERT names); fusion needs all three."""
    shape = {}
    for key, names in (("num_layers", ("num_hidden_layers", "n_layers")), ("hidden_size", ("hidden_size", "dim")),
                       ("num_heads", ("num_attention_heads", "n_heads"))):
        value = next((getattr(config, name) for name in names if getattr(config, name, None)), None)
        if value is None:
            raise ValueError(f"the {config.model_type} config names no {key} ({' or '.join(names)})")
        shape[key] = int(value)
    return shape


def export_to_onnx(model, onnx_path, opset: int = 17, int64_inputs: bool = False) -> dict:
    """Convert a HF TF task model (built, float32) to ONNX at `onnx_path` (written atomically).

    Returns a report: inputs and their dtype, output name, opset, file size and the
    encoder shape (layers, hidden size, heads) that graph fusion needs.
    """
    import onnx
    import tf2onnx

    forward = TFLogits(model, int64_inputs=int64_inputs)
    proto, _ = tf2onnx.convert.from_function(forward.function, input_signature=forward.signature, opset=opset,
                                             custom_op_handlers={"Erfc": (_convert_erfc, [])})
    onnx.checker.check_model(proto)
    graph_inputs = [i.name for i in proto.graph.input]
    graph_outputs = [o.name for o in proto.graph.output]
    if graph_inputs != list(forward.names) or graph_outputs != ["logits"]:
        raise RuntimeError(f"unexpected ONNX signature {graph_inputs} -> {graph_outputs}")

    size = save_onnx_atomic(proto, onnx_path)
    config = model.config
    return {"onnx_path": str(Path(onnx_path)), "model_type": config.model_type, "opset": opset,
            "inputs": list(forward.names), "input_dtype": "int64" if int64_inputs else "int32", "output": "logits",
            "num_labels": int(config.num_labels), **encoder_shape(config), "file_bytes": size,
            "tf2onnx_version": tf2onnx.__version__}
