"""Tokenization with sub-word label alignment: examples -> padded NumPy features, and NER
predictions back to one tag per word. Needs a HuggingFace *fast* tokenizer (word_ids())."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


IGNORE_INDEX = -100
LONG_POLICIES = ("window", "truncate")
MODEL_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class EncodingSettings:
    """How text becomes model inputs: the sequence length, what happens to NER sentences longer than
    it, and whether bare SentencePiece word markers are dropped (see `encode_ner`)."""

    seq_len: int
    long_sequence_policy: str = "window"
    bare_word_marker: str = "keep"  # "drop" | "keep"


@dataclass
class Features:
    """Padded model inputs and labels; one or more rows per input example.

    `labels` is [rows, seq_len] for NER (IGNORE_INDEX except on the first sub-token of each
    tagged word) and [rows] for text tasks (IGNORE_INDEX when unlabeled). `word_ids` (NER
    only) holds, on the first sub-token of each word, the word's index in its original
    example, and -1 elsewhere. `example_index` maps each row to its input example.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    labels: np.ndarray
    word_ids: np.ndarray | None
    example_index: np.ndarray
    num_examples: int

    def __len__(self):
        return len(self.input_ids)

    def select(self, rows: np.ndarray) -> Features:
        """The given rows (example_index still points into the original examples)."""
        return Features(self.input_ids[rows], self.attention_mask[rows], self.token_type_ids[rows],
                        self.labels[rows], None if self.word_ids is None else self.word_ids[rows],
                        self.example_index[rows], self.num_examples)


def _check_fast(tokenizer):
    if not tokenizer.is_fast:
        raise ValueError(f"a fast tokenizer is required, got {type(tokenizer).__name__}")


def _no_features(seq_len, ner):
    rows = np.zeros((0, seq_len), dtype=np.int32)
    return Features(rows, rows, rows, rows if ner else np.zeros(0, dtype=np.int32),
                    rows if ner else None, np.zeros(0, dtype=np.int32), 0)


def _model_inputs(encoding):
    input_ids = np.asarray(encoding["input_ids"], dtype=np.int32)
    attention_mask = np.asarray(encoding["attention_mask"], dtype=np.int32)
    if "token_type_ids" in encoding:
        token_type_ids = np.asarray(encoding["token_type_ids"], dtype=np.int32)
    else:
        token_type_ids = np.zeros_like(input_ids)
    return input_ids, attention_mask, token_type_ids


def _tag_ids(example, label2id, example_number):
    if example.tags is None:
        return np.full(len(example.tokens), IGNORE_INDEX, dtype=np.int32)
    unknown = [tag for tag in example.tags if tag not in (label2id or {})]
    if unknown:
        raise ValueError(f"example {example_number}: unknown tag {unknown[0]!r}")
    return np.array([label2id[tag] for tag in example.tags], dtype=np.int32)


@functools.lru_cache(maxsize=16)
def bare_marker_id(tokenizer) -> int | None:
    """The id of SentencePiece's bare word-start piece "▁", if the tokenizer has one (looked up once per
    tokenizer: serving asks for it on every request)."""
    marker = tokenizer.convert_tokens_to_ids("\u2581")
    return None if marker is None or marker == tokenizer.unk_token_id else marker


def _droppable(ids, words, marker) -> list[bool]:
    """Positions holding a bare "▁" piece followed by another piece of the same word.

    SentencePiece tokenizers (XLM-R, e5) encode a pre-split word with no piece of its own, such as a
    single CJK character, as "▁" + the character: the word's first sub-token would be the empty piece
    and every sequence of such words twice as long."""
    return [marker is not None and token == marker and word is not None and i + 1 < len(ids)
            and words[i + 1] == word for i, (token, word) in enumerate(zip(ids, words))]


def _subtoken_counts(tokenizer, word_lists, marker):
    """Number of sub-tokens of each word, special tokens and droppable bare markers excluded."""
    encoding = tokenizer(word_lists, is_split_into_words=True, add_special_tokens=False,
                         verbose=False)
    counts = []
    for i, words in enumerate(word_lists):
        word_ids = encoding.word_ids(i)
        dropped = _droppable(encoding["input_ids"][i], word_ids, marker)
        kept = [word for word, drop in zip(word_ids, dropped) if not drop]
        counts.append(np.bincount(np.asarray(kept, dtype=np.int64), minlength=len(words)))
    return counts


def _fit_row(ids, words, seq_len):
    """A row cut to `seq_len` tokens, keeping its trailing special tokens (a word longer than the budget
    loses its last sub-tokens, as the tokenizer's own truncation would cut it)."""
    if len(ids) <= seq_len:
        return ids, words
    last_word = max(i for i, word in enumerate(words) if word is not None)
    tail = len(ids) - last_word - 1
    keep = seq_len - tail
    return ids[:keep] + ids[-tail:] if tail else ids[:keep], words[:keep] + words[-tail:] if tail else words[:keep]


def _plan_windows(counts, budget):
    """Split a sentence at word boundaries into consecutive [start, end) windows whose
    sub-tokens fit `budget`; a word longer than the budget gets a window to itself."""
    clipped = np.minimum(counts, budget).tolist()
    if sum(clipped) <= budget:
        return [(0, len(clipped))]
    windows, start, used = [], 0, 0
    for word, count in enumerate(clipped):
        if used + count > budget:
            windows.append((start, word))
            start, used = word, 0
        used += count
    windows.append((start, len(clipped)))
    return windows


def encode_ner(tokenizer, examples, seq_len, label2id, long_policy="window", drop_bare_markers=False):
    """Encode NER examples, labeling the first sub-token of each word.

    Sentences longer than `seq_len` are split at word boundaries into several rows
    (`long_policy="window"`) or cut after the first window ("truncate"); a single word with
    too many sub-tokens keeps what fits. Words that tokenize to nothing are replaced by the
    unknown token so that they keep a position. With `drop_bare_markers`, a bare SentencePiece
    "▁" piece that starts a word with more pieces is left out (see `_droppable`). Returns
    `(features, stats)` with stats "examples", "rows", "split_examples" (examples spread over
    several rows), "truncated_examples", "truncated_words" (words that lost sub-tokens, cut or
    dropped) and "dropped_markers".
    """
    _check_fast(tokenizer)
    if long_policy not in LONG_POLICIES:
        raise ValueError(f"unknown long_policy {long_policy!r}; expected one of {LONG_POLICIES}")
    budget = seq_len - tokenizer.num_special_tokens_to_add(pair=False)
    if budget < 1:
        raise ValueError(f"seq_len {seq_len} leaves no room next to the special tokens")
    marker = bare_marker_id(tokenizer) if drop_bare_markers else None
    word_lists = [list(example.tokens) for example in examples]
    for number, words in enumerate(word_lists):
        if not words:
            raise ValueError(f"example {number} has no tokens")
    tag_ids = [_tag_ids(example, label2id, number) for number, example in enumerate(examples)]

    rows = []  # (example number, first word, end word)
    stats = {"examples": len(examples), "rows": 0, "split_examples": 0,
             "truncated_examples": 0, "truncated_words": 0, "dropped_markers": 0}
    subtoken_counts = _subtoken_counts(tokenizer, word_lists, marker)
    for number, (words, counts) in enumerate(zip(word_lists, subtoken_counts)):
        # Planned as one sub-token; the row is cut below in case it is more.
        if tokenizer.unk_token is not None:
            for word in np.flatnonzero(counts == 0):
                words[word] = tokenizer.unk_token
                counts[word] = 1
        windows = _plan_windows(counts, budget)
        if long_policy == "truncate":
            windows = windows[:1]
        kept_words = windows[-1][1]
        truncated_words = int(np.sum(counts[:kept_words] > budget)) + len(words) - kept_words
        stats["split_examples"] += len(windows) > 1
        stats["truncated_examples"] += truncated_words > 0
        stats["truncated_words"] += truncated_words
        rows.extend((number, start, end) for start, end in windows)
    stats["rows"] = len(rows)
    if not rows:
        return _no_features(seq_len, ner=True), stats

    encoding = tokenizer([word_lists[number][start:end] for number, start, end in rows],
                         is_split_into_words=True, verbose=False)
    input_ids = np.full((len(rows), seq_len), tokenizer.pad_token_id or 0, dtype=np.int32)
    attention_mask = np.zeros((len(rows), seq_len), dtype=np.int32)
    local_word = np.full((len(rows), seq_len), -1, dtype=np.int32)
    for row in range(len(rows)):
        ids, words = encoding["input_ids"][row], encoding.word_ids(row)
        dropped = _droppable(ids, words, marker)
        stats["dropped_markers"] += sum(dropped)
        ids = [token for token, drop in zip(ids, dropped) if not drop]
        words = [word for word, drop in zip(words, dropped) if not drop]
        ids, words = _fit_row(ids, words, seq_len)
        input_ids[row, :len(ids)] = ids
        attention_mask[row, :len(ids)] = 1
        local_word[row, :len(ids)] = [-1 if word is None else word for word in words]
    token_type_ids = np.zeros_like(input_ids)  # one segment
    previous_word = np.pad(local_word[:, :-1], ((0, 0), (1, 0)), constant_values=-1)
    is_first_subtoken = (local_word >= 0) & (local_word != previous_word)

    example_index = np.array([number for number, _, _ in rows], dtype=np.int32)
    window_start = np.array([start for _, start, _ in rows], dtype=np.int32)
    word_ids = np.where(is_first_subtoken, local_word + window_start[:, None], -1)
    word_offsets = np.cumsum([0] + [len(words) for words in word_lists])[:-1]
    flat_word = np.where(is_first_subtoken, word_offsets[example_index][:, None] + word_ids, 0)
    labels = np.where(is_first_subtoken, np.concatenate(tag_ids)[flat_word], IGNORE_INDEX)
    features = Features(input_ids, attention_mask, token_type_ids,
                        labels.astype(np.int32), word_ids.astype(np.int32), example_index,
                        len(examples))
    return features, stats


def _label_id(label, label2id, example_number):
    if label is None:
        return IGNORE_INDEX
    if label not in (label2id or {}):
        raise ValueError(f"example {example_number}: unknown label {label!r}")
    return label2id[label]


def encode_texts(tokenizer, examples, seq_len, label2id, pair: bool):
    """Encode classification texts (`pair` False) or pairwise text pairs, truncating longest-first and
    padding to `seq_len`. Returns `(features, stats)` with stats "examples" and
    "truncated_examples"."""
    _check_fast(tokenizer)
    if any((example.text_b is not None) != pair for example in examples):
        raise ValueError("every example must be a text pair" if pair else "examples must be single texts")
    if not examples:
        return _no_features(seq_len, ner=False), {"examples": 0, "truncated_examples": 0}
    labels = np.array([_label_id(example.label, label2id, number)
                       for number, example in enumerate(examples)], dtype=np.int32)
    texts = [[example.text_a for example in examples]]
    if pair:
        texts.append([example.text_b for example in examples])
    encoding = tokenizer(*texts, truncation="longest_first", max_length=seq_len,
                         padding="max_length")
    input_ids, attention_mask, token_type_ids = _model_inputs(encoding)
    # The Rust encodings keep what truncation cut off in `overflowing`.
    truncated = sum(bool(row.overflowing) for row in encoding.encodings)
    features = Features(input_ids, attention_mask, token_type_ids, labels, None,
                        np.arange(len(examples), dtype=np.int32), len(examples))
    return features, {"examples": len(examples), "truncated_examples": truncated}


def decode_ner(pred_ids, features, num_words, id2label):
    """Word-level tags per original example from per-sub-token predicted ids [rows, seq_len],
    merging windows; words that never got a prediction (truncated away) get "O"."""
    pred_ids = np.asarray(pred_ids)
    if pred_ids.shape != features.word_ids.shape:
        raise ValueError(f"predictions of shape {pred_ids.shape} do not match features "
                         f"{features.word_ids.shape}")
    if len(num_words) != features.num_examples:
        raise ValueError(f"{len(num_words)} word counts for {features.num_examples} examples")
    tags = [["O"] * count for count in num_words]
    rows, positions = np.nonzero(features.word_ids >= 0)
    for example, word, pred in zip(features.example_index[rows].tolist(),
                                   features.word_ids[rows, positions].tolist(),
                                   pred_ids[rows, positions].tolist()):
        tags[example][word] = id2label[pred]
    return tags


@dataclass
class Request:
    """One request encoded for batch-1 serving: model-input rows at their exact lengths (NER sentences longer
    than seq_len have several), and for NER, per row, the positions of the words' first sub-tokens and the
    words they belong to."""

    rows: list  # of {input name: [1, length] int32 array}
    first_subtokens: list | None = None  # of (positions, word indices) array pairs


def _row(input_ids, token_type_ids=None) -> dict:
    input_ids = np.asarray([input_ids], dtype=np.int32)
    token_types = np.zeros_like(input_ids) if token_type_ids is None else np.asarray([token_type_ids], np.int32)
    return {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids), "token_type_ids": token_types}


def encode_ner_request(tokenizer, words, seq_len, long_policy="window", drop_bare_markers=False) -> Request:
    """One NER sentence as `encode_ner` encodes it, without the padding: a sentence that fits in `seq_len`
    takes one tokenizer call; anything else (windows, words that tokenize to nothing) goes through
    `encode_ner` itself, so both give the same rows and labelled positions."""
    marker = bare_marker_id(tokenizer) if drop_bare_markers else None
    encoding = tokenizer(list(words), is_split_into_words=True, verbose=False)
    ids, word_of = encoding["input_ids"], encoding.word_ids()
    if marker is not None:
        kept = [not drop for drop in _droppable(ids, word_of, marker)]
        ids = [token for token, keep in zip(ids, kept) if keep]
        word_of = [word for word, keep in zip(word_of, kept) if keep]
    word_array = np.array([-1 if word is None else word for word in word_of])
    first = np.flatnonzero((word_array >= 0) & (word_array != np.concatenate([[-1], word_array[:-1]])))
    if len(ids) <= seq_len and len(first) == len(words):
        return Request([_row(ids)], [(first, word_array[first])])
    from xdistil.data.readers import NerExample

    features, _ = encode_ner(tokenizer, [NerExample(tuple(words), None)], seq_len, {}, long_policy,
                             drop_bare_markers)
    rows, first_subtokens = [], []
    for row, length in enumerate(features.attention_mask.sum(axis=1).tolist()):
        rows.append(_row(features.input_ids[row, :length]))
        positions = np.flatnonzero(features.word_ids[row, :length] >= 0)
        first_subtokens.append((positions, features.word_ids[row, positions]))
    return Request(rows, first_subtokens)


def encode_text_request(tokenizer, text_a, text_b, seq_len) -> Request:
    """One text (or pair) as `encode_texts` encodes it, without the padding."""
    encoding = tokenizer(text_a, text_b, truncation="longest_first", max_length=seq_len, verbose=False)
    return Request([_row(encoding["input_ids"], encoding.get("token_type_ids"))])
