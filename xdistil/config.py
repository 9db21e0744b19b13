"""Run configuration: one frozen dataclass, resolved from flags and saved in the model dir."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from xdistil.io_utils import atomic_write_text

CONFIG_FILE = "xtremedistil-config.json"
OPT_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
BATCH_SIZE_SCOPES = ("global", "per_replica")


@dataclasses.dataclass(frozen=True)
class DistilConfig:
    """Every setting of a distillation run; written to `<model_dir>/xtremedistil-config.json`."""

    task: str
    model_dir: str
    task_kind: str = "classification"  # "ner" | "pairwise" | "classification"
    transfer_file: str | None = None
    pt_teacher_checkpoint: str = ""
    pt_student_checkpoint: str | None = None
    # Student built from scratch (teacher's architecture, these sizes) ...
    hidden_size: int | None = None
    num_hidden_layers: int | None = None
    num_attention_heads: int | None = None
    intermediate_size: int | None = None
    # ... or from a subset of the teacher's layers (0-based), e.g. (0, 4, 8, 11).
    student_layers_from_teacher: tuple[int, ...] | None = None
    seq_len: int = 128
    long_sequence_policy: str = "window"  # NER: "window" | "truncate"
    batch_size: int = 32
    eval_batch_size: int = 64
    distil_chunk_size: int = 100_000
    max_transfer_lines: int | None = None
    teacher_logit_cache: bool = True
    # Stage 1: representation distillation.
    distil_multi_hidden_states: bool = False
    distil_attention: bool = False
    layer_mapping: str = "top"  # "top" | "uniform" | "last" | explicit teacher layers "2,4,6"
    attention_loss: str = "mse"  # "mse" | "kl"
    # Stage 2: logit distillation.
    logit_loss: str = "mse"  # "mse" | "kl"
    temperature: float = 1.0
    # Word-embedding compression.
    compress_word_embedding: bool = False
    compression_method: str = "svd"  # "svd" | "pca"
    freeze_word_embedding: bool = False
    # Optimisation.
    opt_policy: str = "float32"
    learning_rate: float = 5e-5
    distil_learning_rate: float = 1e-4
    teacher_learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    representation_epochs: int = 2
    logit_epochs: int = 2
    finetune_epochs: int = 4
    teacher_epochs: int = 3
    early_stopping_patience: int = 2
    unfreeze_fraction: float = 0.5  # all groups unfrozen after this fraction of a stage
    checkpoint_every_steps: int = 200
    log_every_steps: int = 20
    max_train_examples: int | None = None
    seed: int = 42
    # tf.distribute: "default" | "mirrored" | "multi_worker" (TF_CONFIG) | "tpu" (--tpu).
    strategy: str = "default"
    num_virtual_cpus: int | None = None  # split the CPU into N logical devices (mirrored on one CPU)
    tpu: str | None = None
    batch_size_scope: str = "global"  # --batch_size is "global" or "per_replica" (as the reference)

    def __post_init__(self):
        if self.task_kind not in ("ner", "pairwise", "classification"):
            raise ValueError(f"task_kind must be ner, pairwise or classification, got {self.task_kind!r}")
        if self.opt_policy not in OPT_POLICIES:
            raise ValueError(f"--opt_policy must be one of {OPT_POLICIES}, got {self.opt_policy!r}")
        if self.long_sequence_policy not in ("window", "truncate"):
            raise ValueError("--long_sequence_policy must be window or truncate")
        if self.attention_loss not in ("mse", "kl") or self.logit_loss not in ("mse", "kl"):
            raise ValueError("--attention_loss and --logit_loss must be mse or kl")
        if self.compression_method not in ("svd", "pca"):
            raise ValueError("--compression_method must be svd or pca")
        if not self.pt_teacher_checkpoint:
            raise ValueError("--pt_teacher_checkpoint is required (a hub name or a local directory)")
        sources = [self.pt_student_checkpoint is not None, self.student_layers_from_teacher is not None]
        if sum(sources) > 1:
            raise ValueError("give either --pt_student_checkpoint or --student_layers_from_teacher, not both")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"--strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.batch_size_scope not in BATCH_SIZE_SCOPES:
            raise ValueError(f"--batch_size_scope must be one of {BATCH_SIZE_SCOPES}, got {self.batch_size_scope!r}")
        if self.strategy == "tpu" and not self.tpu:
            raise ValueError("--strategy tpu needs --tpu: a TPU name, a grpc:// address, or 'local'")
        if self.seq_len < 8:
            raise ValueError("--seq_len must be at least 8")

    @property
    def path(self) -> Path:
        return Path(self.model_dir)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> "DistilConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in names}
        if values.get("student_layers_from_teacher") is not None:
            values["student_layers_from_teacher"] = tuple(values["student_layers_from_teacher"])
        return cls(**values)


def task_kind_from_flags(do_ner: bool, do_pairwise: bool) -> str:
    if do_ner and do_pairwise:
        raise ValueError("--do_NER and --do_pairwise are exclusive")
    return "ner" if do_ner else "pairwise" if do_pairwise else "classification"


def save_run_config(config: DistilConfig, labels: list[str], extra: dict) -> None:
    """Write the resolved config, the label list and versions atomically into the model dir."""
    import tensorflow as tf
    import transformers

    import xdistil

    payload = dataclasses.asdict(config)
    payload.update(labels=list(labels), versions={
        "xdistil": xdistil.__version__, "tensorflow": tf.__version__,
        "transformers": transformers.__version__}, **extra)
    os.makedirs(config.model_dir, exist_ok=True)
    atomic_write_text(config.path / CONFIG_FILE, json.dumps(payload, indent=2, sort_keys=True))


def load_run_config(model_dir: str | os.PathLike) -> dict:
    """Read `xtremedistil-config.json` of a model dir (settings, labels, versions)."""
    path = Path(model_dir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {model_dir} is not an xdistil model directory")
    return json.loads(path.read_text())
