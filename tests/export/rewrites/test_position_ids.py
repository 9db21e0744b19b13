"""Position ids from the word embeddings' shape ==> expanded from Shape(input_ids)."""
import numpy as np
from onnx import helper

from rewrite_graphs import FLOAT, INT32, apply_rewrite, make_model, op_types, producers, run
from xdistil.export.rewrites.position_ids import PositionIdsFromInputIds

VOCAB, POSITIONS, HIDDEN = 11, 16, 4


def _embeddings(offset=0):
    """words[input_ids] + positions[Unsqueeze(Range(offset, S + offset, 1), 0)], S sliced from the shape
    of the word embeddings (through an int32 Cast), as tf2onnx exports HF TF BERT's embeddings (offset 0)."""
    nodes = [helper.make_node("Gather", ["words", "input_ids"], ["word_embeddings"], axis=0),
             helper.make_node("Shape", ["word_embeddings"], ["shape"]),
             helper.make_node("Cast", ["shape"], ["shape_int32"], to=INT32),
             helper.make_node("Slice", ["shape_int32", "one", "two", "zero"], ["length_1d"]),
             helper.make_node("Squeeze", ["length_1d", "zero"], ["length"])]
    if offset:
        nodes.append(helper.make_node("Add", ["length", "offset"], ["end"]))
    nodes += [helper.make_node("Range", ["offset", "end" if offset else "length", "step"], ["range"]),
              helper.make_node("Unsqueeze", ["range", "zero"], ["position_ids"]),
              helper.make_node("Gather", ["positions", "position_ids"], ["position_embeddings"], axis=0),
              helper.make_node("Add", ["word_embeddings", "position_embeddings"], ["y"])]
    rng = np.random.default_rng(0)
    constants = {"words": rng.normal(size=(VOCAB, HIDDEN)).astype(np.float32),
                 "positions": rng.normal(size=(POSITIONS, HIDDEN)).astype(np.float32),
                 "zero": np.array([0]), "one": np.array([1]), "two": np.array([2]),
                 "offset": np.array(offset, np.int32), "step": np.array(1, np.int32)}
    return make_model(nodes, [("input_ids", INT32, ["batch", "sequence"])],
                      [("y", FLOAT, ["batch", "sequence", HIDDEN])], constants)


def _features():
    return {"input_ids": np.random.default_rng(1).integers(0, VOCAB, size=(3, 7)).astype(np.int32)}


def test_position_ids_are_expanded_from_input_ids():
    model = _embeddings()
    expected = run(model, _features())
    assert apply_rewrite(PositionIdsFromInputIds(), model) == 1
    produced = producers(model)
    position_gather = produced["position_embeddings"]
    expand = produced[position_gather.input[1]]
    assert expand.op_type == "Expand"
    shape = produced[expand.input[1]]
    assert (shape.op_type, list(shape.input)) == ("Shape", ["input_ids"])
    unsqueeze = produced[expand.input[0]]
    assert (unsqueeze.op_type, produced[unsqueeze.input[0]].op_type) == ("Unsqueeze", "Range")
    assert "Slice" not in op_types(model) and "Squeeze" not in op_types(model)  # the old chain is gone
    np.testing.assert_array_equal(run(model, _features())[0], expected[0])


def test_positions_from_an_offset_are_left_alone():
    """Range(2, S + 2) (RoBERTa's padding offset) is no position id pattern EmbedLayerNormalization knows."""
    model = _embeddings(offset=2)
    original = model.SerializeToString()
    assert apply_rewrite(PositionIdsFromInputIds(), model) == 0
    assert model.SerializeToString() == original
