"""The stage losses read model outputs by name; the layer-and-logit loss of pruning recovery."""
import xdistil  # noqa: F401

import numpy as np
import tensorflow as tf
from transformers import BertConfig, TFBertForSequenceClassification

from xdistil.distill.stage_losses import layer_and_logit_distillation_loss, logit_distillation_loss
from xdistil.tasks import get_task


def _model(seed):
    tf.keras.utils.set_random_seed(seed)
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, num_labels=2, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    model = TFBertForSequenceClassification(config)
    model(model.dummy_inputs)
    return model


def _batch():
    rng = np.random.default_rng(0)
    mask = np.array([[1] * 8, [1] * 5 + [0] * 3], np.int32)
    return {"input_ids": tf.constant(rng.integers(5, 40, (2, 8)) * mask, tf.int32),
            "attention_mask": tf.constant(mask), "token_type_ids": tf.zeros((2, 8), tf.int32),
            "teacher_logits": tf.constant([[2.0, -1.0], [-0.5, 1.5]])}


def test_the_same_student_as_reference_adds_nothing_to_the_logit_loss():
    task = get_task("classification")
    student, reference = _model(1), _model(1)
    batch = _batch()
    logit_only = logit_distillation_loss(student, task, "mse", 1.0)(batch, training=False)
    both = layer_and_logit_distillation_loss(student, reference, [(1, 1), (2, 2)], 5.0, task, "mse", 1.0)(
        batch, training=False)
    assert float(both["hidden_mse"]) == 0.0
    np.testing.assert_allclose(float(both["loss"]), float(logit_only["loss"]), rtol=1e-6)
    assert float(both["loss"]) > 0


def test_hidden_states_pull_the_student_toward_the_reference_and_only_the_student_learns():
    task = get_task("classification")
    student, reference = _model(1), _model(2)
    batch = _batch()
    compute = layer_and_logit_distillation_loss(student, reference, [(2, 2)], 3.0, task, "mse", 1.0)
    out = compute(batch, training=False)
    logit = float(out["logit_mse"])
    hidden = float(out["hidden_mse"])
    assert hidden > 0 and abs(float(out["loss"]) - (logit + 3.0 * hidden)) < 1e-5
    # Layer 2 of the student against layer 2 of the reference, on real tokens only.
    s = student(batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True).hidden_states[2]
    r = reference(batch["input_ids"], attention_mask=batch["attention_mask"],
                  output_hidden_states=True).hidden_states[2]
    keep = batch["attention_mask"].numpy().astype(bool)
    np.testing.assert_allclose(hidden, np.mean(np.square(s.numpy() - r.numpy()), axis=-1)[keep].mean(), rtol=1e-5)
    with tf.GradientTape() as tape:
        loss = compute(batch, training=True)["loss"]
    variables = student.trainable_variables + reference.trainable_variables
    gradients = tape.gradient(loss, variables)
    n = len(student.trainable_variables)
    assert any(g is not None and np.any(tf.convert_to_tensor(g).numpy()) for g in gradients[:n])
    assert all(g is None for g in gradients[n:])


def test_the_first_token_state_term_reads_the_targets_after_the_logits_through_the_projection():
    task = get_task("classification")
    student = _model(1)
    batch = _batch()
    teacher_state = np.random.default_rng(1).normal(size=(2, 24)).astype(np.float32)
    targets = dict(batch, teacher_logits=tf.concat([batch["teacher_logits"], teacher_state], axis=-1),
                   example_mask=tf.constant([1.0, 0.0]))
    projection = tf.keras.layers.Dense(24)
    projection.build((None, 16))
    out = logit_distillation_loss(student, task, "mse", 1.0, 2.5, projection)(targets, training=False)
    logit_only = logit_distillation_loss(student, task, "mse", 1.0)(
        dict(batch, example_mask=targets["example_mask"]), training=False)
    np.testing.assert_allclose(float(out["logit_mse"]), float(logit_only["loss"]), rtol=1e-6)
    # The student's last hidden state at [CLS], projected, against the teacher's: of the real row only.
    cls = student(batch["input_ids"], attention_mask=batch["attention_mask"],
                  output_hidden_states=True).hidden_states[-1][:, 0]
    projected = projection(cls).numpy()[0]
    expected = np.sum((projected / np.linalg.norm(projected) - teacher_state[0] / np.linalg.norm(teacher_state[0]))
                      ** 2)
    np.testing.assert_allclose(float(out["first_token_state"]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(out["loss"]), float(out["logit_mse"]) + 2.5 * expected, rtol=1e-5)
    with tf.GradientTape() as tape:
        loss = logit_distillation_loss(student, task, "mse", 1.0, 2.5, projection)(targets, training=True)["loss"]
    gradients = tape.gradient(loss, projection.trainable_variables + student.trainable_variables)
    assert all(g is not None for g in gradients[:2]) and np.any(gradients[0].numpy())
