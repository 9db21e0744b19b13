"""Dead-node removal and node counts on hand-built graphs; table lookups in real exports."""
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.transformers.onnx_model import OnnxModel

from conftest import write_tiny_bert
from xdistil.export.fusion import _probe_features
from xdistil.export.graph_edit import constant, node_counts_by_type, remove_unused_nodes, table_lookups
from xdistil.export.onnx_export import export_to_onnx
from xdistil.tasks import get_task

FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64


def _model_with_dead_branch():
    """y = relu(x) W, next to the position-id chain that quantization leaves unread: Shape(input_ids) ->
    Gather -> Range -> Unsqueeze -> Expand -> Cast, whose output reaches no graph output."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Relu", ["x"], ["relu"]),
             helper.make_node("MatMul", ["relu", "weight"], ["y"]),
             helper.make_node("Shape", ["input_ids"], ["shape"]),
             helper.make_node("Gather", ["shape", "one"], ["length"], axis=0),
             helper.make_node("Range", ["zero", "length", "one"], ["range"]),
             helper.make_node("Unsqueeze", ["range", "axis"], ["row"]),
             helper.make_node("Expand", ["row", "shape"], ["ids"]),
             helper.make_node("Cast", ["ids"], ["ids_int32"], to=TensorProto.INT32)]
    constants = {"weight": rng.normal(size=(4, 3)).astype(np.float32), "zero": np.array(0), "one": np.array(1),
                 "axis": np.array([0])}
    inputs = [helper.make_tensor_value_info("x", FLOAT, ["batch", 4]),
              helper.make_tensor_value_info("input_ids", INT64, ["batch", "sequence"])]
    graph = helper.make_graph(nodes, "dead_branch", inputs, [helper.make_tensor_value_info("y", FLOAT, ["batch", 3])],
                              [numpy_helper.from_array(value, name) for name, value in constants.items()])
    return helper.make_model(graph, ir_version=9, opset_imports=[helper.make_opsetid("", 17)])


def _outputs(model, feeds):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_dead_branch_is_removed_and_outputs_stay_identical():
    model = _model_with_dead_branch()
    feeds = {"x": np.random.default_rng(1).normal(size=(2, 4)).astype(np.float32),
             "input_ids": np.zeros((2, 5), np.int64)}
    expected = _outputs(model, feeds)
    assert remove_unused_nodes(model) == 6
    assert [node.op_type for node in model.graph.node] == ["Relu", "MatMul"]
    assert [tensor.name for tensor in model.graph.initializer] == ["weight"]
    assert [graph_input.name for graph_input in model.graph.input] == ["x", "input_ids"]  # still fed by name
    np.testing.assert_array_equal(_outputs(model, feeds)[0], expected[0])
    assert remove_unused_nodes(model) == 0


def test_node_counts_by_type():
    assert node_counts_by_type(_model_with_dead_branch()) == {
        "Cast": 1, "Expand": 1, "Gather": 1, "MatMul": 1, "Range": 1, "Relu": 1, "Shape": 1, "Unsqueeze": 1}


def test_table_lookups_find_the_word_embeddings_of_int32_and_int64_exports(tmp_path):
    """An int64 export casts input_ids before the lookup; the table is found either way, so the fusion parity
    probe draws ids from the whole vocabulary."""
    path = write_tiny_bert(tmp_path / "m", labels=["a", "b"])
    model = get_task("classification").model_class().from_pretrained(str(path))
    vocab = model.config.vocab_size
    for int64_inputs in (False, True):
        raw = tmp_path / f"raw_{int64_inputs}.onnx"
        export_to_onnx(model, raw, int64_inputs=int64_inputs)
        proto = onnx.load(str(raw))
        m = OnnxModel(proto)
        assert [constant(m, node.input[0]).shape for node in table_lookups(m, "input_ids")] == [(vocab, 32)]
        ids = _probe_features(proto)["input_ids"]
        assert 2 < ids.max() < vocab
