"""BERT students of teachers of other architectures: a BERT config that reads the teacher's tokenizer output, and
a BERT copy of an MPNet model, so that a BERT student can be cut from an MPNet teacher's layers.

MPNet's layers are BERT's under other names: the same query/key/value/output projections, post-LayerNorm
residuals and feed-forward block. Three things differ:

- MPNet adds a relative position bias (one table, shared by every layer) to its attention logits. BERT has
  none, so the copy drops it: that is the one change to what the model computes, and distillation trains the
  student to make up for it. With the bias at zero the copy computes exactly what the MPNet model does.
- MPNet's absolute positions start at padding_idx + 1 (2): BERT position k is MPNet's row k + 2.
- MPNet has no token types: the copy has one token type whose embedding is zero.

A sequence classifier's RoBERTa-style head (dense + tanh over <s>, then the output projection) is BERT's
pooler and classifier; MPNet's own pooler, which that head does not read, is dropped there.
"""
from __future__ import annotations

import numpy as np

from xdistil.models.loading import max_sequence_length

BERT_FAMILY = ("bert", "electra", "roberta", "xlm-roberta", "camembert")  # BERT's layers, under BERT's names
CONVERTIBLE = ("mpnet",)

_RENAMES = (("attention/attn/q/", "attention/self/query/"), ("attention/attn/k/", "attention/self/key/"),
            ("attention/attn/v/", "attention/self/value/"), ("attention/attn/o/", "attention/output/dense/"),
            ("attention/LayerNorm/", "attention/output/LayerNorm/"), ("classifier/dense/", "bert/pooler/dense/"),
            ("classifier/out_proj/", "classifier/"))
_BERT_CLASSES = {"TFMPNetForSequenceClassification": "TFBertForSequenceClassification",
                 "TFMPNetForTokenClassification": "TFBertForTokenClassification",
                 "TFMPNetModel": "TFBertModel"}


def cut_architecture_problem(teacher_type: str, architecture: str, narrowed: bool) -> str | None:
    """Why teacher layers cannot be copied into a student of `architecture` (--student_architecture), or None: a
    BERT copy exists of a BERT or convertible teacher; a narrowed copy is a BERT-family model."""
    if architecture == "bert" and teacher_type != "bert" and teacher_type not in CONVERTIBLE:
        return f"a {teacher_type} teacher's layers cannot be copied into a BERT; those of a bert or " \
               f"{', '.join(CONVERTIBLE)} teacher can"
    if architecture == "teacher" and narrowed and teacher_type in CONVERTIBLE:
        return f"a narrowed copy of a {teacher_type} teacher's layers is a BERT: give --student_architecture bert"
    return None


def bert_config_like(teacher_config, **settings):
    """A BertConfig that reads the teacher's tokenizer output: its vocabulary size and padding id, as many
    positions as the teacher serves, token types only where the teacher has them, its activation."""
    from transformers import BertConfig

    return BertConfig(vocab_size=teacher_config.vocab_size, pad_token_id=teacher_config.pad_token_id,
                      max_position_embeddings=max_sequence_length(teacher_config) or 512,
                      type_vocab_size=getattr(teacher_config, "type_vocab_size", 1),
                      hidden_act=teacher_config.hidden_act, layer_norm_eps=teacher_config.layer_norm_eps,
                      hidden_dropout_prob=teacher_config.hidden_dropout_prob,
                      attention_probs_dropout_prob=teacher_config.attention_probs_dropout_prob, **settings)


def as_bert(model):
    """A new, built HF TF BERT model of `model`'s kind (sequence or token classifier, or bare encoder), sizes and
    labels, holding its weights (see the module docstring for what is dropped). `model` must be built.
    ValueError for a model that has no BERT copy."""
    import transformers

    kind = type(model).__name__
    if model.config.model_type not in CONVERTIBLE or kind not in _BERT_CLASSES:
        raise ValueError(f"{kind} ({model.config.model_type}) has no BERT copy: only {', '.join(CONVERTIBLE)} "
                         "encoders and classifiers are cut into a BERT student")
    config = model.config
    bert = getattr(transformers, _BERT_CLASSES[kind])(bert_config_like(
        config, hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
        num_labels=config.num_labels, id2label=config.id2label, label2id=config.label2id,
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id))
    bert(bert.dummy_inputs, training=False)
    head_is_pooler = kind == "TFMPNetForSequenceClassification"
    source = {}
    for weight in model.weights:
        name = _bert_name(weight.name, model.base_model_prefix)
        if not (head_is_pooler and weight.name.split("/")[1:3] == [model.base_model_prefix, "pooler"]):
            source[name] = weight.numpy()
    offset = config.pad_token_id + 1
    values = []
    for weight in bert.weights:
        name = weight.name.split("/", 1)[1]
        if name.endswith("token_type_embeddings/embeddings:0"):
            values.append(np.zeros(weight.shape, weight.dtype.as_numpy_dtype))
        elif name.endswith("position_embeddings/embeddings:0"):
            values.append(source[name][offset:offset + weight.shape[0]])
        else:
            values.append(source[name])
    bert.set_weights(values)
    return bert


def _bert_name(name: str, prefix: str) -> str:
    """The BERT weight name (without the model's own name) of an MPNet weight."""
    name = name.split("/", 1)[1]
    if name.startswith(prefix + "/"):
        name = "bert/" + name[len(prefix) + 1:]
    for mpnet, bert in _RENAMES:
        name = name.replace(mpnet, bert)
    return name
