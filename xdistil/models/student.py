"""Build the student: from a pretrained checkpoint, from scratch, or from a subset of teacher layers."""
from __future__ import annotations

import logging
import re

import numpy as np

from xdistil.models.embedding_compression import compress_embedding
from xdistil.models.loading import (label_kwargs, load_task_model, load_tokenizer, task_model_class,
                                    word_embedding_variable)

log = logging.getLogger(__name__)

_LAYER = re.compile(r"layer_\._(\d+)/")


def build_student(config, teacher, tokenizer, labels: list[str]):
    """Create the student task model described by `config` (see DistilConfig), built and ready."""
    kind = config.task_kind
    if config.pt_student_checkpoint:
        student = load_task_model(config.pt_student_checkpoint, kind, labels)
        if not config.compress_word_embedding:
            check_vocabulary_matches(config.pt_student_checkpoint, student, tokenizer)
    elif config.student_layers_from_teacher is not None:
        student = student_from_teacher_layers(teacher, config.student_layers_from_teacher, kind, labels)
    else:
        student = student_from_scratch(teacher, config, labels)
    build_model(student)
    if config.compress_word_embedding:
        apply_compressed_embedding(student, teacher, config.compression_method)
    return student


def build_model(model) -> None:
    model(model.dummy_inputs, training=False)


def student_from_scratch(teacher, config, labels):
    """A randomly initialised model of the teacher's architecture with the given sizes."""
    sizes = {"hidden_size": config.hidden_size, "num_hidden_layers": config.num_hidden_layers,
             "num_attention_heads": config.num_attention_heads,
             "intermediate_size": config.intermediate_size}
    missing = [f"--{k}" for k, v in sizes.items() if v is None]
    if missing:
        raise ValueError("a student from scratch needs " + ", ".join(missing) +
                         " (or give --pt_student_checkpoint / --student_layers_from_teacher)")
    if sizes["hidden_size"] % sizes["num_attention_heads"]:
        raise ValueError(f"--hidden_size {sizes['hidden_size']} is not a multiple of "
                         f"--num_attention_heads {sizes['num_attention_heads']}")
    student_config = type(teacher.config).from_dict(
        {**teacher.config.to_dict(), **sizes, **label_kwargs(labels)})
    return task_model_class(config.task_kind).from_config(student_config)


def student_from_teacher_layers(teacher, layers, task_kind, labels):
    """A student whose encoder layers are copies of the given (0-based) teacher layers, in order."""
    layers = list(layers)
    n = teacher.config.num_hidden_layers
    if not layers or any(not 0 <= i < n for i in layers) or layers != sorted(set(layers)):
        raise ValueError(f"--student_layers_from_teacher {layers}: need increasing distinct layer "
                         f"indices in 0..{n - 1}")
    student_config = type(teacher.config).from_dict(
        {**teacher.config.to_dict(), "num_hidden_layers": len(layers), **label_kwargs(labels)})
    student = task_model_class(task_kind).from_config(student_config)
    build_model(student)
    teacher_vars = {_strip_model_scope(v.name): v for v in teacher.weights}
    copied = 0
    for var in student.weights:
        name = _strip_model_scope(var.name)
        name = _LAYER.sub(lambda m: f"layer_._{layers[int(m.group(1))]}/", name)
        source = teacher_vars.get(name)
        if source is not None and source.shape == var.shape:
            var.assign(source)
            copied += 1
    log.info("student from teacher layers %s: copied %d of %d weights", layers, copied, len(student.weights))
    return student


def _strip_model_scope(name: str) -> str:
    return name.split("/", 1)[1] if "/" in name else name


def apply_compressed_embedding(student, teacher, method: str) -> dict:
    """Initialise the student's word embeddings from the teacher's, reduced to the student width."""
    teacher_matrix = word_embedding_variable(teacher).numpy()
    width = student.config.hidden_size
    if student.config.vocab_size != teacher_matrix.shape[0]:
        student.resize_token_embeddings(teacher_matrix.shape[0])
        build_model(student)
    compressed, report = compress_embedding(teacher_matrix.astype(np.float32), width, method)
    word_embedding_variable(student).assign(compressed)
    log.info("word embeddings %s -> %s by %s (%s)", teacher_matrix.shape, compressed.shape, method, report)
    return report


def check_vocabulary_matches(student_checkpoint: str, student, tokenizer) -> None:
    """Refuse a student whose vocabulary differs from the teacher's tokenizer."""
    try:
        student_vocab = load_tokenizer(student_checkpoint).get_vocab()
    except (OSError, ValueError):
        student_vocab = None
    if student_vocab is not None and student_vocab != tokenizer.get_vocab():
        raise ValueError(
            f"student {student_checkpoint} uses a different vocabulary than the teacher's tokenizer; "
            "use --compress_word_embedding to give it the teacher's (compressed) embeddings")
    if student.config.vocab_size < len(tokenizer):
        raise ValueError(
            f"student {student_checkpoint} has vocab_size {student.config.vocab_size} < the teacher "
            f"tokenizer's {len(tokenizer)}; use --compress_word_embedding")

