"""Teacher logits for the transfer set, computed once per example and kept on disk as float16."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from xdistil.io_utils import atomic_save_npy, atomic_write_json

log = logging.getLogger(__name__)


class TeacherLogitCache:
    """One memory-mapped float16 .npy per transfer chunk, valid only for the `key` it was made with.

    The key names everything the logits depend on (teacher, transfer file, tokenization settings);
    a cache made under another key is deleted rather than trusted.
    """

    def __init__(self, directory: str | Path, key: dict):
        self.directory = Path(directory)
        self.key = key
        meta = self.directory / "meta.json"
        if meta.exists() and json.loads(meta.read_text()) != key:
            log.warning("teacher-logit cache %s was made for other settings; rebuilding it", self.directory)
            shutil.rmtree(self.directory)
        if not meta.exists():
            atomic_write_json(meta, key)

    def _path(self, chunk_index: int) -> Path:
        return self.directory / f"chunk_{chunk_index:06d}.npy"

    def __contains__(self, chunk_index: int) -> bool:
        return self._path(chunk_index).exists()

    def get(self, chunk_index: int) -> np.ndarray:
        """The chunk's logits, memory-mapped (read-only)."""
        return np.load(self._path(chunk_index), mmap_mode="r")

    def put(self, chunk_index: int, logits: np.ndarray) -> None:
        atomic_save_npy(self._path(chunk_index), logits.astype(np.float16))

    def chunk_rows(self) -> dict[int, int]:
        """Rows cached per chunk (read from the .npy headers, not the data)."""
        rows = {}
        for path in sorted(self.directory.glob("chunk_*.npy")):
            rows[int(path.stem.split("_")[1])] = np.load(path, mmap_mode="r").shape[0]
        return rows
