"""One training stage: resumable loop over chunks and batches, gradual unfreezing, dev selection."""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from xdistil.distill.optimization import make_optimizer
from xdistil.distill.sources import batch_order, steps_per_epoch
from xdistil.distill.unfreezing import num_unfrozen_groups, unfreeze_interval
from xdistil.inference.predict import trimmed_length
from xdistil.io_utils import atomic_write_json

log = logging.getLogger(__name__)

BATCH_KEYS = ("input_ids", "attention_mask", "token_type_ids", "labels", "word_ids")


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
    """Runs stages under a tf.distribute strategy with checkpoints that allow a resume at any step."""

    def __init__(self, config, strategy, checkpoint_root: Path, log_root: Path):
        self.config = config
        self.strategy = strategy
        self.checkpoint_root = Path(checkpoint_root)
        self.log_root = Path(log_root)

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
        stage_dir = self.checkpoint_root / stage.name
        per_epoch = steps_per_epoch(stage.source.rows_per_chunk(), cfg.batch_size)
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
        manager = tf.train.CheckpointManager(checkpoint, str(stage_dir), max_to_keep=2)
        if manager.latest_checkpoint:
            checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            log.info("[%s] resumed at epoch %d chunk %d batch %d (step %d)", stage.name,
                     int(position["epoch"]), int(position["chunk"]), int(position["batch"]),
                     int(optimizer.iterations))
        interval = unfreeze_interval(total_steps, len(stage.groups), cfg.unfreeze_fraction) if stage.gradual else 0
        steps = {}  # one traced train step per number of unfrozen groups

        def train_step(n_groups):
            if n_groups not in steps:
                variables = [v for g in stage.groups[:n_groups] for v in g] + list(stage.extra_variables)
                steps[n_groups] = self._make_train_step(stage, optimizer, variables)
            return steps[n_groups]

        writer = tf.summary.create_file_writer(str(self.log_root / stage.name))
        best_path = stage_dir / "best.weights.h5"
        history = []
        meter = _RateMeter()
        while int(position["epoch"]) < stage.epochs:
            epoch = int(position["epoch"])
            epoch_losses = []
            for chunk_index, features, teacher_logits in stage.source.chunks(int(position["chunk"])):
                order = batch_order(len(features.input_ids), cfg.seed, stage.name, epoch, chunk_index)
                num_batches = math.ceil(len(order) / cfg.batch_size)
                for b in range(int(position["batch"]), num_batches):
                    rows = np.sort(order[b * cfg.batch_size:(b + 1) * cfg.batch_size])
                    batch = make_batch(features, rows, teacher_logits)
                    step = int(optimizer.iterations)
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
            summary = {"epoch": epoch + 1, "step": int(optimizer.iterations),
                       "train_loss": float(np.mean(epoch_losses)) if epoch_losses else None}
            improved = True
            if stage.evaluate is not None:
                metrics = stage.evaluate()
                score = float(metrics[stage.metric])
                summary["dev"] = metrics
                improved = score > float(best)
                with writer.as_default(step=int(optimizer.iterations)):
                    for key, value in metrics.items():
                        if isinstance(value, (int, float)):
                            tf.summary.scalar(f"dev/{key}", value)
                log.info("[%s] epoch %d/%d dev %s %.4f%s", stage.name, epoch + 1, stage.epochs,
                         stage.metric, score, " (best)" if improved else "")
                if improved:
                    best.assign(score)
                    save_weights_atomic(stage.model, best_path)
            history.append(summary)
            position["bad_epochs"].assign(0 if improved else int(position["bad_epochs"]) + 1)
            position["epoch"].assign(epoch + 1)
            position["chunk"].assign(0)
            position["batch"].assign(0)
            manager.save(checkpoint_number=int(optimizer.iterations))
            if stage.patience is not None and int(position["bad_epochs"]) >= stage.patience:
                log.info("[%s] early stop: no dev improvement for %d epochs", stage.name, stage.patience)
                break
        writer.flush()
        if stage.evaluate is not None and best_path.exists():
            stage.model.load_weights(str(best_path))
        save_weights_atomic(stage.model, self.final_weights(stage.name))
        result = {"stage": stage.name, "steps": int(optimizer.iterations), "history": history}
        if stage.evaluate is not None:
            result["best_dev"] = float(best)
        atomic_write_json(self.done_marker(stage.name), result)
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
            return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
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


def make_batch(features, rows: np.ndarray, teacher_logits=None) -> dict:
    """A training batch as tensors, trimmed to its longest real sequence."""
    length = trimmed_length(features.attention_mask[rows])
    batch = {}
    for key in BATCH_KEYS:
        array = getattr(features, key, None)
        if array is None:
            continue
        array = array[rows]
        batch[key] = tf.constant(array[:, :length] if array.ndim == 2 else array)
    if teacher_logits is not None:
        logits = np.asarray(teacher_logits[rows], dtype=np.float32)
        batch["teacher_logits"] = tf.constant(logits[:, :length] if logits.ndim == 3 else logits)
    return batch


def save_weights_atomic(model, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp.{path.name}")
    model.save_weights(str(tmp))
    os.replace(tmp, path)


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
