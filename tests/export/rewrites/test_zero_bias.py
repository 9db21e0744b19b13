"""A dense MatMul whose all-zero bias grappler folded away ==> MatMul -> Add(zeros)."""
import numpy as np
from onnx import helper, numpy_helper

from rewrite_graphs import FLOAT, apply_rewrite, make_model, producers, run
from xdistil.export.rewrites.zero_bias import ZeroBiasRestoration

IN, OUT = 4, 4


def _residual_dense(bias=None):
    """x W (+ bias) + residual, as the attention output dense of a (freshly initialized) BERT layer
    is after the tensordot fold: with a zero bias, the MatMul feeds the residual Add directly."""
    rng = np.random.default_rng(0)
    constants = {"weight": rng.normal(size=(IN, OUT)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "weight"], ["product"])]
    if bias is not None:
        constants["bias"] = bias
        nodes.append(helper.make_node("Add", ["product", "bias"], ["dense"]))
    nodes.append(helper.make_node("Add", [nodes[-1].output[0], "residual"], ["y"]))
    shape = ["batch", "sequence", IN]
    return make_model(nodes, [("x", FLOAT, shape), ("residual", FLOAT, shape)], [("y", FLOAT, shape)], constants)


def _features():
    rng = np.random.default_rng(1)
    return {name: rng.normal(size=(2, 3, IN)).astype(np.float32) for name in ("x", "residual")}


def test_missing_bias_becomes_an_add_of_zeros():
    model = _residual_dense()
    expected = run(model, _features())
    assert apply_rewrite(ZeroBiasRestoration(), model) == 1
    residual_add = producers(model)["y"]
    bias_add = producers(model)[residual_add.input[0]]
    assert bias_add.op_type == "Add" and producers(model)[bias_add.input[0]].op_type == "MatMul"
    zeros = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == bias_add.input[1]))
    assert zeros.dtype == np.float32 and zeros.shape == (OUT,) and not zeros.any()
    np.testing.assert_array_equal(run(model, _features())[0], expected[0])


def test_dense_with_a_bias_and_attention_matmul_are_left_alone():
    """A MatMul followed by its bias Add has one, and a MatMul of two activations is no dense layer."""
    model = _residual_dense(bias=np.full(OUT, 0.5, np.float32))
    model.graph.node.append(helper.make_node("MatMul", ["x", "residual_t"], ["scores"]))
    model.graph.node.append(helper.make_node("Transpose", ["residual"], ["residual_t"], perm=[0, 2, 1]))
    model.graph.output.append(helper.make_tensor_value_info("scores", FLOAT, ["batch", "sequence", "sequence"]))
    original = model.SerializeToString()
    assert apply_rewrite(ZeroBiasRestoration(), model) == 0
    assert model.SerializeToString() == original
