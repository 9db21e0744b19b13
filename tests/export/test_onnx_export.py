"""ONNX export, graph fusion and int8 quantization of tiny random BERT students."""
import numpy as np
import onnx
import pytest

from conftest import add_random_biases, write_tiny_bert
from xdistil.export.fusion import optimize_for_cpu, require_fusion
from xdistil.export.graph_edit import node_counts_by_type
from xdistil.export.onnx_export import export_to_onnx
from xdistil.export.parity import max_abs_logit_diff
from xdistil.inference.onnx_runtime import onnx_session, run_onnx
from xdistil.tasks import get_task
from xdistil.export.quantize import quantize_dynamic_int8, quantize_static_int8

NUM_LAYERS, HIDDEN, HEADS = 2, 32, 4
NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG"]

# What each rewrite of the canonicalization does on these tf2onnx exports.
_REWRITES_OF_ANY_HEAD = {
    "reduce_mean": 2 * (1 + 2 * NUM_LAYERS),  # mean and variance of each LayerNorm: embeddings, 2 per layer
    "softmax_shift": 1,  # grappler moved the 1e-9 into the mask branch that all layers share
    "score_div": NUM_LAYERS,
    "mask_unsqueeze": 1,  # one mask expansion, shared
    "gelu": NUM_LAYERS,
    "position_ids": 1,
}
REWRITE_COUNTS = {
    # Zero biases (freshly initialized): 6 dense layers per layer (q, k, v, attention output,
    # intermediate, output) are tensordots and lack their bias Add, as do the 2-D pooler and classifier.
    "classification": {**_REWRITES_OF_ANY_HEAD, "tensordot": 6 * NUM_LAYERS, "zero_bias": 6 * NUM_LAYERS + 2},
    # Random biases: nothing to restore; the token classifier is a tensordot too.
    "ner": {**_REWRITES_OF_ANY_HEAD, "tensordot": 6 * NUM_LAYERS + 1, "zero_bias": 0},
}


def _token_classifier_dir(path):
    """Tiny TFBertForTokenClassification with random nonzero biases, as a trained model has."""
    import tensorflow as tf
    from transformers import BertConfig, TFBertForTokenClassification

    write_tiny_bert(path, hidden_size=HIDDEN, num_layers=NUM_LAYERS, num_heads=HEADS)
    config = BertConfig.from_pretrained(str(path))
    config.id2label = dict(enumerate(NER_LABELS))
    config.label2id = {label: i for i, label in enumerate(NER_LABELS)}
    tf.keras.utils.set_random_seed(1)
    model = TFBertForTokenClassification(config)
    model(model.dummy_inputs)
    add_random_biases(model, seed=1)
    model.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Exported tiny students: sequence classification (zero biases, as freshly initialized)
    and token classification (random biases); each with its TF model for reference logits."""
    root = tmp_path_factory.mktemp("onnx_export")
    seq_dir = write_tiny_bert(root / "seq", hidden_size=HIDDEN, num_layers=NUM_LAYERS, num_heads=HEADS,
                              labels=["neg", "pos"])
    ner_dir = _token_classifier_dir(root / "ner")
    exported = {}
    for task_kind, model_dir in (("classification", seq_dir), ("ner", ner_dir)):
        onnx_path = root / f"{task_kind}.onnx"
        model = get_task(task_kind).model_class().from_pretrained(str(model_dir))
        exported[task_kind] = {"tf": model, "report": export_to_onnx(model, onnx_path), "onnx": onnx_path,
                               "dir": model_dir}
    return exported


@pytest.fixture(scope="module")
def fused(models):
    """optimize_for_cpu applied to both exported models: {task_kind: (path, counts)}."""
    result = {}
    for task_kind, entry in models.items():
        out = entry["onnx"].with_name(f"{task_kind}.fused.onnx")
        result[task_kind] = (out, optimize_for_cpu(entry["onnx"], out, HEADS, HIDDEN))
    return result


def _features(batch, seq_len, seed, left_pad=False):
    """Random token ids with ragged lengths (one row unpadded) and two segments."""
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(5, 60, size=(batch, seq_len))
    lengths = rng.integers(2, seq_len + 1, size=batch)
    lengths[0] = seq_len
    positions = np.arange(seq_len)[None, :]
    mask = (positions >= seq_len - lengths[:, None]) if left_pad else (positions < lengths[:, None])
    input_ids = np.where(mask, input_ids, 0)
    token_type_ids = ((positions >= seq_len // 2) & mask).astype(np.int32)
    return {"input_ids": input_ids.astype(np.int32), "attention_mask": mask.astype(np.int32),
            "token_type_ids": token_type_ids}


def _tf_logits(tf_model, features):
    return tf_model(**features, training=False).logits.numpy()


@pytest.mark.parametrize("task_kind", ["classification", "ner"])
def test_export_signature(models, task_kind):
    report = models[task_kind]["report"]
    model = onnx.load(str(models[task_kind]["onnx"]))
    assert report["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert (report["num_layers"], report["hidden_size"], report["num_heads"]) == (NUM_LAYERS, HIDDEN, HEADS)
    for graph_input in model.graph.input:
        assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.INT32
        dims = graph_input.type.tensor_type.shape.dim
        assert len(dims) == 2 and not any(d.HasField("dim_value") for d in dims)  # dynamic axes
    (output,) = model.graph.output
    assert output.name == "logits" and output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert not [p.name for p in models[task_kind]["onnx"].parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("task_kind", ["classification", "ner"])
@pytest.mark.parametrize("batch,seq_len", [(1, 7), (3, 19)])
def test_fp32_onnx_matches_tf(models, task_kind, batch, seq_len):
    entry = models[task_kind]
    features = _features(batch, seq_len, seed=seq_len)
    onnx_logits = run_onnx(onnx_session(entry["onnx"]), features)
    tf_logits = _tf_logits(entry["tf"], features)
    expected_shape = (batch, seq_len, len(NER_LABELS)) if task_kind == "ner" else (batch, 2)
    assert onnx_logits.shape == expected_shape
    assert max_abs_logit_diff(tf_logits, onnx_logits, features["attention_mask"]) <= 1e-4


def test_int64_inputs(models, tmp_path):
    entry = models["ner"]
    path = tmp_path / "ner_int64.onnx"
    report = export_to_onnx(entry["tf"], path, int64_inputs=True)
    session = onnx_session(path)
    assert report["input_dtype"] == "int64"
    assert {i.type for i in session.get_inputs()} == {"tensor(int64)"}
    features = _features(2, 9, seed=3)
    diff = max_abs_logit_diff(_tf_logits(entry["tf"], features), run_onnx(session, features),
                              features["attention_mask"])
    assert diff <= 1e-4
    fused_path = tmp_path / "ner_int64.fused.onnx"
    require_fusion(optimize_for_cpu(path, fused_path, HEADS, HIDDEN), NUM_LAYERS)
    fused_logits = run_onnx(onnx_session(fused_path), features)
    assert max_abs_logit_diff(run_onnx(session, features), fused_logits, features["attention_mask"]) <= 1e-4


@pytest.mark.parametrize("task_kind", ["classification", "ner"])
def test_fusion_counts(fused, task_kind):
    _, counts = fused[task_kind]
    require_fusion(counts, NUM_LAYERS)
    assert counts["Attention"] == NUM_LAYERS
    assert counts["BiasGelu"] + counts["Gelu"] == NUM_LAYERS
    assert counts["SkipLayerNormalization"] == 2 * NUM_LAYERS
    assert counts["EmbedLayerNormalization"] == 1


@pytest.mark.parametrize("task_kind", ["classification", "ner"])
def test_rewrite_counts(fused, task_kind):
    assert fused[task_kind][1]["rewrites"] == REWRITE_COUNTS[task_kind]


def _unused_nodes(model) -> list:
    """Nodes none of whose outputs another node reads or the graph returns."""
    read = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    return [node.name or node.op_type for node in model.graph.node if not any(o in read for o in node.output if o)]


@pytest.mark.parametrize("task_kind", ["classification", "ner"])
def test_fused_graph_has_no_unused_nodes(fused, task_kind):
    path, counts = fused[task_kind]
    model = onnx.load(str(path))
    assert _unused_nodes(model) == []
    assert counts["node_counts"] == node_counts_by_type(model)


@pytest.mark.parametrize("task_kind", ["classification", "ner"])
@pytest.mark.parametrize("left_pad", [False, True])
def test_fused_model_matches_unfused(models, fused, task_kind, left_pad):
    features = _features(4, 13, seed=7, left_pad=left_pad)
    unfused = run_onnx(onnx_session(models[task_kind]["onnx"]), features)
    fused_logits = run_onnx(onnx_session(fused[task_kind][0]), features)
    assert max_abs_logit_diff(unfused, fused_logits, features["attention_mask"]) <= 1e-4


def test_require_fusion_names_what_is_missing():
    counts = {"Attention": 0, "SkipLayerNormalization": 0, "Gelu": 0, "BiasGelu": 0, "FastGelu": 0}
    with pytest.raises(RuntimeError, match="Attention 0 < 6"):
        require_fusion(counts, 6)
    require_fusion({"Attention": 6, "BiasGelu": 6, "SkipLayerNormalization": 12}, 6)


def test_dynamic_int8_agrees_on_argmax(models, fused, tmp_path):
    fused_path = fused["ner"][0]
    int8_path = tmp_path / "ner.int8.onnx"
    sizes = quantize_dynamic_int8(fused_path, int8_path)
    assert sizes["out_bytes"] == int8_path.stat().st_size
    assert {n.op_type for n in onnx.load(str(int8_path)).graph.node} & {"QAttention", "MatMulInteger",
                                                                        "DynamicQuantizeMatMul"}
    features = _features(4, 16, seed=11)
    reference = run_onnx(onnx_session(fused_path), features)
    quantized = run_onnx(onnx_session(int8_path), features)
    real = features["attention_mask"].astype(bool)
    agreement = (reference.argmax(-1) == quantized.argmax(-1))[real].mean()
    assert agreement >= 0.8


def test_dynamic_int8_graph_has_no_unused_nodes(fused, tmp_path):
    """Quantized EmbedLayerNormalization takes no position ids: their Shape -> ... -> Cast chain must go."""
    int8_path = tmp_path / "ner.int8.onnx"
    report = quantize_dynamic_int8(fused["ner"][0], int8_path)
    model = onnx.load(str(int8_path))
    assert _unused_nodes(model) == []
    assert report["node_counts"] == node_counts_by_type(model)
    assert "QEmbedLayerNormalization" in report["node_counts"] and "Range" not in report["node_counts"]


def test_static_int8_runs(models, fused, tmp_path):
    fused_path = fused["classification"][0]
    int8_path = tmp_path / "seq.static.int8.onnx"
    calibration = [_features(2, 12, seed=s) for s in range(4)]
    quantize_static_int8(fused_path, int8_path, calibration)
    features = _features(3, 10, seed=5)
    logits = run_onnx(onnx_session(int8_path), features)
    assert logits.shape == (3, 2) and np.isfinite(logits).all()
