"""The TensorFlow side of pruning: layers dropped for real, pruned heads and neurons held at exactly zero.

HF's TF BERT family has one head count and one feed-forward size for all layers and cannot prune heads,
so a pruned head is a zero block of its layer's weights (its query, key and value columns and biases,
and its rows of the attention output projection) and a pruned neuron a zero feed-forward column, bias
and output row. A unit zeroed whole gets zero gradients (nothing it computes reaches the loss), and
training also masks its gradients (`gradient_masker`), so that it stays zero whatever the rest of the
block holds: with a zero gradient from the start, Adam's moments stay zero and so does the update, and
decoupled weight decay of a zero weight is zero. Dropped layers leave the model (a new one with fewer layers is built), so
the saved directory stays a plain HF directory.
"""
from __future__ import annotations

import re

import numpy as np
import tensorflow as tf

from xdistil.pruning.plan import PruningPlan

LAYER_NAME = re.compile(r"layer_\._(\d+)/")


def encoder_layers(model) -> list:
    """The transformer layers of a HF TF BERT-family task model (BERT, RoBERTa, XLM-R, ELECTRA)."""
    main = getattr(model, model.base_model_prefix, None)
    layers = getattr(getattr(main, "encoder", None), "layer", None)
    if not layers or not all(hasattr(layer, "bert_output") for layer in layers):
        raise ValueError(f"structured pruning supports BERT-family encoders; {type(model).__name__} has no "
                         "encoder.layer[i].bert_output")
    return list(layers)


def layer_denses(layer) -> dict:
    """The dense sub-layers of one transformer layer by role."""
    attention = layer.attention
    return {"query": attention.self_attention.query, "key": attention.self_attention.key,
            "value": attention.self_attention.value, "attention_output": attention.dense_output.dense,
            "intermediate": layer.intermediate.dense, "output": layer.bert_output.dense}


def weight_roles(model) -> dict:
    """{variable ref: (role, layer index or None)} for every weight of a BERT-family task model: "embedding",
    a `layer_denses` role or "layer_norm" (with its layer), or "other" (task head, pooler)."""
    main = getattr(model, model.base_model_prefix)
    roles = {w.ref(): ("embedding", None) for w in main.embeddings.weights}
    for index, layer in enumerate(encoder_layers(model)):
        for role, dense in layer_denses(layer).items():
            roles[dense.kernel.ref()] = roles[dense.bias.ref()] = (role, index)
        for norm in (layer.attention.dense_output.LayerNorm, layer.bert_output.LayerNorm):
            for w in norm.weights:
                roles[w.ref()] = ("layer_norm", index)
        unknown = [w.name for w in layer.weights if w.ref() not in roles]
        if unknown:
            raise ValueError(f"width pruning does not know the encoder weights {unknown}")
    for w in model.weights:
        roles.setdefault(w.ref(), ("other", None))
    return roles


def drop_encoder_layers(model, dropped) -> object:
    """A new model of the same class without the layers `dropped` (0-based); every other weight copied."""
    if not dropped:
        return model
    num_layers = model.config.num_hidden_layers
    kept = [i for i in range(num_layers) if i not in set(dropped)]
    if max(dropped) >= num_layers or not kept:
        raise ValueError(f"--drop_layers {','.join(map(str, dropped))}: the student has layers 0-"
                         f"{num_layers - 1} and must keep one")
    return copy_with_layers(model, kept)


def copy_with_layers(model, kept: list[int], width=None) -> object:
    """A new, built model of the same class whose encoder layers are copies of layers `kept` (0-based, in
    order) of the built `model`; every other weight (embeddings, head) copied too. With a `width` plan
    (`xdistil.pruning.width.WidthPlan`) the copy is narrower: it keeps only the plan's channels, heads and
    neurons of each weight."""
    config = model.config.__class__.from_dict(model.config.to_dict())
    config.num_hidden_layers = len(kept)
    for key, value in (width.sizes() if width else {}).items():
        setattr(config, key, value)
    copy = model.__class__(config)
    copy(copy.dummy_inputs, training=False)

    def key(name, layer_map=None):
        name = name.split("/", 1)[1]  # without the model's own (instance-numbered) name
        return LAYER_NAME.sub(lambda m: f"layer_._{layer_map[int(m.group(1))] if layer_map else m.group(1)}/", name)

    source = {key(w.name): w for w in model.weights}
    values = [source[key(w.name, kept)].numpy() for w in copy.weights]
    if width:
        roles = weight_roles(copy)
        values = [width.cut(value, *roles[w.ref()], model.config.hidden_size) for value, w in zip(values, copy.weights)]
    copy.set_weights(values)
    return copy


def unit_masks(model, plan: PruningPlan) -> list[tuple[tf.Variable, np.ndarray]]:
    """(variable, 0/1 mask of its shape) for every weight a pruned head or neuron touches."""
    d = plan.head_size
    masks = []
    for layer, heads, neurons in zip(encoder_layers(model), plan.kept_heads, plan.kept_neurons):
        dense = layer_denses(layer)
        head_units = np.zeros(plan.original["num_attention_heads"], np.float32)
        head_units[list(heads)] = 1.0
        head_columns = np.repeat(head_units, d)
        neuron_units = np.zeros(plan.original["intermediate_size"], np.float32)
        neuron_units[list(neurons)] = 1.0
        if head_units.all() and neuron_units.all():
            continue
        for role in ("query", "key", "value"):
            masks += [(dense[role].kernel, np.broadcast_to(head_columns, dense[role].kernel.shape)),
                      (dense[role].bias, head_columns)]
        out = dense["attention_output"].kernel
        masks.append((out, np.broadcast_to(head_columns[:, None], out.shape)))
        up, down = dense["intermediate"], dense["output"].kernel
        masks += [(up.kernel, np.broadcast_to(neuron_units, up.kernel.shape)), (up.bias, neuron_units),
                  (down, np.broadcast_to(neuron_units[:, None], down.shape))]
    return masks


def apply_plan(model, plan: PruningPlan) -> None:
    """Zero the weights of every pruned head and neuron of `model` (whose layers are the plan's kept ones)."""
    if len(encoder_layers(model)) != plan.num_layers:
        raise ValueError(f"the pruning plan has {plan.num_layers} layers, the model {len(encoder_layers(model))}")
    for variable, mask in unit_masks(model, plan):
        variable.assign(variable.numpy() * mask)


def gradient_masker(model, plan: PruningPlan):
    """A function (gradients, variables) -> gradients that zeroes the gradients of pruned weights."""
    masks = {variable.ref(): tf.constant(np.ascontiguousarray(mask)) for variable, mask in unit_masks(model, plan)}

    def mask_gradients(gradients, variables):
        return [g if g is None or v.ref() not in masks else g * tf.cast(masks[v.ref()], g.dtype)
                for g, v in zip(gradients, variables)]

    return mask_gradients
