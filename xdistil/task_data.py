"""A task folder's labeled splits: read and validated, then encoded, plus scoring a model on one."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from xdistil.data.readers import LABELS_FILE
from xdistil.errors import InputFileError
from xdistil.inference.predict import TFPredictor

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LabeledSplit:
    """A labeled file, read and encoded."""

    examples: list
    features: object


@dataclasses.dataclass
class TaskData:
    labels: list[str]
    train: LabeledSplit
    dev: LabeledSplit
    test: LabeledSplit | None


def read_task_files(task, task_dir: str | None, max_train_examples: int | None = None,
                    labels: list[str] | None = None, train_file: str | None = None,
                    dev_file: str | None = None, test_file: str | None = None) -> tuple[list[str], dict]:
    """Read and validate train/dev/(test) of a task folder, or the files given, before any model is loaded.

    Without `labels`, the label list comes from the folder's labels.tsv, else from train. Returns the
    labels and {"train", "dev", "test"} example lists (test None when there is no test file).
    """
    if task_dir and not Path(task_dir).is_dir():
        raise InputFileError(task_dir, "no such task folder")
    folder = Path(task_dir) if task_dir else None
    train_path = Path(train_file) if train_file else folder / "train.tsv"
    dev_path = Path(dev_file) if dev_file else folder / "dev.tsv"
    test_path = Path(test_file) if test_file else folder / "test.tsv" if folder else None
    if labels is None and folder is not None and (folder / LABELS_FILE).exists():
        labels = task.label_list(task_dir, [])
    if not train_path.exists():
        raise InputFileError(train_path, "not found: the training examples are needed")
    train = task.read_labeled(train_path, labels)  # with a label list, every label is checked
    if not train:
        raise InputFileError(train_path, "no examples in the file")
    if labels is None:
        labels = task.label_list(task_dir, train)
    if not dev_path.exists():
        raise InputFileError(dev_path, "not found: model selection needs a dev set")
    splits = {"train": train[:max_train_examples] if max_train_examples else train,
              "dev": task.read_labeled(dev_path, labels),
              "test": task.read_labeled(test_path, labels) if test_path and test_path.exists() else None}
    if not splits["dev"]:
        raise InputFileError(dev_path, "no examples in the file")
    if test_file and not test_path.exists():
        raise InputFileError(test_path, "not found")
    return labels, splits


def encode_task_data(task, labels: list[str], splits: dict, tokenizer, encoding) -> TaskData:
    """Encode the labeled splits with the (teacher's) tokenizer and EncodingSettings."""
    label2id = {label: i for i, label in enumerate(labels)}
    encoded = {}
    for name, examples in splits.items():
        if examples is None:
            encoded[name] = None
            continue
        features, stats = task.encode(tokenizer, examples, label2id, encoding)
        if stats.get("split_examples") or stats.get("truncated_examples"):
            log.warning("%s: %s (sequences longer than --seq_len)", name, stats)
        encoded[name] = LabeledSplit(examples, features)
    return TaskData(labels, encoded["train"], encoded["dev"], encoded["test"])


class Evaluator:
    """Scores a model on a labeled split through the shared prediction path."""

    def __init__(self, model, task, labels: list[str], batch_size: int):
        self.predictor = TFPredictor(model, batch_size)
        self.task = task
        self.labels = labels

    def __call__(self, split: LabeledSplit) -> dict:
        logits = self.predictor.logits(split.features)
        predictions = self.task.predictions(logits, split.features, split.examples, self.labels)
        return self.task.score(split.examples, predictions, self.labels)
