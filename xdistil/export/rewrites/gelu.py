"""Exact GELU as TF lowers it (through Erfc) straight into com.microsoft Gelu."""
import math

from onnx import helper

from xdistil.export.graph_edit import constant, is_scalar, other_input


class ErfcGeluToGelu:
    """TF's exact GELU is `0.5 * x * erfc(-x / sqrt 2)`; after the Erfc handler of the export that
    is not the Div/Erf/Add/Mul pattern onnxruntime's Gelu matcher knows::

        x --> Mul(0.5, x) ------------------------------------------------+
        x --> Neg --> Mul(1/sqrt 2) --> Erf --> Sub(1, .) --> Mul(half, .) --> y
                                   ==>
        x --> com.microsoft Gelu --> y

    The optimizer then fuses the bias Add before it into BiasGelu.
    """

    name = "gelu"

    def apply(self, m, shapes) -> int:
        output_name_to_node = m.output_name_to_node()
        input_name_to_nodes = m.input_name_to_nodes()
        count = 0
        for erf in m.get_nodes_by_op_type("Erf"):
            scaled = output_name_to_node.get(erf.input[0])
            if scaled is None or scaled.op_type != "Mul":
                continue
            neg = [output_name_to_node.get(name) for name in scaled.input]
            neg = [node for node in neg if node is not None and node.op_type == "Neg"]
            if len(neg) != 1 or not is_scalar(constant(m, other_input(scaled, neg[0].output[0])), 1 / math.sqrt(2)):
                continue
            x = neg[0].input[0]
            subs = input_name_to_nodes.get(erf.output[0], [])
            if len(subs) != 1 or subs[0].op_type != "Sub" or subs[0].input[1] != erf.output[0]:
                continue
            if not is_scalar(constant(m, subs[0].input[0]), 1.0):
                continue
            outer = input_name_to_nodes.get(subs[0].output[0], [])
            if len(outer) != 1 or outer[0].op_type != "Mul":
                continue
            half = output_name_to_node.get(other_input(outer[0], subs[0].output[0]))
            if half is None or half.op_type != "Mul" or x not in half.input:
                continue
            if not is_scalar(constant(m, other_input(half, x)), 0.5):
                continue
            m.add_node(helper.make_node("Gelu", [x], list(outer[0].output), name=m.create_node_name("Gelu"),
                                        domain="com.microsoft"))
            m.remove_node(outer[0])
            count += 1
        return count
