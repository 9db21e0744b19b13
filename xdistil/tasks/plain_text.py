"""Unlabeled text for task-agnostic (general) distillation: one text per line, read and encoded like
single-text classification, into a plain encoder with no task head (TFAutoModel)."""
from xdistil.tasks.classification import SequenceClassification


class PlainText(SequenceClassification):
    """Not a task kind a user picks: the reader, encoder and model class of `--general_distillation`."""

    def __init__(self):
        super().__init__(pair=False)
        self.kind = "text"

    def model_class(self):
        from transformers import TFAutoModel

        return TFAutoModel


PLAIN_TEXT = PlainText()
