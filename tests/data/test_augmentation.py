"""TinyBERT-style transfer-data augmentation with neighbours in the teacher's word-embedding space."""
import json
import math
import re

import numpy as np
import pytest

from xdistil.data.augmentation import (CROP_MIN_FRACTION, AugmentOptions, WordNeighbours, augment_examples,
                                       augmentation_fingerprint, crop_words, nearest_neighbours, seen_piece_ids,
                                       whole_word_pieces)
from xdistil.data.readers import NerExample, TextExample

SP = "\u2581"


@pytest.fixture(scope="module")
def bert_tokenizer(tiny_bert_dir):
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(str(tiny_bert_dir))


def planted_embeddings(tokenizer, pairs, hidden=8, seed=0):
    """Random rows, except that the second word of each pair sits right next to the first."""
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(len(tokenizer), hidden)).astype(np.float32)
    vocab = tokenizer.get_vocab()
    for word, neighbour in pairs:
        embeddings[vocab[neighbour]] = embeddings[vocab[word]] + 0.01 * rng.normal(size=hidden)
    return embeddings


@pytest.fixture(scope="module")
def bert_neighbours(bert_tokenizer):
    embeddings = planted_embeddings(bert_tokenizer, [("good", "great"), ("film", "movie")])
    return WordNeighbours.from_embeddings(bert_tokenizer, embeddings, k=3)


def brute_force_nearest(vectors, k):
    """Reference: sort every row's cosine similarities in float64 (ties: lower index first)."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit.astype(np.float64) @ unit.T.astype(np.float64)
    np.fill_diagonal(similarity, -np.inf)
    indices = np.arange(len(vectors))
    return np.array([np.lexsort((indices, -row))[:k] for row in similarity])


def texts(examples):
    return [(example.text_a, example.text_b) for example in examples]


# --- whole-word pieces and the neighbour search -------------------------------------------------

def test_whole_word_pieces_of_a_wordpiece_vocabulary(bert_tokenizer):
    words = set(whole_word_pieces(bert_tokenizer).values())
    assert {"good", "film", "john", "a", "z"} <= words
    assert not words & {"##s", "##ly", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", ".", ",", "!", "?"}


def test_pieces_the_tokenizer_never_produces_are_not_words(tmp_path):
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "movie", "Movie", "cafe", "café", "##s"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"), do_lower_case=True)
    assert sorted(whole_word_pieces(tokenizer).values()) == ["cafe", "movie"]


@pytest.mark.parametrize("block_rows", [None, 64, 500, 1])
def test_blocked_search_equals_brute_force(block_rows):
    vectors = np.random.default_rng(3).normal(size=(500, 16)).astype(np.float32)
    np.testing.assert_array_equal(nearest_neighbours(vectors, 15, block_rows),
                                  brute_force_nearest(vectors, 15))


@pytest.mark.parametrize("k", [0, 4])
def test_search_rejects_k_out_of_range(k):
    with pytest.raises(ValueError, match="k="):
        nearest_neighbours(np.ones((4, 2), np.float32), k)


def test_planted_neighbour_is_nearest_and_case_follows_the_tokenizer(bert_neighbours):
    assert bert_neighbours.neighbours_of("good")[0] == "great"
    assert bert_neighbours.neighbours_of("Film")[0] == "movie"
    assert bert_neighbours.neighbours_of("GOOD") == bert_neighbours.neighbours_of("good")
    assert len(bert_neighbours.neighbours_of("good")) == 3
    assert "good" not in bert_neighbours.neighbours_of("good")


def test_replacements_are_only_among_the_k_nearest(bert_tokenizer, bert_neighbours):
    embeddings = planted_embeddings(bert_tokenizer, [("good", "great"), ("film", "movie")])
    pieces = whole_word_pieces(bert_tokenizer)
    ids = sorted(pieces)
    row_of_good = ids.index(bert_tokenizer.get_vocab()["good"])
    expected = {pieces[ids[j]] for j in brute_force_nearest(embeddings[ids], 3)[row_of_good]}
    assert set(bert_neighbours.neighbours_of("good")) == expected

    copies = augment_examples([TextExample("good", None, None)], bert_neighbours, copies=60,
                              replace_prob=1.0, seed=0, include_original=False)
    drawn = {example.text_a for example in copies}
    assert drawn == expected  # 60 uniform draws among 3 reach all of them


def test_multi_piece_and_unknown_words_have_no_neighbours(bert_neighbours, bert_tokenizer):
    assert bert_tokenizer.tokenize("films") == ["film", "##s"]
    assert bert_tokenizer.tokenize("xyzzy") == ["[UNK]"]
    for word in ("films", "goodly", "xyzzy", "42", ",", ""):
        assert bert_neighbours.neighbours_of(word) == ()


def test_lookup_ignores_padding_left_on_the_shared_tokenizer(bert_tokenizer):
    bert_tokenizer(["good film"], padding="max_length", max_length=8, truncation=True)
    embeddings = planted_embeddings(bert_tokenizer, [("good", "great")])
    neighbours = WordNeighbours.from_embeddings(bert_tokenizer, embeddings, k=2)
    assert neighbours.neighbours_of("good")[0] == "great"


def test_candidate_ids_restrict_words_and_replacements_to_the_data(bert_tokenizer):
    data = [TextExample("The film, is good!", "a movie", None), TextExample("films 42", None, None)]
    candidate_ids = seen_piece_ids(bert_tokenizer, data)
    vocab = bert_tokenizer.get_vocab()
    seen_words = ("the", "film", "is", "good", "a", "movie", "[UNK]")  # "42" is one piece: [UNK]
    assert candidate_ids.tolist() == sorted(vocab[word] for word in seen_words)

    embeddings = planted_embeddings(bert_tokenizer, [("good", "great")])
    neighbours = WordNeighbours.from_embeddings(bert_tokenizer, embeddings, k=15,
                                                candidate_ids=candidate_ids)
    assert len(neighbours) == 6
    assert set(neighbours.neighbours_of("good")) == {"the", "film", "is", "a", "movie"}  # k clamped to 5
    assert neighbours.neighbours_of("john") == ()


def test_from_embeddings_rejects_too_few_pieces_and_short_matrices(bert_tokenizer):
    embeddings = planted_embeddings(bert_tokenizer, [])
    good = bert_tokenizer.get_vocab()["good"]
    with pytest.raises(ValueError, match="need at least 2"):
        WordNeighbours.from_embeddings(bert_tokenizer, embeddings, candidate_ids=[good])
    with pytest.raises(ValueError, match="embedding matrix has 10 rows"):
        WordNeighbours.from_embeddings(bert_tokenizer, embeddings[:10])


def test_neighbours_from_a_saved_teachers_input_embeddings(tiny_bert_dir, bert_tokenizer):
    from transformers import TFBertModel

    embeddings = TFBertModel.from_pretrained(str(tiny_bert_dir)).get_input_embeddings().weight.numpy()
    assert embeddings.shape[0] == len(bert_tokenizer)
    neighbours = WordNeighbours.from_embeddings(bert_tokenizer, embeddings, k=15)
    assert len(neighbours) == len(whole_word_pieces(bert_tokenizer))
    assert len(neighbours.neighbours_of("movie")) == 15


# --- a SentencePiece (Metaspace) vocabulary -----------------------------------------------------

@pytest.fixture(scope="module")
def sentencepiece_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    words = [(SP + word, -2.0) for word in "the a film movie was good great bad un".split()]
    pieces = [("fun", -3.0), ("ny", -3.0), (SP, -4.0), (",", -3.0), (SP + "42", -3.0)]
    letters = [(chr(c), -6.0) for c in range(ord("a"), ord("z") + 1)]
    backend = Tokenizer(models.Unigram(specials + words + pieces + letters, unk_id=3))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SP, prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement=SP, prepend_scheme="always")
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")


def test_sentencepiece_vocabulary(sentencepiece_tokenizer):
    tokenizer = sentencepiece_tokenizer
    assert tokenizer.tokenize("unfunny") == [SP + "un", "fun", "ny"]
    pieces = whole_word_pieces(tokenizer)
    assert set(pieces.values()) == {"the", "a", "film", "movie", "was", "good", "great", "bad", "un"}

    embeddings = planted_embeddings(tokenizer, [(SP + "film", SP + "movie")])
    neighbours = WordNeighbours.from_embeddings(tokenizer, embeddings, k=3)
    assert neighbours.neighbours_of("film")[0] == "movie"
    assert neighbours.neighbours_of("unfunny") == ()

    original = TextExample("the film was unfunny , 42", None, None)
    [copy] = augment_examples([original], neighbours, copies=1, replace_prob=1.0, seed=0,
                              include_original=False)
    words = copy.text_a.split()
    assert words[3:] == ["unfunny", ",", "42"]
    for before, after in zip(original.text_a.split()[:3], words[:3]):
        assert after in neighbours.neighbours_of(before)
        assert tokenizer.tokenize(after) == [SP + after]


# --- augment_examples ---------------------------------------------------------------------------

SENTENCES = [TextExample(text, None, None) for text in (
    "the film is good", "a movie was bad", "john lives in paris", "the cast is great",
    "mary works at acme corp", "the plot was awful", "a good film", "london is great",
    "the movie and the cast", "an awful plot for a film")]


def test_each_example_yields_the_original_then_its_copies(bert_neighbours):
    output = list(augment_examples(SENTENCES[:3], bert_neighbours, copies=2, replace_prob=0.4, seed=0))
    assert len(output) == 9
    assert [output[i] for i in (0, 3, 6)] == SENTENCES[:3]
    without = list(augment_examples(SENTENCES[:3], bert_neighbours, copies=2, replace_prob=0.4,
                                    seed=0, include_original=False))
    assert without == [example for i, example in enumerate(output) if i % 3]


def test_same_seed_and_index_give_the_same_copies(bert_neighbours):
    def run(seed):
        return texts(augment_examples(SENTENCES, bert_neighbours, copies=3, replace_prob=0.5, seed=seed))

    assert run(7) == run(7)
    assert run(7) != run(8)


@pytest.mark.parametrize("start", [1, 4, 9])
def test_stream_started_at_an_index_reproduces_the_tail_of_a_full_run(bert_neighbours, start):
    full = list(augment_examples(SENTENCES, bert_neighbours, copies=3, replace_prob=0.5, seed=1))
    tail = list(augment_examples(SENTENCES[start:], bert_neighbours, copies=3, replace_prob=0.5,
                                 seed=1, start_index=start))
    assert tail == full[start * 4:]


def test_copies_depend_on_the_examples_index(bert_neighbours):
    same = [SENTENCES[9]] * 2
    first, second = (list(augment_examples([example], bert_neighbours, copies=4, replace_prob=0.5,
                                           seed=0, start_index=index)) for index, example in enumerate(same))
    assert texts(first[1:]) != texts(second[1:])


def test_replace_prob_one_replaces_every_replaceable_word(bert_neighbours):
    tokens = ("John", "lives", "in", "Paris", "films", ",", "goodly", "42")
    original = NerExample(tokens, ("B-PER", "O", "O", "B-LOC", "O", "O", "O", "O"))
    output = list(augment_examples([original], bert_neighbours, copies=5, replace_prob=1.0, seed=0))
    assert output[0] is original
    for copy in output[1:]:
        assert copy.tags is None
        assert len(copy.tokens) == len(tokens)
        for before, after in zip(tokens[:4], copy.tokens[:4]):
            assert after in bert_neighbours.neighbours_of(before)
        assert copy.tokens[4:] == tokens[4:]


def test_punctuation_around_a_word_and_spacing_are_kept(bert_neighbours):
    original = TextExample("(the  film,   is good!", None, None)
    [copy] = augment_examples([original], bert_neighbours, copies=1, replace_prob=1.0, seed=0,
                              include_original=False)
    match = re.fullmatch(r"\((\w+)  (\w+),   (\w+) (\w+)!", copy.text_a)
    assert match, copy.text_a
    for before, after in zip(("the", "film", "is", "good"), match.groups()):
        assert after in bert_neighbours.neighbours_of(before)


def test_copy_without_replaceable_words_equals_the_original_and_is_still_emitted(bert_neighbours):
    original = TextExample("films , 42 !", None, None)
    output = list(augment_examples([original], bert_neighbours, copies=3, replace_prob=1.0, seed=0))
    assert texts(output) == [("films , 42 !", None)] * 4


def test_pairwise_augments_both_texts_and_drops_the_label(bert_neighbours):
    original = TextExample("the film is good", "john lives in paris", "1")
    output = list(augment_examples([original], bert_neighbours, copies=2, replace_prob=1.0, seed=0))
    assert output[0] == original
    for copy in output[1:]:
        assert copy.label is None
        for before, after in ((original.text_a, copy.text_a), (original.text_b, copy.text_b)):
            for word, replacement in zip(before.split(), after.split(), strict=True):
                assert replacement in bert_neighbours.neighbours_of(word)


def test_classification_copy_keeps_text_b_none(bert_neighbours):
    [copy] = augment_examples([SENTENCES[0]], bert_neighbours, copies=1, replace_prob=1.0, seed=0,
                              include_original=False)
    assert copy.text_b is None and copy.label is None
    assert copy.text_a != SENTENCES[0].text_a


def test_negative_start_index_is_rejected(bert_neighbours):
    with pytest.raises(ValueError, match="start_index"):
        list(augment_examples(SENTENCES, bert_neighbours, 1, 0.4, 0, start_index=-1))


# --- crops -------------------------------------------------------------------------------------

LONG = TextExample("a b c d e f g h i j k l m n o p q r s t", None, None)


def _is_span(part: list, whole: list) -> bool:
    return any(whole[start:start + len(part)] == part for start in range(len(whole) - len(part) + 1))


@pytest.mark.parametrize("length", [2, 3, 7, 20])
def test_a_crop_is_a_contiguous_span_of_at_least_the_minimum_share_and_not_all(length):
    words = [f"w{i}" for i in range(length)]
    lengths = set()
    for seed in range(200):
        crop = crop_words(words, np.random.default_rng(seed))
        assert _is_span(crop, words)
        assert math.ceil(CROP_MIN_FRACTION * length) <= len(crop) < length
        lengths.add(len(crop))
    assert lengths == set(range(max(1, math.ceil(CROP_MIN_FRACTION * length)), length))  # every length is drawn


@pytest.mark.parametrize("words", [[], ["alone"]])
def test_a_text_of_one_word_or_none_is_its_own_crop(words):
    assert crop_words(words, np.random.default_rng(0)) == words


def test_crops_follow_the_copies_and_leave_them_as_they_were(bert_neighbours):
    without = list(augment_examples(SENTENCES[:3], bert_neighbours, copies=2, replace_prob=0.5, seed=5))
    output = list(augment_examples(SENTENCES[:3], bert_neighbours, copies=2, replace_prob=0.5, seed=5, crops=2))
    assert len(output) == 3 * 5
    for index, original in enumerate(SENTENCES[:3]):
        group = output[5 * index:5 * index + 5]
        assert group[:3] == without[3 * index:3 * index + 3]
        for crop in group[3:]:
            assert crop.label is None and crop.text_b is None
            assert _is_span(crop.text_a.split(), original.text_a.split())
            assert len(crop.text_a.split()) < len(original.text_a.split())


def test_crops_without_copies_need_no_neighbours_and_without_the_original_are_all_there_is():
    output = list(augment_examples([LONG], None, copies=0, replace_prob=0.4, seed=0, include_original=False,
                                   crops=3))
    assert len(output) == 3 and all(_is_span(crop.text_a.split(), LONG.text_a.split()) for crop in output)
    assert len(set(texts(output))) > 1


@pytest.mark.parametrize("start", [1, 4, 9])
def test_crops_of_a_stream_started_at_an_index_are_those_of_a_full_run(start):
    full = list(augment_examples(SENTENCES, None, 0, 0.4, seed=3, crops=2))
    tail = list(augment_examples(SENTENCES[start:], None, 0, 0.4, seed=3, start_index=start, crops=2))
    assert tail == full[start * 3:]
    assert texts(full) != texts(augment_examples(SENTENCES, None, 0, 0.4, seed=4, crops=2))


def test_ner_crops_are_spans_of_the_tokens_without_tags():
    original = NerExample(("John", "lives", "in", "Paris", "since", "May"), ("B-PER", "O", "O", "B-LOC", "O", "O"))
    for crop in augment_examples([original], None, 0, 0.4, seed=0, include_original=False, crops=5):
        assert crop.tags is None and _is_span(list(crop.tokens), list(original.tokens))
        assert 2 <= len(crop.tokens) < 6


def test_a_pair_is_not_cropped():
    with pytest.raises(ValueError, match="not of text pairs"):
        list(augment_examples([TextExample("the film is good", "it is", "1")], None, 0, 0.4, seed=0, crops=1))


# --- options and fingerprint --------------------------------------------------------------------

def test_default_options_follow_tinybert():
    options = AugmentOptions(copies=4)
    assert (options.replace_prob, options.neighbours, options.include_original) == (0.4, 15, True)


@pytest.mark.parametrize("settings, flag", [
    (dict(copies=-1), "--augment_transfer"),
    (dict(copies=1.5), "--augment_transfer"),
    (dict(copies=0, include_original=False), "--augment_transfer"),
    (dict(copies=1, replace_prob=0.0), "--augment_replace_prob"),
    (dict(copies=1, replace_prob=1.5), "--augment_replace_prob"),
    (dict(copies=1, replace_prob=math.nan), "--augment_replace_prob"),
    (dict(copies=1, neighbours=0), "--augment_neighbours"),
    (dict(copies=1, seed=-1), "seed"),
    (dict(crops=-1), "--augment_crops"),
    (dict(crops=0.5), "--augment_crops"),
])
def test_invalid_options_name_the_flag(settings, flag):
    with pytest.raises(ValueError, match=re.escape(flag)):
        AugmentOptions(**settings)


def test_fingerprint_is_stable_and_changes_with_what_is_emitted(bert_tokenizer, bert_neighbours):
    options = AugmentOptions(copies=4, seed=3)
    fingerprint = augmentation_fingerprint(options, bert_neighbours)
    assert json.loads(json.dumps(fingerprint)) == fingerprint
    assert augmentation_fingerprint(AugmentOptions(copies=4, seed=3), bert_neighbours) == fingerprint
    for changed in (AugmentOptions(copies=5, seed=3), AugmentOptions(copies=4, seed=4),
                    AugmentOptions(copies=4, seed=3, replace_prob=0.5),
                    AugmentOptions(copies=4, seed=3, include_original=False)):
        assert augmentation_fingerprint(changed, bert_neighbours) != fingerprint
    embeddings = planted_embeddings(bert_tokenizer, [("good", "great"), ("film", "movie")])
    other_table = WordNeighbours.from_embeddings(bert_tokenizer, embeddings, k=2)
    assert augmentation_fingerprint(options, other_table) != fingerprint


def test_fingerprint_when_off_ignores_the_other_settings():
    assert augmentation_fingerprint(AugmentOptions(copies=0, replace_prob=0.9), None) == {"copies": 0}
    with pytest.raises(ValueError, match="word neighbours"):
        augmentation_fingerprint(AugmentOptions(copies=2), None)


def test_crops_enter_the_fingerprint_only_when_made():
    """A key without crops is the one made before crops existed, so older caches still match; crops alone need no
    neighbour table; each crop setting changes the key."""
    assert "crops" not in augmentation_fingerprint(AugmentOptions(copies=0, crops=0), None)
    only_crops = augmentation_fingerprint(AugmentOptions(crops=1, seed=2), None)
    assert only_crops["crops"] == 1 and "neighbour_table" not in only_crops and only_crops != {"copies": 0}
    assert augmentation_fingerprint(AugmentOptions(crops=2, seed=2), None) != only_crops
    assert augmentation_fingerprint(AugmentOptions(crops=1, seed=3), None) != only_crops


def test_crops_keep_the_copies_fingerprint_apart_from_their_own_fields(bert_neighbours):
    copies = augmentation_fingerprint(AugmentOptions(copies=2, seed=3), bert_neighbours)
    assert set(copies) == {"method", "copies", "replace_prob", "neighbours", "seed", "include_original",
                           "neighbour_table"}
    both = augmentation_fingerprint(AugmentOptions(copies=2, seed=3, crops=1), bert_neighbours)
    assert {key: value for key, value in both.items() if key not in ("crops", "crop_method")} == copies
    assert both["crops"] == 1


def test_a_runs_options_without_crops_read_as_none():
    """Runs saved before --augment_crops existed have no such setting: they made no crops."""
    settings = {"augment_transfer": 1, "augment_replace_prob": 0.4, "augment_neighbours": 15}
    assert AugmentOptions.of_run(settings, 42) == AugmentOptions(1, 0.4, 15, 42)
    assert AugmentOptions.of_run({**settings, "augment_crops": 2}, 42).crops == 2
