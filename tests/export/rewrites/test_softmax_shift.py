"""softmax(scores + (1e-9 + mask_bias)) ==> softmax(scores + mask_bias)."""
import numpy as np
from onnx import helper

from rewrite_graphs import FLOAT, apply_rewrite, make_model, op_types, producers, run
from xdistil.export.rewrites.softmax_shift import SoftmaxShiftRemoval

HEADS, SEQUENCE = 2, 5


def _masked_softmax(shift):
    """Softmax(scores + Add(shift, mask_bias)): HF's `stable_softmax` 1e-9, reassociated by grappler into
    the mask branch that every layer shares."""
    nodes = [helper.make_node("Add", ["shift", "mask_bias"], ["shifted_mask"]),
             helper.make_node("Add", ["scores", "shifted_mask"], ["masked_scores"]),
             helper.make_node("Softmax", ["masked_scores"], ["probs"], axis=-1)]
    inputs = [("scores", FLOAT, ["batch", HEADS, SEQUENCE, SEQUENCE]), ("mask_bias", FLOAT, ["batch", 1, 1, SEQUENCE])]
    return make_model(nodes, inputs, [("probs", FLOAT, ["batch", HEADS, SEQUENCE, SEQUENCE])], {"shift": shift})


def _features():
    rng = np.random.default_rng(0)
    mask_bias = np.where(rng.random((3, 1, 1, SEQUENCE)) < 0.3, -10000.0, 0.0).astype(np.float32)
    return {"scores": rng.normal(size=(3, HEADS, SEQUENCE, SEQUENCE)).astype(np.float32), "mask_bias": mask_bias}


def test_constant_shift_before_softmax_is_dropped():
    model = _masked_softmax(np.array(1e-9, np.float32))
    expected = run(model, _features())
    assert apply_rewrite(SoftmaxShiftRemoval(), model) == 1
    assert op_types(model) == ["Add", "Softmax"]
    assert list(producers(model)["masked_scores"].input) == ["scores", "mask_bias"]
    np.testing.assert_allclose(run(model, _features())[0], expected[0], rtol=1e-6, atol=1e-7)


def test_per_position_bias_is_left_alone():
    """softmax(x + v) differs from softmax(x) for a vector v (a learned position bias)."""
    model = _masked_softmax(np.linspace(0.0, 1.0, SEQUENCE).astype(np.float32))
    original = model.SerializeToString()
    assert apply_rewrite(SoftmaxShiftRemoval(), model) == 0
    assert model.SerializeToString() == original
