"""Export a HuggingFace TF student (token or sequence classification) to ONNX with tf2onnx.

The graph takes `input_ids`, `attention_mask` and, where the model uses segments,
`token_type_ids`, all `[batch, sequence]` with both axes dynamic, and returns one float32
output named `logits`.
"""
import contextlib
from pathlib import Path

import xdistil  # noqa: F401  (legacy Keras + offline HF before TensorFlow is imported)

import numpy as np

from xdistil.io_utils import atomic_write_via
from xdistil.models.loading import model_input_names, task_model_class

TASK_KINDS = ("ner", "pairwise", "classification")


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


@contextlib.contextmanager
def _float32_keras_policy():
    """Load the model in float32 even if the caller left a mixed-precision policy set."""
    import tensorflow as tf

    previous = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)


def load_tf_model(hf_model_dir, task_kind: str):
    """Load the student directory with the TFAutoModelFor... class of `task_kind`, in float32."""
    if task_kind not in TASK_KINDS:
        raise ValueError(f"task_kind must be one of {TASK_KINDS}, got {task_kind!r}")
    with _float32_keras_policy():
        return task_model_class(task_kind).from_pretrained(str(hf_model_dir))


def save_onnx_atomic(model, path) -> int:
    """Write an ONNX model atomically; return its size in bytes."""
    import onnx

    return atomic_write_via(path, lambda tmp: onnx.save(model, tmp))


def export_to_onnx(hf_model_dir, onnx_path, task_kind: str, opset: int = 17,
                   int64_inputs: bool = False) -> dict:
    """Convert the HF TF model in `hf_model_dir` to ONNX at `onnx_path` (written atomically).

    Returns a report: inputs and their dtype, output name, opset, file size and the
    encoder shape (layers, hidden size, heads) that graph fusion needs.
    """
    import onnx
    import tensorflow as tf
    import tf2onnx

    model = load_tf_model(hf_model_dir, task_kind)
    names = list(model_input_names(model))
    tf_dtype = tf.int64 if int64_inputs else tf.int32
    signature = [tf.TensorSpec([None, None], tf_dtype, name=name) for name in names]

    @tf.function(input_signature=signature)
    def logits_fn(*inputs):
        outputs = model(**dict(zip(names, inputs)), training=False)
        return {"logits": tf.cast(outputs.logits, tf.float32)}

    proto, _ = tf2onnx.convert.from_function(
        logits_fn, input_signature=signature, opset=opset,
        custom_op_handlers={"Erfc": (_convert_erfc, [])})
    onnx.checker.check_model(proto)
    graph_inputs = [i.name for i in proto.graph.input]
    graph_outputs = [o.name for o in proto.graph.output]
    if graph_inputs != names or graph_outputs != ["logits"]:
        raise RuntimeError(f"unexpected ONNX signature {graph_inputs} -> {graph_outputs}")

    size = save_onnx_atomic(proto, onnx_path)
    config = model.config
    return {
        "onnx_path": str(Path(onnx_path)),
        "task_kind": task_kind,
        "model_type": config.model_type,
        "opset": opset,
        "inputs": names,
        "input_dtype": "int64" if int64_inputs else "int32",
        "output": "logits",
        "num_labels": int(config.num_labels),
        "num_layers": int(getattr(config, "num_hidden_layers", getattr(config, "n_layers", 0))),
        "hidden_size": int(getattr(config, "hidden_size", getattr(config, "dim", 0))),
        "num_heads": int(getattr(config, "num_attention_heads", getattr(config, "n_heads", 0))),
        "file_bytes": size,
        "tf2onnx_version": tf2onnx.__version__,
    }
