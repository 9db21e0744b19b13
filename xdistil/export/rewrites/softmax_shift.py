"""Attention scores: drop the constant that HF's `stable_softmax` adds before the softmax."""
from xdistil.export.graph_edit import constant, is_scalar


class SoftmaxShiftRemoval:
    """softmax(x + c) == softmax(x) for a scalar c. HF's `stable_softmax` adds 1e-9 to the
    scores, and grappler reassociates it into the mask branch that every layer shares::

        mask_bias --> Add(1e-9) --> Add(scores, .) --> Softmax
                           ==>
        mask_bias --> Add(scores, .) --> Softmax

    The Add is bypassed when it feeds only Softmax, directly or through one more Add. Exact up to
    float rounding.
    """

    name = "softmax_shift"

    def apply(self, m, shapes) -> int:
        input_name_to_nodes = m.input_name_to_nodes()

        def only_softmax(name, through_add):
            consumers = input_name_to_nodes.get(name, [])
            return bool(consumers) and m.find_graph_output(name) is None and all(
                c.op_type == "Softmax"
                or (through_add and c.op_type == "Add" and only_softmax(c.output[0], through_add=False))
                for c in consumers)

        count = 0
        for add in m.get_nodes_by_op_type("Add"):
            values = [constant(m, name) for name in add.input]
            is_const = [value is not None for value in values]
            if len(add.input) != 2 or all(is_const) or not any(is_scalar(v) for v in values):
                continue
            if only_softmax(add.output[0], through_add=True):
                data = add.input[0] if values[0] is None else add.input[1]
                m.replace_input_of_all_nodes(add.output[0], data)
                count += 1
        return count
