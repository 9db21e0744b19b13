"""Attention scores scaled by Mul(1/sqrt d) ==> Div(sqrt d), the mask branch's Mul untouched."""
import numpy as np
from onnx import helper, numpy_helper

from rewrite_graphs import FLOAT, apply_rewrite, make_model, op_types, producers, run
from xdistil.export.rewrites.score_div import ScoreScaleToDiv

HEADS, SEQUENCE, HEAD_SIZE = 2, 5, 4


def _attention_probs(scale):
    """softmax(q k^T * scale + (1 - mask) * -10000) as HF TF BERT exports it: both branches are Muls."""
    nodes = [helper.make_node("MatMul", ["q", "k_t"], ["scores"]),
             helper.make_node("Mul", ["scores", "scale"], ["scaled"]),
             helper.make_node("Sub", ["one", "mask"], ["inverted"]),
             helper.make_node("Mul", ["inverted", "minus_big"], ["mask_bias"]),
             helper.make_node("Add", ["scaled", "mask_bias"], ["masked_scores"]),
             helper.make_node("Softmax", ["masked_scores"], ["probs"], axis=-1)]
    inputs = [("q", FLOAT, ["batch", HEADS, SEQUENCE, HEAD_SIZE]),
              ("k_t", FLOAT, ["batch", HEADS, HEAD_SIZE, SEQUENCE]),
              ("mask", FLOAT, ["batch", 1, 1, SEQUENCE])]
    constants = {"scale": scale, "one": np.array(1.0, np.float32), "minus_big": np.array(-10000.0, np.float32)}
    return make_model(nodes, inputs, [("probs", FLOAT, ["batch", HEADS, SEQUENCE, SEQUENCE])], constants)


def _features():
    rng = np.random.default_rng(0)
    return {"q": rng.normal(size=(3, HEADS, SEQUENCE, HEAD_SIZE)).astype(np.float32),
            "k_t": rng.normal(size=(3, HEADS, HEAD_SIZE, SEQUENCE)).astype(np.float32),
            "mask": (rng.random((3, 1, 1, SEQUENCE)) < 0.7).astype(np.float32)}


def test_score_scaling_becomes_a_division():
    scale = np.array(1 / np.sqrt(HEAD_SIZE), np.float32)
    model = _attention_probs(scale)
    expected = run(model, _features())
    assert apply_rewrite(ScoreScaleToDiv(), model) == 1
    scaled = producers(model)["scaled"]
    assert scaled.op_type == "Div" and scaled.input[0] == "scores"
    divisor = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == scaled.input[1]))
    assert divisor.dtype == np.float32 and divisor == np.float32(1 / scale)
    assert producers(model)["mask_bias"].op_type == "Mul" and op_types(model).count("Mul") == 1
    np.testing.assert_allclose(run(model, _features())[0], expected[0], rtol=1e-6, atol=1e-7)


def test_per_head_scale_is_left_alone():
    """A scale per head (a [HEADS, 1, 1] tensor) is no single divisor."""
    model = _attention_probs(np.array([0.5, 0.25], np.float32).reshape(HEADS, 1, 1))
    original = model.SerializeToString()
    assert apply_rewrite(ScoreScaleToDiv(), model) == 0
    assert model.SerializeToString() == original
