"""A pruned student's zeroed heads and neurons cut out of the fused ONNX graph: same logits as TensorFlow."""
import dataclasses

import numpy as np
import onnx
import pytest

from conftest import add_random_biases, write_tiny_bert
from xdistil.export.fusion import optimize_for_cpu, require_fusion
from xdistil.export.onnx_export import export_to_onnx
from xdistil.export.parity import max_abs_logit_diff
from xdistil.export.quantize import quantize_dynamic_int8
from xdistil.inference.onnx_runtime import onnx_session, run_onnx
from xdistil.models.forward import TFLogits
from xdistil.pruning.masks import apply_plan, drop_encoder_layers
from xdistil.pruning.plan import PruningPlan
from xdistil.tasks import get_task

HIDDEN, HEADS, INNER = 32, 4, 64


def _features(seed=0, rows=3, length=12, vocab=40):
    rng = np.random.default_rng(seed)
    mask = np.ones((rows, length), np.int64)
    mask[1, length // 2:] = 0
    mask[2, :length // 3] = 0  # left padding
    return {"input_ids": rng.integers(5, vocab, (rows, length)) * mask, "attention_mask": mask,
            "token_type_ids": np.zeros((rows, length), np.int64)}


def _pruned_model(root, kind, labels):
    """A tiny 3-layer random model with random biases, layer 1 dropped, then heads and neurons zeroed."""
    model_dir = write_tiny_bert(root / "model", hidden_size=HIDDEN, num_layers=3, num_heads=HEADS,
                                intermediate_size=INNER, labels=labels)
    model = get_task(kind).model_class().from_pretrained(str(model_dir), num_labels=len(labels))
    add_random_biases(model, seed=3, scale=0.3)
    plan = dataclasses.replace(PruningPlan.unpruned(model.config, dropped_layers=(1,)), kept_heads=((0, 2), (3,)),
                               kept_neurons=(tuple(range(0, INNER, 2)), tuple(range(40))))
    model = drop_encoder_layers(model, plan.dropped_layers)
    apply_plan(model, plan)
    return model, plan


@pytest.mark.parametrize("kind", ["ner", "classification"])
def test_shrunk_onnx_model_equals_zero_masked_tf_model(tmp_path, kind):
    model, plan = _pruned_model(tmp_path, kind, ["O", "B-PER", "I-PER"])
    raw, fused = tmp_path / "raw.onnx", tmp_path / "fused.onnx"
    export_to_onnx(model, raw)
    counts = optimize_for_cpu(raw, fused, HEADS, HIDDEN, pruning=plan,
                              cls_only_last_layer=get_task(kind).cls_only_export)
    require_fusion(counts, 2)
    assert counts["structured_pruning"] == {"heads_per_layer": [2, 1], "neurons_per_layer": [32, 40]}

    graph = onnx.load(str(fused)).graph
    shapes = {tensor.name: list(tensor.dims) for tensor in graph.initializer}
    heads = [next(a.i for a in node.attribute if a.name == "num_heads") for node in graph.node
             if node.op_type in ("Attention", "MultiHeadAttention")]
    assert heads == [2, 1]
    matmul_weights = [shapes[node.input[1]] for node in graph.node if node.op_type == "MatMul"
                      and node.input[1] in shapes and HIDDEN in shapes[node.input[1]]]
    assert [INNER // 2, HIDDEN] in matmul_weights and [HIDDEN, 40] in matmul_weights  # feed-forward, shrunk
    assert [2 * HIDDEN // HEADS, HIDDEN] in matmul_weights  # attention output of the 2 kept heads
    assert not any(INNER in shape for shape in shapes.values())

    features = _features()
    tf_logits = TFLogits(model)({k: v.astype(np.int32) for k, v in features.items()})
    onnx_logits = run_onnx(onnx_session(fused), features)
    mask = features["attention_mask"] if kind == "ner" else None
    assert max_abs_logit_diff(tf_logits, onnx_logits, mask) <= 1e-4

    int8 = tmp_path / "int8.onnx"
    quantize_dynamic_int8(fused, int8)
    int8_ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert "QAttention" in int8_ops or "DynamicQuantizeMatMul" in int8_ops
    assert max_abs_logit_diff(tf_logits, run_onnx(onnx_session(int8), features), mask) < 0.5


def test_a_pruned_neuron_that_is_not_zero_fails_the_parity_check(tmp_path):
    model, plan = _pruned_model(tmp_path, "ner", ["O", "B-PER", "I-PER"])
    layer = model.bert.encoder.layer[0]
    up, down = layer.intermediate.dense, layer.bert_output.dense
    assert 1 not in plan.kept_neurons[0]
    up.bias.assign(up.bias.numpy() + np.eye(INNER, dtype=np.float32)[1])  # neuron 1 is live again
    down.kernel.assign(down.kernel.numpy() + np.eye(INNER, HIDDEN, dtype=np.float32))
    raw = tmp_path / "raw.onnx"
    export_to_onnx(model, raw)
    with pytest.raises(RuntimeError, match="fused model differs"):
        optimize_for_cpu(raw, tmp_path / "fused.onnx", HEADS, HIDDEN, pruning=plan)
    assert not (tmp_path / "fused.onnx").exists()
