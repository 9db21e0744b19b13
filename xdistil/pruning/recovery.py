"""The transfer data of a student's run with its teacher's logits, for ranking and recovery after pruning.

The logits come from the run's own cache (`<model_dir>/cache/teacher_logits`, copied when it was made for
exactly this teacher, transfer data, augmentation and encoding) or are computed once with the run's teacher into
the new run's cache, under the key the run itself used. An augmented run's copies are made again as the run made
them: the same settings and seed, and neighbours from the same teacher's word embeddings.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
from pathlib import Path

from xdistil.data.augmentation import AugmentOptions, augmented_reader
from xdistil.data.transfer import TransferChunkReader, transfer_paths
from xdistil.distill.sources import TransferSource
from xdistil.distill.teacher_cache import CACHE_DIR, TeacherLogitCache, teacher_logit_key
from xdistil.errors import ConfigError
from xdistil.fingerprints import checkpoint_fingerprint, comparable_fingerprint, large_file_fingerprint
from xdistil.inference.predict import TFPredictor
from xdistil.models.loading import load_task_model, load_tokenizer, word_embedding_variable

log = logging.getLogger(__name__)

# What to give instead when a run has no teacher logits to recover on or rank by.
WITHOUT_TEACHER_LOGITS = "give --recovery_logit_epochs 0 --importance_data train"


class _TeacherOnDemand:
    """The run's teacher, loaded only when needed: for a chunk's logits not cached yet, or for its word embeddings
    (the neighbours of an augmented run)."""

    def __init__(self, path: str, task, labels, batch_size: int):
        self.path, self.task, self.labels, self.batch_size = path, task, labels, batch_size
        self._model = self._predictor = None

    def model(self):
        if self._model is None:
            log.info("loading the run's teacher %s", self.path)
            self._model = load_task_model(self.path, self.task, self.labels)
        return self._model

    def word_embeddings(self):
        return word_embedding_variable(self.model()).numpy()

    def logits(self, features, progress: str | None = None):
        if self._predictor is None:
            log.info("computing teacher logits with %s", self.path)
            self._predictor = TFPredictor(self.model(), self.batch_size)
        return self._predictor.logits(features, progress)

    def release(self):
        """Let the teacher's memory go (it is loaded again if asked for more)."""
        self._model = self._predictor = None


def recorded_teacher(model_dir: Path, record: dict) -> str | None:
    """The fine-tuned teacher of the run in `model_dir` (its run config `record`): its teacher/, or the one recorded
    by the run it was fine-tuned (or pruned) from; None when neither is there."""
    saved = Path(model_dir) / "teacher"
    return str(saved) if (saved / "config.json").exists() else record.get("teacher_source")


def run_teacher(source) -> str:
    """The fine-tuned teacher of a model directory's run, which its teacher logits came from."""
    teacher = recorded_teacher(source.path, source.record)
    if not teacher:
        raise ConfigError("recovery_logit_epochs",
                          f"{source.path} has no teacher/ and records no teacher: {WITHOUT_TEACHER_LOGITS}")
    return teacher


def run_transfer_reader(source, paths: list[str] | None = None) -> TransferChunkReader | None:
    """The transfer files of `source`'s run (a ModelDirectory), read in its chunks (without augmented copies);
    None for a run that had no transfer file of its own. A directory fine-tuned or pruned from a run carries that
    run's record of them. `paths`: where they are, as `run_transfer_paths` found them (default: found here)."""
    paths = run_transfer_paths(source) if paths is None else paths
    if paths is None:
        return None
    data = source.record["data"]
    return TransferChunkReader(paths, source.task, data["distil_chunk_size"], data.get("max_transfer_lines"))


def run_transfer_paths(source, moved_to: str | None = None) -> list[str] | None:
    """Where the transfer files of `source`'s run are: the paths its run recorded, or `moved_to` (comma-separated,
    in the run's order). Each must hold what the run read (its recorded size and first-MiB hash); a file gone or
    changed raises ConfigError saying which."""
    record = source.record
    paths = record.get("transfer_files")
    fingerprints = record.get("inputs", {}).get("transfer")
    fingerprints = fingerprints if isinstance(fingerprints, list) else None
    if not paths and fingerprints:  # older versions kept the path in each file's fingerprint
        paths = [entry.get("path") for entry in fingerprints]
    if not paths:
        if moved_to:
            raise _no_transfer_file(source, "source_transfer_file")
        return None
    if moved_to:
        try:
            given = transfer_paths(moved_to)
        except ValueError as error:  # a file not found (InputFileError, naming it) or no path at all
            raise ConfigError("source_transfer_file", str(error)) from error
        if len(given) != len(paths):
            raise ConfigError("source_transfer_file", f"names {len(given)} files; the run of {source.path} read "
                                                      f"{len(paths)}: {', '.join(map(str, paths))}")
        paths = given
    else:
        gone = [path for path in paths if not path or not os.path.isfile(path)]
        if gone:
            raise ConfigError("source_transfer_file", f"the transfer file {gone[0]} of the run of {source.path} "
                                                      "is not there any more: give the run's transfer files where "
                                                      f"they are now, in its order ({', '.join(map(str, paths))})")
    for path, fingerprint in zip(paths, fingerprints or []):
        if comparable_fingerprint(fingerprint) != large_file_fingerprint(path):
            raise ConfigError("source_transfer_file", f"{path} is not the transfer file the run of {source.path} "
                                                      "read (its size or first MiB differs from what the run "
                                                      "recorded)")
    return paths


def required_run_transfer_paths(source, flag: str, hint: str = "", moved_to: str | None = None) -> list[str]:
    """`run_transfer_paths` for a use that cannot do without them: a run with no transfer file of its own raises
    ConfigError naming `flag`, the setting that asked for them (and `hint`, what to give instead)."""
    paths = run_transfer_paths(source, moved_to)
    if paths is None:
        raise _no_transfer_file(source, flag, hint)
    return paths


def _no_transfer_file(source, flag: str, hint: str = "") -> ConfigError:
    message = f"the run of {source.path} had no transfer file of its own"
    return ConfigError(flag, f"{message}: {hint}" if hint else message)


def teacher_transfer(source, output_dir, batch_size: int, is_chief: bool = True,
                     student_tokenizer=None, transfer_files: list[str] | None = None) -> TransferSource:
    """The transfer data of `source`'s run (a ModelDirectory) in its chunks, with the teacher's logits cached
    under `output_dir`. The teacher reads the text as its own tokenizer segments it; the student as
    `student_tokenizer` does (default: the tokenizer of `source`; another one after its vocabulary was pruned).
    `transfer_files`: where the run's transfer files are, as `run_transfer_paths` found them (default: found here)."""
    record, data = source.record, source.record["data"]
    paths = transfer_files or required_run_transfer_paths(source, "recovery_logit_epochs", WITHOUT_TEACHER_LOGITS)
    reader = run_transfer_reader(source, paths)
    teacher_path = run_teacher(source)
    teacher = _TeacherOnDemand(teacher_path, source.task, source.labels, batch_size)
    teacher_tokenizer = load_tokenizer(teacher_path)
    reader, augmentation = augmented_reader(reader, teacher.word_embeddings, teacher_tokenizer,
                                            AugmentOptions.of_run(data, record["trainer"]["seed"]))
    key = teacher_logit_key(
        teacher=checkpoint_fingerprint(teacher_path), transfer=[large_file_fingerprint(p) for p in paths],
        augmentation=augmentation, train=None, seq_len=source.seq_len, chunk_size=data["distil_chunk_size"],
        kind=source.task.kind, labels=source.labels, encoding=dataclasses.asdict(source.encoding),
        max_transfer_lines=data.get("max_transfer_lines"), max_train_examples=None)
    cache = TeacherLogitCache(Path(output_dir) / CACHE_DIR, key, owner=is_chief,
                              also_read=[source.path / CACHE_DIR])
    TransferSource(reader, functools.partial(source.encode, tokenizer=teacher_tokenizer), teacher, cache).fill_cache()
    teacher.release()  # every chunk's logits are cached now; the stages read them from there
    return TransferSource(reader, functools.partial(source.encode, tokenizer=student_tokenizer), teacher, cache)
