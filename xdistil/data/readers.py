"""Readers for the task TSV files, the unlabeled (transfer / prediction) format, and label lists.

Files are read as bytes and decoded line by line, so that bad UTF-8 is reported with its line.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from xdistil.data.errors import InputFormatError

TASK_KINDS = ("ner", "pairwise", "classification")
LABELS_FILE = "labels.tsv"

_LABELED_COLUMNS = {
    "ner": ("tokens", "tags"),
    "pairwise": ("text_a", "text_b", "label"),
    "classification": ("text", "label"),
}
_INTEGER = re.compile(r"[+-]?[0-9]+")
_MAX_LABELS_IN_MESSAGE = 20


@dataclass(frozen=True)
class NerExample:
    """One sentence as words, with one tag per word when labeled."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...] | None


@dataclass(frozen=True)
class TextExample:
    """One text (classification) or text pair (pairwise), with its label when labeled."""

    text_a: str
    text_b: str | None
    label: str | None


def check_kind(kind):
    """Raise ValueError unless `kind` is one of TASK_KINDS."""
    if kind not in TASK_KINDS:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {TASK_KINDS}")


def decode_line(raw: bytes, path, line_no) -> str:
    """Decode one raw line as UTF-8, without its line ending (and without a BOM on line 1)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputFormatError(
            path, line_no,
            f"invalid UTF-8 (byte 0x{raw[err.start]:02x} at byte offset {err.start} of the line)",
        ) from None
    text = text.removesuffix("\n").removesuffix("\r")
    if line_no == 1:
        text = text.removeprefix("\ufeff")
    return text


def is_blank(line: str) -> bool:
    """True for a line holding nothing but whitespace."""
    return not line.strip()


def iter_lines(path):
    """Yield `(line_no, text)` for each line of a UTF-8 file (1-based), streamed."""
    with open(path, "rb") as stream:
        for line_no, raw in enumerate(stream, start=1):
            yield line_no, decode_line(raw, path, line_no)


def _check_label(label, label_set, path, line_no):
    if label_set is not None and label not in label_set:
        known = sorted(label_set)
        shown = ", ".join(known[:_MAX_LABELS_IN_MESSAGE])
        more = f", ... ({len(known)} in all)" if len(known) > _MAX_LABELS_IN_MESSAGE else ""
        raise InputFormatError(path, line_no, f"unknown label {label!r} (known: {shown}{more})")


def _parse_labeled_line(line, kind, path, line_no, label_set):
    columns = line.split("\t")
    names = _LABELED_COLUMNS[kind]
    if len(columns) != len(names):
        raise InputFormatError(
            path, line_no,
            f"expected {len(names)} tab-separated columns ({', '.join(names)}), "
            f"found {len(columns)}",
        )
    if kind == "ner":
        tokens, tags = columns[0].split(), columns[1].split()
        if not tokens:
            raise InputFormatError(path, line_no, "empty tokens column")
        if len(tokens) != len(tags):
            raise InputFormatError(
                path, line_no, f"{len(tokens)} tokens but {len(tags)} tags")
        for tag in tags:
            _check_label(tag, label_set, path, line_no)
        return NerExample(tuple(tokens), tuple(tags))
    *texts, label = (column.strip() for column in columns)
    for name, text in zip(names, texts):
        if not text:
            raise InputFormatError(path, line_no, f"empty {name}")
    if not label:
        raise InputFormatError(path, line_no, "empty label")
    _check_label(label, label_set, path, line_no)
    return TextExample(texts[0], texts[1] if kind == "pairwise" else None, label)


def read_labeled_file(path, kind, label_list=None) -> list:
    """Read a labeled task TSV (train/dev/test) into NerExample or TextExample objects.

    Blank lines are skipped. With `label_list`, every label (every tag for NER) must be in it.
    Raises InputFormatError naming the file and line of the first bad line.
    """
    check_kind(kind)
    label_set = None if label_list is None else set(label_list)
    return [_parse_labeled_line(line, kind, path, line_no, label_set)
            for line_no, line in iter_lines(path) if not is_blank(line)]


def parse_unlabeled_line(line: str, kind, path, line_no):
    """Parse one transfer / prediction line: NER a whitespace-tokenized sentence,
    classification a text, pairwise `text_a<TAB>text_b`. Extra columns are ignored."""
    check_kind(kind)
    columns = line.removesuffix("\n").removesuffix("\r").split("\t")
    if kind == "ner":
        tokens = columns[0].split()
        if not tokens:
            raise InputFormatError(path, line_no, "empty sentence")
        return NerExample(tuple(tokens), None)
    if kind == "classification":
        text = columns[0].strip()
        if not text:
            raise InputFormatError(path, line_no, "empty text")
        return TextExample(text, None, None)
    if len(columns) < 2:
        raise InputFormatError(
            path, line_no, "expected at least 2 tab-separated columns (text_a, text_b), found 1")
    text_a, text_b = columns[0].strip(), columns[1].strip()
    for name, text in (("text_a", text_a), ("text_b", text_b)):
        if not text:
            raise InputFormatError(path, line_no, f"empty {name}")
    return TextExample(text_a, text_b, None)


def read_unlabeled_file(path, kind, skip_blank=False) -> list:
    """Read an unlabeled prediction file, one example per line.

    A blank line is an error (it would shift predictions against input lines) unless
    `skip_blank`.
    """
    check_kind(kind)
    examples = []
    for line_no, line in iter_lines(path):
        if is_blank(line):
            if skip_blank:
                continue
            raise InputFormatError(path, line_no, "blank line")
        examples.append(parse_unlabeled_line(line, kind, path, line_no))
    return examples


def _read_labels_file(path) -> list[str]:
    first_line_of = {}
    for line_no, line in iter_lines(path):
        if is_blank(line):
            continue
        label = line.split("\t")[0].strip()
        if not label:
            raise InputFormatError(path, line_no, "empty label")
        if label in first_line_of:
            raise InputFormatError(
                path, line_no, f"duplicate label {label!r} (first on line {first_line_of[label]})")
        first_line_of[label] = line_no
    if not first_line_of:
        raise ValueError(f"{path}: no labels")
    return list(first_line_of)


def _label_sort_key(labels):
    if all(_INTEGER.fullmatch(label) for label in labels):
        return lambda label: (int(label), label)
    return None


def load_label_list(task_dir, train_examples, kind) -> list[str]:
    """The task's label list: `task_dir/labels.tsv` in file order if present, else from train.

    From train, classification / pairwise labels are sorted (numerically when all are
    integers); NER tags are "O" first, then the others sorted.
    """
    check_kind(kind)
    labels_path = os.path.join(task_dir, LABELS_FILE)
    if os.path.exists(labels_path):
        return _read_labels_file(labels_path)
    if kind == "ner":
        labels = {tag for example in train_examples for tag in example.tags or ()}
        if not labels:
            raise ValueError(f"no tags in the training examples and no {labels_path}")
        return ["O"] + sorted(labels - {"O"})
    labels = {example.label for example in train_examples if example.label is not None}
    if not labels:
        raise ValueError(f"no labels in the training examples and no {labels_path}")
    return sorted(labels, key=_label_sort_key(labels))
