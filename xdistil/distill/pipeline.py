"""The whole XtremeDistil run: teacher, student, stages 1-3, model directory and metrics."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import tensorflow as tf
import tf_keras

from xdistil.config import DistilConfig, save_run_config
from xdistil.data.encoding import encode
from xdistil.data.transfer import TransferChunkReader, transfer_paths
from xdistil.distill.distribution import Distribution
from xdistil.distill.layer_mapping import layer_mapping
from xdistil.distill.sources import LabeledSource, TransferSource
from xdistil.distill.stage_losses import cross_entropy_loss, logit_distillation_loss, representation_loss
from xdistil.distill.teacher_cache import TeacherLogitCache
from xdistil.distill.trainer import Stage, StageTrainer
from xdistil.distill.unfreezing import unfreezing_groups
from xdistil.evaluate import PRIMARY_METRIC
from xdistil.inference.predict import TFPredictor
from xdistil.io_utils import atomic_save_dir, atomic_write_json
from xdistil.models.loading import (has_task_head, load_task_model, load_tokenizer, save_word_embedding,
                                    word_embedding_variable)
from xdistil.models.student import build_student
from xdistil.task_data import Evaluator, encode_task_data, read_task_files

log = logging.getLogger(__name__)


def obtain_teacher(config, data, trainer, distribution, model_dir: Path):
    """The task teacher: model_dir/teacher if present, the checkpoint if it has a head for these labels,
    else the checkpoint fine-tuned on train with dev early stopping (saved to model_dir/teacher)."""
    strategy = distribution.strategy
    kind, labels = config.task_kind, data.labels
    saved = model_dir / "teacher"
    if (saved / "config.json").exists():
        log.info("reusing fine-tuned teacher %s", saved)
        with strategy.scope():
            return load_task_model(str(saved), kind, labels), str(saved)
    checkpoint = config.pt_teacher_checkpoint
    with strategy.scope():
        teacher = load_task_model(checkpoint, kind, labels)
    if has_task_head(checkpoint, kind, labels):
        log.info("teacher %s already has a head for %s", checkpoint, labels)
        return teacher, checkpoint
    log.info("teacher %s has no head for these labels: fine-tuning it on train", checkpoint)
    evaluator = Evaluator(teacher, kind, labels, config.eval_batch_size)
    trainer.run(Stage(
        name="teacher", model=teacher, groups=[teacher.trainable_variables],
        compute_loss=cross_entropy_loss(teacher), source=LabeledSource(data.train.features),
        epochs=config.teacher_epochs, learning_rate=config.teacher_learning_rate,
        evaluate=lambda: evaluator(data.dev), metric=PRIMARY_METRIC[kind],
        patience=config.early_stopping_patience))
    if distribution.is_chief:
        tokenizer = load_tokenizer(checkpoint)
        atomic_save_dir(saved, lambda tmp: (teacher.save_pretrained(str(tmp)), tokenizer.save_pretrained(str(tmp))))
    return teacher, str(saved)


def _file_fingerprint(path: str) -> dict:
    stat = os.stat(path)
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime": int(stat.st_mtime)}


def _teacher_fingerprint(teacher_source: str) -> dict:
    for weights in ("tf_model.h5", "model.safetensors"):
        path = Path(teacher_source) / weights
        if path.exists():
            return _file_fingerprint(str(path))
    return {"name": teacher_source}


def run_distillation(config: DistilConfig) -> dict:
    """Run every stage (resuming what a killed run left), write the model directory, return metrics."""
    started = time.time()
    distribution = Distribution.create(config.strategy, config.num_virtual_cpus, config.tpu)  # before any TF op
    strategy = distribution.strategy
    chief = distribution.is_chief
    model_dir = config.path
    model_dir.mkdir(parents=True, exist_ok=True)
    tf_keras.utils.set_random_seed(config.seed)
    tf_keras.mixed_precision.set_global_policy(config.opt_policy)
    kind = config.task_kind
    metric = PRIMARY_METRIC[kind]

    labels, splits = read_task_files(config.task, kind, config.max_train_examples)
    transfer_files = transfer_paths(config.transfer_file or str(Path(config.task) / "train.tsv"))
    tokenizer = load_tokenizer(config.pt_teacher_checkpoint)
    data = encode_task_data(labels, splits, tokenizer, kind, config.seq_len, config.long_sequence_policy)
    if chief:
        save_run_config(config, data.labels, {"status": "running"})
    trainer = StageTrainer(config, distribution, model_dir / "checkpoints", model_dir / "logs")

    teacher, teacher_source = obtain_teacher(config, data, trainer, distribution, model_dir)
    teacher.trainable = False
    teacher_eval = Evaluator(teacher, kind, data.labels, config.eval_batch_size)
    metrics = {"metric": metric, "teacher": {"source": teacher_source, "dev": teacher_eval(data.dev)}}
    log.info("teacher dev %s %.4f", metric, metrics["teacher"]["dev"][metric])

    with strategy.scope():
        student = build_student(config, teacher, tokenizer, data.labels)
    frozen = [word_embedding_variable(student)] if config.freeze_word_embedding else []
    groups = unfreezing_groups(student, frozen)
    student_eval = Evaluator(student, kind, data.labels, config.eval_batch_size)
    log.info("student: %d layers, hidden %d, %d heads, %.1fM parameters", student.config.num_hidden_layers,
             student.config.hidden_size, student.config.num_attention_heads, student.count_params() / 1e6)

    label2id = {label: i for i, label in enumerate(data.labels)}
    if not config.transfer_file:
        log.warning("no --transfer_file: using the texts of train.tsv as transfer data")

    def encode_chunk(examples):
        return encode(tokenizer, examples, kind, config.seq_len, label2id, config.long_sequence_policy)[0]

    cache_key = {"teacher": _teacher_fingerprint(teacher_source),
                 "transfer": [_file_fingerprint(path) for path in transfer_files],
                 "seq_len": config.seq_len, "chunk_size": config.distil_chunk_size, "kind": kind,
                 "labels": data.labels, "long_sequence_policy": config.long_sequence_policy,
                 "max_transfer_lines": config.max_transfer_lines}
    reader = TransferChunkReader(transfer_files, kind, config.distil_chunk_size, config.max_transfer_lines)
    cache = None
    if config.teacher_logit_cache:
        # The chief checks the key (a stale cache is deleted) before any worker writes to it.
        cache = TeacherLogitCache(model_dir / "cache" / "teacher_logits", cache_key, owner=chief)
        distribution.barrier()
    transfer = TransferSource(reader, encode_chunk, TFPredictor(teacher, config.eval_batch_size), cache)
    transfer.fill_cache(distribution.worker_index, distribution.num_workers, distribution.barrier)

    stage_factories = [
        ("representation", lambda: _representation_stage(config, teacher, student, transfer, strategy, groups)),
        ("logit", lambda: Stage(
            name="logit", model=student, groups=groups, gradual=True, source=transfer,
            compute_loss=logit_distillation_loss(student, kind, config.logit_loss, config.temperature),
            epochs=config.logit_epochs, learning_rate=config.distil_learning_rate,
            evaluate=lambda: student_eval(data.dev), metric=metric)),
        ("finetune", lambda: Stage(
            name="finetune", model=student, groups=groups, gradual=True,
            source=LabeledSource(data.train.features), compute_loss=cross_entropy_loss(student),
            epochs=config.finetune_epochs, learning_rate=config.learning_rate,
            evaluate=lambda: student_eval(data.dev), metric=metric, patience=config.early_stopping_patience)),
    ]
    stages = {}
    pending_weights = None
    for name, make_stage in stage_factories:
        if trainer.is_done(name):
            pending_weights = trainer.final_weights(name)
            stages[name] = trainer.summary(name)
            continue
        if pending_weights is not None:
            student.load_weights(str(pending_weights))
            pending_weights = None
        stage_started = time.time()
        stages[name] = trainer.run(make_stage())
        stages[name]["seconds"] = round(time.time() - stage_started, 1)
    if pending_weights is not None:
        student.load_weights(str(pending_weights))

    metrics["stages"] = stages
    metrics["student"] = {"dev": student_eval(data.dev)}
    if data.test is not None:  # scored once, at the end, for the selected models
        metrics["teacher"]["test"] = teacher_eval(data.test)
        metrics["student"]["test"] = student_eval(data.test)
    metrics["student"]["parameters"] = int(student.count_params())
    metrics["teacher"]["parameters"] = int(teacher.count_params())
    metrics["wall_seconds"] = round(time.time() - started, 1)
    metrics["distribution"] = {"strategy": config.strategy, "replicas": distribution.num_replicas,
                               "workers": distribution.num_workers, "global_batch_size": trainer.batch_size}
    log.info("teacher dev %.4f | student dev %.4f%s", metrics["teacher"]["dev"][metric],
             metrics["student"]["dev"][metric],
             f" | teacher test {metrics['teacher']['test'][metric]:.4f} student test "
             f"{metrics['student']['test'][metric]:.4f}" if data.test is not None else "")
    if not chief:
        return metrics
    atomic_save_dir(model_dir / "model", lambda tmp: (student.save_pretrained(str(tmp)),
                                                      tokenizer.save_pretrained(str(tmp))))
    if config.compress_word_embedding or config.freeze_word_embedding:
        save_word_embedding(student, model_dir / "word_embedding.npy")
    atomic_write_json(model_dir / "metrics.json", metrics)
    save_run_config(config, data.labels, {"status": "done", "teacher_source": teacher_source})
    return metrics


def _representation_stage(config, teacher, student, transfer, strategy, groups) -> Stage:
    """Stage 1: every unfrozen student variable (the union of `groups`) trains from the start."""
    mapping_spec = config.layer_mapping if config.distil_multi_hidden_states else "last"
    mapping = layer_mapping(mapping_spec, student.config.num_hidden_layers, teacher.config.num_hidden_layers)
    if config.distil_attention:
        _check_attention_shapes(teacher, student)
    log.info("representation distillation, layer mapping (student, teacher): %s", mapping)
    with strategy.scope():
        projections = [tf_keras.layers.Dense(teacher.config.hidden_size, dtype="float32", name=f"projection_{s}")
                       for s, _ in mapping]
        for projection in projections:
            projection.build((None, None, student.config.hidden_size))
    holder = tf.Module()
    holder.layers = projections
    return Stage(
        name="representation", model=student, groups=[[v for group in groups for v in group]],
        extra_variables=[v for p in projections for v in p.trainable_variables],
        extra_trackables={"projections": holder},
        compute_loss=representation_loss(teacher, student, projections, mapping, config.distil_attention,
                                         config.attention_loss),
        source=transfer.without_logits(), epochs=config.representation_epochs,
        learning_rate=config.distil_learning_rate)


def _check_attention_shapes(teacher, student) -> None:
    t_heads, s_heads = teacher.config.num_attention_heads, student.config.num_attention_heads
    if t_heads != s_heads:
        log.warning("attention distillation with %d student vs %d teacher heads: comparing head-averaged "
                    "attention maps", s_heads, t_heads)

