"""Sequence classification of one text, or of a text pair: accuracy (selects models) and macro-F1."""
from __future__ import annotations

import collections

import numpy as np

from xdistil.data.encoding import encode_text_request, encode_texts
from xdistil.data.readers import TextExample, check_label, split_columns
from xdistil.errors import InputFormatError
from xdistil.evaluate import classification_scores
from xdistil.tasks.base import Task


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class SequenceClassification(Task):
    metric = "accuracy"
    token_level = False
    cls_only_export = True
    head_suffix = "ForSequenceClassification"

    def __init__(self, pair: bool):
        self.pair = pair
        self.kind = "pairwise" if pair else "classification"
        self.text_columns = ("text_a", "text_b") if pair else ("text",)
        self.labeled_columns = self.text_columns + ("label",)

    def model_class(self):
        from transformers import TFAutoModelForSequenceClassification

        return TFAutoModelForSequenceClassification

    def _texts(self, columns, path, line_no) -> list[str]:
        texts = [column.strip() for column in columns]
        for name, text in zip(self.text_columns, texts):
            if not text:
                raise InputFormatError(path, line_no, f"empty {name}")
        return texts

    def parse_labeled(self, line, path, line_no, label_set):
        *columns, label = split_columns(line, self.labeled_columns, path, line_no)
        texts = self._texts(columns, path, line_no)
        label = label.strip()
        if not label:
            raise InputFormatError(path, line_no, "empty label")
        check_label(label, label_set, path, line_no)
        return TextExample(texts[0], texts[1] if self.pair else None, label)

    def parse_unlabeled(self, line, path, line_no):
        columns = split_columns(line, self.text_columns, path, line_no, at_least=True)
        texts = self._texts(columns, path, line_no)
        return TextExample(texts[0], texts[1] if self.pair else None, None)

    def labels_of(self, example):
        return () if example.label is None else (example.label,)

    def without_labels(self, example):
        return TextExample(example.text_a, example.text_b, None)

    def unlabeled_line(self, example):
        return f"{example.text_a}\t{example.text_b}" if self.pair else example.text_a

    def encode(self, tokenizer, examples, label2id, settings):
        return encode_texts(tokenizer, examples, settings.seq_len, label2id, pair=self.pair)

    def encode_request(self, tokenizer, example, settings):
        return encode_text_request(tokenizer, example.text_a, example.text_b, settings.seq_len)

    def request_prediction(self, request, row_logits, example, labels):
        probabilities = softmax(row_logits[0])
        best = int(probabilities.argmax())
        return labels[best], float(probabilities[best])

    def logit_loss_mask(self, batch):
        return batch.get("example_mask")  # the real rows (None: all of them)

    def count_logit_positions(self, arrays, num_rows):
        return float(num_rows)

    def predictions(self, logits, features, examples, labels):
        probs = softmax(logits)
        best = probs.argmax(-1)
        return [(labels[i], float(p[i])) for i, p in zip(best, probs)]

    def predicted_ids(self, logits, features):
        return logits.argmax(-1)

    def score(self, examples, predictions, labels):
        return classification_scores([e.label for e in examples], [p[0] for p in predictions], labels)

    def format_prediction(self, prediction):
        label, probability = prediction
        return f"{label}\t{probability:.6f}"

    def trivial_predictions(self, train_examples, examples, labels):
        return [(self._majority(train_examples), 1.0)] * len(examples)

    def trivial_name(self, train_examples, labels):
        return f"always {self._majority(train_examples)!r}"

    @staticmethod
    def _majority(train_examples) -> str:
        return collections.Counter(e.label for e in train_examples).most_common(1)[0][0]
