"""Compute the last encoder layer at the [CLS] position only, in a fused classification graph.

A sequence classifier reads one position of the last layer: the pooler slices position 0. Every
other position of that layer (its query, attention output, feed-forward) is computed and thrown
away, which is 10/12 of the layer's multiply-adds. `prune_last_layer_to_cls` rewrites the fused
graph so that the last layer

    query  = x[:, :1] W_q + b_q            (one position)
    key    = x W_k + b_k,  value = x W_v + b_v   (every position: the [CLS] attends to all)
    attn   = com.microsoft MultiHeadAttention(query, key, value, attention_mask)

and its output projection, SkipLayerNormalization (skip = x[:, :1]) and feed-forward run on one
position. The pooler's slice of position 0 is then a slice of the only position. The logits are
the same function of the inputs (checked by the caller), for any padding side.

Token classification (NER) reads every position, so it is never rewritten.
"""
from __future__ import annotations

import numpy as np
from onnx import helper

from xdistil.export.graph_edit import add_initializer, constant, int64_vector

POOLER_SLICE_AXIS = 1


def _single_consumer(name, input_name_to_nodes, op_type):
    consumers = input_name_to_nodes.get(name, [])
    if len(consumers) == 1 and consumers[0].op_type == op_type:
        return consumers[0]
    return None


def _reads_position_zero(m, node) -> bool:
    """A Slice of [0:1] on axis 1 that keeps every other axis whole, with unit steps (how tf2onnx
    exports the pooler's `hidden[:, 0]`: starts [0, 0], ends [INT32_MAX, 1], axes [0, 1])."""
    if node.op_type != "Slice" or len(node.input) < 4:
        return False
    starts, ends, axes = (constant(m, name) for name in node.input[1:4])
    steps = constant(m, node.input[4]) if len(node.input) > 4 else None
    if starts is None or ends is None or axes is None or (steps is not None and np.any(steps != 1)):
        return False
    ranges = dict(zip(axes.tolist(), zip(starts.tolist(), ends.tolist())))
    if ranges.pop(POOLER_SLICE_AXIS, None) != (0, 1):
        return False
    return all(axis >= 0 and start == 0 and end >= np.iinfo(np.int32).max for axis, (start, end) in ranges.items())


def _last_layer(m):
    """The last layer's nodes, if it has the fused BERT shape and feeds only a position-0 slice:
    Attention -> MatMul -> SkipLayerNormalization -> MatMul -> Bias*Gelu -> MatMul ->
    SkipLayerNormalization -> Slice[:, 0:1]. Returns None otherwise."""
    input_name_to_nodes = m.input_name_to_nodes()
    attentions = [node for node in m.nodes() if node.op_type == "Attention"]
    if not attentions:
        return None
    attention = attentions[-1]  # the optimizer leaves the graph topologically sorted
    if any(a.name != "num_heads" for a in attention.attribute) or any(attention.input[4:]):
        return None  # a variant (qkv_hidden_sizes, scale, past state, attention bias) not handled here
    out_proj = _single_consumer(attention.output[0], input_name_to_nodes, "MatMul")
    if out_proj is None:
        return None
    first_norm = _single_consumer(out_proj.output[0], input_name_to_nodes, "SkipLayerNormalization")
    if first_norm is None or first_norm.input[1] != attention.input[0]:
        return None
    consumers = input_name_to_nodes.get(first_norm.output[0], [])
    up = next((node for node in consumers if node.op_type == "MatMul"), None)
    second_norm = next((node for node in consumers if node.op_type == "SkipLayerNormalization"), None)
    if len(consumers) != 2 or up is None or second_norm is None or second_norm.input[1] != first_norm.output[0]:
        return None
    gelu = _single_consumer(up.output[0], input_name_to_nodes, "BiasGelu")
    down = gelu and _single_consumer(gelu.output[0], input_name_to_nodes, "MatMul")
    if down is None or second_norm.input[0] != down.output[0]:
        return None
    readers = input_name_to_nodes.get(second_norm.output[0], [])
    if not readers or not all(_reads_position_zero(m, node) for node in readers):
        return None
    if any(output in m.get_graphs_output_names() for node in (attention, first_norm, second_norm)
           for output in node.output):
        return None
    return attention, first_norm


def prune_last_layer_to_cls(model) -> bool:
    """Rewrite `model` (an onnxruntime OnnxModel of a fused BERT classifier) in place so that its
    last layer runs at position 0 only; returns False (and changes nothing) if the graph does not
    have that shape."""
    layer = _last_layer(model)
    if layer is None:
        return False
    attention, first_norm = layer
    x, qkv_weight_name, qkv_bias_name = attention.input[:3]
    mask = attention.input[3] if len(attention.input) > 3 else ""
    qkv_weight = constant(model, qkv_weight_name)
    qkv_bias = constant(model, qkv_bias_name)
    if qkv_weight is None or qkv_bias is None:
        return False
    hidden = qkv_weight.shape[1] // 3
    num_heads = next(helper.get_attribute_value(a) for a in attention.attribute if a.name == "num_heads")
    prefix = attention.name + "_cls"

    def projection(source, part):
        """Nodes computing `source @ W_part + b_part` into `<prefix>_<part>` (part q, k or v)."""
        columns = slice("qkv".index(part) * hidden, ("qkv".index(part) + 1) * hidden)
        product, biased = f"{prefix}_{part}_matmul", f"{prefix}_{part}"
        weight = add_initializer(model, f"{prefix}_{part}_weight", np.ascontiguousarray(qkv_weight[:, columns]))
        bias = add_initializer(model, f"{prefix}_{part}_bias", qkv_bias[columns])
        return [helper.make_node("MatMul", [source, weight], [product], name=product),
                helper.make_node("Add", [product, bias], [biased], name=biased)]

    first = f"{prefix}_x0"
    nodes = [helper.make_node("Slice", [x, int64_vector(model, f"{prefix}_starts", [0]),
                                        int64_vector(model, f"{prefix}_ends", [1]),
                                        int64_vector(model, f"{prefix}_axes", [POOLER_SLICE_AXIS])],
                              [first], name=first)]
    nodes += projection(first, "q") + projection(x, "k") + projection(x, "v")
    nodes.append(helper.make_node("MultiHeadAttention", [f"{prefix}_q", f"{prefix}_k", f"{prefix}_v", "", mask],
                                  [attention.output[0]], name=prefix, domain="com.microsoft",
                                  num_heads=num_heads))
    model.remove_node(attention)
    model.add_nodes(nodes)
    first_norm.input[1] = first
    model.prune_graph()
    model.topological_sort()
    return True
