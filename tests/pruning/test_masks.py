"""The TensorFlow side: layers dropped for real, pruned heads and neurons zeroed and held at zero in training."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from conftest import add_random_biases, write_tiny_bert
from xdistil.distill.optimization import make_optimizer
from xdistil.distill.stage_losses import cross_entropy_loss
from xdistil.pruning.masks import apply_plan, drop_encoder_layers, encoder_layers, gradient_masker, layer_denses
from xdistil.pruning.plan import PruningPlan
from xdistil.tasks import get_task

HIDDEN, HEADS, INNER = 32, 4, 64


@pytest.fixture
def model(tmp_path):
    path = write_tiny_bert(tmp_path / "m", hidden_size=HIDDEN, num_layers=3, num_heads=HEADS, intermediate_size=INNER,
                           labels=["a", "b"])
    return add_random_biases(get_task("classification").model_class().from_pretrained(str(path)), seed=5)


def test_dropping_layers_builds_a_smaller_model_with_the_other_weights(model):
    smaller = drop_encoder_layers(model, (0, 2))
    assert smaller.config.num_hidden_layers == 1 and len(encoder_layers(smaller)) == 1
    np.testing.assert_array_equal(layer_denses(encoder_layers(smaller)[0])["intermediate"].kernel.numpy(),
                                  layer_denses(encoder_layers(model)[1])["intermediate"].kernel.numpy())
    np.testing.assert_array_equal(smaller.classifier.kernel.numpy(), model.classifier.kernel.numpy())
    np.testing.assert_array_equal(smaller.bert.embeddings.weight.numpy(), model.bert.embeddings.weight.numpy())
    assert drop_encoder_layers(model, ()) is model
    with pytest.raises(ValueError, match="layers 0-2"):
        drop_encoder_layers(model, (3,))


def _batch(seed=0, rows=6, length=9):
    rng = np.random.default_rng(seed)
    return {"input_ids": rng.integers(5, 40, (rows, length)).astype(np.int32),
            "attention_mask": np.ones((rows, length), np.int32),
            "token_type_ids": np.zeros((rows, length), np.int32), "labels": rng.integers(0, 2, rows).astype(np.int32)}


def test_pruned_units_are_zero_and_stay_zero_through_adamw_training(model):
    plan = dataclasses.replace(PruningPlan.unpruned(model.config), kept_heads=((1, 2), (0, 1, 2, 3), (3,)),
                               kept_neurons=(tuple(range(INNER)), tuple(range(0, INNER, 3)), tuple(range(10))))
    apply_plan(model, plan)
    dense = layer_denses(encoder_layers(model)[0])
    d = HIDDEN // HEADS
    assert not dense["query"].kernel.numpy()[:, :d].any() and not dense["value"].bias.numpy()[3 * d:].any()
    assert not dense["attention_output"].kernel.numpy()[:d].any() and dense["attention_output"].kernel.numpy()[d:].any()
    layer_1 = layer_denses(encoder_layers(model)[1])
    assert not layer_1["intermediate"].kernel.numpy()[:, 1].any() and not layer_1["output"].kernel.numpy()[1].any()

    variables = model.trainable_variables
    optimizer = make_optimizer(1e-2, 20, 0.1, 0.01, variables, "float32")
    loss, mask = cross_entropy_loss(model), gradient_masker(model, plan)
    before = {v.name: v.numpy().copy() for v in variables}
    for step in range(4):
        with tf.GradientTape() as tape:
            value = loss(_batch(step), training=True)["loss"]
        grads = mask(tape.gradient(value, variables), variables)
        optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
    assert not dense["query"].kernel.numpy()[:, :d].any() and not dense["attention_output"].kernel.numpy()[:d].any()
    assert not layer_1["output"].kernel.numpy()[1].any() and not layer_1["intermediate"].bias.numpy()[1].any()
    assert not np.array_equal(before[dense["query"].kernel.name][:, d:], dense["query"].kernel.numpy()[:, d:])

    # The masks are what holds a unit at zero once it could move: give head 0's values weights again; its
    # output rows get gradients, which only the masked training drops.
    value = dense["value"].kernel
    value.assign(value.numpy() + np.random.default_rng(0).normal(0, 0.5, value.shape).astype(np.float32))
    for masked, expect_zero in ((True, True), (False, False)):
        with tf.GradientTape() as tape:
            value_loss = loss(_batch(9), training=True)["loss"]
        grads = tape.gradient(value_loss, variables)
        grads = mask(grads, variables) if masked else grads
        optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
        assert (not dense["attention_output"].kernel.numpy()[:d].any()) == expect_zero
    with pytest.raises(ValueError, match="3 layers"):
        apply_plan(drop_encoder_layers(model, (0,)), plan)


def test_the_plan_counts_the_weights_it_zeroes(model):
    plan = dataclasses.replace(PruningPlan.unpruned(model.config), kept_heads=((1, 2), (0, 1, 2, 3), (3,)),
                               kept_neurons=(tuple(range(INNER)), tuple(range(0, INNER, 3)), tuple(range(10))))

    def zeros():
        return sum(int((w.numpy() == 0).sum()) for w in model.weights)

    before = zeros()
    apply_plan(model, plan)
    d = HIDDEN // HEADS
    assert plan.removed_parameters() == (2 + 0 + 3) * (4 * HIDDEN * d + 3 * d) + (0 + 42 + 54) * (2 * HIDDEN + 1)
    assert zeros() - before == plan.removed_parameters()
    assert PruningPlan.unpruned(model.config).removed_parameters() == 0
