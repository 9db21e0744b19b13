"""One training stage: resumable loop over chunks and batches, gradual unfreezing, dev selection."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from xdistil.data.encoding import IGNORE_INDEX
from xdistil.distill.distribution import Distribution
from xdistil.distill.optimization import make_optimizer
from xdistil.distill.sources import batch_order, steps_per_epoch
from xdistil.distill.unfreezing import num_unfrozen_groups, unfreeze_interval
from xdistil.inference.predict import trimmed_length
from xdistil.io_utils import atomic_write_json
from xdistil.progress import format_seconds

log = logging.getLogger(__name__)

BATCH_KEYS = ("input_ids", "attention_mask", "token_type_ids", "labels", "word_ids")
# Padding rows: no real token, no label, no word, no example.
PAD_VALUES = {"input_ids": 0, "attention_mask": 0, "token_type_ids": 0, "labels": IGNORE_INDEX, "word_ids": -1,
              "teacher_logits": 0, "example_mask": 0}
# Global counts that normalise the losses (see stage_losses), the same on every replica.
COUNT_KEYS = ("real_tokens", "logit_positions", "labeled_positions")


@dataclasses.dataclass
class Stage:
    """What a stage trains, on what, with which loss.

    `compute_loss(batch, training)` returns a dict of float32 scalars with the total under "loss".
    `groups` lists the trainable variables top-down; with `gradual` they are unfrozen one by one,
    else all at once. `evaluate()` returns dev metrics (higher `metric` is better) or is None.
    `transform_gradients(gradients, variables)`, if given, returns the gradients to apply (pruning masks
    them to hold pruned weights at zero).
    The stage runs `epochs` epochs, more if that is fewer than `min_steps` steps; early stopping
    (`patience` epochs without dev gain) starts once `min_steps` are done.
    """

    name: str
    model: object
    groups: list
    compute_loss: Callable
    source: object
    epochs: int
    learning_rate: float
    task: object  # the Task: how many positions a batch's logit loss sees
    gradual: bool = False
    extra_variables: list = dataclasses.field(default_factory=list)
    extra_trackables: dict = dataclasses.field(default_factory=dict)
    evaluate: Callable | None = None
    metric: str | None = None
    patience: int | None = None
    min_steps: int = 0
    transform_gradients: Callable | None = None


class TrainerCallback:
    """Hooks around each stage (and around other timed steps of a run, such as the teacher-logit cache)."""

    def on_stage_begin(self, name: str) -> None:
        pass

    def on_stage_end(self, name: str, result: dict) -> None:
        pass


@dataclasses.dataclass
class _StageState:
    """A stage's training state: what the checkpoint holds, and the objects built around it."""

    optimizer: object
    position: dict  # epoch, chunk, batch, bad_epochs: int64 variables
    best: tf.Variable  # best dev score so far
    history: tf.Variable  # JSON list of per-epoch summaries
    epoch_loss: dict  # sum and count of the current epoch's batch losses
    manager: tf.train.CheckpointManager
    epochs: int
    total_steps: int
    unfreeze_interval: int
    write_dir: Path

    def value(self, name: str) -> int:
        return _int(self.position[name])

    @property
    def step(self) -> int:
        return _int(self.optimizer.iterations)

    def epochs_done(self) -> list:
        return json.loads(self.history.numpy().decode())


class StageTrainer:
    """Runs stages under a tf.distribute strategy with checkpoints that allow a resume at any step.

    Every worker trains and restores from the chief's checkpoints; only the chief writes the
    checkpoints, best weights, logs and markers that others read. The other workers save theirs
    into a scratch directory (saving is collective under multi-worker strategies) deleted after
    each stage. `seq_len` is the padded length of static-shape batches (TPU).
    """

    def __init__(self, trainer_config, runtime_config, seq_len: int, distribution: Distribution,
                 checkpoint_root: Path, log_root: Path, callbacks=()):
        self.config = trainer_config
        self.opt_policy = runtime_config.opt_policy
        self.seq_len = seq_len
        self.distribution = distribution
        self.strategy = distribution.strategy
        self.checkpoint_root = Path(checkpoint_root)
        self.log_root = Path(log_root)
        self.callbacks = list(callbacks)
        self.write_root = self.checkpoint_root if distribution.is_chief \
            else self.checkpoint_root / f".worker_{distribution.worker_index}"
        self.batch_size = distribution.global_batch_size(trainer_config.batch_size, runtime_config.batch_size_scope)

    def done_marker(self, stage_name: str) -> Path:
        return self.checkpoint_root / stage_name / "DONE.json"

    def final_weights(self, stage_name: str) -> Path:
        return self.checkpoint_root / stage_name / "final.weights.h5"

    def is_done(self, stage_name: str) -> bool:
        return self.done_marker(stage_name).exists()

    def summary(self, stage_name: str) -> dict:
        """What a finished stage recorded (steps, per-epoch dev history, best dev score)."""
        return json.loads(self.done_marker(stage_name).read_text())

    def run(self, stage: Stage) -> dict:
        """Train one stage to the end (resuming from its checkpoint) and return its summary."""
        if self.is_done(stage.name):
            return self.summary(stage.name)
        for callback in self.callbacks:
            callback.on_stage_begin(stage.name)
        started = time.time()
        state = self._restore(stage)
        writer = tf.summary.create_file_writer(str(self.log_root / stage.name)) if self.distribution.is_chief \
            else tf.summary.create_noop_writer()
        train_steps = {}  # one traced train step per number of unfrozen groups
        meter = _RateMeter()
        while not self._finished(stage, state):
            self._run_epoch(stage, state, writer, train_steps, meter)
            self._end_epoch(stage, state, writer)
        writer.flush()
        result = self._finish(stage, state, time.time() - started)
        for callback in self.callbacks:
            callback.on_stage_end(stage.name, result)
        return result

    def _restore(self, stage: Stage) -> _StageState:
        """Build the optimizer and the position variables, and restore the stage's latest checkpoint."""
        per_epoch = steps_per_epoch(stage.source.rows_per_chunk(), self.batch_size)
        if per_epoch == 0:
            raise ValueError(f"stage {stage.name!r} has no training examples")
        epochs = max(stage.epochs, math.ceil(stage.min_steps / per_epoch))
        total_steps = max(1, per_epoch * epochs)
        all_vars = [v for group in stage.groups for v in group] + list(stage.extra_variables)
        with self.strategy.scope():
            optimizer = make_optimizer(stage.learning_rate, total_steps, self.config.warmup_ratio,
                                       self.config.weight_decay, all_vars, self.opt_policy)
            position = {name: tf.Variable(0, dtype=tf.int64, trainable=False, name=name)
                        for name in ("epoch", "chunk", "batch", "bad_epochs")}
            best = tf.Variable(-np.inf, dtype=tf.float64, trainable=False, name="best")
            epoch_loss = {"sum": tf.Variable(0.0, dtype=tf.float64, trainable=False, name="epoch_loss_sum"),
                          "count": tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_loss_count")}
        history = tf.Variable("[]", dtype=tf.string, trainable=False, name="history")
        checkpoint = tf.train.Checkpoint(model=stage.model, optimizer=optimizer, best=best, history=history,
                                         epoch_loss_sum=epoch_loss["sum"], epoch_loss_count=epoch_loss["count"],
                                         **position, **stage.extra_trackables)
        write_dir = self.write_root / stage.name
        interval = unfreeze_interval(total_steps, len(stage.groups), self.config.unfreeze_fraction) \
            if stage.gradual else 0
        state = _StageState(optimizer, position, best, history, epoch_loss,
                            tf.train.CheckpointManager(checkpoint, str(write_dir), max_to_keep=2), epochs,
                            total_steps, interval, write_dir)
        latest = tf.train.latest_checkpoint(str(self.checkpoint_root / stage.name))
        if latest:
            checkpoint.restore(latest).assert_existing_objects_matched()
            log.info("[%s] resumed at epoch %d chunk %d batch %d (step %d)", stage.name, state.value("epoch"),
                     state.value("chunk"), state.value("batch"), state.step)
        return state

    def _finished(self, stage: Stage, state: _StageState) -> bool:
        """All epochs done, or early stopping due: checked on (re)entering the loop too, so that a run
        killed between the checkpoint and the end of the stage does not train one epoch more."""
        if state.value("epoch") >= state.epochs:
            return True
        if (stage.patience is not None and state.step >= stage.min_steps
                and state.value("bad_epochs") >= stage.patience):
            log.info("[%s] early stop: no dev improvement for %d epochs", stage.name, stage.patience)
            return True
        return False

    def _run_epoch(self, stage: Stage, state: _StageState, writer, train_steps: dict, meter) -> None:
        """Train from the saved position to the end of the epoch, checkpointing every few steps."""
        cfg = self.config
        epoch = state.value("epoch")
        row_multiple = self.batch_size if self.distribution.static_shapes else self.distribution.num_replicas
        length = self.seq_len if self.distribution.static_shapes else None
        for chunk_index, features, teacher_logits in stage.source.chunks(state.value("chunk")):
            lengths = features.attention_mask.sum(axis=1) if cfg.group_by_length else None
            order = batch_order(len(features.input_ids), cfg.seed, stage.name, epoch, chunk_index, lengths,
                                self.batch_size)
            num_batches = math.ceil(len(order) / self.batch_size)
            for b in range(state.value("batch"), num_batches):
                rows = np.sort(order[b * self.batch_size:(b + 1) * self.batch_size])
                arrays = training_batch(features, rows, stage.task, teacher_logits, row_multiple, length)
                batch = self.distribution.distribute_batch(arrays, replicated=COUNT_KEYS)
                step = state.step
                n_groups = num_unfrozen_groups(step, len(stage.groups), state.unfreeze_interval)
                if n_groups not in train_steps:
                    variables = [v for g in stage.groups[:n_groups] for v in g] + list(stage.extra_variables)
                    train_steps[n_groups] = self._make_train_step(stage, state.optimizer, variables)
                losses = train_steps[n_groups](batch)
                state.position["batch"].assign(b + 1)
                state.epoch_loss["sum"].assign_add(float(losses["loss"]))
                state.epoch_loss["count"].assign_add(1)
                meter.add(len(rows))
                if (step + 1) % cfg.log_every_steps == 0 or step + 1 == state.total_steps:
                    values = {k: float(v) for k, v in losses.items()}
                    self._log_progress(stage, writer, step + 1, state.total_steps, values, n_groups, meter)
                if (step + 1) % cfg.checkpoint_every_steps == 0:
                    state.manager.save(checkpoint_number=step + 1)
            state.position["chunk"].assign(chunk_index + 1)
            state.position["batch"].assign(0)

    def _end_epoch(self, stage: Stage, state: _StageState, writer) -> None:
        """Score dev, keep the best weights, count epochs without gain, record the epoch, checkpoint."""
        count = _int(state.epoch_loss["count"])
        summary = {"epoch": state.value("epoch") + 1, "step": state.step,
                   "train_loss": float(state.epoch_loss["sum"].numpy()) / count if count else None}
        improved = True
        if stage.evaluate is not None:
            metrics = stage.evaluate()
            score = float(metrics[stage.metric])
            summary["dev"] = metrics
            improved = score > float(state.best.numpy())
            with writer.as_default(step=state.step):
                for key, value in metrics.items():
                    if isinstance(value, (int, float)):
                        tf.summary.scalar(f"dev/{key}", value)
            log.info("[%s] epoch %d/%d dev %s %.4f%s", stage.name, summary["epoch"], state.epochs, stage.metric,
                     score, " (best)" if improved else "")
            if improved:
                state.best.assign(score)
                save_weights_atomic(stage.model, state.write_dir / "best.weights.h5")
        state.history.assign(json.dumps(state.epochs_done() + [summary]))
        state.position["bad_epochs"].assign(0 if improved else state.value("bad_epochs") + 1)
        state.position["epoch"].assign(state.value("epoch") + 1)
        state.position["chunk"].assign(0)
        state.position["batch"].assign(0)
        state.epoch_loss["sum"].assign(0.0)
        state.epoch_loss["count"].assign(0)
        state.manager.save(checkpoint_number=state.step)

    def _finish(self, stage: Stage, state: _StageState, seconds: float) -> dict:
        """Restore the best dev weights, write the final weights and the DONE marker (chief only)."""
        best_path = state.write_dir / "best.weights.h5"
        if stage.evaluate is not None and best_path.exists():
            stage.model.load_weights(str(best_path))
        result = {"stage": stage.name, "steps": state.step, "epochs": state.epochs,
                  "history": state.epochs_done(), "seconds": round(seconds, 1)}
        if stage.evaluate is not None:
            result["best_dev"] = float(state.best.numpy())
        if self.distribution.is_chief:
            save_weights_atomic(stage.model, self.final_weights(stage.name))
            atomic_write_json(self.done_marker(stage.name), result)
        else:
            shutil.rmtree(state.write_dir, ignore_errors=True)
            with contextlib.suppress(OSError):  # the scratch root goes once it is empty
                self.write_root.rmdir()
        return result

    def _make_train_step(self, stage: Stage, optimizer, variables):
        strategy = self.strategy
        loss_scaled = hasattr(optimizer, "get_scaled_loss")

        def replica_step(batch):
            with tf.GradientTape() as tape:
                losses = stage.compute_loss(batch, training=True)
                loss = optimizer.get_scaled_loss(losses["loss"]) if loss_scaled else losses["loss"]
            grads = tape.gradient(loss, variables)
            if loss_scaled:
                grads = optimizer.get_unscaled_gradients(grads)
            if stage.transform_gradients is not None:
                grads = stage.transform_gradients(grads, variables)
            pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
            optimizer.apply_gradients(pairs)
            return losses

        @tf.function(reduce_retracing=True)
        def step(batch):
            per_replica = strategy.run(replica_step, args=(batch,))
            # Each replica returns its share of the global mean (global normaliser): sum them.
            return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                    for k, v in per_replica.items()}

        return step

    def _log_progress(self, stage, writer, step, total, values, n_groups, meter):
        with writer.as_default(step=step):
            for key, value in values.items():
                tf.summary.scalar(f"train/{key}", value)
            tf.summary.scalar("train/unfrozen_groups", n_groups)
        rate = meter.rate()
        eta = (total - step) * meter.seconds_per_step() if meter.steps else 0.0
        terms = " ".join(f"{k}={v:.4g}" for k, v in values.items())
        log.info("[%s] step %d/%d %s unfrozen=%d/%d %.1f ex/s eta %s", stage.name, step, total, terms,
                 n_groups, len(stage.groups), rate, format_seconds(eta))


def training_batch(features, rows: np.ndarray, task, teacher_logits=None, row_multiple: int = 1,
                   length: int | None = None) -> dict[str, np.ndarray]:
    """A global training batch as host arrays, with the counts that normalise its losses.

    Sequences are cut to the batch's longest real length (or padded to `length`, for static shapes);
    rows are padded with empty ones up to a multiple of `row_multiple` (the replica count, or the
    batch size for static shapes). `example_mask` marks the real rows.
    """
    length = length or trimmed_length(features.attention_mask[rows])
    arrays = {}
    for key in BATCH_KEYS:
        array = getattr(features, key, None)
        if array is not None:
            arrays[key] = array[rows]
    if teacher_logits is not None:
        arrays["teacher_logits"] = np.asarray(teacher_logits[rows], dtype=np.float32)
    arrays["example_mask"] = np.ones(len(rows), np.float32)
    padded_rows = -(-len(rows) // row_multiple) * row_multiple
    for key, array in arrays.items():
        has_sequence_axis = array.ndim == 3 or (array.ndim == 2 and key != "teacher_logits")
        if has_sequence_axis:
            array = _fit_axis(array, 1, length, PAD_VALUES[key])
        arrays[key] = _fit_axis(array, 0, padded_rows, PAD_VALUES[key])
    arrays["real_tokens"] = np.float32(arrays["attention_mask"].sum())
    arrays["labeled_positions"] = np.float32((arrays["labels"] != IGNORE_INDEX).sum())
    arrays["logit_positions"] = np.float32(task.count_logit_positions(arrays, len(rows)))
    return arrays


def _fit_axis(array: np.ndarray, axis: int, size: int, pad_value) -> np.ndarray:
    """`array` cut or padded (with `pad_value`) to `size` along `axis`."""
    if array.shape[axis] >= size:
        return array[(slice(None),) * axis + (slice(0, size),)]
    widths = [(0, 0)] * array.ndim
    widths[axis] = (0, size - array.shape[axis])
    return np.pad(array, widths, constant_values=pad_value)


def save_weights_atomic(model, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp.{path.name}")
    model.save_weights(str(tmp))
    os.replace(tmp, path)


def _int(variable) -> int:
    return int(variable.numpy())  # a MirroredVariable has no __int__


class _RateMeter:
    def __init__(self):
        self.start = time.perf_counter()
        self.examples = 0
        self.steps = 0

    def add(self, n: int):
        self.examples += n
        self.steps += 1

    def rate(self) -> float:
        return self.examples / max(1e-9, time.perf_counter() - self.start)

    def seconds_per_step(self) -> float:
        return (time.perf_counter() - self.start) / max(1, self.steps)
