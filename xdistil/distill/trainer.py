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
    """

    name: str
    model: object
    groups: list
    compute_loss: Callable
    source: object
    epochs: int
    learning_rate: float
    gradual: bool = False
    extra_variables: list = dataclasses.field(default_factory=list)
    extra_trackables: dict = dataclasses.field(default_factory=dict)
    evaluate: Callable | None = None
    metric: str | None = None
    patience: int | None = None


class StageTrainer:
    """Runs stages under a tf.distribute strategy with checkpoints that allow a resume at any step.

    Every worker trains and restores from the chief's checkpoints; only the chief writes the
    checkpoints, best weights, logs and markers that others read. The other workers save theirs
    into a scratch directory (saving is collective under multi-worker strategies) deleted after
    each stage.
    """

    def __init__(self, config, distribution: Distribution, checkpoint_root: Path, log_root: Path):
        self.config = config
        self.distribution = distribution
        self.strategy = distribution.strategy
        self.checkpoint_root = Path(checkpoint_root)
        self.log_root = Path(log_root)
        self.write_root = self.checkpoint_root if distribution.is_chief \
            else self.checkpoint_root / f".worker_{distribution.worker_index}"
        self.batch_size = distribution.global_batch_size(config.batch_size, config.batch_size_scope)

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
        cfg = self.config
        chief = self.distribution.is_chief
        stage_dir = self.checkpoint_root / stage.name
        write_dir = self.write_root / stage.name
        per_epoch = steps_per_epoch(stage.source.rows_per_chunk(), self.batch_size)
        total_steps = max(1, per_epoch * stage.epochs)
        all_vars = [v for group in stage.groups for v in group] + list(stage.extra_variables)
        with self.strategy.scope():
            optimizer = make_optimizer(stage.learning_rate, total_steps, cfg.warmup_ratio, cfg.weight_decay,
                                       all_vars, cfg.opt_policy)
            position = {name: tf.Variable(value, dtype=tf.int64, trainable=False, name=name)
                        for name, value in (("epoch", 0), ("chunk", 0), ("batch", 0), ("bad_epochs", 0))}
            best = tf.Variable(-np.inf, dtype=tf.float64, trainable=False, name="best")
        checkpoint = tf.train.Checkpoint(model=stage.model, optimizer=optimizer, best=best,
                                         **position, **stage.extra_trackables)
        manager = tf.train.CheckpointManager(checkpoint, str(write_dir), max_to_keep=2)
        latest = tf.train.latest_checkpoint(str(stage_dir))
        if latest:
            checkpoint.restore(latest).assert_existing_objects_matched()
            log.info("[%s] resumed at epoch %d chunk %d batch %d (step %d)", stage.name,
                     _int(position["epoch"]), _int(position["chunk"]), _int(position["batch"]),
                     _int(optimizer.iterations))
        interval = unfreeze_interval(total_steps, len(stage.groups), cfg.unfreeze_fraction) if stage.gradual else 0
        steps = {}  # one traced train step per number of unfrozen groups

        def train_step(n_groups):
            if n_groups not in steps:
                variables = [v for g in stage.groups[:n_groups] for v in g] + list(stage.extra_variables)
                steps[n_groups] = self._make_train_step(stage, optimizer, variables)
            return steps[n_groups]

        writer = tf.summary.create_file_writer(str(self.log_root / stage.name)) if chief \
            else tf.summary.create_noop_writer()
        best_path = write_dir / "best.weights.h5"
        row_multiple = self.batch_size if self.distribution.static_shapes else self.distribution.num_replicas
        length = cfg.seq_len if self.distribution.static_shapes else None
        history = []
        meter = _RateMeter()
        while _int(position["epoch"]) < stage.epochs:
            epoch = _int(position["epoch"])
            epoch_losses = []
            for chunk_index, features, teacher_logits in stage.source.chunks(_int(position["chunk"])):
                order = batch_order(len(features.input_ids), cfg.seed, stage.name, epoch, chunk_index)
                num_batches = math.ceil(len(order) / self.batch_size)
                for b in range(_int(position["batch"]), num_batches):
                    rows = np.sort(order[b * self.batch_size:(b + 1) * self.batch_size])
                    arrays = training_batch(features, rows, teacher_logits, row_multiple, length)
                    batch = self.distribution.distribute_batch(arrays, replicated=COUNT_KEYS)
                    step = _int(optimizer.iterations)
                    n_groups = num_unfrozen_groups(step, len(stage.groups), interval)
                    losses = train_step(n_groups)(batch)
                    position["batch"].assign(b + 1)
                    epoch_losses.append(float(losses["loss"]))
                    meter.add(len(rows))
                    if (step + 1) % cfg.log_every_steps == 0 or step + 1 == total_steps:
                        values = {k: float(v) for k, v in losses.items()}
                        self._log_progress(stage, writer, step + 1, total_steps, values, n_groups, meter)
                    if (step + 1) % cfg.checkpoint_every_steps == 0:
                        manager.save(checkpoint_number=step + 1)
                position["chunk"].assign(chunk_index + 1)
                position["batch"].assign(0)
            summary = {"epoch": epoch + 1, "step": _int(optimizer.iterations),
                       "train_loss": float(np.mean(epoch_losses)) if epoch_losses else None}
            improved = True
            if stage.evaluate is not None:
                metrics = stage.evaluate()
                score = float(metrics[stage.metric])
                summary["dev"] = metrics
                improved = score > float(best.numpy())
                with writer.as_default(step=_int(optimizer.iterations)):
                    for key, value in metrics.items():
                        if isinstance(value, (int, float)):
                            tf.summary.scalar(f"dev/{key}", value)
                log.info("[%s] epoch %d/%d dev %s %.4f%s", stage.name, epoch + 1, stage.epochs,
                         stage.metric, score, " (best)" if improved else "")
                if improved:
                    best.assign(score)
                    save_weights_atomic(stage.model, best_path)
            history.append(summary)
            position["bad_epochs"].assign(0 if improved else _int(position["bad_epochs"]) + 1)
            position["epoch"].assign(epoch + 1)
            position["chunk"].assign(0)
            position["batch"].assign(0)
            manager.save(checkpoint_number=_int(optimizer.iterations))
            if stage.patience is not None and _int(position["bad_epochs"]) >= stage.patience:
                log.info("[%s] early stop: no dev improvement for %d epochs", stage.name, stage.patience)
                break
        writer.flush()
        if stage.evaluate is not None and best_path.exists():
            stage.model.load_weights(str(best_path))
        result = {"stage": stage.name, "steps": _int(optimizer.iterations), "history": history}
        if stage.evaluate is not None:
            result["best_dev"] = float(best.numpy())
        if chief:
            save_weights_atomic(stage.model, self.final_weights(stage.name))
            atomic_write_json(self.done_marker(stage.name), result)
        else:
            shutil.rmtree(write_dir, ignore_errors=True)
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
                 n_groups, len(stage.groups), rate, _format_seconds(eta))


def training_batch(features, rows: np.ndarray, teacher_logits=None, row_multiple: int = 1,
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
    ner = features.word_ids is not None
    arrays["real_tokens"] = np.float32(arrays["attention_mask"].sum())
    arrays["labeled_positions"] = np.float32((arrays["labels"] != IGNORE_INDEX).sum())
    arrays["logit_positions"] = np.float32((arrays["word_ids"] >= 0).sum() if ner else len(rows))
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


def _format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
