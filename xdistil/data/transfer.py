"""Streaming, chunked reader for the unlabeled transfer files (they may be larger than memory)."""
from __future__ import annotations

import os
from collections.abc import Iterator

from xdistil.data.readers import is_blank, iter_lines
from xdistil.errors import InputFileError


def transfer_paths(spec) -> list[str]:
    """The transfer files of `spec`: one path (str or Path), a comma-separated list of paths, or a list.

    Every file must exist (checked here, before any training starts).
    """
    if isinstance(spec, os.PathLike):
        spec = [spec]
    paths = [str(p).strip() for p in (spec.split(",") if isinstance(spec, str) else spec)]
    paths = [p for p in paths if p]
    if not paths:
        raise ValueError(f"no transfer file in {spec!r}")
    for path in paths:
        if not os.path.isfile(path):
            raise InputFileError(path, "transfer file not found")
    return paths


class TransferChunkReader:
    """Reads one or more transfer files, in order, as consecutive chunks of up to `chunk_size` examples.

    The files form one stream: a chunk may hold the end of one file and the start of the next.
    Chunks are numbered over the non-blank lines, so chunk `i` holds the same examples
    whatever chunk a pass starts from; a run that resumes at chunk `i` gets exactly what
    it would have got without stopping. Blank lines are skipped. With `max_lines`, only the
    first `max_lines` examples are read. `paths` is as for `transfer_paths`; `task` parses the
    lines; errors name the file and line.
    """

    def __init__(self, paths, task, chunk_size, max_lines: int | None = None):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.paths = transfer_paths(paths)
        self.task = task
        self.chunk_size = chunk_size
        self.max_lines = max_lines
        self.skipped_blank_lines = 0

    def chunks(self, start_chunk=0):
        """Yield `(chunk_index, examples)` from `start_chunk` on, reading lazily.

        Lines of earlier chunks are only decoded and counted, not parsed.
        `skipped_blank_lines` counts the blank lines met by this pass.
        """
        if start_chunk < 0:
            raise ValueError(f"start_chunk must be >= 0, got {start_chunk}")
        self.skipped_blank_lines = 0
        first_kept = start_chunk * self.chunk_size
        non_blank_seen = 0
        examples = []
        for path, line_no, line in self._lines():
            if is_blank(line):
                self.skipped_blank_lines += 1
                continue
            if self.max_lines is not None and non_blank_seen >= self.max_lines:
                break
            non_blank_seen += 1
            if non_blank_seen <= first_kept:
                continue
            examples.append(self.task.parse_unlabeled(line, path, line_no))
            if len(examples) == self.chunk_size:
                yield (non_blank_seen - 1) // self.chunk_size, examples
                examples = []
        if examples:
            yield (non_blank_seen - 1) // self.chunk_size, examples

    def _lines(self) -> Iterator[tuple[str, int, str]]:
        for path in self.paths:
            for line_no, line in iter_lines(path):
                yield path, line_no, line


class ExamplesChunkReader:
    """Examples already in memory (the texts of the training examples used, when there is no transfer
    file) as consecutive chunks, with the interface of TransferChunkReader."""

    def __init__(self, examples, chunk_size):
        self.examples = list(examples)
        self.chunk_size = chunk_size

    def chunks(self, start_chunk=0):
        for index in range(start_chunk, -(-len(self.examples) // self.chunk_size)):
            yield index, self.examples[index * self.chunk_size:(index + 1) * self.chunk_size]
