"""Shared fixtures: tiny random HuggingFace models saved the way a user's checkpoint is."""
import xdistil  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import pytest

WORDS = ("the a an john mary paris london acme corp works lives in at for and is was good bad "
         "movie film great awful plot cast . , ! ?").split()


def write_tiny_bert(path, *, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                    num_labels=None, labels=None, seed=0):
    """Save a tiny random BERT (TF weights + WordPiece tokenizer) to `path` and return it."""
    import tensorflow as tf
    from transformers import (BertConfig, BertTokenizerFast, TFBertForSequenceClassification,
                              TFBertModel)

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(WORDS) + [
        "##s", "##ed", "##ing", "##ly"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = list(dict.fromkeys(vocab))
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(str(path))
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden_size,
                        num_hidden_layers=num_layers, num_attention_heads=num_heads,
                        intermediate_size=intermediate_size, max_position_embeddings=128,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    tf.keras.utils.set_random_seed(seed)
    if labels is not None:
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
        model = TFBertForSequenceClassification(config)
    else:
        model = TFBertModel(config)
    model(model.dummy_inputs)
    model.save_pretrained(str(path))
    return path


def write_tiny_mpnet(path, *, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, seed=0):
    """Save a tiny random MPNet encoder (the all-mpnet-base-v2 layout: relative position bias, <s>/</s>
    specials, no token types, uncased WordPiece) to `path` and return it."""
    import tensorflow as tf
    from transformers import MPNetConfig, MPNetTokenizerFast, TFMPNetModel

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["<s>", "<pad>", "</s>", "[UNK]"] + list(WORDS) + [
        "##s", "##ed", "##ing", "##ly"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["<mask>"]
    vocab = list(dict.fromkeys(vocab))
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = MPNetTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True, model_max_length=128)
    tokenizer.save_pretrained(str(path))
    config = MPNetConfig(vocab_size=len(vocab), hidden_size=hidden_size, num_hidden_layers=num_layers,
                         num_attention_heads=num_heads, intermediate_size=intermediate_size,
                         max_position_embeddings=130, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    tf.keras.utils.set_random_seed(seed)
    model = TFMPNetModel(config)
    model(model.dummy_inputs)
    model.save_pretrained(str(path))
    return path


def add_random_biases(model, seed=1, scale=0.2):
    """Give every bias and LayerNorm vector of a built Keras model random nonzero offsets, as
    a trained model has (freshly initialized biases are zero, which hides bias-handling bugs)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if len(weight.shape) == 1:
            weight.assign(weight.numpy() + rng.normal(0.0, scale, weight.shape).astype(np.float32))
    return model


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A tiny random BERT encoder (no task head) in a local directory."""
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


PEOPLE = ("john", "mary")
PLACES = ("paris", "london")
ORGS = ("acme corp",)


def write_task(path, kind: str, n_train: int = 48, n_dev: int = 16, n_test: int = 16, n_transfer: int = 64,
               seed: int = 0):
    """A small task folder of the given kind in the input format, made of the tiny vocabulary."""
    import random

    rng = random.Random(seed)
    path.mkdir(parents=True, exist_ok=True)

    def ner_row():
        tokens, tags = [], []
        for kind_, words in (("PER", rng.choice(PEOPLE)), ("O", rng.choice(("works", "lives"))),
                             ("O", rng.choice(("in", "at"))), ("LOC", rng.choice(PLACES + ORGS))):
            parts = words.split()
            tokens += parts
            tags += ["O"] * len(parts) if kind_ == "O" else [f"B-{kind_}"] + [f"I-{kind_}"] * (len(parts) - 1)
        return " ".join(tokens), " ".join(tags)

    def text_row():
        good = rng.random() < 0.5
        words = [rng.choice(("the", "a")), rng.choice(("movie", "film", "plot", "cast")), "is",
                 rng.choice(("good", "great")) if good else rng.choice(("bad", "awful"))]
        return " ".join(words), "1" if good else "0"

    def row():
        if kind == "ner":
            return "\t".join(ner_row())
        text, label = text_row()
        if kind == "pairwise":
            other, other_label = text_row()
            return f"{text}\t{other}\t{int(label == other_label)}"
        return f"{text}\t{label}"

    for name, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        (path / f"{name}.tsv").write_text("\n".join(row() for _ in range(n)) + "\n", encoding="utf-8")
    transfer = ["\t".join(row().split("\t")[:2 if kind == "pairwise" else 1]) for _ in range(n_transfer)]
    (path / "transfer.txt").write_text("\n".join(transfer) + "\n", encoding="utf-8")
    return path


FAST_RUN = dict(seq_len=16, batch_size=8, eval_batch_size=16, teacher_epochs=2, teacher_min_steps=0, representation_epochs=1,
                logit_epochs=1, finetune_epochs=2, distil_chunk_size=24, log_every_steps=5,
                checkpoint_every_steps=5, teacher_learning_rate=1e-3, distil_learning_rate=1e-3,
                learning_rate=1e-3, allow_weak_teacher=True)  # tiny random teachers: the check has its own tests


def distil_tiny(root, kind: str, **overrides):
    """Run a short real distillation of a tiny random teacher on a small task; returns the model dir."""
    from xdistil.config import DistilConfig
    from xdistil.distill.pipeline import run_distillation

    teacher = write_tiny_bert(root / "teacher", hidden_size=32, num_layers=2, num_heads=4)
    task = write_task(root / "task", kind)
    config = DistilConfig.from_settings(str(root / "out"), task=str(task), task_kind=kind,
                                        transfer_file=str(task / "transfer.txt"), pt_teacher_checkpoint=str(teacher),
                                        **{**FAST_RUN, "student_layers_from_teacher": (1,), **overrides})
    run_distillation(config)
    return root / "out"


@pytest.fixture(scope="session")
def distilled_ner_dir(tmp_path_factory):
    """A model directory of a distilled NER student (tiny random teacher; frozen compressed embeddings)."""
    return distil_tiny(tmp_path_factory.mktemp("distilled_ner"), "ner", compress_word_embedding=True,
                       freeze_word_embedding=True)


@pytest.fixture(scope="session")
def distilled_pairwise_dir(tmp_path_factory):
    """A model directory of a distilled pairwise student (tiny random teacher)."""
    return distil_tiny(tmp_path_factory.mktemp("distilled_pairwise"), "pairwise")


def copy_model_dir(source, destination, with_onnx: bool = False):
    """A private copy of a shared model directory, for a test that changes it (the session fixtures stay as
    every other test expects them)."""
    import shutil

    ignore = None if with_onnx else shutil.ignore_patterns("onnx")
    shutil.copytree(source, destination, ignore=ignore)
    return destination


SLOW_FIXTURES = {"distilled_ner_dir", "distilled_pairwise_dir"}


def pytest_collection_modifyitems(items):
    """Tests on a distilled model directory are slow (the fixture runs a real distillation)."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
