"""Position ids: build them from Shape(input_ids), as EmbedLayerNormalization's matcher expects."""
import numpy as np
from onnx import helper

from xdistil.export.graph_edit import add_initializer, constant, int64_vector, is_scalar, producer


class PositionIdsFromInputIds:
    """HF TF BERT takes the position ids from a Range over a sequence length sliced from the
    shape of the word embeddings; the embedding matcher wants them expanded from Shape(input_ids)::

        Shape(Gather(words, input_ids))[1:2] --> Squeeze --> Range(0, ., 1) --> Unsqueeze(0) --> Gather(positions, .)
                                   ==>
        Shape(input_ids) --> Gather(1) --> Range(0, ., 1) --> Unsqueeze(0) --> Expand(., Shape(input_ids))
                                                                            --> Gather(positions, .)

    The position embeddings are then [B, S, H] instead of [1, S, H]; their sum with the word
    embeddings is the same.
    """

    name = "position_ids"

    def apply(self, m, shapes) -> int:
        if m.find_graph_input("input_ids") is None:
            return 0
        output_name_to_node = m.output_name_to_node()
        count = 0
        for gather in m.get_nodes_by_op_type("Gather"):
            path = m.match_parent_path(gather, ["Unsqueeze", "Range"], [1, 0], output_name_to_node)
            if path is None or constant(m, gather.input[0]) is None:
                continue
            unsqueeze, range_node = path
            if len(unsqueeze.input) != 2 or not is_scalar(constant(m, unsqueeze.input[1]), 0):
                continue
            start, delta = constant(m, range_node.input[0]), constant(m, range_node.input[2])
            if not (is_scalar(start, 0) and is_scalar(delta, 1)):
                continue
            if not _sequence_length_of(m, range_node.input[1], output_name_to_node, "input_ids"):
                continue
            gather.input[1] = _expanded_positions(m)
            count += 1
        return count


def _sequence_length_of(m, name, output_name_to_node, input_ids) -> bool:
    """True if `name` is dim 1 of Shape(input_ids) or of Shape(Gather(table, input_ids))."""
    node = producer(name, output_name_to_node, skip=("Squeeze", "Cast"))
    if node is None or node.op_type not in ("Slice", "Gather"):
        return False
    if node.op_type == "Slice" and not (is_scalar(constant(m, node.input[1]), 1)
                                        and is_scalar(constant(m, node.input[2]), 2)):
        return False
    if node.op_type == "Gather" and not is_scalar(constant(m, node.input[1]), 1):
        return False
    shape = producer(node.input[0], output_name_to_node)
    if shape is None or shape.op_type != "Shape":
        return False
    embedding = output_name_to_node.get(shape.input[0])
    return shape.input[0] == input_ids or (embedding is not None and embedding.op_type == "Gather"
                                           and embedding.input[1] == input_ids)


def _expanded_positions(m) -> str:
    """Add the nodes computing Expand(Unsqueeze(Range(0, S, 1), 0), Shape(input_ids)); return their output."""
    prefix = m.create_node_name("PositionIds", "position_ids")
    zero, one = (add_initializer(m, "position", np.array(v, np.int64)) for v in (0, 1))
    m.add_nodes([
        helper.make_node("Shape", ["input_ids"], [prefix + "_shape"], name=prefix + "_Shape"),
        helper.make_node("Gather", [prefix + "_shape", one], [prefix + "_seq_len"], name=prefix + "_Gather", axis=0),
        helper.make_node("Range", [zero, prefix + "_seq_len", one], [prefix + "_range"], name=prefix + "_Range"),
        helper.make_node("Unsqueeze", [prefix + "_range", int64_vector(m, "axis", [0])], [prefix + "_row"],
                         name=prefix + "_Unsqueeze"),
        helper.make_node("Expand", [prefix + "_row", prefix + "_shape"], [prefix + "_ids"], name=prefix + "_Expand"),
    ])
    return prefix + "_ids"
