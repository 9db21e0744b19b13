"""The teacher's scores on the task's dev and test splits, kept in the model directory: a resumed run (or a
second run into the same directory with the same teacher and task files) does not evaluate the teacher again."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from xdistil.fingerprints import comparable_fingerprint
from xdistil.io_utils import atomic_write_json

log = logging.getLogger(__name__)


def teacher_score_key(*, teacher: dict, task_files: dict, labels: list, encoding: dict) -> dict:
    """Everything a teacher's split scores depend on: its weights' fingerprint, the task files' fingerprints,
    the labels and how text is encoded (sequence length, long-sentence policy)."""
    return {"teacher": teacher, "task_files": task_files, "labels": labels, "encoding": encoding}


class TeacherScores:
    """A JSON file of {split: scores}, valid only for the key it was made with (else started afresh)."""

    def __init__(self, path: str | Path, key: dict, writer: bool = True):
        self.path = Path(path)
        self.key = key
        self.writer = writer  # one worker of a cluster writes
        saved = json.loads(self.path.read_text()) if self.path.exists() else {}
        same = comparable_fingerprint(saved.get("key")) == key
        self.scores = saved.get("scores", {}) if same else {}

    def get(self, split: str, evaluate: Callable[[], dict]) -> dict:
        """The split's scores: recorded ones, else `evaluate()`, recorded."""
        if split in self.scores:
            log.info("teacher %s scores read from %s", split, self.path)
            return self.scores[split]
        scores = evaluate()
        self.scores[split] = scores
        if self.writer:
            atomic_write_json(self.path, {"key": self.key, "scores": self.scores})
        return scores
