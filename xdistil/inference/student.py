"""A distilled student read back from its model directory, with the settings it was trained with."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from xdistil.config import load_run_config
from xdistil.data.encoding import encode
from xdistil.data.readers import read_labeled_file, read_unlabeled_file
from xdistil.inference.predict import predictions_from_logits, score_predictions


@dataclasses.dataclass
class StudentBundle:
    """Everything prediction needs from a model directory: no teacher, no hub."""

    model_dir: Path
    kind: str
    labels: list[str]
    seq_len: int
    long_sequence_policy: str
    task: str | None
    tokenizer: object

    @classmethod
    def load(cls, model_dir: str) -> "StudentBundle":
        from xdistil.models.loading import load_tokenizer

        run = load_run_config(model_dir)
        model_path = Path(model_dir) / "model"
        return cls(Path(model_dir), run["task_kind"], run["labels"], run["seq_len"],
                   run.get("long_sequence_policy", "window"), run.get("task"), load_tokenizer(str(model_path)))

    @property
    def model_path(self) -> Path:
        return self.model_dir / "model"

    def load_tf_model(self):
        from xdistil.models.loading import task_model_class

        return task_model_class(self.kind).from_pretrained(str(self.model_path))

    def encode(self, examples):
        label2id = {label: i for i, label in enumerate(self.labels)}
        return encode(self.tokenizer, examples, self.kind, self.seq_len, label2id, self.long_sequence_policy)[0]

    def read_unlabeled(self, path: str):
        return read_unlabeled_file(path, self.kind)

    def read_labeled(self, path: str):
        return read_labeled_file(path, self.kind, self.labels)

    def default_eval_file(self) -> str:
        path = Path(self.task or "") / "test.tsv"
        if not self.task or not path.exists():
            raise FileNotFoundError(f"no test file at {path}: give --eval_file")
        return str(path)

    def predictions(self, logits, features, examples):
        return predictions_from_logits(self.kind, logits, features, examples, self.labels)

    def score(self, examples, predictions) -> dict:
        return score_predictions(self.kind, examples, predictions, self.labels)


def format_prediction(kind: str, prediction) -> str:
    """One output line: NER the word-level tags, text tasks `label<TAB>probability`."""
    if kind == "ner":
        return " ".join(prediction)
    label, probability = prediction
    return f"{label}\t{probability:.6f}"
