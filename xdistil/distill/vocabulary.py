"""`--trim_vocabulary`: the run's vocabulary cut down to the pieces its text uses, before any model trains.

The pieces of the task's splits and the transfer data are counted with the teacher's tokenizer (plus,
optionally, the most frequent pieces of a general corpus); the teacher's tokenizer and word embeddings
are then restricted to them (`xdistil.models.vocab_trimming`: on kept text the trimmed tokenizer
segments exactly as the full one, so the trimmed teacher computes the same function there), and the
student is built from that trimmed teacher. The kept pieces and the trimmed tokenizer are saved once in
`<model_dir>/vocabulary/`, so a resumed run (and every worker) uses the very same vocabulary.
"""
from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import numpy as np

from xdistil.io_utils import atomic_save_dir
from xdistil.model_dir import VOCABULARY_DIR
from xdistil.models.vocab_trimming import count_pieces, select_pieces, trim_tokenizer, unknown_rate

log = logging.getLogger(__name__)

KEPT_IDS_FILE = "kept_piece_ids.npy"
REPORT_FILE = "trim_report.json"


def example_texts(task, examples):
    """What the tokenizer sees of each example, in the form it is encoded (NER: pre-split words; pairs:
    each side on its own)."""
    for example in examples:
        if task.token_level:
            yield list(example.tokens)
        else:
            yield example.text_a
            if example.text_b is not None:
                yield example.text_b


def _count(tokenizer, task, examples):
    return count_pieces(tokenizer, example_texts(task, examples), is_split_into_words=task.token_level)


def build_vocabulary(settings, task, splits: dict, transfer_chunks, tokenizer) -> tuple[object, np.ndarray, dict]:
    """Count, select and trim: (trimmed tokenizer, kept old ids, report)."""
    counts = _count(tokenizer, task, itertools.chain.from_iterable(
        examples for examples in splits.values() if examples is not None))
    counts.update(_count(tokenizer, task, itertools.chain.from_iterable(chunk for _, chunk in transfer_chunks)))
    extra = None
    if settings.trim_vocabulary_corpus:
        from xdistil.data.readers import is_blank, iter_lines

        lines = (line for _, line in iter_lines(settings.trim_vocabulary_corpus) if not is_blank(line))
        extra = count_pieces(tokenizer, lines)
    keep = select_pieces(tokenizer, counts, settings.trim_vocabulary_min_count, settings.trim_vocabulary_top_n, extra)
    trimmed, old_ids = trim_tokenizer(tokenizer, keep)
    report = {"pieces_before": len(tokenizer), "pieces_kept": len(old_ids), "pieces_counted": len(counts),
              "extra_corpus": settings.trim_vocabulary_corpus, "extra_top_n": settings.trim_vocabulary_top_n,
              "min_count": settings.trim_vocabulary_min_count}
    for name in ("dev", "test"):
        if splits.get(name):
            texts = list(example_texts(task, splits[name]))
            report[f"unknown_rate_{name}"] = {
                "full": unknown_rate(tokenizer, texts, is_split_into_words=task.token_level),
                "trimmed": unknown_rate(trimmed, texts, is_split_into_words=task.token_level)}
    return trimmed, old_ids, report


def trimmed_vocabulary(settings, task, splits: dict, transfer_reader, tokenizer, model_dir: Path, distribution):
    """The trimmed tokenizer and kept old ids of this run: built by the chief (or read back from an
    earlier, identical run), then read by every worker. Returns (tokenizer, old_ids, report)."""
    from transformers import AutoTokenizer

    directory = Path(model_dir) / VOCABULARY_DIR
    if distribution.is_chief and not (directory / REPORT_FILE).exists():
        trimmed, old_ids, report = build_vocabulary(settings, task, splits, transfer_reader.chunks(0), tokenizer)

        def write(tmp):
            trimmed.save_pretrained(str(tmp))
            np.save(tmp / KEPT_IDS_FILE, old_ids)
            (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2))

        atomic_save_dir(directory, write)
        log.info("vocabulary trimmed from %d to %d pieces (%s)", report["pieces_before"], report["pieces_kept"],
                 directory)
    distribution.barrier()
    report = json.loads((directory / REPORT_FILE).read_text())
    return AutoTokenizer.from_pretrained(str(directory)), np.load(directory / KEPT_IDS_FILE), report
