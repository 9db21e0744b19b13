"""Checks run before any model is built: every cheap property of the inputs a run will use.

The settings themselves are checked by the config sections when they are built (`xdistil.config`);
what needs the inputs is checked here: task files (every line), label lists, the first chunk of the
transfer data, the teacher's and student's configs and tokenizers (shapes, position limits,
vocabularies, layer choices). Each problem raises an XdistilError naming the flag, file and line, or
checkpoint, so a run never fails after minutes of training on something it could have seen at start.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from xdistil.data.overlap import repeats_of
from xdistil.data.transfer import ExamplesChunkReader, TransferChunkReader, transfer_paths
from xdistil.distill.layer_mapping import layer_mapping, resolve_auto
from xdistil.distill.teacher_cache import lending_caches
from xdistil.errors import ConfigError, InputFileError
from xdistil.fingerprints import checkpoint_fingerprint, large_file_fingerprint, small_file_fingerprint
from xdistil.models.bert_conversion import BERT_FAMILY, cut_architecture_problem
from xdistil.models.loading import CheckpointError, load_config, load_tokenizer, max_sequence_length, resolve_checkpoint
from xdistil.models.student import check_vocabulary_matches
from xdistil.pruning.width import width_targets
from xdistil.task_data import read_task_files
from xdistil.tasks import get_task
from xdistil.tasks.plain_text import PLAIN_TEXT

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DistillationInputs:
    """What the checks read, handed on so that nothing is read twice."""

    task: object
    labels: list[str]
    splits: dict  # "train", "dev", "test" example lists (test may be None)
    tokenizer: object  # the teacher's
    teacher_config: object  # its HF config
    transfer_files: list[str] | None  # None: the texts of the training examples used
    fingerprints: dict  # what the run is made from (task files, transfer data, teacher)

    def transfer_reader(self, chunk_size: int, max_lines: int | None):
        if self.transfer_files is None:
            examples = [self.task.without_labels(e) for e in self.splits["train"]][:max_lines]
            return ExamplesChunkReader(examples, chunk_size)
        return TransferChunkReader(self.transfer_files, self.task, chunk_size, max_lines)


def checked_checkpoint(checkpoint: str, flag: str):
    """(HF config, tokenizer) of a checkpoint, with any problem reported against `flag`."""
    try:
        return load_config(checkpoint), load_tokenizer(checkpoint)
    except CheckpointError as error:
        raise ConfigError(flag, f"{checkpoint}: {error.what}") from None


def check_seq_len(seq_len: int, hf_config, flag_of_model: str) -> None:
    limit = max_sequence_length(hf_config)
    if limit is not None and seq_len > limit:
        raise ConfigError("seq_len", f"--seq_len {seq_len} is longer than the {limit} positions of the model of "
                                     f"{flag_of_model}; the saved student would fail on long requests")


def task_file_fingerprints(task_dir: str | None, files: dict) -> dict:
    names = {name: path for name, path in files.items() if path is not None and Path(path).exists()}
    if task_dir and (Path(task_dir) / "labels.tsv").exists():
        names["labels"] = Path(task_dir) / "labels.tsv"
    return {name: small_file_fingerprint(path) for name, path in sorted(names.items())}


def check_distillation(config) -> DistillationInputs:
    """Read and check everything a distillation run needs, short of building a model."""
    data = config.data
    task = PLAIN_TEXT if data.general_distillation else get_task(data.task_kind)
    labels, splits = ([], {}) if data.general_distillation else \
        read_task_files(task, data.task, data.max_train_examples)
    teacher_config, tokenizer = checked_checkpoint(config.teacher.pt_teacher_checkpoint, "pt_teacher_checkpoint")
    check_seq_len(data.seq_len, teacher_config, "--pt_teacher_checkpoint")
    trainable = config.teacher.teacher_trainable_layers
    if trainable is not None and trainable > teacher_config.num_hidden_layers:
        raise ConfigError("teacher_trainable_layers", f"{trainable} layers, but the teacher has "
                                                      f"{teacher_config.num_hidden_layers}")
    student_layers = _check_student(config, teacher_config, tokenizer)
    if data.trim_vocabulary:
        _check_trimmable(config, tokenizer)
    for cache in lending_caches(config.distillation.teacher_logits_from):
        if not (cache / "meta.json").is_file():
            raise ConfigError("teacher_logits_from", f"{cache.parent.parent} has no teacher-logit cache ({cache})")
    if config.distillation.first_token_state_weight and task.token_level:
        raise ConfigError("first_token_state_weight", f"a {task.kind} task's teacher targets are per token; the "
                                                      "first-token state is distilled for sentence tasks only")
    if config.distillation.representation_epochs:
        spec = resolve_auto(config.distillation.layer_mapping, config.student.student_layers_from_teacher) \
            if config.distillation.distil_multi_hidden_states else "last"
        try:
            layer_mapping(spec, student_layers, teacher_config.num_hidden_layers)
        except ValueError as error:
            raise ConfigError("layer_mapping", str(error)) from None

    transfer_files = transfer_paths(data.transfer_file) if data.transfer_file else None
    inputs = DistillationInputs(task, labels, splits, tokenizer, teacher_config, transfer_files, {})
    first = next(inputs.transfer_reader(data.distil_chunk_size, data.max_transfer_lines).chunks(0), None)
    if first is None:
        raise InputFileError(",".join(transfer_files or ["train.tsv"]), "the transfer data has no lines (empty, or "
                                                                      "only blank lines): stages 1-2 would learn "
                                                                      "nothing from the teacher")
    task.encode(tokenizer, first[1][:64], {}, data.encoding)
    _warn_of_eval_repeats(first[1], splits)
    folder = Path(data.task or "")
    inputs.fingerprints = {
        "task_files": {} if data.general_distillation else task_file_fingerprints(
            data.task, {"train": folder / "train.tsv", "dev": folder / "dev.tsv", "test": folder / "test.tsv"}),
        "transfer": [large_file_fingerprint(path) for path in transfer_files] if transfer_files else "train texts",
        "teacher": checkpoint_fingerprint(resolve_checkpoint(config.teacher.pt_teacher_checkpoint))}
    return inputs


def _warn_of_eval_repeats(transfer_examples: list, splits: dict) -> None:
    """Warn when transfer examples (of the first chunk) repeat dev or test examples: the student is then taught
    the teacher's answers to what it is scored on, and its score says less about text it has not seen."""
    scored = [*(splits.get("dev") or []), *(splits.get("test") or [])]
    repeats = repeats_of(scored, transfer_examples)
    if repeats:
        log.warning("%d of the first %d transfer examples repeat a dev or test example (case, spacing and "
                    "punctuation aside), e.g. %r: the student's dev/test scores will flatter it",
                    len(repeats), len(transfer_examples), repeats[0])


def _check_trimmable(config, tokenizer) -> None:
    from xdistil.models.vocab_trimming import SUPPORTED_MODELS, backend_state

    kind = backend_state(tokenizer)["model"]["type"]
    if kind not in SUPPORTED_MODELS:
        raise ConfigError("trim_vocabulary", f"the teacher's tokenizer is {kind}; trimming supports "
                                             f"{' and '.join(SUPPORTED_MODELS)} tokenizers")
    student = config.student
    if student.pt_student_checkpoint and not (student.compress_word_embedding or student.remap_student_vocabulary):
        raise ConfigError("trim_vocabulary", "a pretrained student keeps its own vocabulary: give "
                                             "--compress_word_embedding or --remap_student_vocabulary to give it the "
                                             "trimmed teacher's")
    if config.data.trim_vocabulary_corpus and not Path(config.data.trim_vocabulary_corpus).is_file():
        raise InputFileError(config.data.trim_vocabulary_corpus, "not found (--trim_vocabulary_corpus)")


def _check_layers_exist(flag: str, layers, num_layers: int, model: str) -> None:
    if max(layers) >= num_layers:
        raise ConfigError(flag, f"layer {max(layers)} does not exist: {model} has layers 0..{num_layers - 1}")


def _check_student(config, teacher_config, tokenizer) -> int:
    """Check the student's shape against the teacher's; return its number of layers."""
    student = config.student
    teacher_layers = teacher_config.num_hidden_layers
    if student.student_layers_from_teacher is not None:
        _check_layers_exist("student_layers_from_teacher", student.student_layers_from_teacher, teacher_layers,
                            "the teacher")
        problem = cut_architecture_problem(teacher_config.model_type, student.student_architecture,
                                           bool(student.narrowing_sizes))
        if problem:
            raise ConfigError("student_architecture", problem)
        if student.narrowing_sizes:
            width_targets(teacher_config, **student.narrowing_sizes)
        return len(student.student_layers_from_teacher)
    if student.pt_student_checkpoint is not None:
        student_config, _ = checked_checkpoint(student.pt_student_checkpoint, "pt_student_checkpoint")
        check_seq_len(config.data.seq_len, student_config, "--pt_student_checkpoint")
        if not (student.compress_word_embedding or student.remap_student_vocabulary):
            try:
                check_vocabulary_matches(student.pt_student_checkpoint, student_config.vocab_size, tokenizer)
            except CheckpointError as error:
                raise ConfigError("pt_student_checkpoint", f"{error.where}: {error.what}") from None
        width, layers = student_config.hidden_size, student_config.num_hidden_layers
        if student.narrowing_sizes:
            if student_config.model_type not in BERT_FAMILY:
                raise ConfigError("hidden_size", f"narrows a BERT-family --pt_student_checkpoint ("
                                                 f"{', '.join(BERT_FAMILY)}); this one is a "
                                                 f"{student_config.model_type}")
            width = width_targets(student_config, **student.narrowing_sizes, source="student checkpoint")["hidden_size"]
        if student.pt_student_layers is not None:
            _check_layers_exist("pt_student_layers", student.pt_student_layers, layers, "--pt_student_checkpoint")
            layers = len(student.pt_student_layers)
    else:
        width, layers = student.hidden_size, student.num_hidden_layers
    if student.compress_word_embedding and width > teacher_config.hidden_size:
        raise ConfigError("compress_word_embedding", f"the student width {width} is larger than the teacher's "
                                                     f"{teacher_config.hidden_size}: SVD/PCA can only narrow the "
                                                     "teacher's embeddings")
    return layers
