"""The teacher's scores on the task's dev and test splits, kept in the model directory: a resumed run (or a
second run into the same directory with the same teacher and task files) does not evaluate the teacher again,
nor does a run that reuses another run's fine-tuned teacher (`--pt_teacher_checkpoint <run>/teacher`) on the same
task files: it reads the scores that run recorded, under the same key."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from xdistil.fingerprints import comparable_fingerprint
from xdistil.io_utils import atomic_write_json

log = logging.getLogger(__name__)

SCORES_FILE = Path("cache") / "teacher_scores.json"  # in a run's model directory


def teacher_score_key(*, teacher: dict, task_files: dict, labels: list, encoding: dict) -> dict:
    """Everything a teacher's split scores depend on: its weights' fingerprint, the task files' fingerprints,
    the labels and how text is encoded (sequence length, long-sentence policy)."""
    return {"teacher": teacher, "task_files": task_files, "labels": labels, "encoding": encoding}


def _saved_scores(path: Path, key: dict) -> dict:
    """{split: scores} of the file at `path` if it was made with `key`, else {}."""
    saved = json.loads(path.read_text()) if path.is_file() else {}
    return saved.get("scores", {}) if comparable_fingerprint(saved.get("key")) == key else {}


class TeacherScores:
    """A JSON file of {split: scores}, valid only for the key it was made with (else started afresh). A split it
    lacks is read from the files `also_read` that were made with the same key, else evaluated."""

    def __init__(self, path: str | Path, key: dict, writer: bool = True, also_read=()):
        self.path = Path(path)
        self.key = key
        self.writer = writer  # one worker of a cluster writes
        self.scores = _saved_scores(self.path, key)
        self.also_read = [Path(p) for p in also_read]

    def get(self, split: str, evaluate: Callable[[], dict]) -> dict:
        """The split's scores: recorded ones (here, else in `also_read`), else `evaluate()`; recorded here."""
        if split in self.scores:
            log.info("teacher %s scores read from %s", split, self.path)
            return self.scores[split]
        for other in self.also_read:
            if split in (found := _saved_scores(other, self.key)):
                log.info("teacher %s scores read from %s (recorded for the same teacher and task files)", split, other)
                return self._record(split, found[split])
        return self._record(split, evaluate())

    def _record(self, split: str, scores: dict) -> dict:
        self.scores[split] = scores
        if self.writer:
            atomic_write_json(self.path, {"key": self.key, "scores": self.scores})
        return scores
