"""Keras Dense on a 3-D input: fold the Reshapes of `tf.tensordot` around its MatMul."""
import numpy as np

from xdistil.export.graph_edit import constant, is_scalar, producer


class TensordotReshapeFolding:
    """Keras `Dense` on 3-D inputs is `tf.tensordot`, which tf2onnx exports as a MatMul on a
    flattened input; the attention and LayerNorm matchers expect a MatMul on the 3-D tensor::

        x [B, S, K] --> Reshape([-1, K]) --> MatMul(W [K, N]) --> Reshape(Concat(Shape(x)[:2], [N]))
                                   ==>
        x [B, S, K] --> MatMul(W [K, N])

    Reshapes only see row-major element order, so the MatMul's consumers (all Reshapes) get the
    same values either way, provided x's last dim is K: known from shape inference, or implied by
    a consumer restoring Shape(x)[:-1], and no consumer copies a dim of its input (a 0 in a
    constant target). A restoring Reshape that is the only consumer goes.
    """

    name = "tensordot"

    def apply(self, m, shapes) -> int:
        output_name_to_node = m.output_name_to_node()
        input_name_to_nodes = m.input_name_to_nodes()
        count = 0
        for matmul in m.get_nodes_by_op_type("MatMul"):
            weight = constant(m, matmul.input[1])
            flatten = output_name_to_node.get(matmul.input[0])
            if weight is None or weight.ndim != 2 or flatten is None or flatten.op_type != "Reshape":
                continue
            x = flatten.input[0]
            x_shape = shapes.get(x, [])
            flat_shape = constant(m, flatten.input[1])
            if flat_shape is None or list(flat_shape) != [-1, weight.shape[0]] or len(x_shape) < 3:
                continue
            consumers = input_name_to_nodes.get(matmul.output[0], [])
            if not consumers or any(c.op_type != "Reshape" or _copies_input_dims(m, c) for c in consumers):
                continue
            if m.find_graph_output(matmul.output[0]) is not None:
                continue
            restoring = [c for c in consumers
                         if _restores_leading_dims(m, c, x, len(x_shape), weight.shape[1], output_name_to_node)]
            if x_shape[-1] != weight.shape[0] and not restoring:
                continue
            matmul.input[0] = x
            if len(consumers) == 1 and restoring:
                matmul.output[0] = restoring[0].output[0]
                m.remove_node(restoring[0])
            count += 1
        return count


def _copies_input_dims(m, reshape) -> bool:
    """True if `reshape` has a constant target with a 0, which copies that dim of its input (the dims
    of the MatMul's output change with the fold)."""
    target = constant(m, reshape.input[1])
    return target is not None and bool(np.any(target == 0))


def _leading_dims_source(m, shape_name, output_name_to_node, num_dims):
    """If `shape_name` is Shape(x)[:num_dims] (through Casts), return x, else None."""
    node = producer(shape_name, output_name_to_node)
    if node is None:
        return None
    if node.op_type == "Gather":
        indices = constant(m, node.input[1])
        if indices is None or list(indices.reshape(-1)) != list(range(num_dims)):
            return None
    elif node.op_type == "Slice":
        starts, ends = constant(m, node.input[1]), constant(m, node.input[2])
        if not (is_scalar(starts, 0) and is_scalar(ends, num_dims)) or len(node.input) > 3:
            return None
    else:
        return None
    shape = producer(node.input[0], output_name_to_node)
    return shape.input[0] if shape is not None and shape.op_type == "Shape" else None


def _restores_leading_dims(m, reshape, x, rank, last_dim, output_name_to_node) -> bool:
    """True if `reshape` targets Concat(Shape(x)[:rank - 1], [last_dim]) (through Casts)."""
    concat = producer(reshape.input[1], output_name_to_node)
    if concat is None or concat.op_type != "Concat" or len(concat.input) != 2:
        return False
    return (is_scalar(constant(m, concat.input[1]), last_dim)
            and _leading_dims_source(m, concat.input[0], output_name_to_node, rank - 1) == x)
