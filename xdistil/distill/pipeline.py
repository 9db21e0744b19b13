"""The whole XtremeDistil run: checks, teacher, student, stages 1-3, model directory and metrics.

    run_distillation(config)
      check_distillation          every input, before any model is built (xdistil.preflight)
      claim_run_directory         resume an identical run, or stop before writing anything
      trimmed_vocabulary          --trim_vocabulary: only the pieces the run's text uses
      obtain_teacher              fine-tuned on train unless it has a head; must beat the trivial baseline
      build_student               pretrained / from scratch / teacher layers; compressed embeddings
      TransferSource              transfer chunks with the teacher's logits, cached once
      run_stages                  representation -> logit -> fine-tuning, each resumable
      write_model_directory       model/, metrics.json, the config marked done
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time

import numpy as np
import tensorflow as tf
import tf_keras

from xdistil.config import RESUMABLE_SETTINGS, SECTIONS, DistilConfig, save_run_config, saved_run_identity
from xdistil.data.augmentation import AugmentOptions, augmented_reader
from xdistil.distill.distribution import Distribution
from xdistil.distill.layer_mapping import layer_mapping, resolve_auto
from xdistil.distill.sources import LabeledSource, TransferSource
from xdistil.distill.stage_losses import cross_entropy_loss, logit_distillation_loss, representation_loss
from xdistil.distill.teacher_cache import CACHE_DIR, TeacherLogitCache, lending_caches, teacher_logit_key
from xdistil.distill.teacher_scores import SCORES_FILE, TeacherScores, teacher_score_key
from xdistil.distill.trainer import Stage, StageTrainer
from xdistil.distill.unfreezing import unfreezing_groups
from xdistil.distill.vocabulary import trimmed_vocabulary
from xdistil.errors import XdistilError
from xdistil.fingerprints import checkpoint_fingerprint
from xdistil.inference.predict import TFPredictor
from xdistil.io_utils import atomic_write_json
from xdistil.model_dir import beside_teacher, claim_run_directory, clear_run_directory
from xdistil.models.loading import (has_task_head, load_task_model, save_task_model, save_word_embedding,
                                    word_embedding_variable)
from xdistil.models.student import CALIBRATION_ROWS, build_student
from xdistil.models.vocab_trimming import trim_model_vocab
from xdistil.preflight import DistillationInputs, check_distillation
from xdistil.task_data import Evaluator, TaskData, encode_task_data

log = logging.getLogger(__name__)

# The teacher must beat the trivial baseline on dev by this much (points of its metric x100).
WEAK_TEACHER_MARGIN = 1.0


class WeakTeacherError(XdistilError):
    """The fine-tuned teacher is no better than predicting the majority label (all "O" for NER)."""


def run_identity(config: DistilConfig, inputs: DistillationInputs) -> dict:
    """What makes two runs the same run: settings, labels and input fingerprints (as saved: JSON values)."""
    return json.loads(json.dumps({"settings": config.settings(), "labels": inputs.labels,
                                  "inputs": inputs.fingerprints}))


def run_record(config: DistilConfig, inputs: DistillationInputs, status: str) -> dict:
    """xtremedistil-config.json: the settings, labels and input fingerprints, where the transfer files were
    (absolute paths, for pruning recovery to read them again; fingerprints leave locations out) and the status."""
    transfer_files = None if inputs.transfer_files is None else [os.path.abspath(p) for p in inputs.transfer_files]
    return {**config.settings(), "model_dir": str(config.path), "labels": inputs.labels, "inputs": inputs.fingerprints,
            "transfer_files": transfer_files, "status": status}


def run_distillation(config: DistilConfig, overwrite: bool = False, callbacks=()) -> dict:
    """Run every stage (resuming what a killed run left), write the model directory, return metrics.

    `callbacks` (TrainerCallback) hear about each stage and the teacher-logit cache fill."""
    started = time.time()
    inputs = check_distillation(config)  # reads files and configs only: no TensorFlow op yet
    identity = run_identity(config, inputs)
    distribution = Distribution.create(config.runtime.strategy, config.runtime.num_virtual_cpus, config.runtime.tpu)
    with distribution.lost_worker_errors():
        model_dir = config.path
        claim = claim_run_directory(model_dir, identity, functools.partial(saved_run_identity, sections=SECTIONS),
                                    overwrite, RESUMABLE_SETTINGS)
        distribution.barrier()  # every worker has decided before the chief deletes anything
        if claim == "overwrite" and distribution.is_chief:
            clear_run_directory(model_dir)
        distribution.barrier()
        if claim == "resume":
            log.info("resuming the run in %s", model_dir)
        if distribution.is_chief:
            save_run_config(model_dir, run_record(config, inputs, "running"))
        tf_keras.utils.set_random_seed(config.trainer.seed)
        tf_keras.mixed_precision.set_global_policy(config.runtime.opt_policy)
        inputs, kept_pieces, vocabulary = _vocabulary(config, inputs, distribution)
        trainer = StageTrainer(config.trainer, config.runtime, config.data.seq_len, distribution,
                               model_dir / "checkpoints", model_dir / "logs", callbacks)
        distil = _distil_general if config.data.general_distillation else _distil
        student, metrics = distil(config, inputs, kept_pieces, distribution, trainer, callbacks)
        if vocabulary is not None:
            metrics["vocabulary"] = vocabulary
        metrics["wall_seconds"] = round(time.time() - started, 1)
        metrics["distribution"] = {"strategy": config.runtime.strategy, "replicas": distribution.num_replicas,
                                   "workers": distribution.num_workers, "global_batch_size": trainer.batch_size}
        if distribution.is_chief:
            write_model_directory(config, inputs, student, metrics)
        return metrics


def _vocabulary(config: DistilConfig, inputs: DistillationInputs, distribution):
    """The run's tokenizer: the teacher's, or (--trim_vocabulary) its trimmed copy; returns the inputs with it,
    the kept piece ids (None without trimming) and the trimming report (None)."""
    if not config.data.trim_vocabulary:
        return inputs, None, None
    reader = inputs.transfer_reader(config.data.distil_chunk_size, config.data.max_transfer_lines)
    tokenizer, kept_pieces, report = trimmed_vocabulary(config.data, inputs.task, inputs.splits, reader,
                                                        inputs.tokenizer, config.path, distribution)
    return dataclasses.replace(inputs, tokenizer=tokenizer), kept_pieces, report


def _distil_general(config: DistilConfig, inputs: DistillationInputs, kept_pieces, distribution, trainer,
                    callbacks) -> dict:
    """Task-agnostic distillation: stage 1 alone, on unlabeled text, into a plain encoder."""
    task, checkpoint = inputs.task, config.teacher.pt_teacher_checkpoint
    with distribution.strategy.scope():
        teacher = load_task_model(checkpoint, task, [])
        if kept_pieces is not None:
            teacher = trim_model_vocab(teacher, kept_pieces)
        teacher.trainable = False

    def encode_chunk(examples):
        return task.encode(inputs.tokenizer, examples, {}, config.data.encoding)[0]

    reader = inputs.transfer_reader(config.data.distil_chunk_size, config.data.max_transfer_lines)
    transfer = TransferSource(reader, encode_chunk, teacher=None).without_logits()
    calibration = (encode_chunk(next(reader.chunks(0))[1][:CALIBRATION_ROWS])  # what a narrowed copy ranks units on
                   if config.student.may_narrow else None)
    with distribution.strategy.scope():
        student, start = build_student(config.student, task, teacher, inputs.tokenizer, [], calibration)
    log.info("general distillation: student of %.1fM parameters", student.count_params() / 1e6)
    groups = unfreezing_groups(student, [word_embedding_variable(student)] if config.student.freeze_word_embedding
                               else [])
    stage = representation_stage(config, task, teacher, student, transfer, distribution.strategy, groups,
                                 cut_from(start))
    return student, {"metric": None, "general_distillation": True, "stages": {"representation": trainer.run(stage)},
                     "teacher": {"source": checkpoint, "parameters": int(teacher.count_params())},
                     "student": {"parameters": int(student.count_params()), "start": start}}


def _distil(config: DistilConfig, inputs: DistillationInputs, kept_pieces, distribution, trainer,
            callbacks) -> dict:
    task = inputs.task
    data = encode_task_data(task, inputs.labels, inputs.splits, inputs.tokenizer, config.data.encoding)
    teacher, teacher_source = obtain_teacher(config, task, data, trainer, distribution, inputs.tokenizer,
                                             kept_pieces)
    teacher.trainable = False
    teacher_eval = Evaluator(teacher, task, data.labels, config.trainer.eval_batch_size)
    teacher_scores = TeacherScores(config.path / SCORES_FILE, teacher_score_key(
        teacher=checkpoint_fingerprint(teacher_source), task_files=inputs.fingerprints["task_files"],
        labels=data.labels, encoding=dataclasses.asdict(config.data.encoding)), writer=distribution.is_chief,
        also_read=beside_teacher(teacher_source, SCORES_FILE))
    metrics = {"metric": task.metric,
               "teacher": {"source": teacher_source, "dev": teacher_scores.get("dev", lambda: teacher_eval(data.dev))}}
    log.info("teacher dev %s %.4f", task.metric, metrics["teacher"]["dev"][task.metric])
    metrics["trivial_baseline"] = check_teacher_learned(config, task, data, metrics["teacher"]["dev"])

    with distribution.strategy.scope():
        student, start = build_student(config.student, task, teacher, inputs.tokenizer, data.labels,
                                       calibration=data.train.features)
    log.info("student: %d layers, hidden %d, %d heads, %.1fM parameters", student.config.num_hidden_layers,
             student.config.hidden_size, student.config.num_attention_heads, student.count_params() / 1e6)
    transfer = _transfer_source(config, inputs, data, teacher, teacher_source, distribution, callbacks)
    metrics["stages"] = run_stages(config, task, data, teacher, student, transfer, trainer, distribution,
                                   cut_from(start))

    student_eval = Evaluator(student, task, data.labels, config.trainer.eval_batch_size)
    metrics["student"] = {"dev": student_eval(data.dev)}
    if data.test is not None:  # scored once, at the end, for the selected models
        metrics["teacher"]["test"] = teacher_scores.get("test", lambda: teacher_eval(data.test))
        metrics["student"]["test"] = student_eval(data.test)
    metrics["student"]["parameters"] = int(student.count_params())
    metrics["student"]["start"] = start
    metrics["teacher"]["parameters"] = int(teacher.count_params())
    log.info("teacher dev %.4f | student dev %.4f%s", metrics["teacher"]["dev"][task.metric],
             metrics["student"]["dev"][task.metric],
             f" | teacher test {metrics['teacher']['test'][task.metric]:.4f} student test "
             f"{metrics['student']['test'][task.metric]:.4f}" if data.test is not None else "")
    return student, metrics


def obtain_teacher(config: DistilConfig, task, data: TaskData, trainer: StageTrainer, distribution, tokenizer,
                   kept_pieces=None):
    """The task teacher: model_dir/teacher if present, the checkpoint if it has a head for these labels,
    else the checkpoint fine-tuned on train with dev early stopping (saved to model_dir/teacher). With
    `kept_pieces` (a trimmed vocabulary), the checkpoint's word embeddings are cut to those rows first."""
    saved = config.path / "teacher"
    if (saved / "config.json").exists():
        log.info("reusing fine-tuned teacher %s", saved)
        with distribution.strategy.scope():
            return load_task_model(str(saved), task, data.labels), str(saved)
    checkpoint = config.teacher.pt_teacher_checkpoint
    with distribution.strategy.scope():
        teacher = load_task_model(checkpoint, task, data.labels)
        if kept_pieces is not None and np.array_equal(kept_pieces, np.arange(teacher.config.vocab_size)):
            log.info("teacher %s already has exactly the trimmed vocabulary", checkpoint)
            kept_pieces = None  # a run's trimmed teacher reused on the same text: no copy
        if kept_pieces is not None:
            teacher = trim_model_vocab(teacher, kept_pieces)
    if has_task_head(checkpoint, task, data.labels):
        log.info("teacher %s already has a head for %s", checkpoint, data.labels)
        if kept_pieces is None:
            return teacher, checkpoint
    else:
        log.info("teacher %s has no head for these labels: fine-tuning it on train", checkpoint)
        evaluator = Evaluator(teacher, task, data.labels, config.trainer.eval_batch_size)
        trainer.run(Stage(
            name="teacher", model=teacher, groups=[teacher_trained_variables(teacher, config.teacher)], task=task,
            compute_loss=cross_entropy_loss(teacher), source=LabeledSource(data.train.features),
            epochs=config.teacher.teacher_epochs, min_steps=config.teacher.teacher_min_steps,
            learning_rate=config.teacher.teacher_learning_rate, evaluate=lambda: evaluator(data.dev),
            metric=task.metric, patience=config.trainer.early_stopping_patience))
    if distribution.is_chief:  # the fine-tuned (or trimmed) teacher, with the tokenizer the run uses
        save_task_model(saved, teacher, tokenizer)
    return teacher, str(saved)


def teacher_trained_variables(teacher, settings) -> list:
    """The variables teacher fine-tuning trains: all, or (--teacher_trainable_layers N) the head's and the
    top N encoder layers'. Encoder variables outside the layers, such as MPNet's relative position bias, stay
    frozen with the embeddings (`unfreezing_groups`): every layer reads them, so training them would
    backpropagate through all."""
    if settings.teacher_trainable_layers is None:
        return teacher.trainable_variables
    head_and_layers = unfreezing_groups(teacher)[:1 + settings.teacher_trainable_layers]
    log.info("teacher fine-tuning trains its head and top %d layers", settings.teacher_trainable_layers)
    return [variable for group in head_and_layers for variable in group]


def check_teacher_learned(config: DistilConfig, task, data: TaskData, teacher_dev: dict) -> dict:
    """Stop (unless --allow_weak_teacher) when the teacher does not beat the trivial baseline on dev."""
    baseline = task.trivial_score(data.train.examples, data.dev.examples, data.labels)
    teacher_score, baseline_score = teacher_dev[task.metric], baseline[task.metric]
    if 100.0 * (teacher_score - baseline_score) >= WEAK_TEACHER_MARGIN:
        return baseline
    message = (f"the teacher scores dev {task.metric} {teacher_score:.4f}, not {WEAK_TEACHER_MARGIN:g} point above "
               f"the trivial baseline ({task.trivial_name(data.train.examples, data.labels)}: {baseline_score:.4f}): "
               "a student of it would learn nothing. Fine-tune it longer or faster (--teacher_epochs, "
               "--teacher_min_steps, --teacher_learning_rate, with --overwrite) or give a better "
               "--pt_teacher_checkpoint; --allow_weak_teacher goes on anyway")
    if not config.teacher.allow_weak_teacher:
        raise WeakTeacherError(message, str(config.path / "teacher"))
    log.warning("%s", message)
    return baseline


def _transfer_source(config, inputs: DistillationInputs, data: TaskData, teacher, teacher_source, distribution,
                     callbacks) -> TransferSource:
    """The transfer data in chunks with the teacher's logits, filled into the cache once (by every worker)."""
    task, settings = inputs.task, config.data
    if inputs.transfer_files is None:
        log.warning("no --transfer_file: using the texts of the %d training examples as transfer data",
                    len(data.train.examples))
    label2id = {label: i for i, label in enumerate(data.labels)}

    def encode_chunk(examples):
        return task.encode(inputs.tokenizer, examples, label2id, settings.encoding)[0]

    reader = inputs.transfer_reader(settings.distil_chunk_size, settings.max_transfer_lines)
    reader, augmentation = augmented_reader(reader, lambda: word_embedding_variable(teacher).numpy(), inputs.tokenizer,
                                            AugmentOptions.of_run(dataclasses.asdict(settings), config.trainer.seed))
    with_state = bool(config.distillation.first_token_state_weight)  # the teacher's targets: logits, then state
    cache = None
    if config.distillation.teacher_logit_cache:
        own_text = inputs.transfer_files is None  # the train texts are the transfer data
        key = teacher_logit_key(
            teacher=checkpoint_fingerprint(teacher_source), transfer=inputs.fingerprints["transfer"],
            augmentation=augmentation, train=inputs.fingerprints["task_files"]["train"] if own_text else None,
            seq_len=settings.seq_len, chunk_size=settings.distil_chunk_size, kind=task.kind, labels=data.labels,
            encoding=dataclasses.asdict(settings.encoding), max_transfer_lines=settings.max_transfer_lines,
            max_train_examples=settings.max_train_examples if own_text else None,
            first_token_state=with_state)
        # The chief checks the key (a stale cache is deleted) before any worker writes to it.
        cache = TeacherLogitCache(config.path / CACHE_DIR, key, owner=distribution.is_chief,
                                  also_read=beside_teacher(teacher_source, CACHE_DIR)
                                  + lending_caches(config.distillation.teacher_logits_from))
        distribution.barrier()
    transfer = TransferSource(reader, encode_chunk,
                              TFPredictor(teacher, config.trainer.eval_batch_size, first_token_state=with_state), cache)
    for callback in callbacks:
        callback.on_stage_begin("teacher_logit_cache")
    fill_started = time.time()
    transfer.fill_cache(distribution.worker_index, distribution.num_workers, distribution.barrier)
    for callback in callbacks:
        callback.on_stage_end("teacher_logit_cache", {"seconds": round(time.time() - fill_started, 1)})
    return transfer


def run_stages(config: DistilConfig, task, data: TaskData, teacher, student, transfer: TransferSource,
               trainer: StageTrainer, distribution, student_cut_from=None) -> dict:
    """Stages 1-3 in order; a finished stage is skipped (its final weights carried into the next).
    `student_cut_from`: the teacher layers (0-based) the student was cut from, if it was."""
    frozen = [word_embedding_variable(student)] if config.student.freeze_word_embedding else []
    groups = unfreezing_groups(student, frozen)
    student_eval = Evaluator(student, task, data.labels, config.trainer.eval_batch_size)
    settings = config.distillation
    stage_factories = [
        ("representation", settings.representation_epochs,
         lambda: representation_stage(config, task, teacher, student, transfer, distribution.strategy, groups,
                                      student_cut_from)),
        ("logit", settings.logit_epochs,
         lambda: logit_stage(config, task, teacher, student, transfer, distribution.strategy, groups,
                             evaluate=lambda: student_eval(data.dev))),
        ("finetune", settings.finetune_epochs, lambda: Stage(
            name="finetune", model=student, groups=groups, gradual=True, task=task,
            source=LabeledSource(data.train.features), compute_loss=cross_entropy_loss(student),
            epochs=settings.finetune_epochs, learning_rate=settings.learning_rate,
            evaluate=lambda: student_eval(data.dev), metric=task.metric,
            patience=config.trainer.early_stopping_patience)),
    ]
    stages = {}
    pending_weights = None
    for name, epochs, make_stage in stage_factories:
        if epochs == 0:
            log.info("stage %s: 0 epochs, skipped", name)
            continue
        if trainer.is_done(name):
            pending_weights = trainer.final_weights(name)
            stages[name] = trainer.summary(name)
            continue
        if pending_weights is not None:
            student.load_weights(str(pending_weights))
            pending_weights = None
        stages[name] = trainer.run(make_stage())
    if pending_weights is not None:
        student.load_weights(str(pending_weights))
    return stages


def write_model_directory(config: DistilConfig, inputs: DistillationInputs, student, metrics: dict) -> None:
    """model/ (a plain HF TF model directory with the tokenizer), metrics.json, then the config marked done."""
    model_dir = config.path
    save_task_model(model_dir / "model", student, inputs.tokenizer)
    if config.student.compress_word_embedding or config.student.freeze_word_embedding:
        save_word_embedding(student, model_dir / "word_embedding.npy")
    atomic_write_json(model_dir / "metrics.json", metrics)
    save_run_config(model_dir, {**run_record(config, inputs, "done"), "teacher_source": metrics["teacher"]["source"]})


def cut_from(start: dict):
    """The teacher layers (0-based) a student was cut from, by its `build_student` start; None if it was not."""
    return start["layers"] if start["from"] == "teacher_layers" else None


def logit_stage(config, task, teacher, student, transfer, strategy, groups, evaluate) -> Stage:
    """Stage 2, unfreezing `groups` gradually; with --first_token_state_weight, the projection of the student's
    first-token state to the teacher's width trains beside it (and is dropped afterwards)."""
    settings = config.distillation
    weight = settings.first_token_state_weight
    projection, extra = None, {}
    if weight:
        with strategy.scope():
            projection = tf_keras.layers.Dense(teacher.config.hidden_size, dtype="float32", name="state_projection")
            projection.build((None, student.config.hidden_size))
        extra = {"extra_variables": list(projection.trainable_variables),
                 "extra_trackables": {"state_projection": projection}}
    return Stage(name="logit", model=student, groups=groups, gradual=True, source=transfer, task=task,
                 compute_loss=logit_distillation_loss(student, task, settings.logit_loss, settings.temperature,
                                                      weight, projection),
                 epochs=settings.logit_epochs, learning_rate=settings.distil_learning_rate, evaluate=evaluate,
                 metric=task.metric, **extra)


def representation_stage(config, task, teacher, student, transfer, strategy, groups, student_cut_from=None) -> Stage:
    """Stage 1: every unfrozen student variable (the union of `groups`) trains from the start. The layer mapping's
    "auto" follows `student_cut_from` (`resolve_auto`)."""
    settings = config.distillation
    mapping_spec = resolve_auto(settings.layer_mapping, student_cut_from) if settings.distil_multi_hidden_states \
        else "last"
    mapping = layer_mapping(mapping_spec, student.config.num_hidden_layers, teacher.config.num_hidden_layers)
    if settings.distil_attention and teacher.config.num_attention_heads != student.config.num_attention_heads:
        log.warning("attention distillation with %d student vs %d teacher heads: comparing head-averaged "
                    "attention maps", student.config.num_attention_heads, teacher.config.num_attention_heads)
    log.info("representation distillation, layer mapping (student, teacher): %s", mapping)
    with strategy.scope():
        projections = [tf_keras.layers.Dense(teacher.config.hidden_size, dtype="float32", name=f"projection_{s}")
                       for s, _ in mapping]
        for projection in projections:
            projection.build((None, None, student.config.hidden_size))
    holder = tf.Module()
    holder.layers = projections
    return Stage(
        name="representation", model=student, groups=[[v for group in groups for v in group]], task=task,
        extra_variables=[v for p in projections for v in p.trainable_variables],
        extra_trackables={"projections": holder},
        compute_loss=representation_loss(teacher, student, projections, mapping, settings.distil_attention,
                                         settings.attention_loss),
        source=transfer.without_logits(), epochs=settings.representation_epochs,
        learning_rate=settings.representation_learning_rate or settings.distil_learning_rate)
