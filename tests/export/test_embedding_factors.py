"""Low-rank word embeddings looked up in their two factors in the fused ONNX graph: same logits as TensorFlow."""
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
from xdistil.models.loading import word_embedding_variable
from xdistil.pruning.embedding_rank import factorise_word_embedding
from xdistil.pruning.masks import apply_plan
from xdistil.pruning.plan import PruningPlan
from xdistil.tasks import get_task

HIDDEN, HEADS, INNER, RANK = 32, 4, 64, 5


def _factorised_model(root, kind, labels):
    """A tiny random 2-layer model with random biases, its word embeddings of rank 5 and two heads pruned."""
    model_dir = write_tiny_bert(root / "model", hidden_size=HIDDEN, num_layers=2, num_heads=HEADS,
                                intermediate_size=INNER, labels=labels)
    model = get_task(kind).model_class().from_pretrained(str(model_dir), num_labels=len(labels))
    add_random_biases(model, seed=3, scale=0.3)
    plan = dataclasses.replace(PruningPlan.unpruned(model.config), kept_heads=((0, 2, 3), (1, 2)),
                               word_embedding=factorise_word_embedding(model, RANK))
    apply_plan(model, plan)
    return model, plan


@pytest.mark.parametrize("kind", ["ner", "classification"])
def test_factorised_lookup_matches_tensorflow_and_holds_only_the_factors(tmp_path, kind):
    model, plan = _factorised_model(tmp_path, kind, ["O", "B-PER", "I-PER"])
    vocab = plan.word_embedding["vocab_size"]
    raw, fused = tmp_path / "raw.onnx", tmp_path / "fused.onnx"
    export_to_onnx(model, raw)
    counts = optimize_for_cpu(raw, fused, HEADS, HIDDEN, pruning=plan,
                              cls_only_last_layer=get_task(kind).cls_only_export)
    require_fusion(counts, 2)  # every layer still fused
    assert counts["word_embedding_factors"] == {"rank": RANK, "vocab_size": vocab, "hidden_size": HIDDEN}
    assert counts["structured_pruning"]["heads_per_layer"] == [3, 2]

    graph = onnx.load(str(fused)).graph
    shapes = {tensor.name: list(tensor.dims) for tensor in graph.initializer}
    assert [vocab, HIDDEN] not in shapes.values()  # the full table is gone
    lookups = [shapes.get(node.input[0]) for node in graph.node if node.op_type == "Gather"]
    assert [vocab, RANK] in lookups
    assert any(node.op_type == "MatMul" and shapes.get(node.input[1]) == [RANK, HIDDEN] for node in graph.node)

    rng = np.random.default_rng(0)
    mask = np.ones((3, 12), np.int64)
    mask[1, 6:] = 0
    features = {"input_ids": rng.integers(5, vocab, (3, 12)) * mask, "attention_mask": mask,
                "token_type_ids": np.zeros((3, 12), np.int64)}
    tf_logits = TFLogits(model)({k: v.astype(np.int32) for k, v in features.items()})
    token_mask = mask if kind == "ner" else None
    assert max_abs_logit_diff(tf_logits, run_onnx(onnx_session(fused), features), token_mask) <= 1e-4

    int8 = tmp_path / "int8.onnx"
    quantize_dynamic_int8(fused, int8)
    quantized = onnx.load(str(int8)).graph
    tables = [t.data_type for t in quantized.initializer if list(t.dims) == [vocab, RANK]]
    assert tables in ([onnx.TensorProto.INT8], [onnx.TensorProto.UINT8])  # the lookup table in 8 bits too
    assert max_abs_logit_diff(tf_logits, run_onnx(onnx_session(int8), features), token_mask) < 0.5


def test_word_embeddings_trained_after_factorising_are_refused(tmp_path):
    model, plan = _factorised_model(tmp_path, "classification", ["a", "b"])
    variable = word_embedding_variable(model)
    variable.assign(variable.numpy() + np.random.default_rng(1).normal(0, 0.05, variable.shape).astype(np.float32))
    raw = tmp_path / "raw.onnx"
    export_to_onnx(model, raw)
    with pytest.raises(ValueError, match="not of rank 5"):
        optimize_for_cpu(raw, tmp_path / "fused.onnx", HEADS, HIDDEN, pruning=plan)
    assert not (tmp_path / "fused.onnx").exists()
