"""Split a student's low-rank word embeddings into their two factors in its ONNX graph.

A student whose word embeddings were factorised (`xdistil.pruning.embedding_rank`) holds in TensorFlow one
[V, H] matrix of rank r. The export looks each token up in the [V, r] factor and projects it::

    Gather(W [V, H], input_ids)  ==>  MatMul(Gather(left [V, r], input_ids), right [r, H])

so the graph holds V*r + r*H weights instead of V*H. onnxruntime then fuses no EmbedLayerNormalization (its
matcher wants the Gather of a [V, H] table); the sum with the position embeddings and the layer norm stay
separate operators, and each layer fuses as before.
"""
from __future__ import annotations

from onnx import helper

from xdistil.export.graph_edit import add_initializer, constant, table_lookups
from xdistil.pruning.embedding_rank import word_embedding_factors


def word_lookup(m, input_ids: str = "input_ids"):
    """The Gather of the word-embedding table by `input_ids` in `m` (an onnxruntime OnnxModel)."""
    found = table_lookups(m, input_ids)
    if len(found) != 1:
        raise ValueError(f"word-embedding factors: expected one Gather of a table by {input_ids}, found {len(found)}")
    return found[0]


def factor_word_embedding_lookup(m, rank: int) -> dict:
    """Rewrite the word-embedding lookup of `m` (an onnxruntime OnnxModel, edited in place) into its rank-`rank`
    factors; returns {"rank", "vocab_size", "hidden_size"}. Raises ValueError when the table is not of that rank.
    The full table stays until the caller prunes the graph."""
    gather = word_lookup(m)
    table = constant(m, gather.input[0])
    left, right = word_embedding_factors(table, rank)
    looked_up = gather.output[0]
    gather.input[0] = add_initializer(m, "word_embedding_left", left)
    gather.output[0] = m.create_node_name("Gather", "word_embedding_low_rank")
    project = helper.make_node("MatMul", [gather.output[0], add_initializer(m, "word_embedding_right", right)],
                               [looked_up], name=m.create_node_name("MatMul", "word_embedding_projection"))
    m.add_node(project)
    m.topological_sort()
    return {"rank": rank, "vocab_size": int(table.shape[0]), "hidden_size": int(table.shape[1])}
