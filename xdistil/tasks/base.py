"""What every task kind provides: reading rows, the model head, encoding, logit-loss positions,
predictions, their output format and the metric. One subclass per kind; nothing else branches on it."""
from __future__ import annotations

import abc
import collections
import os

from xdistil.data.readers import HEADER_NAMES, LABELS_FILE, is_blank, iter_lines, read_labels_file
from xdistil.errors import InputFileError, InputFormatError

class Task(abc.ABC):
    """A task kind: token tagging, or sequence classification of one text or a text pair."""

    kind: str  # "ner" | "classification" | "pairwise": the name in flags and saved configs
    metric: str  # the primary dev metric (higher is better) that selects models
    token_level: bool  # logits per token ([B, T, C]) rather than per sequence ([B, C])
    pair: bool = False  # an example is a pair of texts (a request line is text<TAB>text_pair)
    cls_only_export: bool  # the head reads position 0 only, so the export may prune the last layer
    head_suffix: str  # HF architecture name suffix of a model with this task's head
    labeled_columns: tuple[str, ...]

    # --- the model ---------------------------------------------------------------------------------------

    @abc.abstractmethod
    def model_class(self):
        """The TFAutoModelFor... class of this task."""

    def has_head(self, config, labels: list[str]) -> bool:
        """True when a HF config describes a model with this task's head for exactly `labels`, in order."""
        architectures = getattr(config, "architectures", None) or []
        if not any(a.endswith(self.head_suffix) for a in architectures):
            return False
        id2label = {int(k): v for k, v in (config.id2label or {}).items()}
        return [id2label.get(i) for i in range(len(id2label))] == list(labels)

    # --- reading -----------------------------------------------------------------------------------------

    @abc.abstractmethod
    def parse_labeled(self, line: str, path, line_no: int, label_set):
        """One labeled row; every label checked against `label_set` unless it is None."""

    @abc.abstractmethod
    def parse_unlabeled(self, line: str, path, line_no: int):
        """One transfer / prediction row (extra columns ignored)."""

    @abc.abstractmethod
    def labels_of(self, example) -> tuple[str, ...]:
        """The labels an example carries (NER: one per word)."""

    @abc.abstractmethod
    def unlabeled_line(self, example) -> str:
        """The example's text as a line of the transfer / request format."""

    @abc.abstractmethod
    def without_labels(self, example):
        """The example as an unlabeled one (the texts of train used as transfer data)."""

    def default_label_order(self, labels: set[str]) -> list[str]:
        """The label list when no labels.tsv fixes it."""
        if all(_is_integer(label) for label in labels):
            return sorted(labels, key=lambda label: (int(label), label))
        return sorted(labels)

    def read_labeled(self, path, labels: list[str] | None = None) -> list:
        """Read a labeled TSV (blank lines skipped). With `labels`, every label must be among them; without,
        a first line whose label occurs nowhere else and that looks like column names is refused."""
        label_set = None if labels is None else set(labels)
        rows = [(line_no, self.parse_labeled(line, path, line_no, label_set))
                for line_no, line in iter_lines(path) if not is_blank(line)]
        if labels is None and rows:
            self._refuse_header(path, rows)
        return [example for _, example in rows]

    def _refuse_header(self, path, rows) -> None:
        line_no, first = rows[0]
        if line_no != 1:
            return
        counts = collections.Counter(label for _, example in rows for label in self.labels_of(example))
        first_labels = self.labels_of(first)
        only_here = sorted(label for label in set(first_labels) if counts[label] == first_labels.count(label))
        names = {label.lower() for label in only_here} | {text.lower() for text in self._texts_of(first)}
        if only_here and names & HEADER_NAMES:
            raise InputFormatError(path, line_no, f"line 1 looks like a header row (label {only_here[0]!r} occurs "
                                                  "only here): task files have no header; remove the line")

    def _texts_of(self, example) -> list[str]:
        return [example.text_a] + ([example.text_b] if example.text_b is not None else [])

    def read_unlabeled(self, path, skip_blank: bool = False) -> list:
        """Read an unlabeled file, one example per line. A blank line is an error (it would shift
        predictions against input lines) unless `skip_blank`."""
        examples = []
        for line_no, line in iter_lines(path):
            if is_blank(line):
                if skip_blank:
                    continue
                raise InputFormatError(path, line_no, "blank line")
            examples.append(self.parse_unlabeled(line, path, line_no))
        return examples

    def label_list(self, task_dir, train_examples) -> list[str]:
        """`task_dir/labels.tsv` in file order if present, else the labels of `train_examples`."""
        labels_path = os.path.join(task_dir or ".", LABELS_FILE)
        if task_dir and os.path.exists(labels_path):
            return read_labels_file(labels_path)
        labels = {label for example in train_examples for label in self.labels_of(example)}
        if not labels:
            raise InputFileError(task_dir or "train file", f"no labels in the training examples and no {LABELS_FILE}")
        return self.default_label_order(labels)

    # --- encoding and losses -----------------------------------------------------------------------------

    @abc.abstractmethod
    def encode(self, tokenizer, examples, label2id: dict, settings):
        """Examples -> (Features, stats) with the fast tokenizer and EncodingSettings."""

    @abc.abstractmethod
    def encode_request(self, tokenizer, example, settings):
        """One example for batch-1 serving: a data.encoding.Request (rows at their exact lengths)."""

    @abc.abstractmethod
    def request_prediction(self, request, row_logits: list, example, labels: list[str]):
        """The prediction (as `predictions` makes it) from the logits of each row of a Request."""

    @abc.abstractmethod
    def logit_loss_mask(self, batch: dict):
        """Where a logit loss looks (a tf mask, or None for everywhere)."""

    @abc.abstractmethod
    def count_logit_positions(self, arrays: dict, num_rows: int) -> float:
        """How many positions the logit loss sees in a host batch (its global normaliser)."""

    # --- predictions and scores --------------------------------------------------------------------------

    @abc.abstractmethod
    def predictions(self, logits, features, examples, labels: list[str]) -> list:
        """Per-example predictions from logits."""

    @abc.abstractmethod
    def predicted_ids(self, logits, features):
        """Predicted label ids at the positions that count (for agreement between two models)."""

    @abc.abstractmethod
    def score(self, examples, predictions, labels: list[str]) -> dict:
        """Metrics of predictions against the examples' gold labels; `self.metric` among them."""

    @abc.abstractmethod
    def format_prediction(self, prediction) -> str:
        """One output line."""

    @abc.abstractmethod
    def trivial_predictions(self, train_examples, examples, labels: list[str]) -> list:
        """What a model that learned nothing predicts (majority label; all "O" for tagging)."""

    @abc.abstractmethod
    def trivial_name(self, train_examples, labels: list[str]) -> str:
        """What the trivial predictions are, in words."""

    def trivial_score(self, train_examples, examples, labels: list[str]) -> dict:
        return self.score(examples, self.trivial_predictions(train_examples, examples, labels), labels)


def _is_integer(label: str) -> bool:
    return label.lstrip("+-").isdigit() and label.lstrip("+-").isascii()
