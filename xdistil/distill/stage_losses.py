"""The loss of each stage, built from the masked losses, reading model outputs by name.

A training batch may carry global counts (`real_tokens`, `logit_positions`, `labeled_positions`,
see trainer.training_batch): each loss is then its sum over this batch divided by that count, so
that the replicas' losses add up to the loss of the whole global batch. Without them, each loss is
the mean over this batch.
"""
from __future__ import annotations

import tensorflow as tf

from xdistil.distill.losses import (attention_kl, attention_mse, hidden_state_mse, logit_kl, logit_mse,
                                    masked_cross_entropy, unit_vector_distance)
from xdistil.models.loading import model_inputs


def representation_loss(teacher, student, projections, mapping, distil_attention: bool, attention_loss: str):
    """Stage 1: hidden-state MSE through learned projections (+ attention MSE or KL) on real tokens."""
    attention_fn = attention_kl if attention_loss == "kl" else attention_mse

    def compute(batch, training):
        mask = batch["attention_mask"]
        tokens = batch.get("real_tokens")
        t_out = teacher(model_inputs(teacher, batch), output_hidden_states=True,
                        output_attentions=distil_attention, training=False)
        s_out = student(model_inputs(student, batch), output_hidden_states=True,
                        output_attentions=distil_attention, training=training)
        hidden = tf.add_n([
            hidden_state_mse(projection(tf.cast(s_out.hidden_states[s], tf.float32)),
                             tf.stop_gradient(t_out.hidden_states[t]), mask, tokens)
            for projection, (s, t) in zip(projections, mapping)]) / len(mapping)
        losses = {"hidden_mse": hidden}
        total = hidden
        if distil_attention:
            attention = tf.add_n([
                attention_fn(s_out.attentions[s - 1], tf.stop_gradient(t_out.attentions[t - 1]), mask, tokens)
                for s, t in mapping]) / len(mapping)
            losses[f"attention_{attention_loss}"] = attention
            total = total + attention
        losses["loss"] = total
        return losses

    return compute


def logit_distillation_loss(student, task, loss: str, temperature: float, state_weight: float = 0.0,
                            state_projection=None):
    """Stage 2: student logits against cached teacher logits (MSE, or KL scaled by T^2), at the positions
    the task's logits mean something (NER: first sub-tokens of words; text tasks: the real rows).

    With `state_weight`, the cached teacher targets are the logits followed by the teacher's last hidden state at
    the first token (`TFLogitsAndFirstTokenState`), and the loss adds `state_weight` times the unit-vector distance
    between it and the student's, mapped to the teacher's width by `state_projection`."""

    def compute(batch, training):
        if not state_weight:
            logits = student(model_inputs(student, batch), training=training).logits
            value = _logit_term(logits, batch["teacher_logits"], batch, task, loss, temperature)
            return {"loss": value, f"logit_{loss}": value}
        out = student(model_inputs(student, batch), output_hidden_states=True, training=training)
        num_labels = out.logits.shape[-1]
        targets = batch["teacher_logits"]
        logit = _logit_term(out.logits, targets[:, :num_labels], batch, task, loss, temperature)
        state = unit_vector_distance(state_projection(tf.cast(out.hidden_states[-1][:, 0], tf.float32)),
                                     targets[:, num_labels:], task.logit_loss_mask(batch),
                                     batch.get("logit_positions"))
        return {"loss": logit + state_weight * state, f"logit_{loss}": logit, "first_token_state": state}

    return compute


def _logit_term(logits, teacher_logits, batch, task, loss: str, temperature: float):
    mask = task.logit_loss_mask(batch)
    positions = batch.get("logit_positions")
    if loss == "kl":
        return logit_kl(logits, teacher_logits, temperature, mask, positions)
    return logit_mse(logits, teacher_logits, mask, positions)


def layer_and_logit_distillation_loss(student, reference, layer_pairs, hidden_weight: float, task, loss: str,
                                      temperature: float):
    """Recovery after pruning: the logit loss of `logit_distillation_loss` plus `hidden_weight` times the hidden-state
    MSE of each student layer against the `reference` model of the same width (the student before it was pruned),
    averaged over `layer_pairs` (student, reference) of hidden-state indices, on real tokens."""

    def compute(batch, training):
        out = student(model_inputs(student, batch), output_hidden_states=True, training=training)
        ref = reference(model_inputs(reference, batch), output_hidden_states=True, training=False)
        mask, tokens = batch["attention_mask"], batch.get("real_tokens")
        hidden = tf.add_n([hidden_state_mse(out.hidden_states[s], tf.stop_gradient(ref.hidden_states[r]), mask,
                                            tokens) for s, r in layer_pairs]) / len(layer_pairs)
        logit = _logit_term(out.logits, batch["teacher_logits"], batch, task, loss, temperature)
        return {"loss": logit + hidden_weight * hidden, f"logit_{loss}": logit, "hidden_mse": hidden}

    return compute


def cross_entropy_loss(model):
    """Stage 3 and teacher fine-tuning: cross-entropy on the labeled positions."""

    def compute(batch, training):
        logits = model(model_inputs(model, batch), training=training).logits
        value = masked_cross_entropy(logits, batch["labels"], normalizer=batch.get("labeled_positions"))
        return {"loss": value, "cross_entropy": value}

    return compute
