import xdistil  # noqa: F401

import shutil

import pytest

from tiny_models import train_tiny_sentencepiece, write_tiny_xlmr

# architecture -> (TF class, type_vocab_size, max_position_embeddings)
EXPECTED_LAYOUT = {"xlm-roberta": ("TFXLMRobertaModel", 1, 130), "bert": ("TFBertModel", 2, 128)}


@pytest.fixture(scope="module", params=sorted(EXPECTED_LAYOUT))
def architecture(request):
    return request.param


@pytest.fixture(scope="module")
def tiny_dir(architecture, tmp_path_factory):
    return write_tiny_xlmr(tmp_path_factory.mktemp(architecture), architecture=architecture)


@pytest.fixture(scope="module")
def tokenizer(tiny_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_dir))


def test_sentencepiece_training_is_deterministic(tmp_path):
    first = train_tiny_sentencepiece(tmp_path / "a.model").read_bytes()
    assert train_tiny_sentencepiece(tmp_path / "b.model").read_bytes() == first


def test_loads_back_as_fast_xlmr_tokenizer_and_tf_model(architecture, tiny_dir, tokenizer):
    from transformers import TFAutoModel, XLMRobertaTokenizerFast

    model = TFAutoModel.from_pretrained(str(tiny_dir))
    assert isinstance(tokenizer, XLMRobertaTokenizerFast)
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id,
            tokenizer.unk_token_id) == (0, 1, 2, 3)
    assert tokenizer.mask_token_id == len(tokenizer) - 1
    assert 200 < len(tokenizer) < 400
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.pad_token_id == 1
    assert (type(model).__name__, model.config.type_vocab_size,
            model.config.max_position_embeddings) == EXPECTED_LAYOUT[architecture]
    batch = tokenizer(["Mary lives in London.", "人民代表大会"], padding=True, return_tensors="tf")
    assert model(**batch).last_hidden_state.shape[:2] == batch["input_ids"].shape


def test_loading_needs_only_tokenizer_json(tiny_dir, tmp_path):
    from transformers import AutoTokenizer

    copy = shutil.copytree(tiny_dir, tmp_path / "copy")
    (copy / "sentencepiece.bpe.model").unlink()
    assert AutoTokenizer.from_pretrained(str(copy))("Die Kinder").input_ids == \
        AutoTokenizer.from_pretrained(str(tiny_dir))("Die Kinder").input_ids


def test_words_split_into_several_pieces(tokenizer):
    assert tokenizer.tokenize("internationalization") == ["▁in", "tern", "at", "i", "on", "al", "ization"]
    assert len(tokenizer.tokenize("Verhandlungen")) >= 4
    assert len(tokenizer.tokenize("университета")) >= 4


def test_pre_split_cjk_characters_get_a_bare_metaspace_piece(tokenizer):
    # Each pre-split word gets "▁" prepended; "▁人" is not a piece, so "▁" stands alone and
    # the first sub-token of every character is the empty piece (the e5 trap).
    encoding = tokenizer(list("人民"), is_split_into_words=True)
    assert tokenizer.convert_ids_to_tokens(encoding.input_ids) == ["<s>", "▁", "人", "▁", "民", "</s>"]
    assert encoding.word_ids() == [None, 0, 0, 1, 1, None]
    assert tokenizer.tokenize("人民代表") == ["▁", "人民", "代", "表"]
