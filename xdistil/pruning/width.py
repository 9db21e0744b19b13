"""Width pruning: a narrower copy of some teacher layers (or of a pretrained student), keeping its most active
hidden channels, heads and feed-forward neurons (Minitron: Muralidharan et al., 2024, "Compact Language Models via
Pruning and Knowledge Distillation").

Every weight of the narrow copy is a sub-matrix of the teacher's (a merged head's query scaled, see below):
the kept channels of every hidden-size axis (embeddings, LayerNorms, projections, head), the kept heads'
query/key/value columns and attention-output rows, the kept neurons' feed-forward columns and rows.
LayerNorm then normalises over the kept channels only, so the copy starts near the teacher, not equal to it;
distillation recovers the rest. The copy is a plain HF model of the smaller sizes (HF needs one head count
and one feed-forward size for all layers). It keeps hidden_size / the teacher's head size teacher heads per
layer; a student head wider than the teacher's is made of several whole teacher heads side by side, its
query scaled so that its attention logits are the sum of theirs (one softmax over the sum instead of one per
head: an approximation, which distillation then trains).

Importance is measured on the teacher's activations over a few task rows, one forward pass per batch:
a channel by the mean |value| of the embedding output and of the kept layers' outputs, a head by the mean
L2 norm of what it adds to its layer's attention output, a neuron by its mean |activation|.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from xdistil.errors import ConfigError
from xdistil.pruning.masks import encoder_layers, layer_denses


@dataclasses.dataclass(frozen=True)
class WidthPlan:
    """What a narrow copy keeps: hidden channels (sorted teacher indices), and per kept layer, in order, the
    teacher heads and feed-forward neurons (sorted teacher indices)."""

    channels: tuple[int, ...]
    heads: tuple[tuple[int, ...], ...]
    neurons: tuple[tuple[int, ...], ...]
    head_size: int
    teacher_heads_per_head: int = 1

    def __post_init__(self):
        for heads, neurons in zip(self.heads, self.neurons):
            if len(heads) != len(self.heads[0]) or len(neurons) != len(self.neurons[0]):
                raise ValueError("every layer of a narrow copy keeps as many heads and neurons as the others")
        if len(self.heads[0]) * self.head_size != len(self.channels):
            raise ValueError(f"{len(self.heads[0])} heads of size {self.head_size} make "
                             f"{len(self.heads[0]) * self.head_size}, not the {len(self.channels)} channels kept")
        if len(self.heads[0]) % self.teacher_heads_per_head:
            raise ValueError(f"{len(self.heads[0])} teacher heads do not group by {self.teacher_heads_per_head}")

    def sizes(self) -> dict:
        """The HF config sizes of the narrow copy."""
        return {"hidden_size": len(self.channels),
                "num_attention_heads": len(self.heads[0]) // self.teacher_heads_per_head,
                "intermediate_size": len(self.neurons[0])}

    def head_columns(self, layer: int) -> np.ndarray:
        return np.concatenate([np.arange(h * self.head_size, (h + 1) * self.head_size) for h in self.heads[layer]])

    def cut(self, array: np.ndarray, role: str, layer: int | None, hidden_size: int) -> np.ndarray:
        """The part of a teacher weight the copy keeps, by the weight's role (`masks.weight_roles`)."""
        channels = np.asarray(self.channels)
        if role == "embedding" or role == "layer_norm":
            return array[..., channels]
        if role == "other":  # task head, pooler: every hidden-size axis
            for axis, size in enumerate(array.shape):
                if size == hidden_size:
                    array = np.take(array, channels, axis=axis)
            return array
        columns = self.head_columns(layer) if role in ("query", "key", "value", "attention_output") else \
            np.asarray(self.neurons[layer])
        if role in ("query", "key", "value", "intermediate"):
            kept = array[channels][:, columns] if array.ndim == 2 else array[columns]
            # q.k / sqrt(n d) over n teacher heads of size d = the sum of their logits q_i.k_i / sqrt(d)
            return kept * np.sqrt(self.teacher_heads_per_head) if role == "query" else kept
        if role in ("attention_output", "output"):
            return array[columns][:, channels] if array.ndim == 2 else array[channels]
        raise ValueError(f"unknown weight role {role!r}")


def width_targets(config, hidden_size=None, num_attention_heads=None, intermediate_size=None,
                  source: str = "teacher") -> dict:
    """The narrow copy's sizes from the --hidden_size/--num_attention_heads/--intermediate_size given (the others
    follow the proportions of `config`, the HF config of what is narrowed: the teacher, or the student checkpoint
    when `source` says so); ConfigError when they cannot be cut from it."""
    full_hidden, full_heads = config.hidden_size, config.num_attention_heads
    head_size = full_hidden // full_heads
    hidden = hidden_size or (num_attention_heads or full_heads) * head_size
    heads = num_attention_heads or hidden // head_size
    inner = intermediate_size or int(round(config.intermediate_size * hidden / full_hidden))
    if hidden > full_hidden:
        raise ConfigError("hidden_size", f"{hidden} is wider than the {source}'s {full_hidden}: a copy of {source} "
                                         "layers can only be narrowed")
    if hidden % head_size:
        raise ConfigError("hidden_size", f"a narrowed copy of {source} layers is made of whole {source} heads of size "
                                         f"{head_size}, so --hidden_size must be a multiple of {head_size}; got "
                                         f"{hidden}")
    if (hidden // head_size) % heads:
        raise ConfigError("num_attention_heads", f"each head of a narrowed copy is made of whole {source} heads, so "
                                                 f"its size --hidden_size / --num_attention_heads must be a multiple "
                                                 f"of the {source}'s head size {head_size}; got {hidden} / {heads}")
    if inner > config.intermediate_size:
        raise ConfigError("intermediate_size", f"{inner} is larger than the {source}'s {config.intermediate_size}")
    return {"hidden_size": hidden, "num_attention_heads": heads, "intermediate_size": inner}


def activation_importance(model, layers, batches) -> dict:
    """Mean activation scores of `model` (a built BERT-family task model) over `batches` (dicts of model inputs):
    {"channels": [hidden], "heads": [len(layers), heads], "neurons": [len(layers), intermediate]}."""
    main = getattr(model, model.base_model_prefix)
    blocks = encoder_layers(model)
    config = model.config
    heads, head_size = config.num_attention_heads, config.hidden_size // config.num_attention_heads
    channels = np.zeros(config.hidden_size)
    head_scores = np.zeros((len(layers), heads))
    neuron_scores = np.zeros((len(layers), config.intermediate_size))
    tokens = 0.0
    for batch in batches:
        out = main(**batch, output_hidden_states=True, output_attentions=True, training=False)
        mask = tf.cast(batch["attention_mask"], tf.float32)[:, :, None]
        tokens += float(tf.reduce_sum(mask))
        for state in [out.hidden_states[0]] + [out.hidden_states[i + 1] for i in layers]:
            channels += tf.reduce_sum(tf.abs(state) * mask, axis=(0, 1)).numpy()
        for row, i in enumerate(layers):
            block, dense, inputs = blocks[i], layer_denses(blocks[i]), out.hidden_states[i]
            batch_size, length = tf.shape(inputs)[0], tf.shape(inputs)[1]
            values = tf.transpose(tf.reshape(dense["value"](inputs), [batch_size, length, heads, head_size]),
                                  [0, 2, 1, 3])
            context = tf.matmul(out.attentions[i], values)  # [batch, heads, length, head_size]
            per_head = tf.reshape(dense["attention_output"].kernel, [heads, head_size, -1])
            added = tf.norm(tf.einsum("bhtd,hdo->bhto", context, per_head), axis=-1)  # [batch, heads, length]
            head_scores[row] += tf.reduce_sum(added * tf.transpose(mask, [0, 2, 1]), axis=(0, 2)).numpy()
            merged = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [batch_size, length, heads * head_size])
            attended = block.attention.dense_output(merged, inputs, training=False)
            activation = block.intermediate(attended)
            neuron_scores[row] += tf.reduce_sum(tf.abs(activation) * mask, axis=(0, 1)).numpy()
    if not tokens:
        raise ValueError("no rows to measure activations on")
    return {"channels": channels / (tokens * (len(layers) + 1)), "heads": head_scores / tokens,
            "neurons": neuron_scores / tokens}


def _top(scores: np.ndarray, count: int) -> tuple[int, ...]:
    """The indices of the `count` highest scores, sorted (ties by index)."""
    return tuple(sorted(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:count]))


def choose_width_plan(importance: dict, sizes: dict) -> WidthPlan:
    """Keep the most important channels, and in each layer the most important heads (hidden_size / the measured
    model's head size of them, grouped in index order into the copy's heads) and neurons."""
    head_size = len(importance["channels"]) // np.shape(importance["heads"])[1]
    teacher_heads = sizes["hidden_size"] // head_size
    return WidthPlan(channels=_top(importance["channels"], sizes["hidden_size"]),
                     heads=tuple(_top(s, teacher_heads) for s in importance["heads"]),
                     neurons=tuple(_top(s, sizes["intermediate_size"]) for s in importance["neurons"]),
                     head_size=head_size, teacher_heads_per_head=teacher_heads // sizes["num_attention_heads"])
