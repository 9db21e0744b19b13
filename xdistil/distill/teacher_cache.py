"""Teacher logits for the transfer set, computed once per example and kept on disk as float16."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from xdistil.data.encoding import MODEL_INPUT_NAMES
from xdistil.fingerprints import comparable_fingerprint
from xdistil.io_utils import atomic_save_npy, atomic_write_json

log = logging.getLogger(__name__)

CACHE_DIR = Path("cache") / "teacher_logits"  # in a run's model directory

# The fields of a cache key that decide the logits of one encoded row; the rest (transfer files, augmentation,
# chunking) decide only which rows there are, so a cache made under another key still holds the logits of the
# rows the two transfer sets share.
ROW_KEY_FIELDS = ("teacher", "seq_len", "kind", "labels", "first_token_state")


def teacher_logit_key(*, teacher: str, transfer: list, augmentation: dict, train, seq_len: int, chunk_size: int,
                      kind: str, labels: list, encoding: dict, max_transfer_lines, max_train_examples,
                      first_token_state: bool = False) -> dict:
    """Everything the teacher's logits of a transfer set depend on: the teacher's and the transfer files'
    fingerprints, the augmentation (`{"copies": 0}` for none), the train file's fingerprint and
    `max_train_examples` when the train texts are the transfer data (else None), and how text is read,
    chunked and encoded. Distillation and pruning recovery share caches through it. With `first_token_state`,
    each cached row holds the teacher's first-token state after its logits (`TFLogitsAndFirstTokenState`); the
    field is left out otherwise, so that caches of logits alone keep the key they were made with."""
    key = {"teacher": teacher, "transfer": transfer, "augmentation": augmentation, "train": train,
           "seq_len": seq_len, "chunk_size": chunk_size, "kind": kind, "labels": labels, "encoding": encoding,
           "max_transfer_lines": max_transfer_lines, "max_train_examples": max_train_examples}
    if first_token_state:
        key["first_token_state"] = True
    return key


def lending_caches(run_directories: str | None) -> list[Path]:
    """The teacher-logit caches of the runs named in a --teacher_logits_from value (comma-separated directories)."""
    return [Path(part.strip()) / CACHE_DIR for part in (run_directories or "").split(",") if part.strip()]


def row_hashes(features) -> np.ndarray:
    """A 64-bit hash of each encoded row's model inputs (uint64): equal rows, equal hashes, whichever transfer
    set, chunk or augmented copy they came from."""
    arrays = [np.ascontiguousarray(getattr(features, name), dtype=np.int64) for name in MODEL_INPUT_NAMES]
    return np.array([int.from_bytes(hashlib.blake2b(b"".join(a[row].tobytes() for a in arrays),
                                                    digest_size=8).digest(), "little")
                     for row in range(len(arrays[0]))], np.uint64)


def saved_key(directory: str | Path) -> dict | None:
    """The key a cache directory was made with (fingerprints saved by older versions read without their
    mtimes), or None where there is no cache."""
    meta = Path(directory) / "meta.json"
    return comparable_fingerprint(json.loads(meta.read_text())) if meta.exists() else None


class TeacherLogitCache:
    """One memory-mapped float16 .npy per transfer chunk, valid only for the `key` it was made with.

    The key names everything the logits depend on (teacher, transfer file, tokenization settings);
    a cache made under another key is deleted rather than trusted. Chunks it lacks are copied from the
    caches `also_read` that were made with the same key (another run's, of the same teacher and transfer data).
    Beside each chunk, the hashes of its rows (`row_hashes`): rows of a new chunk that a cache `also_read` of the
    same teacher holds under another key (a smaller augmentation, other transfer files, another chunk size) are
    taken from it (`reused_logits`) instead of being run through the teacher again.
    """

    def __init__(self, directory: str | Path, key: dict, owner: bool = True, also_read=()):
        self.directory = Path(directory)
        self.key = key
        self.also_read = [Path(other) for other in also_read if Path(other).resolve() != self.directory.resolve()]
        self._row_index = None
        if owner:  # other workers open the cache the chief has checked
            self._check_key()
            for other in self.also_read:
                self._take_chunks(other)

    def _check_key(self):
        saved = saved_key(self.directory)
        if saved is not None and saved != self.key:
            log.warning("teacher-logit cache %s was made for other settings; rebuilding it", self.directory)
            shutil.rmtree(self.directory)
        if saved != self.key:
            atomic_write_json(self.directory / "meta.json", self.key)

    def _take_chunks(self, other: Path) -> None:
        if saved_key(other) != self.key:
            return
        taken = [chunk for chunk in sorted(other.glob("chunk_*.npy")) if not (self.directory / chunk.name).exists()]
        for chunk in taken:  # each whole or not at all, its row hashes first
            rows = other / _rows_name(chunk.name)
            for path in ([rows] if rows.exists() else []) + [chunk]:
                partial = self.directory / f".tmp.{path.name}"
                shutil.copyfile(path, partial)
                os.replace(partial, self.directory / path.name)
        if taken:
            log.info("teacher logits of %d chunks taken from %s (made with the same teacher and transfer data)",
                     len(taken), other)

    def _path(self, chunk_index: int) -> Path:
        return self.directory / f"chunk_{chunk_index:06d}.npy"

    def __contains__(self, chunk_index: int) -> bool:
        return self._path(chunk_index).exists()

    def get(self, chunk_index: int) -> np.ndarray:
        """The chunk's logits, memory-mapped (read-only)."""
        return np.load(self._path(chunk_index), mmap_mode="r")

    def put(self, chunk_index: int, logits: np.ndarray, hashes: np.ndarray | None = None) -> None:
        """The chunk's logits, with the hashes of its rows when given (written first: a chunk file is
        complete)."""
        if hashes is not None:
            self.put_row_hashes(chunk_index, hashes)
        atomic_save_npy(self._path(chunk_index), logits.astype(np.float16))

    def put_row_hashes(self, chunk_index: int, hashes: np.ndarray) -> None:
        atomic_save_npy(self.directory / _rows_name(self._path(chunk_index).name), hashes.astype(np.uint64))

    def reused_logits(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Which of these rows a cache `also_read` of the same teacher, sequence length, task kind and labels
        already holds (a boolean mask), and their logits in order (float32; None where there are none)."""
        if self._row_index is None:
            self._row_index = _RowIndex([other for other in self.also_read
                                         if _row_key(saved_key(other)) == _row_key(self.key)])
        return self._row_index.lookup(np.asarray(hashes, np.uint64))

    def chunk_rows(self) -> dict[int, int]:
        """Rows cached per chunk (read from the .npy headers, not the data)."""
        rows = {}
        for path in sorted(self.directory.glob("chunk_*.npy")):
            rows[int(path.stem.split("_")[1])] = np.load(path, mmap_mode="r").shape[0]
        return rows

    # Parallel fill: worker k of n computes the rows `worker_rows` gives it and writes them as a part;
    # the chief then merges the parts of each chunk into the chunk file.

    def _part_path(self, chunk_index: int, worker_index: int, num_workers: int) -> Path:
        return self.directory / f"part_{chunk_index:06d}_{worker_index}of{num_workers}.npy"

    def has_part(self, chunk_index: int, worker_index: int, num_workers: int) -> bool:
        return self._part_path(chunk_index, worker_index, num_workers).exists()

    def put_part(self, chunk_index: int, worker_index: int, num_workers: int, logits: np.ndarray) -> None:
        atomic_save_npy(self._part_path(chunk_index, worker_index, num_workers), logits.astype(np.float16))

    def merge_parts(self, num_workers: int, block_size: int) -> None:
        """Assemble every chunk whose parts are all present, then delete those parts."""
        chunks = sorted({int(p.name.split("_")[1]) for p in self.directory.glob(f"part_*of{num_workers}.npy")})
        for chunk_index in chunks:
            if chunk_index in self:
                continue
            paths = [self._part_path(chunk_index, k, num_workers) for k in range(num_workers)]
            missing = [p.name for p in paths if not p.exists()]
            if missing:
                raise RuntimeError(f"teacher-logit cache chunk {chunk_index}: parts {missing} are missing")
            parts = [np.load(p) for p in paths]  # worker 0 always has rows; a later one may have none
            num_rows = sum(len(part) for part in parts)
            merged = np.zeros((num_rows,) + parts[0].shape[1:], np.float16)
            for k, part in enumerate(parts):
                if len(part):
                    merged[worker_rows(num_rows, block_size, k, num_workers)] = part
            self.put(chunk_index, merged)
            for path in paths:
                path.unlink()


def _rows_name(chunk_name: str) -> str:
    return chunk_name.replace("chunk_", "rows_", 1)


def _row_key(key: dict | None) -> dict | None:
    return None if key is None else {field: key.get(field) for field in ROW_KEY_FIELDS}


class _RowIndex:
    """The row hashes of other caches' chunks, sorted, to find the rows a new chunk shares with them."""

    def __init__(self, directories: list[Path]):
        self.chunks = []
        hashes, chunk_of, row_of = [np.zeros(0, np.uint64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for directory in directories:
            for chunk in sorted(directory.glob("chunk_*.npy")):
                rows = directory / _rows_name(chunk.name)
                if not rows.exists():  # made before row hashes were kept
                    continue
                chunk_hashes = np.load(rows)
                if len(chunk_hashes) != np.load(chunk, mmap_mode="r").shape[0]:
                    continue
                hashes.append(chunk_hashes)
                chunk_of.append(np.full(len(chunk_hashes), len(self.chunks), np.int64))
                row_of.append(np.arange(len(chunk_hashes)))
                self.chunks.append(chunk)
        hashes = np.concatenate(hashes)
        order = np.argsort(hashes, kind="stable")
        self.hashes, self.chunk_of, self.row_of = hashes[order], np.concatenate(chunk_of)[order], \
            np.concatenate(row_of)[order]

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if not len(self.hashes):
            return np.zeros(len(hashes), bool), None
        at = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        found = self.hashes[at] == hashes
        if not found.any():
            return found, None
        chunk_of, row_of = self.chunk_of[at[found]], self.row_of[at[found]]
        logits = None
        for chunk in np.unique(chunk_of):
            here = chunk_of == chunk
            stored = np.load(self.chunks[chunk], mmap_mode="r")
            if logits is None:
                logits = np.zeros((len(chunk_of),) + stored.shape[1:], np.float32)
            logits[here] = stored[row_of[here]]
        return found, logits


def worker_rows(num_rows: int, block_size: int, worker_index: int, num_workers: int) -> np.ndarray:
    """The rows worker k of n predicts: blocks k, k+n, ... of `block_size` rows.

    Whole prediction batches go to one worker, so every batch is the one a single worker would run
    (same rows, same padding) and the merged cache equals a single-worker one.
    """
    blocks = range(worker_index, -(-num_rows // block_size), num_workers)
    return np.concatenate([np.arange(b * block_size, min(num_rows, (b + 1) * block_size)) for b in blocks]
                          or [np.zeros(0, np.int64)])
