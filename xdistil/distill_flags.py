"""absl flags of run_xtreme_distil.py and their translation into a DistilConfig."""
from __future__ import annotations

import dataclasses
import functools

from absl import flags

from xdistil.config import (
    BATCH_SIZE_SCOPES,
    STRATEGIES,
    DistilConfig,
    task_kind_from_flags,
)

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(DistilConfig)
             if f.default is not dataclasses.MISSING}


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Register the distillation flags (names as in the reference toolkit where it had them)."""
    d = _DEFAULTS
    define = {kind: functools.partial(getattr(flags, f"DEFINE_{kind}"), flag_values=flag_values)
              for kind in ("string", "bool", "integer", "float", "enum", "list")}
    define["string"]("task", None, "Task folder with train.tsv, dev.tsv, test.tsv, optional labels.tsv.")
    define["string"]("model_dir", None, "Output model directory (resumes a run found there).")
    define["bool"]("do_NER", False, "Token tagging (BIO/BIOES).")
    define["bool"]("do_pairwise", False, "Sentence-pair classification (text_a, text_b, label).")
    define["string"]("transfer_file", None, "Unlabeled transfer file, or several separated by commas, read in order as "
                     "one stream (default: the texts of train.tsv; labeled files work, labels are ignored).")
    define["string"]("pt_teacher_checkpoint", None, "Teacher: hub name or local HF directory.")
    define["string"]("pt_student_checkpoint", None, "Student: pretrained hub name or local directory.")
    define["integer"]("hidden_size", None, "Student from scratch: hidden size.")
    define["integer"]("num_hidden_layers", None, "Student from scratch: layers.")
    define["integer"]("num_attention_heads", None, "Student from scratch: attention heads.")
    define["integer"]("intermediate_size", None, "Student from scratch: feed-forward size.")
    define["list"]("student_layers_from_teacher", None, "Student from teacher layers, 0-based: 0,4,8,11.")
    define["integer"]("seq_len", d["seq_len"], "Maximum sub-word sequence length.")
    define["enum"]("long_sequence_policy", d["long_sequence_policy"], ["window", "truncate"],
                      "NER sentences longer than --seq_len: split into windows or truncate (counted).")
    define["integer"]("batch_size", d["batch_size"], "Training batch size (see --batch_size_scope).")
    define["integer"]("eval_batch_size", d["eval_batch_size"], "Prediction batch size.")
    define["integer"]("distil_chunk_size", d["distil_chunk_size"], "Transfer lines per chunk.")
    define["bool"]("distil_multi_hidden_states", False, "Distil several hidden states (else the last).")
    define["bool"]("distil_attention", False, "Also distil self-attention probabilities.")
    define["string"]("layer_mapping", d["layer_mapping"], "top | uniform | last | teacher layers '2,4,6'.")
    define["enum"]("attention_loss", d["attention_loss"], ["mse", "kl"], "Attention loss (kl as MiniLM).")
    define["enum"]("logit_loss", d["logit_loss"], ["mse", "kl"], "Logit loss (kl scaled by T^2).")
    define["float"]("temperature", d["temperature"], "Temperature of the KL logit loss.")
    define["bool"]("compress_word_embedding", False, "Student word embeddings = teacher's by SVD/PCA.")
    define["enum"]("compression_method", d["compression_method"], ["svd", "pca"], "Embedding compression.")
    define["bool"]("freeze_word_embedding", False, "Keep the student's word embeddings frozen.")
    define["enum"]("opt_policy", d["opt_policy"], ["float32", "mixed_float16", "mixed_bfloat16"],
                      "Precision policy.")
    define["float"]("learning_rate", d["learning_rate"], "Peak learning rate, fine-tuning stage.")
    define["float"]("distil_learning_rate", d["distil_learning_rate"], "Peak learning rate, stages 1-2.")
    define["float"]("teacher_learning_rate", d["teacher_learning_rate"], "Peak learning rate, teacher.")
    define["float"]("weight_decay", d["weight_decay"], "AdamW weight decay.")
    define["float"]("warmup_ratio", d["warmup_ratio"], "Share of each stage spent warming up.")
    define["integer"]("representation_epochs", d["representation_epochs"], "Stage 1 epochs (0 skips).")
    define["integer"]("logit_epochs", d["logit_epochs"], "Stage 2 epochs.")
    define["integer"]("finetune_epochs", d["finetune_epochs"], "Stage 3 epochs.")
    define["integer"]("teacher_epochs", d["teacher_epochs"], "Teacher fine-tuning epochs.")
    define["integer"]("early_stopping_patience", d["early_stopping_patience"], "Epochs without dev gain.")
    define["float"]("unfreeze_fraction", d["unfreeze_fraction"], "All layers unfrozen after this share.")
    define["integer"]("checkpoint_every_steps", d["checkpoint_every_steps"], "Checkpoint interval.")
    define["integer"]("log_every_steps", d["log_every_steps"], "Progress interval.")
    define["integer"]("max_train_examples", None, "Use only the first N training examples.")
    define["integer"]("max_transfer_lines", None, "Use only the first N lines of the transfer file.")
    define["bool"]("teacher_logit_cache", True, "Cache teacher logits on disk (off: recompute per stage).")
    define["integer"]("seed", d["seed"], "Random seed.")
    define_distribution_flags(flag_values)
    flags.mark_flags_as_required(["task", "model_dir", "pt_teacher_checkpoint"], flag_values=flag_values)


def define_distribution_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """The tf.distribute flags, shared by run_xtreme_distil.py and run_finetune.py."""
    d = _DEFAULTS
    flags.DEFINE_enum("strategy", d["strategy"], list(STRATEGIES),
                      "tf.distribute strategy: default (one device), mirrored (this machine's GPUs, or "
                      "--num_virtual_cpus), multi_worker (cluster from TF_CONFIG), tpu (--tpu).",
                      flag_values=flag_values)
    flags.DEFINE_integer("num_virtual_cpus", None, "Split the CPU into N logical devices (to try mirrored).",
                         flag_values=flag_values)
    flags.DEFINE_string("tpu", None, "--strategy tpu: TPU name, grpc:// address, or 'local'.",
                        flag_values=flag_values)
    flags.DEFINE_enum("batch_size_scope", d["batch_size_scope"], list(BATCH_SIZE_SCOPES),
                      "--batch_size is the global batch, or per replica (global = it x replicas).",
                      flag_values=flag_values)


def config_from_flags(values) -> DistilConfig:
    """Resolve parsed flags into a DistilConfig."""
    names = {f.name for f in dataclasses.fields(DistilConfig)}
    settings = {name: values[name].value for name in names if name in values and name != "task_kind"}
    layers = settings.get("student_layers_from_teacher")
    if layers is not None:
        settings["student_layers_from_teacher"] = tuple(int(i) for i in layers)
    settings["task_kind"] = task_kind_from_flags(values.do_NER, values.do_pairwise)
    return DistilConfig(**settings)
