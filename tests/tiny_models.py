"""Tiny random multilingual models with a SentencePiece Unigram tokenizer trained on the fly.

`write_tiny_xlmr` saves a model directory shaped like a real multilingual checkpoint: an
XLM-R tokenizer (fairseq ids: <s>=0, <pad>=1, </s>=2, <unk>=3, <mask> last) over a small
Unigram vocabulary, and either an XLM-R encoder or a BERT encoder (the multilingual-e5-small
layout: BERT weights, XLM-R tokenizer).
"""
import xdistil  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

from pathlib import Path

MULTILINGUAL_CORPUS = (
    "The international conference on machine translation was held in London last year.",
    "Researchers presented multilingual models that understand many languages at once.",
    "Tokenization splits unbelievable words into smaller understandable pieces.",
    "The government announced new regulations for renewable energy production.",
    "Mary works at the university hospital and lives near the river.",
    "John travelled from Paris to Berlin by train during the holidays.",
    "Distillation transfers knowledge from a large teacher to a small student.",
    "The committee discussed the unexpected consequences of globalization.",
    "Children were playing football in the park while their parents watched.",
    "Scientists measured the temperature of the ocean every morning.",
    "Die Bundesregierung hat neue Regeln für erneuerbare Energien beschlossen.",
    "Der Wissenschaftler arbeitet an der Universität in München.",
    "Donaudampfschifffahrtsgesellschaft ist ein sehr langes deutsches Wort.",
    "Die Kinder spielen im Garten, während die Eltern Kaffee trinken.",
    "Wir fahren morgen mit dem Zug von Hamburg nach Frankfurt.",
    "Die Verhandlungen zwischen den Unternehmen dauerten mehrere Wochen.",
    "新华社北京一月十八日电人民代表大会第一次会议在北京举行。",
    "中国政府宣布了新的能源政策。",
    "我们明天去上海参加国际会议。",
    "学生们在大学图书馆里学习语言和历史。",
    "经济发展和科学技术进步改变了人民的生活。",
    "湖北省人大常委会主任在会议上讲话。",
    "Москва является столицей Российской Федерации.",
    "Учёные из университета изучают языки и литературу.",
    "Правительство объявило о новых экономических реформах.",
    "Дети играют в парке, а родители пьют чай.",
)


def train_tiny_sentencepiece(path, corpus_lines=None, vocab_size=300) -> Path:
    """Train a deterministic SentencePiece Unigram model on `corpus_lines` (default: the
    built-in multilingual corpus) and write it to `path` (a .model file)."""
    import sentencepiece as spm

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spm.set_random_generator_seed(0)
    with open(path, "wb") as model_file:
        # ids 0/1/2 = <unk>/<s>/</s>: the layout XLMRobertaTokenizer's fairseq offset expects.
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(corpus_lines or MULTILINGUAL_CORPUS), model_writer=model_file,
            model_type="unigram", vocab_size=vocab_size, hard_vocab_limit=False,
            character_coverage=1.0, num_threads=1, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            minloglevel=2)
    return path


def _tiny_config(architecture, vocab_size, hidden_size, num_layers, num_heads, intermediate_size):
    from transformers import BertConfig, XLMRobertaConfig

    sizes = dict(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                 num_attention_heads=num_heads, intermediate_size=intermediate_size,
                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    if architecture == "xlm-roberta":
        # XLM-R numbers positions from padding_idx + 1, so 128 usable positions need 130 rows.
        return XLMRobertaConfig(pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1,
                                max_position_embeddings=128 + 2, **sizes)
    if architecture == "bert":
        return BertConfig(pad_token_id=1, type_vocab_size=2, max_position_embeddings=128, **sizes)
    raise ValueError(f"architecture must be 'xlm-roberta' or 'bert', got {architecture!r}")


def write_tiny_xlmr(path, *, architecture="xlm-roberta", hidden_size=32, num_layers=2, num_heads=4,
                    intermediate_size=64, seed=0) -> Path:
    """Save a tiny random TF encoder with an XLM-R SentencePiece tokenizer (fast, with
    tokenizer.json) to `path` and return it. `architecture="bert"` is the multilingual-e5 layout."""
    import tensorflow as tf
    from transformers import TFAutoModel, XLMRobertaTokenizerFast

    path = Path(path)
    spm_file = train_tiny_sentencepiece(path / "sentencepiece.bpe.model")
    tokenizer = XLMRobertaTokenizerFast(vocab_file=str(spm_file), model_max_length=128)
    tokenizer.save_pretrained(str(path))
    config = _tiny_config(architecture, len(tokenizer), hidden_size, num_layers, num_heads,
                          intermediate_size)
    tf.keras.utils.set_random_seed(seed)
    model = TFAutoModel.from_config(config)
    model(model.dummy_inputs)
    model.save_pretrained(str(path))
    return path


NER_TEMPLATES = (  # (characters or words, their tags): Chinese character by character, other languages by word
    (list("我们明天去") + ["北", "京"], ["O"] * 5 + ["B-LOC", "I-LOC"]),
    (list("中国政府在") + ["上", "海"], ["B-LOC", "I-LOC", "O", "O", "O", "B-LOC", "I-LOC"]),
    (["John", "travelled", "to", "Berlin"], ["B-PER", "O", "O", "B-LOC"]),
    (["Mary", "works", "in", "London"], ["B-PER", "O", "O", "B-LOC"]),
    (["Der", "Wissenschaftler", "arbeitet", "in", "München"], ["O", "O", "O", "O", "B-LOC"]),
    (["Москва", "является", "столицей"], ["B-LOC", "O", "O"]),
    (list("湖北省人大") + ["在", "北", "京"], ["B-LOC", "I-LOC", "I-LOC", "B-ORG", "I-ORG", "O", "B-LOC", "I-LOC"]),
)


def write_multilingual_task(path, kind: str, n_train: int = 42, n_dev: int = 14, n_test: int = 14,
                            n_transfer: int = 40, seed: int = 0) -> Path:
    """A small task folder in several languages and scripts (Chinese NER character by character):
    NER from `NER_TEMPLATES`; classification labels a sentence of MULTILINGUAL_CORPUS with its language;
    pairwise says whether two sentences are in the same language."""
    import random

    rng = random.Random(seed)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    languages = ["en"] * 10 + ["de"] * 6 + ["zh"] * 6 + ["ru"] * 4  # MULTILINGUAL_CORPUS in order

    def sentence():
        index = rng.randrange(len(MULTILINGUAL_CORPUS))
        return MULTILINGUAL_CORPUS[index], languages[index]

    def row():
        if kind == "ner":
            words, tags = rng.choice(NER_TEMPLATES)
            return f"{' '.join(words)}\t{' '.join(tags)}"
        (text, language), (other, other_language) = sentence(), sentence()
        if kind == "pairwise":
            return f"{text}\t{other}\t{'same' if language == other_language else 'different'}"
        return f"{text}\t{language}"

    for name, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        (path / f"{name}.tsv").write_text("\n".join(row() for _ in range(n)) + "\n", encoding="utf-8")
    columns = 2 if kind == "pairwise" else 1
    transfer = ["\t".join(row().split("\t")[:columns]) for _ in range(n_transfer)]
    (path / "transfer.txt").write_text("\n".join(transfer) + "\n", encoding="utf-8")
    return path
