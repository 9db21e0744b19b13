"""Token tagging (NER): one BIO/BIOES tag per whitespace-separated word, entity-level F1."""
from __future__ import annotations

from xdistil.data.encoding import decode_ner, encode_ner, encode_ner_request
from xdistil.data.readers import NerExample, check_label, split_columns
from xdistil.errors import InputFormatError
from xdistil.evaluate import ner_scores
from xdistil.tasks.base import Task


class TokenTagging(Task):
    kind = "ner"
    metric = "f1"
    token_level = True
    cls_only_export = False
    head_suffix = "ForTokenClassification"
    labeled_columns = ("tokens", "tags")

    def model_class(self):
        from transformers import TFAutoModelForTokenClassification

        return TFAutoModelForTokenClassification

    def parse_labeled(self, line, path, line_no, label_set):
        tokens, tags = (column.split() for column in split_columns(line, self.labeled_columns, path, line_no))
        if not tokens:
            raise InputFormatError(path, line_no, "empty tokens column")
        if len(tokens) != len(tags):
            raise InputFormatError(path, line_no, f"{len(tokens)} tokens but {len(tags)} tags")
        for tag in tags:
            check_label(tag, label_set, path, line_no)
        return NerExample(tuple(tokens), tuple(tags))

    def parse_unlabeled(self, line, path, line_no):
        tokens = line.split("\t")[0].split()
        if not tokens:
            raise InputFormatError(path, line_no, "empty sentence")
        return NerExample(tuple(tokens), None)

    def labels_of(self, example):
        return example.tags or ()

    def without_labels(self, example):
        return NerExample(example.tokens, None)

    def _texts_of(self, example):
        return list(example.tokens)

    def unlabeled_line(self, example):
        return " ".join(example.tokens)

    def default_label_order(self, labels):
        return ["O"] + sorted(labels - {"O"})

    def encode(self, tokenizer, examples, label2id, settings):
        return encode_ner(tokenizer, examples, settings.seq_len, label2id, settings.long_sequence_policy,
                          drop_bare_markers=settings.bare_word_marker == "drop")

    def encode_request(self, tokenizer, example, settings):
        return encode_ner_request(tokenizer, example.tokens, settings.seq_len, settings.long_sequence_policy,
                                  settings.bare_word_marker == "drop")

    def request_prediction(self, request, row_logits, example, labels):
        tags = ["O"] * len(example.tokens)  # words a truncated sentence never reached, as decode_ner has them
        for logits, (positions, words) in zip(row_logits, request.first_subtokens):
            for word, label in zip(words.tolist(), logits[positions].argmax(-1).tolist()):
                tags[word] = labels[label]
        return tags

    def logit_loss_mask(self, batch):
        import tensorflow as tf

        return tf.cast(batch["word_ids"] >= 0, tf.float32)  # the first sub-token of each word

    def count_logit_positions(self, arrays, num_rows):
        return float((arrays["word_ids"] >= 0).sum())

    def predictions(self, logits, features, examples, labels):
        return decode_ner(logits.argmax(-1), features, [len(e.tokens) for e in examples], labels)

    def predicted_ids(self, logits, features):
        return logits.argmax(-1)[features.word_ids >= 0]

    def score(self, examples, predictions, labels):
        return ner_scores([list(e.tags) for e in examples], predictions)

    def format_prediction(self, prediction):
        return " ".join(prediction)

    def trivial_predictions(self, train_examples, examples, labels):
        outside = "O" if "O" in labels else labels[0]
        return [[outside] * len(example.tokens) for example in examples]

    def trivial_name(self, train_examples, labels):
        return f"every word {('O' if 'O' in labels else labels[0])!r}"
