"""Head and neuron importance: |d loss / d mask| accumulated over batches ranks a planted useless unit last."""
import numpy as np
import pytest

from conftest import add_random_biases, write_tiny_bert
from xdistil.distill.stage_losses import cross_entropy_loss
from xdistil.pruning.importance import unit_importance
from xdistil.pruning.masks import layer_denses
from xdistil.tasks import get_task

HEADS, HIDDEN, INNER = 4, 32, 64
HEAD_SIZE = HIDDEN // HEADS


def _model(tmp_path):
    path = write_tiny_bert(tmp_path / "m", hidden_size=HIDDEN, num_layers=2, num_heads=HEADS, intermediate_size=INNER,
                           labels=["O", "B", "I"])
    return add_random_biases(get_task("ner").model_class().from_pretrained(str(path)), seed=4, scale=0.3)


def _batches(count=3, rows=8, length=10, vocab=40):
    rng = np.random.default_rng(1)
    for _ in range(count):
        mask = (np.arange(length)[None] < rng.integers(4, length + 1, (rows, 1))).astype(np.int32)
        yield {"input_ids": (rng.integers(5, vocab, (rows, length)) * mask).astype(np.int32),
               "attention_mask": mask, "token_type_ids": np.zeros((rows, length), np.int32),
               "labels": np.where(mask > 0, rng.integers(0, 3, (rows, length)), -100).astype(np.int32)}


def _scale_rows(variable, rows, factor):
    value = variable.numpy()
    value[rows] *= factor
    variable.assign(value)


def test_a_planted_useless_head_and_neuron_rank_last(tmp_path):
    model = _model(tmp_path)
    dense = layer_denses(model.bert.encoder.layer[1])
    _scale_rows(dense["attention_output"].kernel, slice(2 * HEAD_SIZE, 3 * HEAD_SIZE), 1e-3)  # head 2 of layer 1
    _scale_rows(dense["output"].kernel, [17], 1e-3)  # neuron 17 of layer 1
    heads, neurons = unit_importance(model, list(_batches()), cross_entropy_loss(model), HEADS)
    assert heads.shape == (2, HEADS) and neurons.shape == (2, INNER)
    assert np.argmin(heads[1]) == 2 and np.argmin(neurons[1]) == 17
    assert heads[1, 2] < 0.01 * np.sort(heads[1])[1]
    assert np.all(heads > 0) and np.argmin(heads.ravel()) == HEADS + 2  # last across layers too


def test_head_score_is_the_summed_absolute_derivative_by_the_head_scale(tmp_path):
    """Checked against finite differences: scaling a head's output-projection rows scales its context."""
    model = _model(tmp_path)
    loss = cross_entropy_loss(model)
    batches = list(_batches(count=2))
    kernel = layer_denses(model.bert.encoder.layer[0])["attention_output"].kernel
    rows, eps = slice(1 * HEAD_SIZE, 2 * HEAD_SIZE), 1e-2
    # a loud head: its loss differences far above float32 rounding of the loss (at this tiny model's scale they
    # were a few dozen ulps, and finite differences moved by 5% with the CPU's kernels)
    _scale_rows(kernel, rows, 20.0)
    heads, _ = unit_importance(model, batches, loss, HEADS)
    derivatives = []
    for batch in batches:
        values = []
        for factor in (1 + eps, 1 / (1 + eps) * (1 - eps)):  # to 1 + eps, then to 1 - eps
            _scale_rows(kernel, rows, factor)
            values.append(float(loss(batch, training=False)["loss"]))
        _scale_rows(kernel, rows, 1 / (1 - eps))
        derivatives.append(abs(values[0] - values[1]) / (2 * eps))
    assert heads[0, 1] == pytest.approx(sum(derivatives), rel=1e-2)
