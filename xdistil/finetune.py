"""Continue fine-tuning a distilled student on labeled data into a new model directory."""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from pathlib import Path

import tf_keras

from xdistil.config import (RESUMABLE_SETTINGS, RuntimeConfig, Section, TrainerConfig, save_run_config,
                            saved_run_identity, setting)
from xdistil.distill.distribution import Distribution
from xdistil.distill.sources import LabeledSource
from xdistil.distill.stage_losses import (cross_entropy_loss, layer_and_logit_distillation_loss,
                                          logit_distillation_loss)
from xdistil.distill.trainer import Stage, StageTrainer
from xdistil.distill.unfreezing import unfreezing_groups
from xdistil.errors import ConfigError
from xdistil.fingerprints import directory_fingerprint
from xdistil.io_utils import atomic_write_json
from xdistil.model_dir import ModelDirectory, claim_run_directory, clear_run_directory
from xdistil.models.loading import save_task_model, word_embedding_variable
from xdistil.pruning.importance import importance_batches, unit_importance
from xdistil.pruning.masks import gradient_masker
from xdistil.pruning.plan import PRUNING_FILE, PruningPlan
from xdistil.pruning.prune import factorise_embeddings, prune_student, reference_layer_pairs, with_vocabulary_of
from xdistil.pruning.recovery import (WITHOUT_TEACHER_LOGITS, recorded_teacher, required_run_transfer_paths,
                                     run_transfer_paths, run_transfer_reader, teacher_transfer)
from xdistil.pruning.targets import PruningConfig
from xdistil.pruning.vocabulary import prune_vocabulary, training_texts
from xdistil.preflight import checked_checkpoint, check_seq_len, task_file_fingerprints
from xdistil.task_data import Evaluator, encode_task_data, read_task_files

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FinetuneConfig(Section):
    """What run_finetune.py continues from, on which data, and for how long."""

    model_dir: str | None = setting(None, "Model directory of the student to continue from.", required=True)
    output_dir: str | None = setting(None, "New model directory (resumes an identical run found there).",
                                     required=True)
    task: str | None = setting(None, "Task folder with train.tsv and dev.tsv (test.tsv optional).")
    train_file: str | None = setting(None, "Labeled train file (instead of --task).")
    dev_file: str | None = setting(None, "Labeled dev file (instead of --task).")
    test_file: str | None = setting(None, "Labeled test file, scored once at the end.")
    max_train_examples: int | None = setting(None, "Use only the first N training examples.", minimum=1)
    epochs: int = setting(3, "Epochs.", minimum=1)
    learning_rate: float = setting(3e-5, "Peak learning rate (warm-up, then linear decay).", above=0.0)
    gradual_unfreezing: bool = setting(True, "Unfreeze from the top, one layer group at a time.")
    seq_len: int | None = setting(None, "Maximum sub-word sequence length (default: the student's).", minimum=8)

    def check(self):
        if self.model_dir and self.output_dir and Path(self.output_dir).resolve() == Path(self.model_dir).resolve():
            raise ConfigError("output_dir", "must differ from --model_dir (the input model is kept as it was)")
        if not self.task and not (self.train_file and self.dev_file):
            raise ConfigError("task", "give --task, or --train_file and --dev_file")


# The config sections a fine-tuning run is made of, by name (as saved).
RUN_SECTIONS = {"finetune": FinetuneConfig, "trainer": TrainerConfig, "runtime": RuntimeConfig, "pruning": PruningConfig}


def run_finetune(finetune: FinetuneConfig, trainer_config: TrainerConfig = TrainerConfig(),
                 runtime: RuntimeConfig = RuntimeConfig(), overwrite: bool = False,
                 pruning: PruningConfig = PruningConfig()) -> dict:
    """Fine-tune the student of `finetune.model_dir` on labeled data into `finetune.output_dir`.

    Frozen word embeddings stay frozen; dev selects the epoch; an interrupted run resumes from
    `output_dir/checkpoints`. With `pruning` targets the student is first pruned (`xdistil.pruning`) and
    recovers by logit distillation against its teacher on its run's transfer data, then fine-tuning; the
    heads and neurons of a pruned student (its own or inherited) stay zero, factorised word embeddings stay
    frozen, and `model/pruning.json` says which.
    """
    started = time.time()
    source = ModelDirectory.load(finetune.model_dir)
    task = source.task
    labels, splits = read_task_files(task, finetune.task, finetune.max_train_examples, labels=source.labels,
                                     train_file=finetune.train_file, dev_file=finetune.dev_file,
                                     test_file=finetune.test_file)
    seq_len = finetune.seq_len or source.seq_len
    if pruning.prune_vocabulary_min_count and task.token_level and pruning.needs_teacher_logits:
        raise ConfigError("prune_vocabulary_min_count", "a token-level task's teacher logits are per sub-word piece "
                                                        "of the teacher's segmentation, which a pruned vocabulary "
                                                        "changes: give --recovery_logit_epochs 0 --importance_data "
                                                        "train")
    student_config, _ = checked_checkpoint(str(source.model_path), "model_dir")
    check_seq_len(seq_len, student_config, "--model_dir")
    moved = pruning.source_transfer_file
    transfer_files = None  # where the run's transfer files are: checked once, before the run writes anything
    if pruning.needs_teacher_logits:
        transfer_files = required_run_transfer_paths(source, pruning.teacher_logits_setting, WITHOUT_TEACHER_LOGITS,
                                                     moved)
    elif moved or pruning.prune_vocabulary_min_count:
        transfer_files = run_transfer_paths(source, moved)
    folder = Path(finetune.task) if finetune.task else None
    files = {"train": finetune.train_file or folder / "train.tsv", "dev": finetune.dev_file or folder / "dev.tsv",
             "test": finetune.test_file or (folder / "test.tsv" if folder else None)}
    identity = json.loads(json.dumps({  # as saved: JSON values
        "settings": {"finetune": dataclasses.asdict(finetune), "trainer": dataclasses.asdict(trainer_config),
                     "runtime": dataclasses.asdict(runtime), "pruning": dataclasses.asdict(pruning)},
        "labels": labels, "inputs": {"task_files": task_file_fingerprints(finetune.task, files),
                                     "student": directory_fingerprint(source.model_path)}}))
    distribution = Distribution.create(runtime.strategy, runtime.num_virtual_cpus, runtime.tpu)  # before any TF op
    with distribution.lost_worker_errors():
        out = Path(finetune.output_dir)
        claim = claim_run_directory(out, identity, functools.partial(saved_run_identity, sections=RUN_SECTIONS),
                                    overwrite, RESUMABLE_SETTINGS | {"output_dir", "source_transfer_file"})
        distribution.barrier()  # every worker has decided before the chief deletes anything
        if claim == "overwrite" and distribution.is_chief:
            clear_run_directory(out)
        distribution.barrier()
        record = source.record
        payload = {**record, **identity["settings"], "inputs": identity["inputs"], "model_dir": str(out),
                   "data": {**record["data"], "task": finetune.task or record["data"].get("task"), "seq_len": seq_len},
                   "finetuned_from": str(finetune.model_dir), "status": "running"}
        teacher = recorded_teacher(source.path, record)
        if teacher:  # so a student pruned again from this directory recovers on the same teacher
            payload["teacher_source"] = os.path.abspath(teacher)
        if moved:  # and on the same transfer files, where they are now
            payload["transfer_files"] = [os.path.abspath(path) for path in transfer_files]
        if distribution.is_chief:
            save_run_config(out, payload)
        tf_keras.utils.set_random_seed(trainer_config.seed)
        tf_keras.mixed_precision.set_global_policy(runtime.opt_policy)
        encoding = dataclasses.replace(source.encoding, seq_len=seq_len)
        data = encode_task_data(task, labels, splits, source.tokenizer, encoding)
        with distribution.strategy.scope():
            model = source.load_tf_model()
        trainer = StageTrainer(trainer_config, runtime, seq_len, distribution, out / "checkpoints", out / "logs")
        before = Evaluator(model, task, labels, trainer_config.eval_batch_size)(data.dev)
        inherited = PruningPlan.read(source.model_path)
        before_parameters = model.count_params() - (inherited.removed_parameters() if inherited else 0)
        plan, transfer, tokenizer, vocabulary = inherited, None, source.tokenizer, None
        if pruning.prune_vocabulary_min_count:
            texts = training_texts(task, splits["train"], run_transfer_reader(source, transfer_files))
            with distribution.strategy.scope():
                model, tokenizer, vocabulary = prune_vocabulary(model, tokenizer, texts,
                                                                pruning.prune_vocabulary_min_count, task.token_level)
            plan = with_vocabulary_of(plan, model)
            data = encode_task_data(task, labels, splits, tokenizer, encoding)
        if pruning.word_embedding_rank:
            plan = factorise_embeddings(model, plan, pruning.word_embedding_rank)
        if pruning.needs_teacher_logits:
            transfer = teacher_transfer(source, out, trainer_config.eval_batch_size, distribution.is_chief,
                                        student_tokenizer=tokenizer, transfer_files=transfer_files)
        if pruning.prunes_units:
            with distribution.strategy.scope():
                model, plan = prune_student(model, plan, pruning, out / "checkpoints" / PRUNING_FILE,
                                            lambda pruned: _importance(pruned, pruning, transfer, data, task,
                                                                       source.record, trainer.batch_size))
        # Factorised word embeddings stay frozen, so that they stay of their rank.
        freeze = record["student"].get("freeze_word_embedding") or (plan is not None and plan.word_embedding)
        frozen = [word_embedding_variable(model)] if freeze else []
        evaluator = Evaluator(model, task, labels, trainer_config.eval_batch_size)
        masker = gradient_masker(model, plan) if plan is not None else None
        groups = unfreezing_groups(model, frozen)
        stages = {}
        if pruning.active:
            dev_pruned = evaluator(data.dev)
            if pruning.recovery_logit_epochs:
                stages["recovery_logit"] = _run_stage(trainer, Stage(
                    name="recovery_logit", model=model, groups=groups, task=task, source=transfer,
                    compute_loss=_recovery_loss(model, source, pruning, distribution),
                    epochs=pruning.recovery_logit_epochs, learning_rate=pruning.recovery_learning_rate,
                    evaluate=lambda: evaluator(data.dev), metric=task.metric, transform_gradients=masker))
        stages["finetune"] = _run_stage(trainer, Stage(
            name="finetune", model=model, groups=groups, task=task,
            gradual=finetune.gradual_unfreezing, source=LabeledSource(data.train.features),
            compute_loss=cross_entropy_loss(model), epochs=finetune.epochs, learning_rate=finetune.learning_rate,
            evaluate=lambda: evaluator(data.dev), metric=task.metric,
            patience=trainer_config.early_stopping_patience, transform_gradients=masker))
        metrics = {"metric": task.metric, "finetuned_from": str(finetune.model_dir), "stages": stages,
                   "student": {"dev_before": before, "dev": evaluator(data.dev)}}
        if pruning.active:
            metrics["student"]["dev_pruned_before_recovery"] = dev_pruned
            units = plan or PruningPlan.unpruned(model.config)
            metrics["pruning"] = {**units.summary(), "multiply_adds_per_token": units.multiply_adds_per_token(seq_len),
                                  "parameters": {"before": int(before_parameters),
                                                 "after": int(model.count_params() - units.removed_parameters())}}
            if vocabulary is not None:
                metrics["pruning"]["vocabulary"] = vocabulary
            log.info("pruned student: %.2fM parameters as exported (%.2fM before)",
                     metrics["pruning"]["parameters"]["after"] / 1e6, before_parameters / 1e6)
        if data.test is not None:
            metrics["student"]["test"] = evaluator(data.test)
        metrics["wall_seconds"] = round(time.time() - started, 1)
        if not distribution.is_chief:
            return metrics
        save_task_model(out / "model", model, tokenizer, plan.write if plan is not None else None)
        atomic_write_json(out / "metrics.json", metrics)
        save_run_config(out, {**payload, "status": "done"})
        log.info("dev %s %.4f -> %.4f", task.metric, before[task.metric], metrics["student"]["dev"][task.metric])
        return metrics


def _run_stage(trainer: StageTrainer, stage: Stage) -> dict:
    """Train a stage; one a previous run finished is not trained again, its final weights are loaded."""
    if trainer.is_done(stage.name):
        stage.model.load_weights(str(trainer.final_weights(stage.name)))
    return trainer.run(stage)


def _recovery_loss(model, source: ModelDirectory, pruning: PruningConfig, distribution: Distribution):
    """Logit distillation against the teacher's cached logits; with --recovery_hidden_weight, plus the hidden-state
    MSE of each kept layer against the student of `source` as it was before this pruning."""
    distillation = source.record["distillation"]
    if not pruning.recovery_hidden_weight:
        return logit_distillation_loss(model, source.task, distillation["logit_loss"], distillation["temperature"])
    with distribution.strategy.scope():
        reference = source.load_tf_model()
    pairs = reference_layer_pairs(reference.config.num_hidden_layers, pruning.drop_layers or ())
    return layer_and_logit_distillation_loss(model, reference, pairs, pruning.recovery_hidden_weight, source.task,
                                             distillation["logit_loss"], distillation["temperature"])


def _importance(model, pruning: PruningConfig, transfer, data, task, record: dict, batch_size: int):
    """Head and neuron scores of `model`: its logit loss against the teacher on the transfer data, or its
    cross-entropy on train (--importance_data)."""
    if pruning.importance_data == "transfer":
        source = transfer
        loss = logit_distillation_loss(model, task, record["distillation"]["logit_loss"],
                                       record["distillation"]["temperature"])
    else:
        source, loss = LabeledSource(data.train.features), cross_entropy_loss(model)
    batches = importance_batches(source, task, batch_size, pruning.importance_examples)
    return unit_importance(model, batches, loss, model.config.num_attention_heads)
