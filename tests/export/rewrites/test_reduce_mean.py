"""GlobalAveragePool over the hidden axis (LayerNorm moments) ==> ReduceMean over the last axis."""
import numpy as np
import pytest
from onnx import helper, numpy_helper

from rewrite_graphs import FLOAT, apply_rewrite, make_model, op_types, producers, run
from xdistil.export.rewrites.reduce_mean import GlobalAveragePoolToReduceMean

HIDDEN = 8


def _centered(shape, opset=17):
    """x - mean(x) as tf2onnx exports `tf.nn.moments`: the mean is a GlobalAveragePool."""
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["mean"]),
             helper.make_node("Sub", ["x", "mean"], ["centered"])]
    return make_model(nodes, [("x", FLOAT, shape)], [("centered", FLOAT, shape)], {}, opset=opset)


def _reduced_axes(model, node) -> list:
    """ReduceMean's axes: an attribute before opset 18, an input from it on."""
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if "axes" in attributes:
        return list(attributes["axes"])
    initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    return initializers[node.input[1]].tolist()


@pytest.mark.parametrize("opset", [17, 18])
def test_layer_norm_mean_becomes_reduce_mean(opset):
    model = _centered(["batch", "sequence", HIDDEN], opset)
    x = np.random.default_rng(0).normal(size=(2, 5, HIDDEN)).astype(np.float32)
    (expected,) = run(model, {"x": x})
    assert apply_rewrite(GlobalAveragePoolToReduceMean(), model) == 1
    assert sorted(op_types(model)) == ["ReduceMean", "Sub"]
    mean = producers(model)["mean"]
    assert mean.op_type == "ReduceMean" and mean.input[0] == "x"
    assert _reduced_axes(model, mean) == [-1]
    assert {a.name: a.i for a in mean.attribute}["keepdims"] == 1
    # Same arithmetic, but another kernel: its summation order may differ in the last bit.
    np.testing.assert_allclose(run(model, {"x": x})[0], expected, rtol=1e-6, atol=1e-7)


def test_image_pooling_is_left_alone():
    """On an NCHW image GlobalAveragePool averages the spatial axes: not a LayerNorm mean."""
    model = _centered(["batch", 3, 4, 4])
    original = model.SerializeToString()
    assert apply_rewrite(GlobalAveragePoolToReduceMean(), model) == 0
    assert model.SerializeToString() == original
