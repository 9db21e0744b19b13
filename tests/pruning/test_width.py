"""Width pruning: narrow copies of teacher layers cut from the teacher's weights, ranked by activations."""
import numpy as np
import pytest
import tensorflow as tf

from conftest import add_random_biases, write_tiny_bert
from xdistil.errors import ConfigError
from xdistil.pruning.masks import copy_with_layers, encoder_layers, layer_denses
from xdistil.pruning.width import WidthPlan, activation_importance, choose_width_plan, width_targets
from xdistil.tasks import get_task

HIDDEN, HEADS, INNER = 32, 4, 64
HEAD = HIDDEN // HEADS


@pytest.fixture
def model(tmp_path):
    path = write_tiny_bert(tmp_path / "m", hidden_size=HIDDEN, num_layers=3, num_heads=HEADS, intermediate_size=INNER,
                           labels=["a", "b"])
    return add_random_biases(get_task("classification").model_class().from_pretrained(str(path)), seed=5)


def _inputs(seed=0, rows=5, length=11):
    rng = np.random.default_rng(seed)
    mask = np.ones((rows, length), np.int32)
    mask[1, 7:] = 0
    return {"input_ids": rng.integers(5, 40, (rows, length)).astype(np.int32), "attention_mask": mask,
            "token_type_ids": np.zeros((rows, length), np.int32)}


def _logits(model, inputs):
    return model(inputs, training=False).logits.numpy()


def test_a_narrow_copy_is_cut_from_the_teachers_weights(model):
    plan = WidthPlan(channels=tuple(range(0, HIDDEN, 2)), heads=((0, 3), (1, 2)),
                     neurons=(tuple(range(0, INNER, 2)), tuple(range(1, INNER, 2))), head_size=HEAD)
    narrow = copy_with_layers(model, [0, 2], plan)
    assert (narrow.config.hidden_size, narrow.config.num_attention_heads, narrow.config.intermediate_size,
            narrow.config.num_hidden_layers) == (16, 2, 32, 2)
    channels = list(plan.channels)
    columns = list(range(0, HEAD)) + list(range(3 * HEAD, 4 * HEAD))  # heads 0 and 3 of teacher layer 0
    teacher_layer, narrow_layer = layer_denses(encoder_layers(model)[0]), layer_denses(encoder_layers(narrow)[0])
    np.testing.assert_array_equal(narrow_layer["query"].kernel.numpy(),
                                  teacher_layer["query"].kernel.numpy()[channels][:, columns])
    np.testing.assert_array_equal(narrow_layer["value"].bias.numpy(), teacher_layer["value"].bias.numpy()[columns])
    np.testing.assert_array_equal(narrow_layer["attention_output"].kernel.numpy(),
                                  teacher_layer["attention_output"].kernel.numpy()[columns][:, channels])
    second = layer_denses(encoder_layers(narrow)[1])
    neurons = list(plan.neurons[1])
    np.testing.assert_array_equal(second["output"].kernel.numpy(),
                                  layer_denses(encoder_layers(model)[2])["output"].kernel.numpy()[neurons][:, channels])
    np.testing.assert_array_equal(second["intermediate"].bias.numpy(),
                                  layer_denses(encoder_layers(model)[2])["intermediate"].bias.numpy()[neurons])
    np.testing.assert_array_equal(narrow.bert.embeddings.weight.numpy(), model.bert.embeddings.weight.numpy()[:, channels])
    np.testing.assert_array_equal(narrow.bert.pooler.dense.kernel.numpy(),
                                  model.bert.pooler.dense.kernel.numpy()[channels][:, channels])
    np.testing.assert_array_equal(narrow.classifier.kernel.numpy(), model.classifier.kernel.numpy()[channels])
    np.testing.assert_array_equal(encoder_layers(narrow)[1].bert_output.LayerNorm.gamma.numpy(),
                                  encoder_layers(model)[2].bert_output.LayerNorm.gamma.numpy()[channels])
    assert _logits(narrow, _inputs()).shape == (5, 2)


def test_a_plan_that_keeps_everything_copies_the_model_exactly(model):
    plan = WidthPlan(channels=tuple(range(HIDDEN)), heads=(tuple(range(HEADS)),) * 2,
                     neurons=(tuple(range(INNER)),) * 2, head_size=HEAD)
    np.testing.assert_allclose(_logits(copy_with_layers(model, [0, 1], plan), _inputs()),
                               _logits(copy_with_layers(model, [0, 1]), _inputs()), rtol=1e-5, atol=1e-6)


def test_a_head_made_of_two_teacher_heads_attends_by_the_sum_of_their_logits(model):
    plan = WidthPlan(channels=tuple(range(HIDDEN)), heads=(tuple(range(HEADS)),), neurons=(tuple(range(INNER)),),
                     head_size=HEAD, teacher_heads_per_head=2)
    merged = copy_with_layers(model, [0], plan)
    assert (merged.config.num_attention_heads, merged.config.hidden_size) == (HEADS // 2, HIDDEN)
    inputs = _inputs()
    teacher = model(inputs, output_attentions=True, training=False).attentions[0].numpy()  # [b, 4, t, t]
    student = merged(inputs, output_attentions=True, training=False).attentions[0].numpy()  # [b, 2, t, t]
    keys = inputs["attention_mask"][:, None, None, :].astype(bool)
    for head in range(HEADS // 2):
        # softmax(s0 + s1) = exp(s0 + s1) / Z: its log differs from log softmax(s0) + log softmax(s1) by a
        # constant over the (unmasked) keys of each query
        with np.errstate(divide="ignore", invalid="ignore"):  # masked keys have probability 0
            gap = np.log(student[:, head]) - np.log(teacher[:, 2 * head]) - np.log(teacher[:, 2 * head + 1])
        gap = np.where(keys[:, 0], gap, np.nan)
        spread = np.nanmax(gap, axis=-1) - np.nanmin(gap, axis=-1)
        assert np.nanmax(spread) < 1e-3
    assert not np.allclose(student[:, 0], teacher[:, 0], atol=1e-3)  # one softmax over the sum: not a copy
    with pytest.raises(ValueError, match="3 teacher heads do not group by 2"):
        WidthPlan(channels=tuple(range(24)), heads=((0, 1, 3),), neurons=(tuple(range(INNER)),), head_size=HEAD,
                  teacher_heads_per_head=2)


def _silence(model, layer, head, neurons):
    """Make one head and some neurons of a layer contribute nothing (zero value columns / output rows)."""
    dense = layer_denses(encoder_layers(model)[layer])
    value, out = dense["value"], dense["output"]
    cols = slice(head * HEAD, (head + 1) * HEAD)
    kernel, bias = value.kernel.numpy(), value.bias.numpy()
    kernel[:, cols], bias[cols] = 0.0, 0.0
    value.kernel.assign(kernel), value.bias.assign(bias)
    intermediate = dense["intermediate"]
    kernel, bias = intermediate.kernel.numpy(), intermediate.bias.numpy()
    kernel[:, neurons], bias[neurons] = 0.0, 0.0  # gelu(0) = 0: these neurons never fire
    intermediate.kernel.assign(kernel), intermediate.bias.assign(bias)


def test_silent_heads_and_neurons_score_zero_and_are_cut_without_changing_the_output(model):
    silent_neurons = list(range(40, INNER))
    _silence(model, 1, 2, silent_neurons)
    batches = [_inputs(seed) for seed in range(3)]
    importance = activation_importance(model, [0, 1], batches)
    assert importance["heads"].shape == (2, HEADS) and importance["neurons"].shape == (2, INNER)
    assert importance["heads"][1, 2] == 0.0 and (importance["heads"][1, [0, 1, 3]] > 0).all()
    assert not importance["neurons"][1, silent_neurons].any() and (importance["neurons"][1, :40] > 0).all()
    assert (importance["heads"][0] > 0).all() and importance["channels"].shape == (HIDDEN,)

    plan = choose_width_plan(importance, {"hidden_size": 24, "num_attention_heads": 3, "intermediate_size": 40})
    assert plan.heads[1] == (0, 1, 3) and plan.neurons[1] == tuple(range(40)) and len(plan.channels) == 24
    # teacher layer 1 alone at full width (HF needs hidden = heads x head size) without its silent neurons
    plan = choose_width_plan(importance, {"hidden_size": HIDDEN, "num_attention_heads": HEADS,
                                          "intermediate_size": 40})
    one_layer = WidthPlan(channels=plan.channels, heads=plan.heads[1:], neurons=plan.neurons[1:], head_size=HEAD)
    narrow = copy_with_layers(model, [1], one_layer)
    assert narrow.config.intermediate_size == 40
    np.testing.assert_allclose(_logits(narrow, _inputs()), _logits(copy_with_layers(model, [1]), _inputs()),
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="3 heads of size 8 make 24, not the 32 channels kept"):
        WidthPlan(channels=tuple(range(HIDDEN)), heads=((0, 1, 3),), neurons=(tuple(range(INNER)),), head_size=HEAD)


def test_activation_importance_ignores_padding(model):
    inputs = _inputs()
    padded = {key: np.concatenate([value, np.zeros((5, 6), np.int32)], axis=1) for key, value in inputs.items()}
    padded["input_ids"][:, -6:] = 37  # anything: masked
    first, second = (activation_importance(model, [1], [batch]) for batch in (inputs, padded))
    for key in ("channels", "heads", "neurons"):
        np.testing.assert_allclose(first[key], second[key], rtol=1e-4)


def test_width_targets_follow_the_teachers_proportions_and_whole_heads(model):
    config = model.config
    assert width_targets(config, hidden_size=16) == {"hidden_size": 16, "num_attention_heads": 2,
                                                     "intermediate_size": 32}
    assert width_targets(config, num_attention_heads=3) == {"hidden_size": 24, "num_attention_heads": 3,
                                                            "intermediate_size": 48}
    assert width_targets(config, hidden_size=16, num_attention_heads=1) == {"hidden_size": 16, "num_attention_heads": 1,
                                                                            "intermediate_size": 32}
    with pytest.raises(ConfigError, match="multiple of the teacher's head size 8; got 16 / 4") as caught:
        width_targets(config, hidden_size=16, num_attention_heads=4)
    assert caught.value.flag == "--num_attention_heads"
    with pytest.raises(ConfigError, match="multiple of the teacher's head size 8; got 24 / 2") as caught:
        width_targets(config, hidden_size=24, num_attention_heads=2)
    assert caught.value.flag == "--num_attention_heads"
    with pytest.raises(ConfigError, match="must be a multiple of 8; got 12") as caught:
        width_targets(config, hidden_size=12, num_attention_heads=2)
    assert caught.value.flag == "--hidden_size"
    with pytest.raises(ConfigError, match="wider than the teacher's 32") as caught:
        width_targets(config, hidden_size=40)
    assert caught.value.flag == "--hidden_size"
    with pytest.raises(ConfigError, match="larger than the teacher's 64"):
        width_targets(config, hidden_size=16, intermediate_size=80)


def test_a_narrow_copy_trains_and_keeps_its_own_variables(model):
    plan = choose_width_plan(activation_importance(model, [0, 2], [_inputs()]),
                             {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32})
    narrow = copy_with_layers(model, [0, 2], plan)
    before = model.classifier.kernel.numpy().copy()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(narrow(_inputs(), training=True).logits ** 2)
    grads = tape.gradient(loss, narrow.trainable_variables)
    assert all(g is not None for g in grads)
    for g, v in zip(grads, narrow.trainable_variables):
        v.assign_sub(0.1 * tf.convert_to_tensor(g))
    np.testing.assert_array_equal(model.classifier.kernel.numpy(), before)
