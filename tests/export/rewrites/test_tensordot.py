"""Keras Dense on a 3-D input (tf.tensordot): Reshape -> MatMul -> Reshape ==> MatMul."""
import numpy as np
from onnx import helper

from rewrite_graphs import FLOAT, INT32, INT64, apply_rewrite, make_model, op_types, producers, run
from xdistil.export.rewrites.tensordot import TensordotReshapeFolding

IN, OUT, HEADS = 4, 6, 2


def _dense(extra_outputs=()):
    """y = x W + b as tf2onnx exports `tf.tensordot(x, W, 1)` on x [B, S, IN]: flatten to [-1, IN],
    MatMul, then back to Concat(Shape(x)[:2], [OUT]) (through int32 Casts)."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Cast", ["shape"], ["shape_int32"], to=INT32),
        helper.make_node("Gather", ["shape_int32", "leading_axes"], ["leading_dims"], axis=0),
        helper.make_node("Concat", ["leading_dims", "out_dim"], ["target_int32"], axis=0),
        helper.make_node("Cast", ["target_int32"], ["target"], to=INT64),
        helper.make_node("Reshape", ["x", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "weight"], ["product"]),
        helper.make_node("Reshape", ["product", "target"], ["dense"]),
        helper.make_node("Add", ["dense", "bias"], ["y"]),
    ]
    constants = {"leading_axes": np.array([0, 1], np.int64), "out_dim": np.array([OUT], np.int32),
                 "flat_shape": np.array([-1, IN], np.int64),
                 "weight": rng.normal(size=(IN, OUT)).astype(np.float32),
                 "bias": rng.normal(size=OUT).astype(np.float32)}
    return make_model(nodes, [("x", FLOAT, ["batch", "sequence", IN])],
                      [("y", FLOAT, ["batch", "sequence", OUT]), *extra_outputs], constants)


def _features():
    return {"x": np.random.default_rng(1).normal(size=(3, 5, IN)).astype(np.float32)}


def test_tensordot_becomes_matmul_on_the_3d_input():
    model = _dense()
    expected = run(model, _features())
    assert apply_rewrite(TensordotReshapeFolding(), model) == 1
    assert sorted(op_types(model)) == ["Add", "MatMul"]
    matmul = producers(model)[producers(model)["y"].input[0]]
    assert matmul.op_type == "MatMul" and list(matmul.input) == ["x", "weight"]
    np.testing.assert_array_equal(run(model, _features())[0], expected[0])


def _head_split(target_nodes, target_constants):
    """A zero-bias query MatMul feeding the head-split Reshape to `heads_shape` (made by `target_nodes`
    from `target_constants`)."""
    nodes = target_nodes + [
        helper.make_node("Reshape", ["x", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "weight"], ["product"]),
        helper.make_node("Reshape", ["product", "heads_shape"], ["heads"]),
    ]
    constants = {"flat_shape": np.array([-1, IN], np.int64),
                 "weight": np.random.default_rng(0).normal(size=(IN, OUT)).astype(np.float32), **target_constants}
    return make_model(nodes, [("x", FLOAT, ["batch", "sequence", IN])],
                      [("heads", FLOAT, ["batch", "sequence", HEADS, OUT // HEADS])], constants)


def test_head_split_reshape_keeps_its_target():
    """x's last dim is IN by shape inference, so the MatMul may read x although no consumer restores
    it. The target is Concat(Shape(x)[0:1], [-1, HEADS, OUT / HEADS]), as tf2onnx makes it."""
    model = _head_split(
        [helper.make_node("Shape", ["x"], ["shape"]),
         helper.make_node("Slice", ["shape", "zero", "one", "zero"], ["batch_dim"]),
         helper.make_node("Concat", ["batch_dim", "heads_dims"], ["heads_shape"], axis=0)],
        {"zero": np.array([0]), "one": np.array([1]), "heads_dims": np.array([-1, HEADS, OUT // HEADS])})
    expected = run(model, _features())
    assert apply_rewrite(TensordotReshapeFolding(), model) == 1
    assert list(producers(model)["product"].input) == ["x", "weight"]
    assert producers(model)["heads"].op_type == "Reshape"
    np.testing.assert_array_equal(run(model, _features())[0], expected[0])


def test_reshape_copying_an_input_dim_is_left_alone():
    """The constant target [0, -1, ...] copies the product's first dim: B * S flat, B after a fold."""
    model = _head_split([], {"heads_shape": np.array([0, -1, HEADS, OUT // HEADS])})
    original = model.SerializeToString()
    assert apply_rewrite(TensordotReshapeFolding(), model) == 0
    assert model.SerializeToString() == original


def test_flat_product_read_as_such_is_left_alone():
    """When the 2-D product is itself a graph output, the MatMul must keep producing it."""
    model = _dense(extra_outputs=[("product", FLOAT, [None, OUT])])
    original = model.SerializeToString()
    assert apply_rewrite(TensordotReshapeFolding(), model) == 0
    assert model.SerializeToString() == original
