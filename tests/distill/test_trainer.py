"""StageTrainer: gradual unfreezing in practice, dev selection, the warm-up/decay schedule."""
import xdistil  # noqa: F401

import numpy as np
import pytest
import tensorflow as tf
from transformers import BertConfig, TFBertForSequenceClassification

from xdistil.config import RuntimeConfig, TrainerConfig
from xdistil.data.encoding import Features
from xdistil.distill.distribution import Distribution
from xdistil.distill.optimization import WarmupLinearDecay
from xdistil.distill.sources import LabeledSource
from xdistil.distill.stage_losses import cross_entropy_loss
from xdistil.distill.trainer import Stage, StageTrainer
from xdistil.distill.unfreezing import unfreezing_groups
from xdistil.tasks import get_task


def _model():
    tf.keras.utils.set_random_seed(0)
    config = BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, num_labels=2, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    model = TFBertForSequenceClassification(config)
    model(model.dummy_inputs)
    return model


def _features(n=24, length=6):
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 30, (n, length)).astype(np.int32)
    return Features(ids, np.ones_like(ids), np.zeros_like(ids), rng.integers(0, 2, n).astype(np.int32), None,
                    np.arange(n, dtype=np.int32), n)


def _trainer(config, tmp_path):
    return StageTrainer(config, RuntimeConfig(), 16, Distribution(tf.distribute.get_strategy()), tmp_path / "ckpt",
                        tmp_path / "logs")


def _run(tmp_path, unfreeze_fraction, evaluate=None, epochs=1, model=None):
    config = TrainerConfig(batch_size=4, unfreeze_fraction=unfreeze_fraction, warmup_ratio=0.0, log_every_steps=100)
    model = model or _model()
    groups = unfreezing_groups(model)  # head (pooler + classifier), layer 0, embeddings
    before = [[v.numpy().copy() for v in g] for g in groups]
    stage = Stage(name="s", model=model, groups=groups, gradual=True, compute_loss=cross_entropy_loss(model),
                  source=LabeledSource(_features()), epochs=epochs, learning_rate=1e-2, task=get_task("classification"),
                  evaluate=evaluate, metric="score" if evaluate else None)
    summary = _trainer(config, tmp_path).run(stage)
    changed = [any(not np.array_equal(b, v.numpy()) for b, v in zip(bg, g)) for bg, g in zip(before, groups)]
    return summary, changed, model


def test_groups_stay_frozen_until_their_step(tmp_path):
    # 6 steps, 3 groups, fraction 1.0: a new group every 3 steps -> embeddings never trained.
    summary, changed, _ = _run(tmp_path / "a", unfreeze_fraction=1.0)
    assert summary["steps"] == 6
    assert changed == [True, True, False]
    # fraction 0.5: a new group every 2 steps -> all three trained.
    _, changed, _ = _run(tmp_path / "b", unfreeze_fraction=0.5)
    assert changed == [True, True, True]


def test_best_dev_epoch_is_restored(tmp_path):
    model = _model()
    scores = iter([0.9, 0.1, 0.2])
    weights = []

    def evaluate():
        weights.append(model.classifier.weights[0].numpy().copy())
        return {"score": next(scores)}

    summary, _, _ = _run(tmp_path, unfreeze_fraction=0.0, evaluate=evaluate, epochs=3, model=model)
    assert summary["best_dev"] == pytest.approx(0.9)
    assert [h["dev"]["score"] for h in summary["history"]] == [0.9, 0.1, 0.2]
    np.testing.assert_array_equal(model.classifier.weights[0].numpy(), weights[0])
    assert not np.array_equal(weights[0], weights[-1])


def test_warmup_then_linear_decay():
    schedule = WarmupLinearDecay(peak=1.0, total_steps=10, warmup_steps=2)
    values = [float(schedule(step)) for step in range(11)]
    assert values[0] == pytest.approx(0.5) and values[1] == pytest.approx(1.0)
    assert values[2] == pytest.approx(1.0) and values[6] == pytest.approx(0.5) and values[10] == 0.0
    assert all(a >= b for a, b in zip(values[1:], values[2:]))


def _early_stopping_stage(model, scores, epochs=5, patience=2, min_steps=0):
    return Stage(name="s", model=model, groups=[model.trainable_variables], compute_loss=cross_entropy_loss(model),
                 source=LabeledSource(_features()), epochs=epochs, learning_rate=1e-2, task=get_task("classification"),
                 evaluate=lambda: {"score": next(scores)}, metric="score", patience=patience, min_steps=min_steps)


def test_a_run_killed_after_its_last_checkpoint_does_not_train_past_early_stopping(tmp_path):
    config = TrainerConfig(batch_size=4, warmup_ratio=0.0, log_every_steps=100)
    summary = _trainer(config, tmp_path).run(_early_stopping_stage(_model(), iter([0.5, 0.4, 0.3, 0.9, 0.9])))
    assert len(summary["history"]) == 3  # best at epoch 1, then two epochs without gain
    # A kill between the last checkpoint and the end of the stage: no DONE marker, no final weights.
    (tmp_path / "ckpt" / "s" / "DONE.json").unlink()
    (tmp_path / "ckpt" / "s" / "final.weights.h5").unlink()
    resumed = _trainer(config, tmp_path).run(_early_stopping_stage(_model(), iter([0.9, 0.9])))
    assert resumed["history"] == summary["history"] and resumed["steps"] == summary["steps"]


def test_min_steps_adds_epochs_and_holds_early_stopping_back(tmp_path):
    config = TrainerConfig(batch_size=4, warmup_ratio=0.0, log_every_steps=100)
    summary = _trainer(config, tmp_path).run(_early_stopping_stage(_model(), iter([0.5] + [0.1] * 9), epochs=1,
                                                                   min_steps=20))
    assert summary["epochs"] == 4  # 6 steps per epoch: 4 epochs reach 20 steps
    assert len(summary["history"]) == 4 and summary["steps"] == 24  # no early stop before step 20


def test_history_and_epoch_loss_survive_a_resume_mid_epoch(tmp_path):
    config = TrainerConfig(batch_size=4, warmup_ratio=0.0, log_every_steps=100, checkpoint_every_steps=2)
    straight = _trainer(config, tmp_path / "a").run(_early_stopping_stage(_model(), iter([0.1, 0.2]), epochs=2))

    class Interrupt(Exception):
        pass

    scores = iter([0.1])

    def evaluate_then_stop():
        if next(scores, None) is None:
            raise Interrupt
        return {"score": 0.1}

    stage = _early_stopping_stage(_model(), iter([]), epochs=2)
    stage.evaluate = evaluate_then_stop
    with pytest.raises(Interrupt):  # dies at the end of epoch 2, after checkpoints at steps 8 and 10
        _trainer(config, tmp_path / "b").run(stage)
    resumed = _trainer(config, tmp_path / "b").run(_early_stopping_stage(_model(), iter([0.2]), epochs=2))
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    for before, after in zip(straight["history"], resumed["history"]):
        assert after["train_loss"] == pytest.approx(before["train_loss"], rel=1e-5)
        assert after["dev"] == before["dev"]


def test_batches_grouped_by_length_cover_every_row_once_with_little_padding():
    from xdistil.distill.sources import batch_order

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, 1000)
    order = batch_order(1000, 7, "logit", 0, 3, lengths, batch_size=32)
    assert sorted(order.tolist()) == list(range(1000))
    np.testing.assert_array_equal(order, batch_order(1000, 7, "logit", 0, 3, lengths, batch_size=32))
    assert not np.array_equal(order, batch_order(1000, 7, "logit", 1, 3, lengths, batch_size=32))

    def padding(order):
        batches = [order[i:i + 32] for i in range(0, 1000, 32)]
        return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)

    assert padding(order) < 0.2 * padding(batch_order(1000, 7, "logit", 0, 3))
