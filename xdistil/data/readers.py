"""Line-level reading shared by every task format: UTF-8 decoding with file:line errors, streaming,
blank lines, and label-list files. What a line *means* is the task's business (`xdistil.tasks`).

Files are read as bytes and decoded line by line, so that bad UTF-8 is reported with its line.
"""
from __future__ import annotations

from dataclasses import dataclass

from xdistil.errors import InputFileError, InputFormatError

LABELS_FILE = "labels.tsv"
_MAX_LABELS_IN_MESSAGE = 20
# Column names a header row would carry (compared lower-cased with a label found only on line 1).
HEADER_NAMES = frozenset({"label", "labels", "tag", "tags", "class", "category", "target", "y", "sentiment",
                          "gold", "gold_label", "text", "texts", "sentence", "sentence1", "sentence2", "text_a",
                          "text_b", "premise", "hypothesis", "question", "tokens", "words", "token", "word"})


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
    try:
        stream = open(path, "rb")
    except FileNotFoundError:
        raise InputFileError(path, "file not found") from None
    except IsADirectoryError:
        raise InputFileError(path, "is a directory, not a file") from None
    with stream:
        for line_no, raw in enumerate(stream, start=1):
            yield line_no, decode_line(raw, path, line_no)


def split_columns(line: str, names: tuple[str, ...], path, line_no, at_least: bool = False) -> list[str]:
    """The tab-separated columns of `line`: exactly len(names) of them (or at least, extra ignored)."""
    columns = line.split("\t")
    if len(columns) < len(names) or (not at_least and len(columns) != len(names)):
        expected = f"{'at least ' if at_least else ''}{len(names)}"
        raise InputFormatError(path, line_no, f"expected {expected} tab-separated columns ({', '.join(names)}), "
                                              f"found {len(columns)}")
    return columns[:len(names)]


def check_label(label: str, label_set, path, line_no) -> None:
    """Raise InputFormatError if `label_set` is given and `label` is not in it."""
    if label_set is not None and label not in label_set:
        known = sorted(label_set)
        shown = ", ".join(known[:_MAX_LABELS_IN_MESSAGE])
        more = f", ... ({len(known)} in all)" if len(known) > _MAX_LABELS_IN_MESSAGE else ""
        header = line_no == 1 and label.lower() in HEADER_NAMES
        hint = "; line 1 looks like a header row: task files have none" if header else ""
        raise InputFormatError(path, line_no, f"unknown label {label!r} (known: {shown}{more}){hint}")


def read_labels_file(path) -> list[str]:
    """The label list of a labels.tsv file (first column of each non-blank line), in file order."""
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
        raise InputFileError(path, "no labels in the file")
    return list(first_line_of)
