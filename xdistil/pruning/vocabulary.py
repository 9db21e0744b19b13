"""--prune_vocabulary_min_count: the student's word pieces cut down to those its training text uses often.

A small student's word-embedding matrix is often most of its parameters (17,656 pieces x 384 = 6.8M of a 17.8M
student). Pieces seen fewer than N times in the train text and the run's transfer text are dropped, their rows with
them (`xdistil.models.vocab_trimming`). Every single-character piece (`c`, `##c`, `▁c`) stays, so a word that used a
dropped piece is segmented into smaller kept pieces instead of becoming the unknown token: WordPiece's greedy longest
match always finds a character piece, and Unigram's Viterbi a path of them. Text whose pieces were all kept is
segmented exactly as before (see vocab_trimming), so there the pruned student computes what it did.
"""
from __future__ import annotations

import itertools
import logging

from xdistil.distill.vocabulary import example_texts
from xdistil.models.vocab_trimming import count_pieces, select_pieces, trim_model_vocab, trim_tokenizer

log = logging.getLogger(__name__)

_WORD_MARKS = ("##", "\u2581")  # WordPiece continuation, SentencePiece word start


def _bare(piece: str) -> str:
    for mark in _WORD_MARKS:
        if piece.startswith(mark) and len(piece) > len(mark):
            return piece[len(mark):]
    return piece


def character_piece_ids(tokenizer) -> set[int]:
    """Ids of the pieces that are one character, alone or with a word mark (`c`, `##c`, `▁c`)."""
    return {piece_id for piece, piece_id in tokenizer.get_vocab().items() if len(_bare(piece)) <= 1}


def pieces_to_keep(tokenizer, counts, min_count: int) -> list[int]:
    """Sorted ids of the pieces a pruned vocabulary keeps: the required ones, every character piece, and every piece
    counted at least `min_count` times."""
    return sorted(set(select_pieces(tokenizer, counts, min_count)) | character_piece_ids(tokenizer))


def training_texts(task, train_examples, transfer_reader=None):
    """The text a student is trained on, as the tokenizer sees it: the train examples, then the transfer chunks."""
    texts = example_texts(task, train_examples)
    if transfer_reader is None:
        return texts
    return itertools.chain(texts, example_texts(task, (example for _, chunk in transfer_reader.chunks(0)
                                                       for example in chunk)))


def prune_vocabulary(model, tokenizer, texts, min_count: int, is_split_into_words: bool = False):
    """(model, tokenizer, report): `model` and `tokenizer` without the pieces seen fewer than `min_count` times in
    `texts` (character pieces kept). The report gives the piece counts and the share of the counted tokens that were
    in dropped pieces (text that is now segmented differently)."""
    counts = count_pieces(tokenizer, texts, is_split_into_words)
    trimmed_tokenizer, old_ids = trim_tokenizer(tokenizer, pieces_to_keep(tokenizer, counts, min_count))
    kept = set(old_ids.tolist())
    total = sum(counts.values())
    report = {"min_count": min_count, "pieces_before": len(tokenizer), "pieces_kept": len(old_ids),
              "resegmented_token_share": round(sum(c for p, c in counts.items() if p not in kept) / total, 6)
              if total else 0.0}
    log.info("vocabulary pruned from %d to %d pieces (min count %d; %.2f%% of the training tokens were in dropped "
             "pieces)", report["pieces_before"], report["pieces_kept"], min_count,
             100 * report["resegmented_token_share"])
    return trim_model_vocab(model, old_ids), trimmed_tokenizer, report
