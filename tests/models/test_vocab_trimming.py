import xdistil  # noqa: F401

import collections

import numpy as np
import pytest

from tiny_models import write_tiny_xlmr
from xdistil.models.vocab_trimming import (count_pieces, remap_special_ids, select_pieces,
                                           trim_embedding_rows, trim_model_vocab, trim_tokenizer,
                                           unknown_rate)

# Per tokenizer kind: texts, pre-split word lists and sentence pairs made of those texts.
SAMPLES = {
    "unigram": (
        ["Mary works at the university hospital.", "Die Kinder spielen im Garten, Donaudampfschifffahrt!",
         "人民代表大会在北京举行。", "Москва является столицей."],
        [list("人民代表大会"), "Die Verhandlungen dauerten".split(), ["Учёные", "из", "Москва"]],
    ),
    "wordpiece": (
        ["John lives in Paris and Mary works at Acme Corp.", "the casting was awful, the films were bad!",
         "greatly filmed movies ?"],
        [["john", "lives", "in", "london"], ["acme", "corp", "is", "good", "."]],
    ),
}


@pytest.fixture(scope="module")
def e5_like_dir(tmp_path_factory):
    """BERT encoder + XLM-R SentencePiece tokenizer: the multilingual-e5 layout."""
    return write_tiny_xlmr(tmp_path_factory.mktemp("e5_like"), architecture="bert")


@pytest.fixture(scope="module", params=sorted(SAMPLES))
def kind(request):
    return request.param


@pytest.fixture(scope="module")
def full_tokenizer(kind, e5_like_dir, tiny_bert_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(e5_like_dir if kind == "unigram" else tiny_bert_dir))


@pytest.fixture(scope="module")
def trimmed(kind, full_tokenizer):
    """(trimmed tokenizer, old_ids), counted over the kind's texts and word lists."""
    texts, word_lists = SAMPLES[kind]
    counts = count_pieces(full_tokenizer, texts)
    counts.update(count_pieces(full_tokenizer, word_lists, is_split_into_words=True))
    return trim_tokenizer(full_tokenizer, select_pieces(full_tokenizer, counts))


def assert_same_segmentation(full, trimmed_tokenizer, old_ids, *inputs, **kwargs):
    expected, got = full(*inputs, **kwargs), trimmed_tokenizer(*inputs, **kwargs)
    assert old_ids[got.input_ids].tolist() == expected.input_ids
    assert got.word_ids() == expected.word_ids()
    assert got.get("token_type_ids") == expected.get("token_type_ids")


def test_trimmed_tokenizer_segments_covered_text_like_the_full_one(kind, full_tokenizer, trimmed):
    trimmed_tokenizer, old_ids = trimmed
    texts, word_lists = SAMPLES[kind]
    assert type(trimmed_tokenizer) is type(full_tokenizer)
    assert len(trimmed_tokenizer) == len(old_ids) < len(full_tokenizer) - 20
    assert trimmed_tokenizer.model_max_length == full_tokenizer.model_max_length
    for text in texts:
        assert_same_segmentation(full_tokenizer, trimmed_tokenizer, old_ids, text)
    for text_a, text_b in zip(texts, texts[1:]):
        assert_same_segmentation(full_tokenizer, trimmed_tokenizer, old_ids, text_a, text_b)
    for words in word_lists:
        assert_same_segmentation(full_tokenizer, trimmed_tokenizer, old_ids, words, is_split_into_words=True)
    # "!" (unigram), "were" (wordpiece) are unknown to the full tokenizer already.
    assert unknown_rate(trimmed_tokenizer, texts) == unknown_rate(full_tokenizer, texts) > 0.0


def test_special_tokens_keep_their_meaning(full_tokenizer, trimmed):
    trimmed_tokenizer, old_ids = trimmed
    for name in ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"):
        new_id = getattr(trimmed_tokenizer, f"{name}_id")
        assert old_ids[new_id] == getattr(full_tokenizer, f"{name}_id"), name
    padded = trimmed_tokenizer(["a", "a b c d"], padding=True).input_ids
    assert padded[0][-1] == trimmed_tokenizer.pad_token_id


def test_saved_trimmed_tokenizer_loads_with_auto_tokenizer(kind, full_tokenizer, trimmed, tmp_path):
    from transformers import AutoTokenizer

    trimmed_tokenizer, old_ids = trimmed
    trimmed_tokenizer.save_pretrained(str(tmp_path))
    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    assert type(loaded) is type(full_tokenizer) and loaded.is_fast
    assert len(loaded) == len(old_ids)
    assert not (tmp_path / "sentencepiece.bpe.model").exists()  # the full vocabulary's model
    texts, word_lists = SAMPLES[kind]
    assert_same_segmentation(full_tokenizer, loaded, old_ids, texts[0], texts[1])
    assert_same_segmentation(full_tokenizer, loaded, old_ids, word_lists[0], is_split_into_words=True)


def test_pieces_not_kept_fall_back_to_unknown(kind, full_tokenizer, trimmed):
    trimmed_tokenizer, _ = trimmed
    text = {"unigram": "Hamburg Universität", "wordpiece": "the plot is great"}[kind]
    assert trimmed_tokenizer.unk_token_id in trimmed_tokenizer(text).input_ids
    assert unknown_rate(full_tokenizer, [text]) == 0.0
    assert unknown_rate(trimmed_tokenizer, [text]) > 0.0


def test_unknown_rate_is_the_share_of_unknown_pieces(tiny_bert_dir):
    from transformers import AutoTokenizer

    full = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    trimmed_tokenizer, _ = trim_tokenizer(full, select_pieces(full, count_pieces(full, ["the movie"])))
    assert trimmed_tokenizer.tokenize("the film") == ["the", "[UNK]"]
    assert unknown_rate(trimmed_tokenizer, ["the film", "the movie"]) == 0.25


def test_select_pieces_keeps_special_tokens_counted_and_general_pieces(tiny_bert_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    the, movie, film, plot = tokenizer.convert_tokens_to_ids(["the", "movie", "film", "plot"])
    counts = collections.Counter({the: 3, movie: 1})
    general = collections.Counter({plot: 9, film: 5, the: 1})
    assert select_pieces(tokenizer, counts) == sorted(tokenizer.all_special_ids + [the, movie])
    assert select_pieces(tokenizer, counts, min_count=2) == sorted(tokenizer.all_special_ids + [the])
    assert select_pieces(tokenizer, counts, extra_top_n=1, extra_counts=general) == \
        sorted(tokenizer.all_special_ids + [the, movie, plot])


def test_added_tokens_past_the_model_vocabulary_are_kept(tiny_bert_dir):
    from transformers import AutoTokenizer

    full = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    full.add_special_tokens({"additional_special_tokens": ["[E1]"]})
    text = "[E1] john lives in paris"
    trimmed_tokenizer, old_ids = trim_tokenizer(full, select_pieces(full, count_pieces(full, [text])))
    assert trimmed_tokenizer.convert_ids_to_tokens(trimmed_tokenizer(text).input_ids)[1] == "[E1]"
    assert_same_segmentation(full, trimmed_tokenizer, old_ids, text)


@pytest.mark.parametrize("post_processor", ["TemplateProcessing", "BertProcessing"])
def test_special_token_ids_that_move_are_remapped(post_processor, tmp_path):
    from tokenizers import processors
    from transformers import BertTokenizerFast

    # Special tokens after the words, so that trimming gives them new ids.
    vocab = ["the", "movie", "film", "plot", "##s", "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    full = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    if post_processor == "BertProcessing":
        full.backend_tokenizer.post_processor = processors.BertProcessing(("[SEP]", 8), ("[CLS]", 7))
    keep_ids = select_pieces(full, count_pieces(full, ["the movies"]))
    full.backend_tokenizer.enable_padding(pad_id=5, pad_token="[PAD]")  # (calling `full` resets it)
    trimmed_tokenizer, old_ids = trim_tokenizer(full, keep_ids)
    assert old_ids.tolist() == [0, 1, 4, 5, 6, 7, 8, 9]
    assert trimmed_tokenizer.backend_tokenizer.padding["pad_id"] == trimmed_tokenizer.pad_token_id == 3
    assert_same_segmentation(full, trimmed_tokenizer, old_ids, "the movies", "movie")


def _tokenizer_from_backend(model):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(model), unk_token="<unk>")


def test_unigram_keeps_the_lowest_scoring_piece_so_unknown_scores_do_not_change():
    from tokenizers import models

    # Unknown characters score (lowest piece score - 10). Kept alone, "x" "yz" "xy" would
    # raise that from -40 to -25, and "xy" + <unk> (-26) would beat "x" + "yz" (-27).
    full = _tokenizer_from_backend(models.Unigram(
        [("<unk>", 0.0), ("x", -12.0), ("y", -30.0), ("z", -30.0), ("xy", -1.0), ("yz", -15.0)], unk_id=0))
    assert full.tokenize("xyz") == ["x", "yz"]
    counts = count_pieces(full, ["xyz", "xy"])
    trimmed_tokenizer, old_ids = trim_tokenizer(full, select_pieces(full, counts))
    assert trimmed_tokenizer.convert_ids_to_tokens(list(range(len(old_ids)))) == ["<unk>", "x", "y", "xy", "yz"]
    assert old_ids[trimmed_tokenizer("xyz").input_ids].tolist() == full("xyz").input_ids


def test_bpe_and_incomplete_keep_ids_are_refused(tiny_bert_dir):
    from tokenizers import models
    from transformers import AutoTokenizer

    bpe = _tokenizer_from_backend(models.BPE({"<unk>": 0, "a": 1, "b": 2, "ab": 3}, [("a", "b")],
                                             unk_token="<unk>"))
    with pytest.raises(ValueError, match="not BPE"):
        trim_tokenizer(bpe, [0, 1, 3])
    wordpiece = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    with pytest.raises(ValueError, match=r"lacks required ids \[0, 1"):
        trim_tokenizer(wordpiece, [2, 3, 4, 5])


def test_trim_embedding_rows_gathers_float32_rows():
    matrix = np.arange(12, dtype=np.float64).reshape(6, 2)
    rows = trim_embedding_rows(matrix, np.array([0, 3, 5]))
    assert rows.dtype == np.float32
    np.testing.assert_array_equal(rows, [[0, 1], [6, 7], [10, 11]])


def test_remap_special_ids_maps_old_ids_to_positions():
    from transformers import BertConfig

    old_ids = np.array([0, 2, 5, 7])
    config = {"pad_token_id": 5, "bos_token_id": 0, "eos_token_id": 7, "sep_token_id": None, "vocab_size": 9}
    assert remap_special_ids(config, old_ids) == {"vocab_size": 4, "pad_token_id": 2, "bos_token_id": 0,
                                                  "eos_token_id": 3}
    assert remap_special_ids(BertConfig(pad_token_id=2), old_ids) == {"vocab_size": 4, "pad_token_id": 1}
    with pytest.raises(ValueError, match="pad_token_id=1"):
        remap_special_ids({"pad_token_id": 1}, old_ids)


def test_trimmed_model_matches_full_model_on_covered_text(e5_like_dir, tmp_path):
    from transformers import AutoTokenizer, TFAutoModel

    sentences = ["Mary works at the university hospital.", "人民代表大会在北京举行。",
                 "Die Kinder spielen im Garten."]
    full_tokenizer = AutoTokenizer.from_pretrained(str(e5_like_dir))
    full_model = TFAutoModel.from_pretrained(str(e5_like_dir))
    trimmed_tokenizer, old_ids = trim_tokenizer(
        full_tokenizer, select_pieces(full_tokenizer, count_pieces(full_tokenizer, sentences)))
    trimmed_tokenizer.save_pretrained(str(tmp_path))
    trim_model_vocab(full_model, old_ids).save_pretrained(str(tmp_path))

    model = TFAutoModel.from_pretrained(str(tmp_path))
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path))
    assert (model.config.vocab_size, model.config.pad_token_id) == (len(old_ids), tokenizer.pad_token_id)
    assert model.config.vocab_size < full_model.config.vocab_size / 2
    expected = full_model(**full_tokenizer(sentences, padding=True, return_tensors="tf")).last_hidden_state
    got = model(**tokenizer(sentences, padding=True, return_tensors="tf")).last_hidden_state
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)
