"""TinyBERT-style transfer-data augmentation with neighbours in the teacher's word-embedding space."""
import json
import math
import re

import numpy as np
import pytest

from xdistil.data.augmentation import (AugmentOptions, WordNeighbours, augment_examples,
                                       augmentation_fingerprint, nearest_neighbours, seen_piece_ids,
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
