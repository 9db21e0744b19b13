"""Cut a pruned student's zeroed heads and feed-forward neurons out of its fused ONNX graph.

In TensorFlow a pruned head or neuron is a block of zero weights (`xdistil.pruning.masks`). After
onnxruntime's fusion each layer is

    Attention(x, W_qkv [H, 3A], b_qkv [3A], mask; num_heads) -> MatMul(W_o [A, H]) -> SkipLayerNormalization
      -> MatMul(W_1 [H, I]) -> BiasGelu(b_1 [I]) -> MatMul(W_2 [I, H]) -> SkipLayerNormalization

and `remove_pruned_units` rewrites it, layer by layer, to the kept k heads and n neurons:

    Attention(x, W_qkv [H, 3kd], b_qkv [3kd], mask; num_heads=k) -> MatMul(W_o [kd, H]) -> ...
      -> MatMul(W_1 [H, n]) -> BiasGelu(b_1 [n]) -> MatMul(W_2 [n, H]) -> ...

Query, key and value keep equal widths, so the Attention node needs no `qkv_hidden_sizes`; the head
size (and so the 1/sqrt(d) scale) is unchanged. The result equals the zero-masked model's (the caller
checks the logits).
"""
from __future__ import annotations

import numpy as np
from onnx import helper

from xdistil.export.graph_edit import add_initializer, constant


def _consumer(m, name, op_type, input_name_to_nodes):
    found = [node for node in input_name_to_nodes.get(name, []) if node.op_type == op_type]
    if len(found) != 1:
        raise ValueError(f"structured pruning: expected one {op_type} reading {name}, found {len(found)}")
    return found[0]


def fused_layers(m) -> list[dict]:
    """The fused layers of an onnxruntime OnnxModel in graph order: {"attention", "out", "up", "gelu", "down"}."""
    input_name_to_nodes = m.input_name_to_nodes()
    layers = []
    for attention in (node for node in m.nodes() if node.op_type == "Attention"):
        out = _consumer(m, attention.output[0], "MatMul", input_name_to_nodes)
        norm = _consumer(m, out.output[0], "SkipLayerNormalization", input_name_to_nodes)
        up = _consumer(m, norm.output[0], "MatMul", input_name_to_nodes)
        gelu = _consumer(m, up.output[0], "BiasGelu", input_name_to_nodes)
        down = _consumer(m, gelu.output[0], "MatMul", input_name_to_nodes)
        layers.append({"attention": attention, "out": out, "up": up, "gelu": gelu, "down": down})
    return layers


def _replace_constant(m, node, index: int, array: np.ndarray, hint: str) -> None:
    node.input[index] = add_initializer(m, hint, np.ascontiguousarray(array))


def _weight(m, node, index: int) -> np.ndarray:
    value = constant(m, node.input[index])
    if value is None:
        raise ValueError(f"structured pruning: input {index} of {node.name} is not a constant")
    return value


def remove_pruned_units(m, plan) -> dict:
    """Rewrite the fused graph `m` (an onnxruntime OnnxModel) to the heads and neurons `plan` keeps; returns
    {"heads_per_layer", "neurons_per_layer"} of the rewritten graph. The layer count must match the plan. The
    replaced initializers stay until the caller prunes the graph."""
    layers = fused_layers(m)
    if len(layers) != plan.num_layers:
        raise ValueError(f"structured pruning: the fused graph has {len(layers)} Attention layers, the pruning "
                         f"plan {plan.num_layers}")
    d = plan.head_size
    for index, (layer, heads, neurons) in enumerate(zip(layers, plan.kept_heads, plan.kept_neurons)):
        attention = layer["attention"]
        qkv = _weight(m, attention, 1)
        width = qkv.shape[1] // 3
        per_head = np.concatenate([np.arange(h * d, (h + 1) * d) for h in heads])
        columns = np.concatenate([part * width + per_head for part in range(3)])
        _replace_constant(m, attention, 1, qkv[:, columns], f"pruned_{index}_qkv_weight")
        _replace_constant(m, attention, 2, _weight(m, attention, 2)[columns], f"pruned_{index}_qkv_bias")
        for attribute in attention.attribute:
            if attribute.name == "num_heads":
                attribute.CopyFrom(helper.make_attribute("num_heads", len(heads)))
        _replace_constant(m, layer["out"], 1, _weight(m, layer["out"], 1)[per_head], f"pruned_{index}_out_weight")
        kept = np.asarray(neurons)
        _replace_constant(m, layer["up"], 1, _weight(m, layer["up"], 1)[:, kept], f"pruned_{index}_ffn_in_weight")
        _replace_constant(m, layer["gelu"], 1, _weight(m, layer["gelu"], 1)[kept], f"pruned_{index}_ffn_in_bias")
        _replace_constant(m, layer["down"], 1, _weight(m, layer["down"], 1)[kept], f"pruned_{index}_ffn_out_weight")
    return {"heads_per_layer": [len(h) for h in plan.kept_heads],
            "neurons_per_layer": [len(n) for n in plan.kept_neurons]}
