"""Importance of attention heads and feed-forward neurons: accumulated |d loss / d mask| (Michel et al., 2019).

A head's mask scales its context vectors, which enter the model only through its rows of the attention
output projection W_o; so d loss / d mask_h at mask 1 is the sum of W_o * dL/dW_o over those rows. A
feed-forward neuron's mask scales its activation, which enters only through its row of the output
projection W_2: d loss / d mask_i = sum_j W_2[i, j] dL/dW_2[i, j]. Both come from the weight gradients
of an unchanged model, batch by batch; their absolute values are summed over batches.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from xdistil.distill.trainer import training_batch
from xdistil.pruning.masks import encoder_layers, layer_denses


def importance_batches(source, task, batch_size: int, max_examples: int):
    """Training batches (trainer.training_batch) of the first `max_examples` rows of a stage source."""
    seen = 0
    for _, features, teacher_logits in source.chunks(0):
        for start in range(0, len(features.input_ids), batch_size):
            if seen >= max_examples:
                return
            rows = np.arange(start, min(start + batch_size, len(features.input_ids), start + max_examples - seen))
            seen += len(rows)
            yield training_batch(features, rows, task, teacher_logits)


def unit_importance(model, batches, compute_loss, num_heads: int) -> tuple[np.ndarray, np.ndarray]:
    """(head scores [layers, heads], neuron scores [layers, neurons]) of `model` under `compute_loss(batch,
    training)["loss"]`, accumulated over `batches`. A low score marks a unit the loss hardly depends on."""
    denses = [layer_denses(layer) for layer in encoder_layers(model)]
    weights = [d["attention_output"].kernel for d in denses] + [d["output"].kernel for d in denses]
    layers = len(denses)

    @tf.function(reduce_retracing=True)
    def mask_gradients(batch):
        with tf.GradientTape() as tape:
            loss = compute_loss(batch, training=False)["loss"]
        grads = tape.gradient(loss, weights)
        per_unit = [tf.reduce_sum(tf.cast(w, tf.float32) * tf.cast(g, tf.float32), axis=1)
                    for w, g in zip(weights, grads)]
        heads = [tf.reduce_sum(tf.reshape(u, [num_heads, -1]), axis=1) for u in per_unit[:layers]]
        return tf.abs(tf.stack(heads)), tf.abs(tf.stack(per_unit[layers:]))

    head_scores, neuron_scores = 0.0, 0.0
    for batch in batches:
        heads, neurons = mask_gradients({k: tf.constant(v) for k, v in batch.items()})
        head_scores, neuron_scores = head_scores + heads.numpy(), neuron_scores + neurons.numpy()
    if isinstance(head_scores, float):
        raise ValueError("no examples to measure importance on")
    return np.asarray(head_scores, np.float64), np.asarray(neuron_scores, np.float64)
