"""The last layer of a fused sequence classifier computed at the [CLS] position only."""
import numpy as np
import onnx
import pytest
from onnxruntime.transformers.onnx_model import OnnxModel

from conftest import add_random_biases, write_tiny_bert
from xdistil.export.cls_pruning import prune_last_layer_to_cls
from xdistil.export.fusion import optimize_for_cpu, require_fusion
from xdistil.export.onnx_export import export_to_onnx
from xdistil.export.parity import max_abs_logit_diff
from xdistil.inference.onnx_runtime import onnx_session, run_onnx
from xdistil.tasks import get_task
from xdistil.export.quantize import quantize_dynamic_int8

NUM_LAYERS, HIDDEN, HEADS = 3, 32, 4


def _with_random_biases(model_dir):
    """Give every bias (Q, K and V included) nonzero values, as a trained model has."""
    from transformers import TFBertForSequenceClassification

    model = TFBertForSequenceClassification.from_pretrained(str(model_dir))
    add_random_biases(model, seed=2, scale=0.3).save_pretrained(str(model_dir))
    return model_dir


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny 3-layer classifier exported to ONNX, fused without and with [CLS] pruning."""
    root = tmp_path_factory.mktemp("cls_pruning")
    model_dir = _with_random_biases(write_tiny_bert(root / "seq", hidden_size=HIDDEN, num_layers=NUM_LAYERS,
                                                    num_heads=HEADS, labels=["a", "b", "c"]))
    raw = root / "model.onnx"
    export_to_onnx(get_task("classification").model_class().from_pretrained(str(model_dir)), raw)
    full, pruned = root / "full.onnx", root / "pruned.onnx"
    return {"raw": raw, "full": full, "pruned": pruned,
            "full_counts": optimize_for_cpu(raw, full, HEADS, HIDDEN),
            "pruned_counts": optimize_for_cpu(raw, pruned, HEADS, HIDDEN, cls_only_last_layer=True)}


def _features(lengths, seq_len, left_pad, seed):
    rng = np.random.default_rng(seed)
    positions = np.arange(seq_len)[None, :]
    lengths = np.asarray(lengths)[:, None]
    mask = (positions >= seq_len - lengths) if left_pad else (positions < lengths)
    input_ids = np.where(mask, rng.integers(5, 60, size=mask.shape), 0)
    token_type_ids = (positions >= seq_len // 2) & mask
    return {"input_ids": input_ids.astype(np.int32), "attention_mask": mask.astype(np.int32),
            "token_type_ids": token_type_ids.astype(np.int32)}


def test_last_layer_becomes_cls_only_attention(exported):
    counts = exported["pruned_counts"]
    assert counts["cls_only_last_layer"] is True
    assert exported["full_counts"]["cls_only_last_layer"] is False
    assert (counts["Attention"], counts["MultiHeadAttention"]) == (NUM_LAYERS - 1, 1)
    require_fusion(counts, NUM_LAYERS)
    graph = onnx.load(str(exported["pruned"])).graph
    producers = {output: node for node in graph.node for output in node.output}
    (attention,) = [node for node in graph.node if node.op_type == "MultiHeadAttention"]
    query_matmul = producers[producers[attention.input[0]].input[0]]
    assert producers[query_matmul.input[0]].op_type == "Slice"  # the query is position 0 alone


@pytest.mark.parametrize("left_pad", [False, True])
@pytest.mark.parametrize("lengths,seq_len", [([1], 1), ([9], 9), ([11, 4, 1, 7], 11)])
def test_pruned_logits_equal_full_logits(exported, lengths, seq_len, left_pad):
    features = _features(lengths, seq_len, left_pad, seed=seq_len)
    full = run_onnx(onnx_session(exported["full"]), features)
    pruned = run_onnx(onnx_session(exported["pruned"]), features)
    assert pruned.shape == (len(lengths), 3)
    assert max_abs_logit_diff(full, pruned) <= 1e-5
    assert max_abs_logit_diff(run_onnx(onnx_session(exported["raw"]), features), pruned) <= 1e-4


def test_pruned_model_quantizes(exported, tmp_path):
    int8 = tmp_path / "pruned.int8.onnx"
    quantize_dynamic_int8(exported["pruned"], int8)
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert "MultiHeadAttention" in ops and ops & {"MatMulInteger", "DynamicQuantizeMatMul"}
    features = _features([12, 5, 9, 12, 3, 8], 12, left_pad=False, seed=4)
    reference = run_onnx(onnx_session(exported["pruned"]), features).argmax(-1)
    assert (run_onnx(onnx_session(int8), features).argmax(-1) == reference).mean() >= 0.8


def test_graph_reading_another_position_is_left_alone(exported):
    """A head that reads position 1 (not the [CLS]) must keep every position of the last layer."""
    model = onnx.load(str(exported["full"]))
    pooler_slice = next(node for node in model.graph.node if node.op_type == "Slice")
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    for index, shift in ((1, 1), (2, 1)):  # starts and ends of axis 1 move one position on
        tensor = initializers[pooler_slice.input[index]]
        values = onnx.numpy_helper.to_array(tensor).copy()
        values[-1] += shift
        tensor.CopyFrom(onnx.numpy_helper.from_array(values, tensor.name))
    wrapped = OnnxModel(model)
    before = [node.op_type for node in model.graph.node]
    assert prune_last_layer_to_cls(wrapped) is False
    assert [node.op_type for node in wrapped.model.graph.node] == before


def test_token_classifier_is_left_alone(tmp_path):
    """NER reads every position of the last layer."""
    from transformers import BertConfig, TFBertForTokenClassification

    model_dir = write_tiny_bert(tmp_path / "ner", hidden_size=HIDDEN, num_layers=2, num_heads=HEADS)
    config = BertConfig.from_pretrained(str(model_dir), num_labels=3)
    model = TFBertForTokenClassification(config)
    model(model.dummy_inputs)
    raw = tmp_path / "ner.onnx"
    export_to_onnx(model, raw)
    counts = optimize_for_cpu(raw, tmp_path / "ner.fused.onnx", HEADS, HIDDEN, cls_only_last_layer=True)
    assert counts["cls_only_last_layer"] is False
    assert (counts["Attention"], counts["MultiHeadAttention"]) == (2, 0)
