"""Fuse a tf2onnx graph of a HuggingFace TF BERT into onnxruntime's transformer operators, checked.

`optimize_for_cpu` canonicalizes the graph (`xdistil.export.rewrites`), runs onnxruntime's
transformer optimizer, cuts a pruned student's zeroed heads and neurons out (`structured_pruning`),
optionally computes the last layer at [CLS] only (`cls_pruning`), drops nodes whose outputs nothing
reads, and writes the result only if its logits match the unfused model's on probe inputs.
`require_fusion` checks that every layer got its fused operators.
"""
import contextlib
import logging

import numpy as np
import onnx

from xdistil.export.cls_pruning import prune_last_layer_to_cls
from xdistil.export.embedding_factors import factor_word_embedding_lookup
from xdistil.export.graph_edit import constant, node_counts_by_type, remove_unused_nodes, table_lookups
from xdistil.export.rewrites import canonicalize_tf_bert_graph
from xdistil.export.structured_pruning import remove_pruned_units
from xdistil.io_utils import atomic_write_via

GELU_OPS = ("Gelu", "BiasGelu", "FastGelu")


def _probe_features(model: onnx.ModelProto, seq_len: int = 16, seed: int = 0) -> dict:
    """Three rows of random ids below the word-embedding size: unpadded, right- and left-padded."""
    from onnxruntime.transformers.onnx_model import OnnxModel

    wrapped = OnnxModel(model)
    vocab = min((constant(wrapped, node.input[0]).shape[0] for node in table_lookups(wrapped, "input_ids")),
                default=2)
    rng = np.random.default_rng(seed)
    positions = np.arange(seq_len)
    rows = [positions < seq_len, positions < seq_len // 2, positions >= seq_len // 3]
    mask = np.stack(rows).astype(np.int64)
    return {"input_ids": rng.integers(0, vocab, mask.shape) * mask, "attention_mask": mask,
            "token_type_ids": np.broadcast_to(positions >= seq_len // 2, mask.shape).astype(np.int64)}


def fused_parity(unfused_path, fused_path) -> float:
    """Max abs logit difference between two models on random ragged probe inputs."""
    from xdistil.export.parity import max_abs_logit_diff
    from xdistil.inference.onnx_runtime import onnx_session, run_onnx

    features = _probe_features(onnx.load(str(unfused_path), load_external_data=False))
    reference = run_onnx(onnx_session(unfused_path), features)
    fused = run_onnx(onnx_session(fused_path), features)
    return max_abs_logit_diff(reference, fused, features["attention_mask"])


@contextlib.contextmanager
def _quiet_logger(name):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def optimize_for_cpu(onnx_path, out_path, num_heads: int, hidden_size: int, model_kind: str = "bert",
                     parity_tolerance: float = 1e-4, cls_only_last_layer: bool = False, pruning=None) -> dict:
    """Canonicalize the tf2onnx graph, run onnxruntime's transformer fusions, save to `out_path`.

    With `pruning` (a PruningPlan), each fused layer keeps only the plan's heads and feed-forward neurons
    ("structured_pruning" in the result: heads and neurons per layer; the zero-masked unfused model is the
    parity reference), and word embeddings it factorised are looked up in their two factors
    ("word_embedding_factors": rank and shape; see `embedding_factors`). With `cls_only_last_layer` (sequence
    classifiers, which read position 0 only), the last layer is then computed at that position alone (see
    `cls_pruning`); "cls_only_last_layer" in the result says whether the graph allowed it. Nodes whose outputs reach no graph output are dropped
    (`graph_edit.remove_unused_nodes`).

    The fused model is checked against the unfused one on random inputs and is not written
    if their logits differ by more than `parity_tolerance`. Returns onnxruntime's fused operator
    counts of the final graph (Attention, MultiHeadAttention, SkipLayerNormalization, BiasGelu, ...),
    "rewrites" (canonicalization counts), "cls_only_last_layer", "node_counts" (nodes by op type)
    and "parity_max_abs_diff". The attention mask stays a 2-D 0/1 input, so any padding side works.
    """
    from onnxruntime.transformers.fusion_options import AttentionMaskFormat, FusionOptions
    from onnxruntime.transformers.onnx_model import OnnxModel
    from onnxruntime.transformers.optimizer import optimize_model

    model = onnx.load(str(onnx_path))
    rewrites = canonicalize_tf_bert_graph(model)
    factors = None
    if pruning is not None and pruning.word_embedding:
        factors = factor_word_embedding_lookup(OnnxModel(model), pruning.word_embedding["rank"])
    options = FusionOptions(model_kind)
    options.attention_mask_format = AttentionMaskFormat.AttentionMask
    # It warns that a tf2onnx graph is not "pytorch"; after canonicalization "bert" is right.
    with _quiet_logger("onnxruntime.transformers.optimizer"):
        optimizer = optimize_model(model, model_type=model_kind, num_heads=num_heads, hidden_size=hidden_size,
                                   optimization_options=options, opt_level=0, use_gpu=False)
    shrunk = remove_pruned_units(optimizer, pruning) if pruning is not None else None
    pruned = cls_only_last_layer and prune_last_layer_to_cls(optimizer)
    remove_unused_nodes(optimizer.model)
    # The statistics count the nodes the OnnxModel holds now, so they include cls_pruning's MultiHeadAttention.
    counts = optimizer.get_fused_operator_statistics()
    counts.update(rewrites=rewrites, structured_pruning=shrunk, word_embedding_factors=factors,
                  cls_only_last_layer=pruned,
                  node_counts=node_counts_by_type(optimizer.model))

    def save_checked(tmp):
        optimizer.save_model_to_file(tmp)  # also adds the com.microsoft opset import
        counts["parity_max_abs_diff"] = fused_parity(onnx_path, tmp)
        if not counts["parity_max_abs_diff"] <= parity_tolerance:
            raise RuntimeError(f"fused model differs from {onnx_path} by {counts['parity_max_abs_diff']:.3g} "
                               f"> {parity_tolerance:g} in logits; not writing {out_path}")

    atomic_write_via(out_path, save_checked)
    return counts


def require_fusion(counts: dict, num_layers: int) -> None:
    """Raise if a BERT-family model with `num_layers` layers did not get its fused operators.

    Needs at least one Attention, one Gelu-family op and two SkipLayerNormalizations per layer.
    """
    attention = counts.get("Attention", 0) + counts.get("MultiHeadAttention", 0)
    gelu = sum(counts.get(op, 0) for op in GELU_OPS)
    skip_layer_norm = counts.get("SkipLayerNormalization", 0)
    missing = []
    if attention < num_layers:
        missing.append(f"Attention {attention} < {num_layers}")
    if gelu < num_layers:
        missing.append(f"Gelu/BiasGelu/FastGelu {gelu} < {num_layers}")
    if skip_layer_norm < 2 * num_layers:
        missing.append(f"SkipLayerNormalization {skip_layer_norm} < {2 * num_layers}")
    if missing:
        raise RuntimeError(f"graph fusion incomplete for {num_layers} layers: {'; '.join(missing)} "
                           f"(fused operator counts: {counts})")
