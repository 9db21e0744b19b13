"""Where a stage's batches come from: the labeled train set, or the transfer file chunk by chunk."""
from __future__ import annotations

import copy
import logging
import math

import numpy as np

from xdistil.distill.teacher_cache import TeacherLogitCache, row_hashes, worker_rows

log = logging.getLogger(__name__)


class LabeledSource:
    """The encoded labeled train set, as a single chunk."""

    def __init__(self, features):
        self.features = features

    def chunks(self, start: int = 0):
        """Yield (chunk_index, features, teacher_logits=None) from chunk `start` on."""
        if start == 0:
            yield 0, self.features, None

    def rows_per_chunk(self) -> list[int]:
        return [len(self.features.input_ids)]


class TransferSource:
    """The transfer file read in chunks, encoded on the fly, with the teacher's logits per chunk.

    `teacher` is a predictor of the teacher's logits. With a `cache`, they are computed once
    (`fill_cache`) and read back by every stage; without one, they are recomputed for every chunk of
    every epoch, as the reference toolkit did (kept for comparison: `--noteacher_logit_cache`).
    """

    def __init__(self, reader, encode_chunk, teacher, cache: TeacherLogitCache | None = None):
        self.reader = reader
        self.encode_chunk = encode_chunk  # examples -> Features
        self.cache = cache
        self.teacher = teacher
        self.with_logits = True
        self._rows = None

    def without_logits(self) -> "TransferSource":
        """The same chunks without teacher logits (stage 1 runs the teacher itself)."""
        source = copy.copy(self)
        source.with_logits = False
        return source

    def chunks(self, start: int = 0):
        for index, examples in self.reader.chunks(start):
            features = self.encode_chunk(examples)
            yield index, features, self._teacher_logits(index, features)

    def _teacher_logits(self, index: int, features):
        if not self.with_logits:
            return None
        if self.cache is None:  # recomputed, rounded like cached logits so that both train alike
            return self.teacher.logits(features).astype(np.float16)
        logits = self.cache.get(index)
        if len(logits) != len(features.input_ids):
            raise RuntimeError(f"teacher-logit cache chunk {index} has {len(logits)} rows, "
                               f"the transfer chunk {len(features.input_ids)}: delete {self.cache.directory}")
        return logits

    def _computed_or_reused(self, features, hashes: np.ndarray, progress: str) -> np.ndarray:
        """The teacher's logits of these rows: those another cache holds taken from it, the rest computed."""
        found, reused = self.cache.reused_logits(hashes)
        if not found.any():
            return self.teacher.logits(features, progress)
        log.info("%s: %d of %d rows taken from another run's cache of this teacher", progress, found.sum(),
                 len(hashes))
        if found.all():
            return reused
        missing = np.flatnonzero(~found)
        computed = self.teacher.logits(features.select(missing), progress)
        logits = np.zeros((len(hashes),) + computed.shape[1:], np.float32)
        logits[found], logits[missing] = reused, computed
        return logits

    def rows_per_chunk(self) -> list[int]:
        if self.cache is not None:
            rows = self.cache.chunk_rows()
            return [rows[i] for i in sorted(rows)]
        if self._rows is None:  # tokenize once to count rows (NER windows can add some)
            self._rows = [len(self.encode_chunk(examples).input_ids) for _, examples in self.reader.chunks(0)]
        return self._rows

    def fill_cache(self, worker_index: int = 0, num_workers: int = 1, barrier=lambda: None) -> None:
        """Compute teacher logits for every chunk not cached yet (resumable chunk by chunk), taking the rows
        another cache of the teacher already holds from it (`TeacherLogitCache.reused_logits`).

        With several workers, each predicts its share of every chunk (`worker_rows`), then worker 0
        merges the shares; `barrier` waits for all workers.
        """
        if self.cache is None:
            return
        block = self.teacher.batch_size
        for index, examples in self.reader.chunks(0):
            if index in self.cache or self.cache.has_part(index, worker_index, num_workers):
                continue
            features = self.encode_chunk(examples)
            hashes = row_hashes(features)
            progress = f"teacher logits, transfer chunk {index}"
            if num_workers == 1:
                self.cache.put(index, self._computed_or_reused(features, hashes, progress), hashes)
            else:
                rows = worker_rows(len(features), block, worker_index, num_workers)
                logits = self._computed_or_reused(features.select(rows), hashes[rows], progress) if len(rows) \
                    else np.zeros(0, np.float32)
                if worker_index == 0:
                    self.cache.put_row_hashes(index, hashes)
                self.cache.put_part(index, worker_index, num_workers, logits)
            log.info("teacher logits cached for transfer chunk %d (%d rows)", index, len(features))
        if num_workers > 1:
            barrier()
            if worker_index == 0:
                self.cache.merge_parts(num_workers, block)
            barrier()


def steps_per_epoch(rows_per_chunk: list[int], batch_size: int) -> int:
    return sum(math.ceil(rows / batch_size) for rows in rows_per_chunk)


# Rows sorted by length within windows of this many batches, when batches are grouped by length.
LENGTH_GROUP_BATCHES = 50


def batch_order(num_rows: int, seed: int, stage: str, epoch: int, chunk: int, lengths: np.ndarray | None = None,
                batch_size: int = 1) -> np.ndarray:
    """A permutation that depends only on its position in training, so that a resumed run replays it.

    With `lengths`, consecutive `batch_size` slices of it hold rows of similar length (rows shuffled, then
    sorted by length within windows of LENGTH_GROUP_BATCHES batches, and the batches shuffled), so that
    little of each batch is padding."""
    stage_code = sum(ord(c) for c in stage)
    rng = np.random.default_rng([seed, stage_code, epoch, chunk])
    order = rng.permutation(num_rows)
    if lengths is None or num_rows == 0:
        return order
    window = LENGTH_GROUP_BATCHES * batch_size
    order = np.concatenate([part[np.argsort(-lengths[part], kind="stable")]
                            for part in np.split(order, range(window, num_rows, window))] or [order])
    batches = np.split(order, range(batch_size, num_rows, batch_size))
    full = len(batches) - (num_rows % batch_size > 0)  # a short batch stays last, where the trainer cuts it
    return np.concatenate([batches[i] for i in rng.permutation(full)] + batches[full:])
