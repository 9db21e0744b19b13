"""A task folder's labeled splits: read and validated, then encoded, plus scoring a model on one."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from xdistil.data.encoding import encode
from xdistil.data.readers import LABELS_FILE, load_label_list, read_labeled_file
from xdistil.inference.predict import TFPredictor, predictions_from_logits, score_predictions

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


def read_task_files(task_dir: str, kind: str, max_train_examples: int | None = None,
                    labels: list[str] | None = None, train_file: str | None = None,
                    dev_file: str | None = None, test_file: str | None = None) -> tuple[list[str], dict]:
    """Read and validate train/dev/(test) of a task folder, or the files given, before any model is loaded.

    Without `labels`, the label list comes from labels.tsv of the folder, else from train.
    """
    task = Path(task_dir or ".")
    train_path = Path(train_file or task / "train.tsv")
    dev_path = Path(dev_file or task / "dev.tsv")
    test_path = Path(test_file) if test_file else task / "test.tsv" if task_dir else None
    if labels is None and (task / LABELS_FILE).exists():
        labels = load_label_list(task, [], kind)
    train = read_labeled_file(train_path, kind, labels)  # with a label list, every label is checked
    if labels is None:
        labels = load_label_list(task, train, kind)
    if not dev_path.exists():
        raise FileNotFoundError(f"{dev_path} not found: model selection needs a dev set")
    splits = {"train": train[:max_train_examples] if max_train_examples else train,
              "dev": read_labeled_file(dev_path, kind, labels),
              "test": read_labeled_file(test_path, kind, labels) if test_path and test_path.exists() else None}
    return labels, splits


def encode_task_data(labels: list[str], splits: dict, tokenizer, kind: str, seq_len: int,
                     long_sequence_policy: str) -> TaskData:
    """Encode the labeled splits with the (teacher's) tokenizer."""
    label2id = {label: i for i, label in enumerate(labels)}
    encoded = {}
    for name, examples in splits.items():
        if examples is None:
            encoded[name] = None
            continue
        features, stats = encode(tokenizer, examples, kind, seq_len, label2id, long_sequence_policy)
        if stats.get("split_examples") or stats.get("truncated_examples"):
            log.warning("%s: %s (sequences longer than --seq_len)", name, stats)
        encoded[name] = LabeledSplit(examples, features)
    return TaskData(labels, encoded["train"], encoded["dev"], encoded["test"])


class Evaluator:
    """Scores a model on a labeled split through the shared prediction path."""

    def __init__(self, model, kind: str, labels: list[str], batch_size: int):
        self.predictor = TFPredictor(model, batch_size)
        self.kind = kind
        self.labels = labels

    def __call__(self, split: LabeledSplit) -> dict:
        logits = self.predictor.logits(split.features)
        predictions = predictions_from_logits(self.kind, logits, split.features, split.examples, self.labels)
        return score_predictions(self.kind, split.examples, predictions, self.labels)
