"""Tokenization, sub-word label alignment, windowing and decoding, on the tiny WordPiece vocab
(known splits: "parisly" -> paris ##ly; unknown words and CJK characters -> [UNK])."""
import numpy as np
import pytest
from transformers import AutoTokenizer

from xdistil.data.encoding import IGNORE_INDEX, EncodingSettings, decode_ner, encode_ner, encode_texts
from xdistil.data.readers import NerExample, TextExample
from xdistil.tasks import get_task

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "B-ORG", "I-ORG"]
LABEL2ID = {tag: i for i, tag in enumerate(TAGS)}
X = IGNORE_INDEX


@pytest.fixture(scope="module")
def tokenizer(tiny_bert_dir):
    return AutoTokenizer.from_pretrained(str(tiny_bert_dir))


def tokens_of(tokenizer, ids):
    return [token for token in tokenizer.convert_ids_to_tokens(ids.tolist()) if token != "[PAD]"]


def gold_ids(examples):
    return [[LABEL2ID[tag] for tag in example.tags] for example in examples]


def labeled_words(features):
    """(example, word, label) for every labeled position, in row order."""
    rows, positions = np.nonzero(features.word_ids >= 0)
    return list(zip(features.example_index[rows].tolist(),
                    features.word_ids[rows, positions].tolist(),
                    features.labels[rows, positions].tolist()))


def test_ner_labels_go_on_the_first_subtoken(tokenizer):
    example = NerExample(("John", "parisly", "works"), ("B-PER", "B-LOC", "O"))
    features, stats = encode_ner(tokenizer, [example], seq_len=8, label2id=LABEL2ID)
    assert tokens_of(tokenizer, features.input_ids[0]) == [
        "[CLS]", "john", "paris", "##ly", "works", "[SEP]"]
    assert features.labels.tolist() == [[X, 1, 3, X, 0, X, X, X]]
    assert features.word_ids.tolist() == [[-1, 0, 1, -1, 2, -1, -1, -1]]
    assert features.attention_mask.tolist() == [[1, 1, 1, 1, 1, 1, 0, 0]]
    assert features.token_type_ids.tolist() == [[0] * 8]
    assert features.example_index.tolist() == [0]
    assert features.input_ids.dtype == features.labels.dtype == np.int32
    assert len(features) == 1 and features.num_examples == 1
    assert stats == {"examples": 1, "rows": 1, "split_examples": 0, "truncated_examples": 0,
                     "truncated_words": 0, "dropped_markers": 0}


def test_unlabeled_ner_keeps_word_ids_but_no_labels(tokenizer):
    features, _ = encode_ner(tokenizer, [NerExample(("parisly", "corp"), None)], 6, LABEL2ID)
    assert features.labels.tolist() == [[X] * 6]
    assert features.word_ids.tolist() == [[-1, 0, -1, 1, -1, -1]]


def test_unknown_tag_is_an_error(tokenizer):
    with pytest.raises(ValueError, match="example 1: unknown tag 'B-MISC'"):
        encode_ner(tokenizer, [NerExample(("a",), ("O",)), NerExample(("b",), ("B-MISC",))], 6,
                   LABEL2ID)


def test_cjk_and_vanishing_words_keep_alignment(tokenizer):
    # CJK characters are split one per token and map to [UNK]; U+200B and a lone combining
    # accent tokenize to nothing and are replaced by [UNK].
    example = NerExample(("约翰", "\u200b", "住在", "\u0301", "北京", "works"),
                         ("B-PER", "O", "O", "O", "B-LOC", "O"))
    features, _ = encode_ner(tokenizer, [example], 12, LABEL2ID)
    assert tokens_of(tokenizer, features.input_ids[0]) == ["[CLS]"] + ["[UNK]"] * 8 + [
        "works", "[SEP]"]
    assert features.word_ids.tolist() == [[-1, 0, -1, 1, 2, -1, 3, 4, -1, 5, -1, -1]]
    assert features.labels.tolist() == [[X, 1, X, 0, 0, X, 0, 3, X, 0, X, X]]
    assert decode_ner(features.labels.clip(min=0), features, [6], TAGS) == [list(example.tags)]


def long_sentences():
    words = "john lives in parisly and mary works at acme corp in london".split()
    tags = "B-PER O O B-LOC O B-PER O O B-ORG I-ORG O B-LOC".split()
    return [NerExample(tuple(words), tuple(tags)),
            NerExample(("mary", "parisly"), ("B-PER", "B-LOC")),
            NerExample(tuple(reversed(words)), tuple(reversed(tags)))]


def test_window_policy_labels_every_word_exactly_once(tokenizer):
    examples = long_sentences()
    features, stats = encode_ner(tokenizer, examples, seq_len=7, label2id=LABEL2ID)
    # 13 sub-tokens per long sentence, 5 fit next to [CLS] and [SEP]: windows of 5, 5, 3.
    assert features.example_index.tolist() == [0, 0, 0, 1, 2, 2, 2]
    assert stats == {"examples": 3, "rows": 7, "split_examples": 2, "truncated_examples": 0,
                     "truncated_words": 0, "dropped_markers": 0}
    for row in range(len(features)):
        tokens = tokens_of(tokenizer, features.input_ids[row])
        assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and len(tokens) <= 7
    assert labeled_words(features) == [
        (number, word, LABEL2ID[tag])
        for number, example in enumerate(examples) for word, tag in enumerate(example.tags)]


def test_decode_ner_round_trips_gold_tags(tokenizer):
    examples = long_sentences()
    features, _ = encode_ner(tokenizer, examples, seq_len=7, label2id=LABEL2ID)
    predictions = np.where(features.labels == IGNORE_INDEX, LABEL2ID["I-PER"], features.labels)
    num_words = [len(example.tokens) for example in examples]
    assert decode_ner(predictions, features, num_words, TAGS) == [
        list(example.tags) for example in examples]


def test_truncate_policy_keeps_the_first_window(tokenizer):
    examples = long_sentences()
    features, stats = encode_ner(tokenizer, examples, 7, LABEL2ID, long_policy="truncate")
    assert features.example_index.tolist() == [0, 1, 2]
    assert stats == {"examples": 3, "rows": 3, "split_examples": 0, "truncated_examples": 2,
                     "truncated_words": 15, "dropped_markers": 0}
    tags = decode_ner(features.labels.clip(min=0), features, [12, 2, 12], TAGS)
    assert tags[0] == list(examples[0].tags[:4]) + ["O"] * 8
    assert tags[1] == list(examples[1].tags)


def test_word_longer_than_the_window_is_cut(tokenizer):
    example = NerExample(("mary", "parislylyly", "works"), ("B-PER", "B-LOC", "O"))
    features, stats = encode_ner(tokenizer, [example], seq_len=5, label2id=LABEL2ID)
    assert [tokens_of(tokenizer, row) for row in features.input_ids] == [
        ["[CLS]", "mary", "[SEP]"],
        ["[CLS]", "paris", "##ly", "##ly", "[SEP]"],
        ["[CLS]", "works", "[SEP]"]]
    assert labeled_words(features) == [(0, 0, 1), (0, 1, 3), (0, 2, 0)]
    assert stats["truncated_words"] == 1 and stats["truncated_examples"] == 1
    assert stats["split_examples"] == 1


def test_seq_len_without_room_is_rejected(tokenizer):
    with pytest.raises(ValueError, match="no room"):
        encode_ner(tokenizer, [NerExample(("a",), None)], 2, LABEL2ID)


def test_classification(tokenizer):
    examples = [TextExample("a good movie", None, "pos"),
                TextExample("the film was awful and the plot was bad", None, "neg"),
                TextExample("great cast", None, None)]
    features, stats = encode_texts(tokenizer, examples, 6, {"neg": 0, "pos": 1}, pair=False)
    assert [tokens_of(tokenizer, row) for row in features.input_ids] == [
        ["[CLS]", "a", "good", "movie", "[SEP]"],
        ["[CLS]", "the", "film", "was", "awful", "[SEP]"],
        ["[CLS]", "great", "cast", "[SEP]"]]
    assert features.labels.tolist() == [1, 0, X]
    assert features.attention_mask.tolist()[2] == [1, 1, 1, 1, 0, 0]
    assert features.word_ids is None
    assert features.example_index.tolist() == [0, 1, 2]
    assert stats == {"examples": 3, "truncated_examples": 1}


def test_unknown_text_label_is_an_error(tokenizer):
    with pytest.raises(ValueError, match="example 0: unknown label 'maybe'"):
        encode_texts(tokenizer, [TextExample("a", None, "maybe")], 6, {"neg": 0}, pair=False)


def test_pairwise_segments_and_truncation_stats(tokenizer):
    examples = [TextExample("a film", "john lives in paris and london", "1"),  # 11 tokens
                TextExample("mary works", "mary works at acme corp", "0"),   # 10: fits
                TextExample("a film", "good", "1")]
    features, stats = encode_texts(tokenizer, examples, 10, {"0": 0, "1": 1}, pair=True)
    assert tokens_of(tokenizer, features.input_ids[0]) == [
        "[CLS]", "a", "film", "[SEP]", "john", "lives", "in", "paris", "and", "[SEP]"]
    assert features.token_type_ids[0].tolist() == [0] * 4 + [1] * 6
    assert features.token_type_ids[2].tolist() == [0] * 4 + [1] * 2 + [0] * 4
    assert features.labels.tolist() == [1, 0, 1]
    assert stats == {"examples": 3, "truncated_examples": 1}


def test_each_task_encodes_its_own_examples(tokenizer):
    ner_examples = long_sentences()
    by_task, _ = get_task("ner").encode(tokenizer, ner_examples, LABEL2ID, EncodingSettings(7, "truncate"))
    direct, _ = encode_ner(tokenizer, ner_examples, 7, LABEL2ID, long_policy="truncate")
    assert np.array_equal(by_task.labels, direct.labels)
    pairs = [TextExample("a", "b", None)]
    features, _ = get_task("pairwise").encode(tokenizer, pairs, {}, EncodingSettings(8))
    assert features.token_type_ids[0].tolist() == [0, 0, 0, 1, 1, 0, 0, 0]
    with pytest.raises(ValueError, match="must be single texts"):
        get_task("classification").encode(tokenizer, pairs, {}, EncodingSettings(8))


def test_no_examples(tokenizer):
    ner, stats = encode_ner(tokenizer, [], 6, LABEL2ID)
    assert ner.input_ids.shape == ner.labels.shape == ner.word_ids.shape == (0, 6)
    assert stats["rows"] == 0
    texts, _ = encode_texts(tokenizer, [], 6, LABEL2ID, pair=False)
    assert texts.input_ids.shape == (0, 6) and texts.labels.shape == (0,)


@pytest.fixture(scope="module")
def sentencepiece_tokenizer(tmp_path_factory):
    from tiny_models import write_tiny_xlmr

    return AutoTokenizer.from_pretrained(str(write_tiny_xlmr(tmp_path_factory.mktemp("xlmr"))))


def test_bare_word_markers_before_cjk_characters_are_dropped(sentencepiece_tokenizer):
    """Pre-split CJK characters come out as a bare "▁" + the character: dropped, the label goes on the
    character, and the row is not twice as long."""
    tokenizer = sentencepiece_tokenizer
    example = NerExample(("人", "民", "代", "表"), ("B-LOC", "I-LOC", "O", "O"))
    label2id = {"O": 0, "B-LOC": 1, "I-LOC": 2}
    kept, kept_stats = encode_ner(tokenizer, [example], 16, label2id)
    dropped, stats = encode_ner(tokenizer, [example], 16, label2id, drop_bare_markers=True)
    kept_tokens = tokens_of_xlmr(tokenizer, kept)
    assert kept_tokens == ["<s>", "\u2581", "人", "\u2581", "民", "\u2581", "代", "\u2581", "表", "</s>"]
    assert tokens_of_xlmr(tokenizer, dropped) == ["<s>", "人", "民", "代", "表", "</s>"]
    assert stats["dropped_markers"] == 4 and kept_stats["dropped_markers"] == 0
    assert dropped.labels[0, :6].tolist() == [X, 1, 2, 0, 0, X]
    assert kept.labels[0, 1] == 1 and tokenizer.convert_ids_to_tokens(int(kept.input_ids[0, 1])) == "\u2581"
    assert decode_ner(dropped.labels.clip(min=0), dropped, [4], ["O", "B-LOC", "I-LOC"]) == [list(example.tags)]


def test_markers_of_words_with_pieces_of_their_own_stay(sentencepiece_tokenizer):
    """A Latin word whose first piece carries the marker ("▁in...") is unchanged; windows are planned on the
    dropped length, so a sentence of single characters fits twice as many words per row."""
    tokenizer = sentencepiece_tokenizer
    latin = NerExample(("internationalization", "dog"), None)  # "▁in...", "▁d" "o" "g"
    plain, _ = encode_ner(tokenizer, [latin], 16, {})
    same, stats = encode_ner(tokenizer, [latin], 16, {}, drop_bare_markers=True)
    assert np.array_equal(plain.input_ids, same.input_ids) and stats["dropped_markers"] == 0
    chars = NerExample(tuple("人民代表人民代表人民"), None)  # 10 words
    kept, _ = encode_ner(tokenizer, [chars], 12, {})
    dropped, _ = encode_ner(tokenizer, [chars], 12, {}, drop_bare_markers=True)
    assert len(kept) == 2 and len(dropped) == 1
    assert sorted(dropped.word_ids[dropped.word_ids >= 0].tolist()) == list(range(10))


def tokens_of_xlmr(tokenizer, features):
    return [token for token in tokenizer.convert_ids_to_tokens(features.input_ids[0].tolist()) if token != "<pad>"]


@pytest.mark.parametrize("words", [
    ("John", "parisly", "works"), ("约翰", "\u200b", "住在", "\u0301", "北京", "works"),
    tuple("john lives in parisly and mary works at acme corp in london".split()),
])
@pytest.mark.parametrize("seq_len", [6, 8, 32])
def test_a_request_is_encoded_as_the_batch_path_encodes_it(tokenizer, words, seq_len):
    """The batch-1 serving encoding (no padding; one tokenizer call when the sentence fits) gives the rows and
    labelled positions of encode_ner, windows and vanishing words included."""
    from xdistil.data.encoding import encode_ner_request

    _assert_request_matches(tokenizer, words, seq_len, drop=False)


@pytest.mark.parametrize("words", [tuple("人民代表"), ("internationalization", "dog"), tuple("人民代表人民代表人民")])
@pytest.mark.parametrize("drop", [False, True])
def test_a_sentencepiece_request_matches_with_bare_markers_kept_or_dropped(sentencepiece_tokenizer, words, drop):
    _assert_request_matches(sentencepiece_tokenizer, words, 12, drop)


def _assert_request_matches(tokenizer, words, seq_len, drop):
    from xdistil.data.encoding import encode_ner_request

    request = encode_ner_request(tokenizer, words, seq_len, drop_bare_markers=drop)
    features, _ = encode_ner(tokenizer, [NerExample(words, None)], seq_len, {}, drop_bare_markers=drop)
    lengths = features.attention_mask.sum(axis=1).tolist()
    assert [row["input_ids"].tolist() for row in request.rows] == [
        [features.input_ids[r, :n].tolist()] for r, n in enumerate(lengths)]
    for r, (positions, word_indices) in enumerate(request.first_subtokens):
        expected = np.flatnonzero(features.word_ids[r] >= 0)
        assert positions.tolist() == expected.tolist()
        assert word_indices.tolist() == features.word_ids[r, expected].tolist()


@pytest.mark.parametrize("pair", [("a good movie", None), ("the film was awful and the plot was bad", None),
                                  ("a film", "john lives in paris and london")])
def test_a_text_request_is_encoded_as_the_batch_path_encodes_it(tokenizer, pair):
    from xdistil.data.encoding import encode_text_request

    request = encode_text_request(tokenizer, *pair, seq_len=8)
    features, _ = encode_texts(tokenizer, [TextExample(*pair, None)], 8, {}, pair=pair[1] is not None)
    length = int(features.attention_mask.sum())
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        assert request.rows[0][name].tolist() == [getattr(features, name)[0, :length].tolist()], name
