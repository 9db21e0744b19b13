"""absl flags of run_xtreme_distil.py and their translation into a DistilConfig."""
from __future__ import annotations

import dataclasses

from absl import flags

from xdistil.config import DistilConfig, task_kind_from_flags

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(DistilConfig)
             if f.default is not dataclasses.MISSING}


def define_flags() -> None:
    """Register the distillation flags (names as in the reference toolkit where it had them)."""
    d = _DEFAULTS
    flags.DEFINE_string("task", None, "Task folder with train.tsv, dev.tsv, test.tsv, optional labels.tsv.")
    flags.DEFINE_string("model_dir", None, "Output model directory (resumes a run found there).")
    flags.DEFINE_bool("do_NER", False, "Token tagging (BIO/BIOES).")
    flags.DEFINE_bool("do_pairwise", False, "Sentence-pair classification (text_a, text_b, label).")
    flags.DEFINE_string("transfer_file", None, "Unlabeled transfer file (default: the texts of train.tsv).")
    flags.DEFINE_string("pt_teacher_checkpoint", None, "Teacher: hub name or local HF directory.")
    flags.DEFINE_string("pt_student_checkpoint", None, "Student: pretrained hub name or local directory.")
    flags.DEFINE_integer("hidden_size", None, "Student from scratch: hidden size.")
    flags.DEFINE_integer("num_hidden_layers", None, "Student from scratch: layers.")
    flags.DEFINE_integer("num_attention_heads", None, "Student from scratch: attention heads.")
    flags.DEFINE_integer("intermediate_size", None, "Student from scratch: feed-forward size.")
    flags.DEFINE_list("student_layers_from_teacher", None, "Student from teacher layers, 0-based: 0,4,8,11.")
    flags.DEFINE_integer("seq_len", d["seq_len"], "Maximum sub-word sequence length.")
    flags.DEFINE_enum("long_sequence_policy", d["long_sequence_policy"], ["window", "truncate"],
                      "NER sentences longer than --seq_len: split into windows or truncate (counted).")
    flags.DEFINE_integer("batch_size", d["batch_size"], "Training batch size.")
    flags.DEFINE_integer("eval_batch_size", d["eval_batch_size"], "Prediction batch size.")
    flags.DEFINE_integer("distil_chunk_size", d["distil_chunk_size"], "Transfer lines per chunk.")
    flags.DEFINE_bool("distil_multi_hidden_states", False, "Distil several hidden states (else the last).")
    flags.DEFINE_bool("distil_attention", False, "Also distil self-attention probabilities.")
    flags.DEFINE_string("layer_mapping", d["layer_mapping"], "top | uniform | last | teacher layers '2,4,6'.")
    flags.DEFINE_enum("attention_loss", d["attention_loss"], ["mse", "kl"], "Attention loss (kl as MiniLM).")
    flags.DEFINE_enum("logit_loss", d["logit_loss"], ["mse", "kl"], "Logit loss (kl scaled by T^2).")
    flags.DEFINE_float("temperature", d["temperature"], "Temperature of the KL logit loss.")
    flags.DEFINE_bool("compress_word_embedding", False, "Student word embeddings = teacher's by SVD/PCA.")
    flags.DEFINE_enum("compression_method", d["compression_method"], ["svd", "pca"], "Embedding compression.")
    flags.DEFINE_bool("freeze_word_embedding", False, "Keep the student's word embeddings frozen.")
    flags.DEFINE_enum("opt_policy", d["opt_policy"], ["float32", "mixed_float16", "mixed_bfloat16"],
                      "Precision policy.")
    flags.DEFINE_float("learning_rate", d["learning_rate"], "Peak learning rate, fine-tuning stage.")
    flags.DEFINE_float("distil_learning_rate", d["distil_learning_rate"], "Peak learning rate, stages 1-2.")
    flags.DEFINE_float("teacher_learning_rate", d["teacher_learning_rate"], "Peak learning rate, teacher.")
    flags.DEFINE_float("weight_decay", d["weight_decay"], "AdamW weight decay.")
    flags.DEFINE_float("warmup_ratio", d["warmup_ratio"], "Share of each stage spent warming up.")
    flags.DEFINE_integer("representation_epochs", d["representation_epochs"], "Stage 1 epochs (0 skips).")
    flags.DEFINE_integer("logit_epochs", d["logit_epochs"], "Stage 2 epochs.")
    flags.DEFINE_integer("finetune_epochs", d["finetune_epochs"], "Stage 3 epochs.")
    flags.DEFINE_integer("teacher_epochs", d["teacher_epochs"], "Teacher fine-tuning epochs.")
    flags.DEFINE_integer("early_stopping_patience", d["early_stopping_patience"], "Epochs without dev gain.")
    flags.DEFINE_float("unfreeze_fraction", d["unfreeze_fraction"], "All layers unfrozen after this share.")
    flags.DEFINE_integer("checkpoint_every_steps", d["checkpoint_every_steps"], "Checkpoint interval.")
    flags.DEFINE_integer("log_every_steps", d["log_every_steps"], "Progress interval.")
    flags.DEFINE_integer("max_train_examples", None, "Use only the first N training examples.")
    flags.DEFINE_integer("seed", d["seed"], "Random seed.")
    flags.DEFINE_enum("strategy", d["strategy"], ["default", "mirrored"], "tf.distribute strategy.")
    flags.mark_flags_as_required(["task", "model_dir", "pt_teacher_checkpoint"])


def config_from_flags(values) -> DistilConfig:
    """Resolve parsed flags into a DistilConfig."""
    names = {f.name for f in dataclasses.fields(DistilConfig)}
    settings = {name: values[name].value for name in names if name in values and name != "task_kind"}
    layers = settings.get("student_layers_from_teacher")
    if layers is not None:
        settings["student_layers_from_teacher"] = tuple(int(i) for i in layers)
    settings["task_kind"] = task_kind_from_flags(values.do_NER, values.do_pairwise)
    return DistilConfig(**settings)
