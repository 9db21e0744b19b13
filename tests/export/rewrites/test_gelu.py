"""0.5 * x * (1 - erf(-x / sqrt 2)), as TF's exact GELU exports through Erfc ==> com.microsoft Gelu."""
import math

import numpy as np
from onnx import helper

from rewrite_graphs import FLOAT, apply_rewrite, make_model, op_types, run
from xdistil.export.rewrites.gelu import ErfcGeluToGelu

HIDDEN = 8


def _erfc_gelu(erf_scale):
    """Mul(Mul(0.5, x), Sub(1, Erf(Mul(Neg(x), erf_scale)))): GELU when erf_scale is 1/sqrt 2."""
    nodes = [helper.make_node("Mul", ["half", "x"], ["half_x"]),
             helper.make_node("Neg", ["x"], ["minus_x"]),
             helper.make_node("Mul", ["minus_x", "erf_scale"], ["erf_in"]),
             helper.make_node("Erf", ["erf_in"], ["erf"]),
             helper.make_node("Sub", ["one", "erf"], ["erfc"]),
             helper.make_node("Mul", ["half_x", "erfc"], ["y"])]
    constants = {"half": np.array(0.5, np.float32), "one": np.array(1.0, np.float32),
                 "erf_scale": np.array(erf_scale, np.float32)}
    shape = ["batch", "sequence", HIDDEN]
    return make_model(nodes, [("x", FLOAT, shape)], [("y", FLOAT, shape)], constants)


def _features():
    return {"x": np.random.default_rng(0).normal(scale=2.0, size=(2, 5, HIDDEN)).astype(np.float32)}


def test_erfc_gelu_becomes_contrib_gelu():
    model = _erfc_gelu(1 / math.sqrt(2))
    expected = run(model, _features())
    assert apply_rewrite(ErfcGeluToGelu(), model) == 1
    assert op_types(model) == ["Gelu"]
    (gelu,) = model.graph.node
    assert (gelu.domain, list(gelu.input), list(gelu.output)) == ("com.microsoft", ["x"], ["y"])
    np.testing.assert_allclose(run(model, _features())[0], expected[0], rtol=1e-6, atol=1e-6)


def test_other_erf_scale_is_left_alone():
    """With erf(-x) instead of erf(-x / sqrt 2) it is not GELU."""
    model = _erfc_gelu(1.0)
    original = model.SerializeToString()
    assert apply_rewrite(ErfcGeluToGelu(), model) == 0
    assert model.SerializeToString() == original
