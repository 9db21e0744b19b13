"""Attention mask Reshape(mask, [0, 1, 1, -1]) ==> Unsqueeze(Unsqueeze(mask, 1), 2)."""
import numpy as np
from onnx import helper, numpy_helper

from rewrite_graphs import FLOAT, INT32, apply_rewrite, make_model, op_types, producers, run
from xdistil.export.rewrites.mask_unsqueeze import MaskReshapeToUnsqueeze

HEADS, SEQUENCE = 2, 5


def _masked_softmax(target):
    """softmax(scores + (1 - float(Reshape(attention_mask, target))) * -10000), as HF TF BERT exports it."""
    nodes = [helper.make_node("Reshape", ["attention_mask", "target"], ["mask_4d"]),
             helper.make_node("Cast", ["mask_4d"], ["mask_float"], to=FLOAT),
             helper.make_node("Sub", ["one", "mask_float"], ["inverted"]),
             helper.make_node("Mul", ["inverted", "minus_big"], ["mask_bias"]),
             helper.make_node("Add", ["scores", "mask_bias"], ["masked_scores"]),
             helper.make_node("Softmax", ["masked_scores"], ["probs"], axis=-1)]
    inputs = [("attention_mask", INT32, ["batch", "sequence"]), ("scores", FLOAT, ["batch", HEADS, SEQUENCE, SEQUENCE])]
    constants = {"target": np.array(target, np.int64), "one": np.array(1.0, np.float32),
                 "minus_big": np.array(-10000.0, np.float32)}
    return make_model(nodes, inputs, [("probs", FLOAT, ["batch", HEADS, SEQUENCE, SEQUENCE])], constants)


def _features():
    rng = np.random.default_rng(0)
    return {"attention_mask": (rng.random((3, SEQUENCE)) < 0.7).astype(np.int32),
            "scores": rng.normal(size=(3, HEADS, SEQUENCE, SEQUENCE)).astype(np.float32)}


def _axes(model, node) -> list:
    initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    return initializers[node.input[1]].tolist()


def test_mask_reshape_becomes_two_unsqueezes():
    model = _masked_softmax([0, 1, 1, -1])
    expected = run(model, _features())
    assert apply_rewrite(MaskReshapeToUnsqueeze(), model) == 1
    assert "Reshape" not in op_types(model) and op_types(model).count("Unsqueeze") == 2
    outer = producers(model)["mask_4d"]
    inner = producers(model)[outer.input[0]]
    assert (outer.op_type, inner.op_type, inner.input[0]) == ("Unsqueeze", "Unsqueeze", "attention_mask")
    assert (_axes(model, inner), _axes(model, outer)) == ([1], [2])
    np.testing.assert_array_equal(run(model, _features())[0], expected[0])


def test_other_mask_layout_is_left_alone():
    """[0, 1, -1, 1] masks query rows, not key columns: not the [B, 1, 1, S] expansion."""
    model = _masked_softmax([0, 1, -1, 1])
    original = model.SerializeToString()
    assert apply_rewrite(MaskReshapeToUnsqueeze(), model) == 0
    assert model.SerializeToString() == original
