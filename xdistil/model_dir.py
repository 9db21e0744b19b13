"""A model directory read back: the contract between the run_* scripts.

    <model_dir>/xtremedistil-config.json   settings by section, labels, input fingerprints, status
    <model_dir>/model/                     the student: a plain HF TF model directory with its tokenizer
    <model_dir>/onnx/                      model.onnx, model.int8.onnx and export.json (written last)

Everything prediction and export need comes from here (no teacher, no hub). Each file is checked as it
is read, and a missing or broken one raises ModelDirectoryError naming it and what to do.
"""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
from pathlib import Path

from xdistil.config import read_run_config
from xdistil.data.encoding import EncodingSettings
from xdistil.errors import ModelDirectoryError
from xdistil.fingerprints import directory_fingerprint, file_sha256
from xdistil.tasks import get_task

log = logging.getLogger(__name__)

ONNX_DIR = "onnx"
VOCABULARY_DIR = "vocabulary"  # a run's trimmed tokenizer (--trim_vocabulary)
EXPORT_REPORT = "export.json"
ONNX_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}


class ModelDirectory:
    """A finished model directory: its settings, task, labels and the student's tokenizer."""

    def __init__(self, path: Path, record: dict, tokenizer):
        self.path = path
        self.record = record
        self.tokenizer = tokenizer
        data = record["data"]
        self.task = get_task(data["task_kind"])
        self.labels: list[str] = list(record["labels"])
        self.seq_len: int = int(data["seq_len"])
        # Directories from before the setting existed kept bare markers.
        self.encoding = EncodingSettings(self.seq_len, data.get("long_sequence_policy", "window"),
                                         data.get("bare_word_marker", "keep"))
        self.task_dir: str | None = data.get("task")

    @classmethod
    def load(cls, path) -> "ModelDirectory":
        """Read the config and the student's tokenizer, checking both."""
        from xdistil.models.loading import CheckpointError, load_tokenizer

        path = Path(path)
        record = read_run_config(path)
        model_path = path / "model"
        if not (model_path / "config.json").exists():
            raise ModelDirectoryError(model_path, "no student model (model/config.json): the run that writes it has "
                                                  "not finished; rerun it to resume")
        try:
            tokenizer = load_tokenizer(str(model_path))
        except CheckpointError as error:
            raise ModelDirectoryError(model_path, error.what) from None
        return cls(path, record, tokenizer)

    @property
    def model_path(self) -> Path:
        return self.path / "model"

    @property
    def label2id(self) -> dict:
        return {label: i for i, label in enumerate(self.labels)}

    def load_tf_model(self, float32: bool = False):
        """The student as a TFAutoModelFor... model (in float32 whatever the global policy, with `float32`)."""
        from xdistil.models.loading import CheckpointError, check_weights_readable

        try:
            check_weights_readable(self.model_path)
        except CheckpointError as error:
            raise ModelDirectoryError(error.where, error.what) from None
        with _float32_policy() if float32 else contextlib.nullcontext():
            return self.task.model_class().from_pretrained(str(self.model_path))

    def encode(self, examples, tokenizer=None):
        """Features of `examples` as the student is fed them (with another tokenizer: as that one segments them)."""
        return self.task.encode(self.tokenizer if tokenizer is None else tokenizer, examples, self.label2id,
                                self.encoding)[0]

    def read_unlabeled(self, path):
        return self.task.read_unlabeled(path)

    def read_labeled(self, path):
        return self.task.read_labeled(path, self.labels)

    def default_file(self, split: str) -> str:
        """The task folder's `split`.tsv that the run was made with."""
        path = Path(self.task_dir or "") / f"{split}.tsv"
        if not self.task_dir or not path.exists():
            flag = "--eval_file"
            raise ModelDirectoryError(self.path, f"the run's task folder has no {split}.tsv ({path}); give {flag}")
        return str(path)

    def predictions(self, logits, features, examples):
        return self.task.predictions(logits, features, examples, self.labels)

    def score(self, examples, predictions) -> dict:
        return self.task.score(examples, predictions, self.labels)

    # --- the ONNX artifacts ------------------------------------------------------------------------------

    @property
    def onnx_dir(self) -> Path:
        return self.path / ONNX_DIR

    def onnx_path(self, precision: str) -> Path:
        return self.onnx_dir / ONNX_FILES[precision]

    def student_fingerprint(self) -> str:
        """What an ONNX export was built from: every file of model/."""
        return directory_fingerprint(self.model_path)

    def checked_export(self) -> dict:
        """The export report, once the ONNX files it lists are checked to be the ones it describes, built from
        the current student. Raises ModelDirectoryError saying why they cannot be served otherwise."""
        report_path = self.onnx_dir / EXPORT_REPORT
        if not report_path.exists():
            state = "an unfinished export left ONNX files without" if any(
                self.onnx_path(p).exists() for p in ONNX_FILES) else "no ONNX export yet:"
            raise ModelDirectoryError(report_path, f"{state} its report; --do_export builds it")
        try:
            report = json.loads(report_path.read_text())
            files, built_from = report["files"], report["student_fingerprint"]
        except (ValueError, KeyError, TypeError) as error:
            raise ModelDirectoryError(report_path, f"unreadable or from an older export ({type(error).__name__}); "
                                                   "--do_export rebuilds it") from None
        if built_from != self.student_fingerprint():
            raise ModelDirectoryError(self.model_path, "the student changed since the ONNX export (its files differ "
                                                       "from what the export was built from); --do_export rebuilds it")
        for name, recorded in files.items():
            path = self.onnx_dir / name
            if not path.exists() or path.stat().st_size != recorded["bytes"] or file_sha256(path) != recorded["sha256"]:
                raise ModelDirectoryError(path, "missing, or not the file the export wrote; --do_export rebuilds it")
        return report


@contextlib.contextmanager
def _float32_policy():
    """Load a model in float32 even if the caller left a mixed-precision policy set."""
    import tf_keras

    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)


# --- writing a run into a directory ------------------------------------------------------------------------

RUN_ENTRIES = frozenset({"xtremedistil-config.json", "model", "teacher", "checkpoints", "cache", "logs", ONNX_DIR,
                         VOCABULARY_DIR, "metrics.json", "word_embedding.npy", "predictions.txt", "eval_tf.json"})


def beside_teacher(teacher_source: str, relative: str | Path) -> list[Path]:
    """`relative` (a path in a run's directory) of the run whose fine-tuned teacher `teacher_source` may be: a run's
    teacher is `<run>/teacher`. That one path, or none for a checkpoint that is not a local directory."""
    teacher = Path(teacher_source)
    return [teacher.parent / relative] if teacher.is_dir() else []


def describe_differences(saved: dict, new: dict, resumable=frozenset()) -> list[str]:
    """What differs between a saved run identity and a new one ({"settings": {section: {key: value}},
    "labels": [...], "inputs": {...}}), one phrase each. Settings in `resumable` may differ. Inputs a saved
    identity did not record (directories from older versions) are not compared."""
    differences = []
    for section, values in new["settings"].items():
        saved_values = saved.get("settings", {}).get(section, {})
        for key, value in values.items():
            if key not in resumable and saved_values.get(key) != value:
                differences.append(f"--{key} {saved_values.get(key)!r} -> {value!r}")
    if saved.get("labels") != new["labels"]:
        differences.append(f"labels {saved.get('labels')} -> {new['labels']}")
    saved_inputs = saved.get("inputs")
    if saved_inputs is not None:
        for key, value in new["inputs"].items():
            if saved_inputs.get(key) != value:
                differences.append(f"{key.replace('_', ' ')} changed")
    return differences


def claim_run_directory(path, new_identity: dict, saved_identity, overwrite: bool, resumable=frozenset()) -> str:
    """Decide whether a run may write into `path`: "new" (nothing there), "resume" (an identical run), or
    "overwrite" (another run, and `overwrite` was given: the caller deletes it with `clear_run_directory`).

    `saved_identity(payload)` turns a saved config payload into an identity comparable to `new_identity`.
    A different run stops here, before anything is written, unless `overwrite`. A non-empty directory that is
    not a model directory is never written into. Nothing is changed on disk, so every worker of a cluster can
    decide before the chief deletes anything.
    """
    path = Path(path)
    if not path.exists() or not any(path.iterdir()):
        return "new"
    config_path = path / "xtremedistil-config.json"
    strangers = sorted(entry.name for entry in path.iterdir()
                       if entry.name not in RUN_ENTRIES and not entry.name.startswith("."))
    if not config_path.exists() or strangers:
        if strangers or not overwrite:
            raise ModelDirectoryError(path, "is not empty and is not an xdistil model directory "
                                            f"({', '.join(strangers[:5]) or 'no xtremedistil-config.json'}); choose a "
                                            "new or empty --model_dir")
    else:
        try:
            differences = describe_differences(saved_identity(read_run_config(path)), new_identity, resumable)
        except ModelDirectoryError as error:
            if not overwrite:
                raise ModelDirectoryError(error.where, f"{error.what}; or give --overwrite to start over") from None
            differences = ["an unreadable config"]
        if not differences:
            return "resume"
        if not overwrite:
            shown = "; ".join(differences[:8]) + (f"; and {len(differences) - 8} more" if len(differences) > 8 else "")
            raise ModelDirectoryError(path, f"holds a run made with other settings or inputs ({shown}). Rerun with "
                                            "its settings to resume it, give --overwrite to delete it and start "
                                            "over, or choose another --model_dir")
    return "overwrite"


def clear_run_directory(path) -> None:
    """Delete what a model directory holds (after `claim_run_directory` said "overwrite")."""
    log.warning("--overwrite: deleting what %s holds", path)
    for entry in Path(path).iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
