"""Building, rewriting and running the small hand-made graphs of the rewrite tests."""
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.transformers.onnx_model import OnnxModel

from xdistil.export.graph_edit import tensor_shapes

FLOAT, INT32, INT64 = TensorProto.FLOAT, TensorProto.INT32, TensorProto.INT64


def make_model(nodes, inputs, outputs, constants, opset=17) -> onnx.ModelProto:
    """A model of `nodes`; `inputs`/`outputs` are (name, elem_type, shape) with str dims dynamic,
    `constants` maps initializer names to arrays."""
    graph = helper.make_graph(
        nodes, "pattern", [helper.make_tensor_value_info(*spec) for spec in inputs],
        [helper.make_tensor_value_info(*spec) for spec in outputs],
        [numpy_helper.from_array(np.asarray(value), name) for name, value in constants.items()])
    return helper.make_model(graph, ir_version=9, opset_imports=[helper.make_opsetid("", opset),
                                                                 helper.make_opsetid("com.microsoft", 1)])


def apply_rewrite(rewrite, model: onnx.ModelProto) -> int:
    """Apply `rewrite` to `model` in place as the canonicalization does (shapes inferred first, nodes
    left unused pruned after); return its count."""
    m = OnnxModel(model)
    count = rewrite.apply(m, tensor_shapes(model))
    m.prune_graph(allow_remove_graph_inputs=False)
    return count


def run(model: onnx.ModelProto, feeds: dict) -> list:
    """The graph outputs for `feeds`, computed by onnxruntime with its own graph optimizations off."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def op_types(model: onnx.ModelProto) -> list:
    return [node.op_type for node in model.graph.node]


def producers(model: onnx.ModelProto) -> dict:
    """The node producing each tensor, by tensor name."""
    return {output: node for node in model.graph.node for output in node.output}
