"""Helpers for reading and editing ONNX graphs: constants and initializers, pattern matching, dead nodes.

The constant and matching helpers take an onnxruntime `OnnxModel` (the wrapper its transformer
optimizer edits); `tensor_shapes`, `remove_unused_nodes` and `node_counts_by_type` take an
`onnx.ModelProto`.
"""
from collections import Counter

import numpy as np
import onnx
from onnx import numpy_helper


def constant(m, name):
    """Value of an initializer or Constant node output named `name`, else None (also for "")."""
    return m.get_constant_value(name) if name else None


def add_initializer(m, name_hint, array) -> str:
    """Add `array` as an initializer under a fresh name made from `name_hint`; return the name."""
    name = m.create_node_name("Constant", name_hint)
    m.add_initializer(numpy_helper.from_array(np.asarray(array), name))
    return name


def int64_vector(m, name_hint, values) -> str:
    return add_initializer(m, name_hint, np.asarray(values, dtype=np.int64))


def table_lookups(m, indices: str) -> list:
    """The Gathers of a constant table in `m` indexed by the graph input `indices`, directly or through Casts
    (an export with int64 inputs casts its ids before the lookup)."""
    output_name_to_node = m.output_name_to_node()

    def reads(name):
        node = output_name_to_node.get(name)
        while node is not None and node.op_type == "Cast":
            name, node = node.input[0], output_name_to_node.get(node.input[0])
        return name == indices

    return [node for node in m.get_nodes_by_op_type("Gather")
            if constant(m, node.input[0]) is not None and reads(node.input[1])]


def is_scalar(value, expected=None, tol=1e-6) -> bool:
    """True if `value` (an array or None) holds one element, equal to `expected` within `tol` if given."""
    return (value is not None and value.size == 1
            and (expected is None or abs(float(value.reshape(-1)[0]) - expected) <= tol))


def producer(name, output_name_to_node, skip=("Cast",)):
    """The node producing `name`, looking through `skip` ops (single-input ones)."""
    node = output_name_to_node.get(name)
    while node is not None and node.op_type in skip:
        node = output_name_to_node.get(node.input[0])
    return node


def other_input(node, name):
    """The input of a two-input `node` that is not `name`."""
    return node.input[1] if node.input[0] == name else node.input[0]


def tensor_shapes(model: onnx.ModelProto) -> dict:
    """Shape (a list of int or None per dim) of every tensor onnx shape inference can tell."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.input):
        if info.type.tensor_type.HasField("shape"):
            shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None
                                 for d in info.type.tensor_type.shape.dim]
    return shapes


def node_counts_by_type(model: onnx.ModelProto) -> dict:
    """How many nodes of each op type the graph holds, by op type name."""
    return dict(sorted(Counter(node.op_type for node in model.graph.node).items()))


def remove_unused_nodes(model: onnx.ModelProto) -> int:
    """Drop every node whose outputs reach no graph output, and the initializers left unread.

    Graph inputs stay, even when nothing reads them (callers feed them by name). Edits `model` in
    place (with onnxruntime's `OnnxModel.prune_graph`) and returns how many nodes went.
    """
    from onnxruntime.transformers.onnx_model import OnnxModel

    before = len(model.graph.node)
    OnnxModel(model).prune_graph(allow_remove_graph_inputs=False)
    return before - len(model.graph.node)
