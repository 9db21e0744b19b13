"""Vocabulary trimming: keep only the sub-word pieces a task's text uses ("Load What You Need",
Abdaoui et al. 2020; Ushio et al. 2023).

A multilingual teacher's word-embedding matrix dominates its size (multilingual-e5-small: 96M
of 117.5M parameters for 250k pieces). A student for one task needs only the pieces that occur
in that task's data. Trimming builds a smaller fast tokenizer whose new id i is old id
old_ids[i], and gathers the matching embedding rows.

Guarantee: on text the full tokenizer segments into kept pieces only, the trimmed tokenizer
segments exactly the same way (special tokens and word_ids included):

- Unigram (XLM-R, e5): Viterbi over a subset of pieces that still contains the optimal
  segmentation finds that segmentation again. Characters without a kept single-character
  piece become `<unk>` nodes scored (lowest piece score - 10); the lowest-scoring piece of the
  full vocabulary is therefore always kept, so that score, and with it every Viterbi decision,
  stays that of the full tokenizer.
- WordPiece (BERT): greedy longest-match-first picks, at each position, the longest piece in
  the vocabulary; over a subset containing the pieces the full tokenizer picked, no longer
  match exists, so it picks the same ones. Nothing beyond the counted pieces is needed. (A word
  the full tokenizer turns into [UNK] can come out differently only where a longer match led
  the full tokenizer into a dead end that a shorter, kept piece avoids; that needs a character
  that occurs in pieces but lacks its `c` or `##c` piece. In a vocabulary with both forms of
  each of its characters, greedy fails only on characters no piece contains, in both.)

Text with pieces that were not kept falls back to the unknown token (see `unknown_rate`).
BPE is not supported: its merges refer to pieces by content, and dropping pieces changes which
merges apply.
"""
import collections
import itertools
import json
from collections.abc import Iterable

import numpy as np

SUPPORTED_MODELS = ("Unigram", "WordPiece")
SPECIAL_ID_CONFIG_KEYS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id",
                          "cls_token_id")
# Constructor arguments that point at the full vocabulary, or are rebuilt from the trimmed one.
_STALE_INIT_KWARGS = ("vocab_file", "tokenizer_file", "added_tokens_decoder", "name_or_path")


def _piece_id_batches(tokenizer, texts, is_split_into_words, batch_size):
    """Token ids (no special tokens) of `texts`, one list of lists per batch."""
    iterator = iter(texts)
    while batch := list(itertools.islice(iterator, batch_size)):
        yield tokenizer(batch, add_special_tokens=False, is_split_into_words=is_split_into_words,
                        return_attention_mask=False, return_token_type_ids=False)["input_ids"]


def count_pieces(tokenizer, texts: Iterable, is_split_into_words: bool = False,
                 batch_size: int = 1000) -> collections.Counter:
    """Counter of token ids over a stream of texts (or word lists when
    `is_split_into_words`), tokenized in batches without special tokens. Count pair tasks by
    passing each side of the pair, and pre-split text pre-split: `▁人` and `▁`,`人` differ."""
    counts = collections.Counter()
    for batch in _piece_id_batches(tokenizer, texts, is_split_into_words, batch_size):
        counts.update(itertools.chain.from_iterable(batch))
    return counts


def backend_state(tokenizer) -> dict:
    """The fast tokenizer's `tokenizer.json` content as a dict."""
    return json.loads(tokenizer.backend_tokenizer.to_str())


def _lowest_score_piece_id(model_state) -> int | None:
    """Id of the lowest-scoring Unigram piece (it fixes the unknown-piece score); None for
    other models."""
    if model_state["type"] != "Unigram":
        return None
    return int(np.argmin([score for _, score in model_state["vocab"]]))


def required_piece_ids(tokenizer, state: dict | None = None) -> set[int]:
    """Ids every trimmed vocabulary must keep: special and added tokens, and for Unigram the
    lowest-scoring piece."""
    state = state or backend_state(tokenizer)
    required = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    lowest = _lowest_score_piece_id(state["model"])
    if lowest is not None:
        required.add(lowest)
    return required


def select_pieces(tokenizer, counts: collections.Counter, min_count: int = 1,
                  extra_top_n: int = 0, extra_counts: collections.Counter | None = None) -> list[int]:
    """Sorted old ids to keep: the required ids, every piece counted at least `min_count`
    times, and the `extra_top_n` most frequent pieces of `extra_counts` (a general corpus)."""
    keep = required_piece_ids(tokenizer)
    keep.update(piece for piece, count in counts.items() if count >= min_count)
    if extra_top_n:
        if extra_counts is None:
            raise ValueError("extra_top_n needs extra_counts (piece counts of a general corpus)")
        keep.update(piece for piece, _ in extra_counts.most_common(extra_top_n))
    return sorted(keep)


def _new_ids(old, new_id_of, what):
    """Map old ids to new ids, raising if one of them was not kept."""
    new = [int(new_id_of[i]) for i in old]
    if min(new, default=0) < 0:
        raise ValueError(f"{what} uses ids {list(old)}, which are not all kept")
    return new


def _trimmed_model_state(model_state, old_ids, new_id_of):
    """The backend model (`tokenizer.json` "model") restricted to the kept pieces."""
    kind = model_state["type"]
    if kind not in SUPPORTED_MODELS:
        raise ValueError(f"vocabulary trimming supports {' and '.join(SUPPORTED_MODELS)} "
                         f"tokenizers, not {kind}: its merges refer to pieces that trimming "
                         f"would drop, so segmentation could change")
    state = dict(model_state)
    if kind == "Unigram":
        vocab = model_state["vocab"]
        state["vocab"] = [vocab[i] for i in old_ids if i < len(vocab)]
        if model_state.get("unk_id") is not None:
            state["unk_id"] = _new_ids([model_state["unk_id"]], new_id_of, "the unknown piece")[0]
    else:
        piece_of = {piece_id: piece for piece, piece_id in model_state["vocab"].items()}
        state["vocab"] = {piece_of[i]: int(new_id_of[i]) for i in old_ids if i in piece_of}
    return state


def _remapped_post_processor(processor, new_id_of):
    """Post-processor state with its special-token ids mapped to the trimmed vocabulary."""
    if processor is None:
        return None
    processor = dict(processor)
    kind = processor["type"]
    if kind == "TemplateProcessing":
        processor["special_tokens"] = {
            name: {**token, "ids": _new_ids(token["ids"], new_id_of, f"special token {name!r}")}
            for name, token in processor["special_tokens"].items()}
    elif kind in ("RobertaProcessing", "BertProcessing"):
        for role in ("sep", "cls"):
            token, old_id = processor[role]
            processor[role] = [token, _new_ids([old_id], new_id_of, f"special token {token!r}")[0]]
    elif kind == "Sequence":
        processor["processors"] = [_remapped_post_processor(p, new_id_of)
                                   for p in processor["processors"]]
    elif kind != "ByteLevel":
        raise ValueError(f"cannot remap the special-token ids of a {kind} post-processor")
    return processor


def _trimmed_backend_state(state, old_ids, vocab_size):
    """A `tokenizer.json` dict whose ids are the positions of the kept old ids."""
    new_id_of = np.full(vocab_size, -1, dtype=np.int64)
    new_id_of[old_ids] = np.arange(len(old_ids))
    trimmed = dict(state)
    trimmed["model"] = _trimmed_model_state(state["model"], old_ids, new_id_of)
    trimmed["added_tokens"] = [
        {**token, "id": _new_ids([token["id"]], new_id_of, f"added token {token['content']!r}")[0]}
        for token in state["added_tokens"]]
    trimmed["post_processor"] = _remapped_post_processor(state["post_processor"], new_id_of)
    if state.get("padding"):
        trimmed["padding"] = {**state["padding"],
                              "pad_id": _new_ids([state["padding"]["pad_id"]], new_id_of, "padding")[0]}
    return trimmed


def trim_tokenizer(tokenizer, keep_ids):
    """A fast tokenizer of the same class whose vocabulary is exactly `keep_ids` (see
    `select_pieces`); returns (trimmed, old_ids) where new id i is old id old_ids[i] and
    old_ids is sorted, so relative order and the special tokens' places are kept."""
    from tokenizers import Tokenizer

    old_ids = np.unique(np.asarray(list(keep_ids), dtype=np.int64))
    vocab_size = len(tokenizer)
    if len(old_ids) == 0 or old_ids[0] < 0 or old_ids[-1] >= vocab_size:
        raise ValueError(f"keep_ids must be non-empty ids in 0..{vocab_size - 1}")
    state = backend_state(tokenizer)
    missing = sorted(required_piece_ids(tokenizer, state) - set(old_ids.tolist()))
    if missing:
        raise ValueError(f"keep_ids lacks required ids {missing} "
                         f"({tokenizer.convert_ids_to_tokens(missing)}); use select_pieces")
    backend = Tokenizer.from_str(json.dumps(_trimmed_backend_state(state, old_ids, vocab_size)))
    init_kwargs = {key: value for key, value in tokenizer.init_kwargs.items()
                   if key not in _STALE_INIT_KWARGS}
    init_kwargs["model_max_length"] = tokenizer.model_max_length
    return type(tokenizer)(tokenizer_object=backend, **init_kwargs), old_ids


def unknown_rate(tokenizer, texts: Iterable, is_split_into_words: bool = False) -> float:
    """Share of non-special tokens of `texts` that are the unknown token (0.0 for no tokens)."""
    counts = count_pieces(tokenizer, texts, is_split_into_words)
    special = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
    total = sum(count for piece, count in counts.items() if piece not in special)
    return counts[tokenizer.unk_token_id] / total if total else 0.0


def trim_embedding_rows(matrix: np.ndarray, old_ids) -> np.ndarray:
    """Rows `old_ids` of a [V, H] embedding matrix, as float32."""
    matrix = np.asarray(matrix)
    old_ids = np.asarray(old_ids, dtype=np.int64)
    if old_ids.size and old_ids.max() >= matrix.shape[0]:
        raise ValueError(f"old id {old_ids.max()} is outside the {matrix.shape[0]}-row matrix")
    return matrix[old_ids].astype(np.float32)


def remap_special_ids(config, old_ids) -> dict:
    """New `vocab_size` and special-token ids (pad/bos/eos/sep/cls, where the config sets
    them) of a HF config (dict or object) for a vocabulary trimmed to `old_ids`."""
    old_ids = np.asarray(old_ids, dtype=np.int64)
    new_id_of = {int(old): new for new, old in enumerate(old_ids)}
    get = config.get if isinstance(config, dict) else lambda key: getattr(config, key, None)
    remapped = {"vocab_size": len(old_ids)}
    for key in SPECIAL_ID_CONFIG_KEYS:
        old = get(key)
        if old is None:
            continue
        if old not in new_id_of:
            raise ValueError(f"config {key}={old} is not among the kept ids")
        remapped[key] = new_id_of[old]
    return remapped


def trim_model_vocab(model, old_ids):
    """A new HF TF model of the same class whose word embeddings are rows `old_ids` of
    `model`'s, every other weight copied. Models with other vocabulary-sized weights (an MLM
    output bias) are refused."""
    from xdistil.models.loading import word_embedding_variable

    config = model.config.__class__.from_dict(
        {**model.config.to_dict(), **remap_special_ids(model.config, old_ids)})
    trimmed = type(model)(config)
    trimmed(trimmed.dummy_inputs)
    old_embedding = word_embedding_variable(model)
    new_embedding = word_embedding_variable(trimmed)

    def local_name(variable):
        return variable.name.split("/", 1)[1]

    old_weights = {local_name(v): v for v in model.weights}
    for variable in trimmed.weights:
        if variable is new_embedding:
            variable.assign(trim_embedding_rows(old_embedding.numpy(), old_ids))
            continue
        source = old_weights[local_name(variable)]
        if source.shape != variable.shape:
            raise ValueError(f"cannot trim {local_name(variable)}: shape {source.shape} -> "
                             f"{variable.shape}; only the word embeddings may depend on the vocabulary")
        variable.assign(source)
    return trimmed
