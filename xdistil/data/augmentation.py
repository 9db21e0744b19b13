"""TinyBERT-style augmentation of the transfer data (Jiao et al., 2020, section 3.3, Algorithm 1).

An augmented copy of a sentence replaces each replaceable word, with probability
`replace_prob`, by one of its K nearest neighbours, drawn uniformly. TinyBERT takes the
neighbours from BERT's masked-LM predictions (single-piece words) and from GloVe (other words);
here they come from the teacher's own input word embeddings, so no extra model is needed:

- a word is replaceable when, on its own, the teacher tokenizer turns it into one whole-word
  piece (WordPiece: a piece that is not a `##` continuation; SentencePiece: a `▁word` piece)
  made of letters; every other word (several pieces, unknown, digits, punctuation) stays;
- its neighbours are the K whole-word pieces whose embedding rows are the most cosine-similar
  to its own, written as words (a SentencePiece piece without its `▁`).

Words are the whitespace-separated words of a text, or the tokens of an NER sentence. The
punctuation around a word is kept and only the rest (its core) is replaced, so that "film,"
may become "movie,"; a word is replaced by exactly one word, so NER word boundaries hold.
Whitespace is kept as it was. An augmented copy that happens to equal the original (no
replaceable word, or no replacement drawn) is still emitted: each input example yields
exactly `include_original + copies + crops` examples, whatever its words.

The words chosen for a copy depend only on (seed, the example's global index, the copy
number) and the neighbour table, so a run resumed at any chunk produces the same data.

Crops (`crops` > 0) are a second kind of copy, after the neighbour copies: a contiguous span of
the text's (or NER sentence's) words, at least `CROP_MIN_FRACTION` of them and one fewer than
all, so that the teacher labels the phrases a text is made of, as SST's phrase labels teach a
sentence's parts. A text of one word is its own crop. Crop c of the example of global index g
draws from `numpy.random.default_rng([seed, g, CROP_STREAM, c])`, a stream of its own, so that
adding crops leaves the neighbour copies (and the cached logits of their rows) as they were.
Pairs are not cropped (a crop of a premise changes what follows from it).
"""
from __future__ import annotations

import hashlib
import logging
import math
import re
import time
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
from tokenizers import Tokenizer, models

from xdistil.data.readers import NerExample, TextExample

log = logging.getLogger(__name__)

AUGMENTATION_METHOD = "tinybert-teacher-embedding-neighbours/1"
CROP_METHOD = "word-span-crops/1"
CROP_MIN_FRACTION = 0.3
CROP_STREAM = 1
SENTENCEPIECE_MARKER = "\u2581"
_SIMILARITY_BLOCK_BYTES = 64 * 2**20  # one float32 block of the similarity matrix
_LOOKUP_CACHE_LIMIT = 1_000_000  # distinct words remembered by WordNeighbours
_SPACES = re.compile(r"(\s+)")


@dataclass(frozen=True)
class AugmentOptions:
    """Settings of the transfer-data augmentation; `copies` 0 turns it off."""

    copies: int = 0
    replace_prob: float = 0.4
    neighbours: int = 15
    seed: int = 0
    include_original: bool = True
    crops: int = 0

    def __post_init__(self):
        if not _is_integer(self.copies) or self.copies < 0:
            raise ValueError("--augment_transfer (augmented copies per transfer example) must be "
                             f"an integer >= 0, got {self.copies!r}")
        if not 0 < self.replace_prob <= 1:
            raise ValueError(f"--augment_replace_prob must be in (0, 1], got {self.replace_prob!r}")
        if not _is_integer(self.neighbours) or self.neighbours < 1:
            raise ValueError(f"--augment_neighbours must be an integer >= 1, got {self.neighbours!r}")
        if not _is_integer(self.seed) or self.seed < 0:
            raise ValueError(f"the augmentation seed must be an integer >= 0, got {self.seed!r}")
        if not _is_integer(self.crops) or self.crops < 0:
            raise ValueError(f"--augment_crops (word-span crops per transfer example) must be an integer >= 0, "
                             f"got {self.crops!r}")
        if not self.active and not self.include_original:
            raise ValueError("--augment_transfer 0 without the original examples leaves no transfer data")

    @property
    def active(self) -> bool:
        """Whether any copy is made (neighbour copies or crops)."""
        return bool(self.copies or self.crops)

    @classmethod
    def of_run(cls, data_settings, seed: int) -> "AugmentOptions":
        """The options a run's --augment_* settings give (`data_settings`: its data section, as a mapping), so that
        the distillation and a later pruning of its student make the same copies under the same cache key."""
        return cls(data_settings["augment_transfer"], data_settings["augment_replace_prob"],
                   data_settings["augment_neighbours"], seed, crops=data_settings.get("augment_crops", 0))


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def augmentation_fingerprint(options: AugmentOptions, word_neighbours: WordNeighbours | None) -> dict:
    """A stable, JSON-ready description of what the augmentation emits, for a cache key.

    `{"copies": 0}` when augmentation is off (its other settings then change nothing); else the
    options, with the method and a digest of the neighbour table (required) when there are
    neighbour copies, and the crop method when there are crops (a key without crops is the one
    made before crops existed).
    """
    if not options.active:
        return {"copies": 0}
    fingerprint = asdict(options)
    if options.crops:
        fingerprint["crop_method"] = CROP_METHOD
    else:
        del fingerprint["crops"]
    if options.copies:
        if word_neighbours is None:
            raise ValueError("augmentation is on: its fingerprint needs the word neighbours")
        fingerprint.update(method=AUGMENTATION_METHOD, neighbour_table=word_neighbours.digest())
    return fingerprint


def _plain_backend(tokenizer) -> Tokenizer:
    """A private copy of a HF fast tokenizer's backend, with no padding or truncation
    (the shared backend keeps whatever the last call to the HF tokenizer set)."""
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    return backend


def _single_piece_ids(backend: Tokenizer, words: list[str]) -> list[int | None]:
    """For each word tokenized on its own: its piece id when it is one piece, else None."""
    encodings = backend.encode_batch(words, add_special_tokens=False)
    return [encoding.ids[0] if len(encoding.ids) == 1 else None for encoding in encodings]


def _is_word(text: str) -> bool:
    """True for letters (with their combining marks), starting with a letter.

    Digits and punctuation are left out on purpose: a neighbour of "," or "1999" is other
    punctuation or another number, which changes sentence structure or facts (dates in NER)
    and adds none of the lexical variety the augmentation is for.
    """
    return (bool(text) and unicodedata.category(text[0]).startswith("L")
            and all(unicodedata.category(char)[0] in "LM" for char in text))


def _word_of_piece(piece: str, continuation_prefix: str | None) -> str | None:
    """The word a piece stands for when it starts a word: WordPiece (`continuation_prefix`
    given) any piece but a continuation, SentencePiece a `▁word` piece without its marker."""
    if continuation_prefix is not None:
        return None if piece.startswith(continuation_prefix) else piece
    return piece[1:] if piece.startswith(SENTENCEPIECE_MARKER) else None


def whole_word_pieces(tokenizer, candidate_ids: Iterable[int] | None = None) -> dict[int, str]:
    """Piece id -> word, for each whole-word piece of a HF fast tokenizer.

    A whole-word piece starts a word, is made of letters (see `_is_word`), is neither a
    special, added nor unknown token, and is what its word tokenizes to on its own (so case
    and accents follow the tokenizer's normalizer, and an emitted word encodes back to the
    piece). With `candidate_ids`, only those ids are considered.
    """
    backend = _plain_backend(tokenizer)
    model = backend.model
    prefix = model.continuing_subword_prefix if isinstance(model, models.WordPiece) else None
    excluded = (set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
                | {tokenizer.unk_token_id})
    allowed = None if candidate_ids is None else {int(piece_id) for piece_id in candidate_ids}
    words = {}
    for piece, piece_id in backend.get_vocab(with_added_tokens=False).items():
        if piece_id in excluded or (allowed is not None and piece_id not in allowed):
            continue
        word = _word_of_piece(piece, prefix)
        if word is not None and _is_word(word):
            words[piece_id] = word
    ids = list(words)
    round_trip = _single_piece_ids(backend, [words[piece_id] for piece_id in ids])
    return {piece_id: words[piece_id] for piece_id, back in zip(ids, round_trip) if back == piece_id}


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.finfo(np.float32).tiny)


def nearest_neighbours(vectors: np.ndarray, k: int, block_rows: int | None = None) -> np.ndarray:
    """Indices [n, k] of each row's k most cosine-similar other rows, most similar first
    (ties: lower index first).

    Computed `block_rows` rows at a time (by default as many as fit a 64 MiB block of
    similarities), so memory stays bounded whatever n.
    """
    count = len(vectors)
    if not 1 <= k < count:
        raise ValueError(f"need 1 <= k < number of rows; got k={k} for {count} rows")
    unit = _unit_rows(vectors)
    rows = block_rows or max(1, _SIMILARITY_BLOCK_BYTES // (4 * count))
    result = np.empty((count, k), dtype=np.int64)
    for start in range(0, count, rows):
        stop = min(count, start + rows)
        similarity = unit[start:stop] @ unit.T
        similarity[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        top = np.argpartition(similarity, -k, axis=1)[:, -k:]
        order = np.lexsort((top, -np.take_along_axis(similarity, top, axis=1)), axis=1)
        result[start:stop] = np.take_along_axis(top, order, axis=1)
    return result


class WordNeighbours:
    """The nearest whole-word pieces of each whole-word piece of a teacher tokenizer, as words,
    looked up by word (a word is tokenized on its own; results are cached per distinct word)."""

    def __init__(self, tokenizer, neighbour_words: dict[int, tuple[str, ...]]):
        self._backend = _plain_backend(tokenizer)
        self._neighbour_words = neighbour_words
        self._cache: dict[str, tuple[str, ...]] = {}

    @classmethod
    def from_embeddings(cls, tokenizer, embeddings: np.ndarray, k: int = 15,
                        candidate_ids: Iterable[int] | None = None,
                        block_rows: int | None = None) -> WordNeighbours:
        """Neighbours by cosine similarity of the rows of `embeddings` ([vocabulary, hidden],
        the teacher's input word embeddings, row i for piece id i).

        `candidate_ids` restricts both the words replaced and their replacements to those
        pieces (e.g. `seen_piece_ids` of the transfer data: with a 250k vocabulary the full
        search is quadratic in it). When fewer than k + 1 pieces remain, each gets all others.
        """
        pieces = whole_word_pieces(tokenizer, candidate_ids)
        if len(pieces) < 2:
            raise ValueError(f"found {len(pieces)} whole-word pieces in the tokenizer "
                             "(within candidate_ids, if given); need at least 2")
        ids = np.array(sorted(pieces))
        if ids[-1] >= len(embeddings):
            raise ValueError(f"the embedding matrix has {len(embeddings)} rows but the tokenizer "
                             f"has piece id {ids[-1]}")
        nearest = nearest_neighbours(np.asarray(embeddings)[ids], min(k, len(ids) - 1), block_rows)
        words = [pieces[piece_id] for piece_id in ids]
        return cls(tokenizer, {int(piece_id): tuple(words[j] for j in row)
                               for piece_id, row in zip(ids, nearest)})

    def __len__(self) -> int:
        """The number of pieces that have neighbours."""
        return len(self._neighbour_words)

    def neighbours_of(self, word: str) -> tuple[str, ...]:
        """The replacement words of `word`, most similar first; () when it is not replaceable."""
        return self.neighbours_of_words([word])[0]

    def neighbours_of_words(self, words: list[str]) -> list[tuple[str, ...]]:
        """`neighbours_of` for each word, tokenizing the words not seen before in one batch."""
        unseen = list(dict.fromkeys(word for word in words if word and word not in self._cache))
        if unseen:
            if len(self._cache) + len(unseen) > _LOOKUP_CACHE_LIMIT:
                self._cache.clear()
            for word, piece_id in zip(unseen, _single_piece_ids(self._backend, unseen)):
                self._cache[word] = self._neighbour_words.get(piece_id, ())
        return [self._cache.get(word, ()) for word in words]

    def digest(self) -> str:
        """SHA-256 of the neighbour table (piece ids and neighbour words)."""
        table = hashlib.sha256()
        for piece_id in sorted(self._neighbour_words):
            table.update(f"{piece_id}\t{' '.join(self._neighbour_words[piece_id])}\n".encode())
        return table.hexdigest()


def _split_core(word: str) -> tuple[str, str, str]:
    """`word` as (leading punctuation, core, trailing punctuation); punctuation, symbols and
    spaces count as punctuation, so a run of whitespace is all punctuation."""
    start, stop = 0, len(word)
    while start < stop and unicodedata.category(word[start])[0] in "PSZ":
        start += 1
    while stop > start and unicodedata.category(word[stop - 1])[0] in "PSZ":
        stop -= 1
    return word[:start], word[start:stop], word[stop:]


def _sides(example) -> list[list[str]]:
    """The word lists to augment: an NER sentence's tokens; a text split into words and the
    whitespace between them (so that joining restores it); pairwise both texts."""
    if isinstance(example, NerExample):
        return [list(example.tokens)]
    texts = [example.text_a] if example.text_b is None else [example.text_a, example.text_b]
    return [_SPACES.split(text) for text in texts]


def _unlabeled_from_sides(example, sides: list[list[str]]):
    """An unlabeled example of the same kind as `example`, made of the augmented `sides`."""
    if isinstance(example, NerExample):
        return NerExample(tuple(sides[0]), None)
    return TextExample("".join(sides[0]), "".join(sides[1]) if len(sides) > 1 else None, None)


class _WordChoices:
    """The words of one text, with the replacements each replaceable word may take."""

    def __init__(self, words: list[str], word_neighbours: WordNeighbours):
        self.words = words
        parts = [_split_core(word) for word in words]
        options = word_neighbours.neighbours_of_words([core for _, core, _ in parts])
        self.slots = [(position, parts[position][0], options[position], parts[position][2])
                      for position in range(len(words)) if options[position]]
        self.option_counts = np.array([len(slot[2]) for slot in self.slots])

    def draw(self, replace_prob: float, rng: np.random.Generator) -> list[str]:
        """The words with each replaceable one replaced, with probability `replace_prob`, by
        one of its options drawn uniformly."""
        words = list(self.words)
        if not self.slots:
            return words
        replace_draws, pick_draws = rng.random((2, len(self.slots)))
        picks = (pick_draws * self.option_counts).astype(np.int64)
        for slot in np.flatnonzero(replace_draws < replace_prob):
            position, lead, options, trail = self.slots[slot]
            words[position] = lead + options[picks[slot]] + trail
        return words


def crop_words(words: list, rng: np.random.Generator) -> list:
    """A contiguous span of `words`: at least `CROP_MIN_FRACTION` of them (and one) and one fewer than all;
    a list of one word or none is returned whole."""
    if len(words) < 2:
        return list(words)
    length = int(rng.integers(max(1, math.ceil(CROP_MIN_FRACTION * len(words))), len(words)))
    start = int(rng.integers(0, len(words) - length + 1))
    return list(words[start:start + length])


def _crop(example, rng: np.random.Generator):
    """An unlabeled crop of a single text (its whitespace-separated words, joined by one space) or NER sentence."""
    if isinstance(example, NerExample):
        return NerExample(tuple(crop_words(list(example.tokens), rng)), None)
    if example.text_b is not None:
        raise ValueError("crops are made of single texts and NER sentences, not of text pairs")
    return TextExample(" ".join(crop_words(example.text_a.split(), rng)), None, None)


def augment_examples(examples: Iterable, word_neighbours: WordNeighbours | None, copies: int,
                     replace_prob: float, seed: int, include_original: bool = True,
                     start_index: int = 0, crops: int = 0) -> Iterator:
    """Yield, for each example, itself (if `include_original`, untouched), then `copies`
    augmented versions and `crops` crops (NerExample / TextExample with no tags / label).

    Example i of `examples` has the global index `start_index + i`; copy c of the example of
    global index g uses `numpy.random.default_rng([seed, g, c])` (crop c: `[seed, g,
    CROP_STREAM, c]`), so a stream started at any example reproduces the matching tail of a full
    run. Settings are validated by `AugmentOptions`; `word_neighbours` may be None without copies.
    """
    if start_index < 0:
        raise ValueError(f"start_index must be >= 0, got {start_index}")
    for index, example in enumerate(examples, start=start_index):
        if include_original:
            yield example
        if copies:
            choices = [_WordChoices(words, word_neighbours) for words in _sides(example)]
            for copy in range(copies):
                rng = np.random.default_rng([seed, index, copy])
                yield _unlabeled_from_sides(example, [side.draw(replace_prob, rng) for side in choices])
        for crop in range(crops):
            yield _crop(example, np.random.default_rng([seed, index, CROP_STREAM, crop]))


def seen_piece_ids(tokenizer, examples: Iterable) -> np.ndarray:
    """Sorted ids of the pieces that words of `examples` (their cores, as augmentation sees
    them) tokenize to on their own as one piece: pass as `candidate_ids` to restrict the
    neighbour search, and the replacements, to words of the data."""
    cores = dict.fromkeys(core for example in examples for words in _sides(example)
                          for word in words if (core := _split_core(word)[1]))
    piece_ids = _single_piece_ids(_plain_backend(tokenizer), list(cores))
    return np.array(sorted({piece_id for piece_id in piece_ids if piece_id is not None}), dtype=np.int64)


class AugmentedChunkReader:
    """A transfer reader's chunks with each example followed by its augmented copies.

    Chunk i of `reader` holds the examples of global indices i * chunk_size onwards, so its copies are
    the ones a full pass would make, whichever chunk a (resumed) pass starts from."""

    def __init__(self, reader, word_neighbours: WordNeighbours | None, options: AugmentOptions):
        self.reader = reader
        self.word_neighbours = word_neighbours
        self.options = options

    def chunks(self, start_chunk: int = 0):
        for index, examples in self.reader.chunks(start_chunk):
            yield index, list(augment_examples(
                examples, self.word_neighbours, self.options.copies, self.options.replace_prob, self.options.seed,
                self.options.include_original, start_index=index * self.reader.chunk_size, crops=self.options.crops))


def augmented_reader(reader, embeddings, tokenizer, options: AugmentOptions):
    """`reader` with augmented copies of each example: words replaced by their neighbours among the rows of
    `embeddings` (the teacher's input word embeddings, indexed by `tokenizer`'s ids; a function giving them, called
    only when there are neighbour copies), among the words of the reader's own examples; then the crops. Returns
    (reader, fingerprint for a cache key): `reader` itself and `{"copies": 0}` when `options` make no copy."""
    if not options.active:
        return reader, augmentation_fingerprint(options, None)
    neighbours = None
    if options.copies:
        started = time.time()
        candidates = seen_piece_ids(tokenizer, (example for _, chunk in reader.chunks(0) for example in chunk))
        neighbours = WordNeighbours.from_embeddings(tokenizer, embeddings(), options.neighbours,
                                                    candidate_ids=candidates)
        log.info("augmentation: %d copies of each transfer example, %d replaceable words (%.0f s)", options.copies,
                 len(neighbours), time.time() - started)
    if options.crops:
        log.info("augmentation: %d word-span crops of each transfer example", options.crops)
    return AugmentedChunkReader(reader, neighbours, options), augmentation_fingerprint(options, neighbours)
