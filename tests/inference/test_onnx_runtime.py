"""Feeding onnxruntime sessions, on a hand-built ONNX graph (no TensorFlow needed)."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from xdistil.inference.onnx_runtime import onnx_session, run_onnx


@pytest.fixture(scope="module")
def sum_model(tmp_path_factory):
    """logits[b, s, 0] = input_ids + attention_mask, as float32; inputs are int64."""
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
              for name in ("input_ids", "attention_mask")]
    nodes = [helper.make_node("Add", ["input_ids", "attention_mask"], ["sum"]),
             helper.make_node("Cast", ["sum"], ["sum_f"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["sum_f", "last_axis"], ["logits"])]
    axis = helper.make_tensor("last_axis", TensorProto.INT64, [1], [-1])
    output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", 1])
    graph = helper.make_graph(nodes, "sum", inputs, [output], initializer=[axis])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path_factory.mktemp("parity") / "sum.onnx"
    onnx.save(model, path)
    return path


def test_run_onnx_feeds_declared_inputs_with_declared_dtype(sum_model):
    session = onnx_session(sum_model)
    features = {"input_ids": np.array([[3, 4]], np.int32), "attention_mask": np.array([[1, 0]], np.int32),
                "token_type_ids": np.zeros((1, 2), np.int32), "labels": np.array([1])}
    logits = run_onnx(session, features)
    assert logits.dtype == np.float32
    np.testing.assert_array_equal(logits[..., 0], [[4.0, 4.0]])


def test_run_onnx_names_missing_input(sum_model):
    with pytest.raises(KeyError, match="attention_mask"):
        run_onnx(onnx_session(sum_model), {"input_ids": np.ones((1, 2), np.int32)})
