"""Dense layers whose bias is exactly zero: give them back their bias Add."""
import numpy as np
from onnx import helper

from xdistil.export.graph_edit import add_initializer, constant


class ZeroBiasRestoration:
    """Grappler folds `x + 0`, so a dense layer with an all-zero bias (a freshly initialized
    model) has no bias Add, and every "Add <- MatMul" matcher fails on it::

        x --> MatMul(W [K, N]) --> y
                   ==>
        x --> MatMul(W [K, N]) --> Add(zeros [N]) --> y

    Applies to every MatMul with a 2-D constant weight that is not followed by an Add of a 1-D
    constant.
    """

    name = "zero_bias"

    def apply(self, m, shapes) -> int:
        input_name_to_nodes = m.input_name_to_nodes()
        count = 0
        for matmul in m.get_nodes_by_op_type("MatMul"):
            weight = constant(m, matmul.input[1])
            if weight is None or weight.ndim != 2 or _has_bias_add(m, matmul, input_name_to_nodes):
                continue
            zeros = add_initializer(m, "zero_bias", np.zeros(weight.shape[1], dtype=weight.dtype))
            output = matmul.output[0]
            matmul.output[0] = m.create_node_name("MatMul", output + "_no_bias")
            m.add_node(helper.make_node("Add", [matmul.output[0], zeros], [output],
                                        name=m.create_node_name("Add", "zero_bias_add")))
            count += 1
        return count


def _has_bias_add(m, matmul, input_name_to_nodes) -> bool:
    consumers = input_name_to_nodes.get(matmul.output[0], [])
    if len(consumers) != 1 or consumers[0].op_type != "Add":
        return False
    values = [constant(m, name) for name in consumers[0].input]
    return any(value is not None and value.ndim == 1 for value in values)
