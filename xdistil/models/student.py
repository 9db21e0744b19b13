"""Build the student: from a pretrained checkpoint, from scratch, or from a subset of teacher layers."""
from __future__ import annotations

import logging

import numpy as np
import tf_keras

from xdistil.config import LAYER_ORDER, ordered_layers
from xdistil.distill.layer_mapping import layer_mapping
from xdistil.inference.predict import batch_arrays
from xdistil.models.bert_conversion import CONVERTIBLE, as_bert, bert_config_like, cut_architecture_problem
from xdistil.models.embedding_compression import compress_embedding
from xdistil.models.loading import (CheckpointError, label_kwargs, load_task_model, load_tokenizer,
                                    model_inputs, word_embedding_variable)
from xdistil.pruning.masks import copy_with_layers, encoder_layers
from xdistil.pruning.width import activation_importance, choose_width_plan, width_targets

log = logging.getLogger(__name__)


def build_student(student_config, task, teacher, tokenizer, labels: list[str], calibration=None):
    """Create the student task model a StudentConfig describes, built and ready, and how it started (for
    metrics.json: from a checkpoint, from which teacher layers, or from random weights and why). `calibration`
    (Features) holds the rows a narrowed copy of teacher layers measures the teacher's activations on."""
    student, start = _started_student(student_config, task, teacher, tokenizer, labels, calibration)
    if student_config.student_dropout is not None:
        set_dropout(student, student_config.student_dropout)
    return student, start


def set_dropout(model, rate: float) -> None:
    """Every dropout layer of a built HF TF model drops `rate` from its next trace on; its config records the rate
    (hidden states, attention probabilities and the task head's classifier dropout) for whoever rebuilds it."""
    layers = [layer for layer in model.submodules if isinstance(layer, tf_keras.layers.Dropout)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no dropout layer to set")
    for layer in layers:
        layer.rate = rate
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
        if hasattr(model.config, key):
            setattr(model.config, key, rate)


def _started_student(student_config, task, teacher, tokenizer, labels, calibration):
    if student_config.pt_student_checkpoint:
        kept = student_config.pt_student_layers
        student = load_task_model(student_config.pt_student_checkpoint, task, labels)
        if kept is not None:
            student = keep_encoder_layers(student, kept)
        if student_config.remap_student_vocabulary:
            build_model(student)
            remap_vocabulary(student, load_tokenizer(student_config.pt_student_checkpoint), teacher, tokenizer)
        start = {"from": "checkpoint", "checkpoint": student_config.pt_student_checkpoint,
                 "layers": None if kept is None else list(kept),
                 "vocabulary_remapped": student_config.remap_student_vocabulary}
        if student_config.narrowing_sizes:
            build_model(student)
            student = narrowed_copy(student, list(range(student.config.num_hidden_layers)),
                                    student_config.narrowing_sizes, calibration, "student checkpoint")
            start["narrowed_to"] = {key: getattr(student.config, key) for key in
                                    ("hidden_size", "num_attention_heads", "intermediate_size")}
    else:
        layers, sizes = student_config.student_layers_from_teacher, student_config.narrowing_sizes
        start = (teacher_start(teacher, student_config) if layers is None
                 else {"from": "teacher_layers", "layers": list(layers), "sizes": sizes})
        if start["from"] == "random":
            student = student_from_scratch(teacher, student_config, task, labels)
        else:
            student = student_from_teacher_layers(teacher, start["layers"], start["sizes"], calibration,
                                                  student_config.student_architecture)
            if student.config.model_type != teacher.config.model_type:
                start["converted_from"] = teacher.config.model_type  # cut from the teacher's BERT copy
            if student_config.compress_word_embedding:
                log.info("word embeddings: the teacher's, reduced to the student's kept channels "
                         "(--compress_word_embedding is what the cut already does)")
            return student, start
    build_model(student)
    if student_config.compress_word_embedding:
        apply_compressed_embedding(student, teacher, student_config.compression_method)
        start["word_embedding"] = f"the teacher's, {student_config.compression_method}-compressed"
    return student, start


def evenly_spaced_layers(count: int, num_layers: int) -> list[int]:
    """`count` of `num_layers` layers (0-based), the teacher layers of the "uniform" layer mapping, so the top one
    is kept: 4 of 12 -> 2, 5, 8, 11."""
    return [teacher - 1 for _, teacher in layer_mapping("uniform", count, num_layers)]


def teacher_start(teacher, student_config) -> dict:
    """How a student from scratch starts: with --student_init teacher, from evenly spaced teacher layers cut to
    its sizes ({"from": "teacher_layers", "layers", "sizes"}); from random weights ({"from": "random",
    "reason"}) where the flag asks for them or no such cut exists (the reason is then logged as a warning)."""
    if student_config.student_init != "teacher":
        return {"from": "random", "reason": "--student_init random"}
    config = teacher.config
    sizes = {key: value for key, value in student_config.from_scratch_sizes.items() if value is not None}
    layers = sizes.pop("num_hidden_layers")
    architecture = student_config.student_architecture
    converted = architecture == "bert" and config.model_type in CONVERTIBLE
    reason = cut_architecture_problem(config.model_type, architecture, narrowed=True)  # a cut is a narrowed copy
    if reason is None and layers > config.num_hidden_layers:
        reason = f"{layers} layers are more than the teacher's {config.num_hidden_layers}"
    if reason is None:
        try:
            build_model(teacher)
            if not converted:
                encoder_layers(teacher)
            sizes = width_targets(config, **sizes)
        except ValueError as error:  # ConfigError for sizes that are not whole teacher heads
            reason = str(error)
    if reason:
        log.warning("student from random weights, not from teacher layers: %s (--student_init random says so "
                    "without this warning)", reason)
        return {"from": "random", "reason": reason}
    return {"from": "teacher_layers", "layers": evenly_spaced_layers(layers, config.num_hidden_layers),
            "sizes": sizes}


def keep_encoder_layers(model, kept) -> object:
    """A new model of the same class with only the encoder layers `kept` (0-based, in order), weights copied."""
    kept = checked_layers("--pt_student_layers", kept, model.config.num_hidden_layers, stacked=True)
    build_model(model)
    log.info("student checkpoint layers %s kept, renumbered 0..%d", kept, len(kept) - 1)
    return copy_with_layers(model, kept)


def checked_layers(flag: str, layers, num_layers: int, stacked: bool = False) -> list[int]:
    """`layers` as a list, when they are increasing distinct indices of a model with `num_layers` layers
    (non-decreasing with `stacked`)."""
    layers = list(layers)
    if not ordered_layers(layers, stacked) or max(layers) >= num_layers:
        raise ValueError(f"{flag} {layers}: need {LAYER_ORDER[stacked]} in 0..{num_layers - 1}")
    return layers


def build_model(model) -> None:
    model(model.dummy_inputs, training=False)


def student_from_scratch(teacher, student_config, task, labels):
    """A randomly initialised model of the given sizes (intermediate size 4 x hidden unless given), of the
    teacher's architecture or (student_architecture "bert") a BERT over the teacher's vocabulary."""
    sizes = {key: value for key, value in student_config.from_scratch_sizes.items() if value is not None}
    sizes.setdefault("intermediate_size", 4 * sizes["hidden_size"])
    if student_config.student_architecture == "bert":
        config = bert_config_like(teacher.config, **sizes, **label_kwargs(labels))
    else:
        config = type(teacher.config).from_dict({**teacher.config.to_dict(), **sizes, **label_kwargs(labels)})
    return task.model_class().from_config(config)


def student_from_teacher_layers(teacher, layers, narrowing_sizes=None, calibration=None, architecture="teacher"):
    """A student whose encoder layers are copies of the given (0-based) teacher layers, in order, under copies
    of the teacher's embeddings and head (the teacher is the task model: it has the task's labels). With
    `narrowing_sizes` (the --hidden_size/--num_attention_heads/--intermediate_size given) the copy is
    narrower: it keeps the channels, heads and neurons most active on the `calibration` rows. With
    `architecture` "bert" a teacher of another architecture is copied through its BERT copy (`as_bert`), which
    is also what its units are ranked on."""
    layers = checked_layers("--student_layers_from_teacher", layers, teacher.config.num_hidden_layers)
    build_model(teacher)
    if architecture == "bert" and teacher.config.model_type != "bert":
        log.info("student cut from a BERT copy of the %s teacher (xdistil.models.bert_conversion: MPNet's relative "
                 "position bias dropped)", teacher.config.model_type)
        teacher = as_bert(teacher)
    if not narrowing_sizes:
        log.info("student from teacher layers %s", layers)
        return copy_with_layers(teacher, layers)
    return narrowed_copy(teacher, layers, narrowing_sizes, calibration)


def narrowed_copy(model, layers, narrowing_sizes: dict, calibration, source: str = "teacher"):
    """A copy of the (0-based) `layers` of the built `model` (the teacher, or a student checkpoint as `source`
    says), narrowed to `narrowing_sizes`: the channels, heads and neurons most active on the `calibration` rows."""
    sizes = width_targets(model.config, **narrowing_sizes, source=source)
    if calibration is None:
        raise ValueError(f"a narrowed copy of {source} layers needs rows to measure the {source}'s activations on")
    importance = activation_importance(model, layers, calibration_batches(model, calibration))
    plan = choose_width_plan(importance, sizes)
    log.info("student from %s layers %s narrowed to %s (most active of %d calibration rows)", source, layers, sizes,
             min(len(calibration), CALIBRATION_ROWS))
    return copy_with_layers(model, layers, plan)


CALIBRATION_ROWS = 256


def calibration_batches(model, features, rows: int = CALIBRATION_ROWS, batch_size: int = 32):
    """Model-input batches of the first `rows` rows of `features`, cut to their longest real length."""
    for start in range(0, min(rows, len(features)), batch_size):
        yield model_inputs(model, batch_arrays(features, np.arange(start, min(start + batch_size, rows,
                                                                                 len(features)))))


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


def check_vocabulary_matches(student_checkpoint: str, student_vocab_size: int, tokenizer) -> None:
    """Refuse a pretrained student whose vocabulary differs from the teacher's tokenizer, or whose
    vocabulary cannot be checked because it has no tokenizer files (no model is built for this)."""
    try:
        student_vocab = load_tokenizer(student_checkpoint).get_vocab()
    except CheckpointError as error:
        raise CheckpointError(student_checkpoint, "the student has no loadable tokenizer, so its vocabulary cannot be "
                                                  "checked against the teacher's; add its tokenizer files, or give "
                                                  f"--compress_word_embedding to use the teacher's ({error.what})") \
            from None
    if student_vocab != tokenizer.get_vocab():
        raise CheckpointError(student_checkpoint, "the student uses a different vocabulary than the teacher's "
                                                  "tokenizer; give --compress_word_embedding to give it the teacher's "
                                                  "(compressed) embeddings")
    if student_vocab_size < len(tokenizer):
        raise CheckpointError(student_checkpoint, f"the student has vocab_size {student_vocab_size} < the "
                                                  f"teacher tokenizer's {len(tokenizer)}; use --compress_word_embedding")


SPECIAL_ROLES = ("cls", "sep", "pad", "unk", "mask")
WORD_START = "\u2581"


def piece_keys(tokenizer) -> dict[str, int]:
    """Tokenizer-independent names of a tokenizer's pieces: special tokens by role ("<cls>", ...), a
    word-initial piece as "▁word" (SentencePiece's own spelling) and a continuation piece bare ("ing"),
    whatever its tokenizer's convention (WordPiece writes "word" and "##ing")."""
    import json

    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    prefix = model.get("continuing_subword_prefix") if model["type"] == "WordPiece" else None
    special = set(tokenizer.all_special_ids)
    keys = {}
    for piece, piece_id in tokenizer.get_vocab().items():
        if piece_id in special:
            continue
        if prefix is not None:
            piece = piece[len(prefix):] if piece.startswith(prefix) else WORD_START + piece
        keys.setdefault(piece, piece_id)
    for role in SPECIAL_ROLES:
        piece_id = getattr(tokenizer, f"{role}_token_id", None)
        if piece_id is not None:
            keys[f"<{role}>"] = piece_id
    return keys


def remap_vocabulary(student, student_tokenizer, teacher, teacher_tokenizer) -> dict:
    """Give a pretrained student the teacher's vocabulary: a piece both tokenizers have (by `piece_keys`, or
    lower-cased for an uncased student) keeps the student's own embedding row; every other piece gets the
    teacher's row mapped into the student's space by the least-squares map fit on the shared pieces.
    The student's embedding matrix is resized to the teacher's vocabulary; returns a report."""
    teacher_keys, student_keys = piece_keys(teacher_tokenizer), piece_keys(student_tokenizer)
    pairs = []
    for key, teacher_id in teacher_keys.items():
        student_id = student_keys.get(key, student_keys.get(key.lower()))
        if student_id is not None:
            pairs.append((teacher_id, student_id))
    if len(pairs) < 2:
        raise ValueError("the student's and the teacher's tokenizers share fewer than 2 pieces: nothing to map from")
    teacher_rows, student_rows = (np.array(ids) for ids in zip(*pairs))
    teacher_matrix = word_embedding_variable(teacher).numpy().astype(np.float64)
    student_matrix = word_embedding_variable(student).numpy().astype(np.float64)
    mapping, *_ = np.linalg.lstsq(teacher_matrix[teacher_rows], student_matrix[student_rows], rcond=None)
    remapped = teacher_matrix @ mapping
    fitted = remapped[teacher_rows]
    remapped[teacher_rows] = student_matrix[student_rows]
    student.resize_token_embeddings(teacher_matrix.shape[0])
    build_model(student)
    word_embedding_variable(student).assign(remapped.astype(np.float32))
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(student.config, key, getattr(teacher.config, key, None))
    residual = np.sum((fitted - student_matrix[student_rows]) ** 2)
    total = np.sum((student_matrix[student_rows] - student_matrix[student_rows].mean(axis=0)) ** 2)
    report = {"teacher_pieces": int(teacher_matrix.shape[0]), "shared_pieces": len(pairs),
              "map_r2": float(1 - residual / total) if total else 1.0}
    log.info("student vocabulary remapped to the teacher's: %s", report)
    return report
