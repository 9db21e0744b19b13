"""Attention mask: expand it to [B, 1, 1, S] with two Unsqueezes instead of a Reshape."""
from onnx import helper

from xdistil.export.graph_edit import constant, int64_vector


class MaskReshapeToUnsqueeze:
    """HF TF BERT expands the 2-D attention mask with a Reshape; the attention matcher looks for
    the Unsqueeze pair of the PyTorch exports::

        mask [B, S] --> Reshape([0, 1, 1, -1]) --> Cast --> Sub(1, .) --> Mul --> Add(scores, .) --> Softmax
                                   ==>
        mask [B, S] --> Unsqueeze(1) --> Unsqueeze(2) --> Cast --> Sub(1, .) --> Mul --> Add(scores, .) --> Softmax
    """

    name = "mask_unsqueeze"

    def apply(self, m, shapes) -> int:
        count = 0
        for softmax in m.get_nodes_by_op_type("Softmax"):
            for index in (0, 1):
                path = m.match_parent_path(softmax, ["Add", "Mul", "Sub", "Cast", "Reshape"], [0, index, 0, 1, 0])
                if path is None:
                    continue
                reshape = path[-1]
                shape = constant(m, reshape.input[1])
                if shape is None or list(shape) != [0, 1, 1, -1] or len(shapes.get(reshape.input[0], ())) != 2:
                    continue
                middle = m.create_node_name("Unsqueeze", "mask_unsqueeze") + "_out"
                m.add_nodes([
                    helper.make_node("Unsqueeze", [reshape.input[0], int64_vector(m, "axis", [1])], [middle],
                                     name=m.create_node_name("Unsqueeze")),
                    helper.make_node("Unsqueeze", [middle, int64_vector(m, "axis", [2])], list(reshape.output),
                                     name=m.create_node_name("Unsqueeze")),
                ])
                m.remove_node(reshape)
                count += 1
        return count
