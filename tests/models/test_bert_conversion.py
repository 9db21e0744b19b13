import xdistil  # noqa: F401

import numpy as np
import pytest

from conftest import add_random_biases, write_tiny_bert, write_tiny_mpnet
from xdistil.models.bert_conversion import as_bert
from xdistil.models.loading import load_task_model
from xdistil.tasks import get_task

LABELS = ["neg", "pos", "mixed"]


def _mpnet(tmp_path, task, labels):
    model = load_task_model(str(write_tiny_mpnet(tmp_path / "mpnet", hidden_size=32, num_layers=2, num_heads=4)),
                            get_task(task), labels)
    model(model.dummy_inputs, training=False)
    add_random_biases(model)  # LayerNorm offsets and biases nonzero, as trained
    rng = np.random.default_rng(2)
    for weight in model.weights:  # a relative position bias as large as a trained one's
        if "relative_attention_bias" in weight.name:
            weight.assign(rng.normal(0.0, 2.0, weight.shape).astype(np.float32))
    return model


def _inputs(rows=3, length=9, pad=3):
    rng = np.random.default_rng(0)
    ids = rng.integers(4, 40, (rows, length)).astype(np.int32)
    ids[:, 0], ids[-1, -pad:] = 0, 1  # <s> first; the last row right-padded with <pad> (id 1)
    mask = (ids != 1).astype(np.int32)
    return ids, mask


def _zero_relative_bias(model):
    for weight in model.weights:
        if "relative_attention_bias" in weight.name:
            weight.assign(np.zeros(weight.shape, np.float32))


@pytest.mark.parametrize("task,labels", [("classification", LABELS), ("ner", ["O", "B-PER", "I-PER"])])
def test_without_its_relative_bias_an_mpnet_and_its_bert_copy_compute_the_same(tmp_path, task, labels):
    mpnet = _mpnet(tmp_path, task, labels)
    _zero_relative_bias(mpnet)
    bert = as_bert(mpnet)
    assert bert.config.model_type == "bert" and bert.config.id2label == mpnet.config.id2label
    assert bert.config.pad_token_id == 1 and bert.config.max_position_embeddings == 128  # 130 rows - offset 2
    ids, mask = _inputs()
    expected = mpnet(input_ids=ids, attention_mask=mask, output_hidden_states=True, training=False)
    got = bert(input_ids=ids, attention_mask=mask, output_hidden_states=True, training=False)
    real = mask.astype(bool)
    if task == "ner":
        np.testing.assert_allclose(got.logits.numpy()[real], expected.logits.numpy()[real], atol=1e-5)
    else:  # the RoBERTa-style head is BERT's pooler + classifier
        np.testing.assert_allclose(got.logits.numpy(), expected.logits.numpy(), atol=1e-5)
    for mine, theirs in zip(got.hidden_states, expected.hidden_states):
        np.testing.assert_allclose(mine.numpy()[real], theirs.numpy()[real], atol=1e-5)


def test_the_copy_drops_only_the_relative_position_bias(tmp_path):
    mpnet = _mpnet(tmp_path, "classification", LABELS)
    bert = as_bert(mpnet)
    ids, mask = _inputs()
    real = mask.astype(bool)

    def last_hidden(model):
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, training=False)
        return out.hidden_states[-1].numpy()[real]

    copied = last_hidden(bert)
    assert np.abs(last_hidden(mpnet) - copied).max() > 1e-3  # the bias mattered (100x the tolerance below)
    _zero_relative_bias(mpnet)
    np.testing.assert_allclose(last_hidden(mpnet), copied, atol=1e-5)


def test_the_copy_has_its_own_weights(tmp_path):
    mpnet = _mpnet(tmp_path, "classification", LABELS)
    before = [w.numpy() for w in mpnet.weights]
    bert = as_bert(mpnet)
    for weight in bert.weights:
        weight.assign(weight + 1.0)
    for weight, value in zip(mpnet.weights, before):
        np.testing.assert_array_equal(weight.numpy(), value)


def test_a_bert_has_no_bert_copy(tmp_path):
    bert = load_task_model(str(write_tiny_bert(tmp_path / "bert")), get_task("classification"), LABELS)
    bert(bert.dummy_inputs, training=False)
    with pytest.raises(ValueError, match="no BERT copy"):
        as_bert(bert)
