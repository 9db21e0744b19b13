"""Streaming, chunked reader for the unlabeled transfer file (it may be larger than memory)."""
from __future__ import annotations

from xdistil.data.readers import check_kind, is_blank, iter_lines, parse_unlabeled_line


class TransferChunkReader:
    """Reads a transfer file as consecutive chunks of up to `chunk_size` examples.

    Chunks are numbered over the non-blank lines, so chunk `i` holds the same examples
    whatever chunk a pass starts from; a run that resumes at chunk `i` gets exactly what
    it would have got without stopping. Blank lines are skipped. With `max_lines`, only the
    first `max_lines` examples are read.
    """

    def __init__(self, path, kind, chunk_size, max_lines: int | None = None):
        check_kind(kind)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.path = path
        self.kind = kind
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
        for line_no, line in iter_lines(self.path):
            if is_blank(line):
                self.skipped_blank_lines += 1
                continue
            if self.max_lines is not None and non_blank_seen >= self.max_lines:
                break
            non_blank_seen += 1
            if non_blank_seen <= first_kept:
                continue
            examples.append(parse_unlabeled_line(line, self.kind, self.path, line_no))
            if len(examples) == self.chunk_size:
                yield (non_blank_seen - 1) // self.chunk_size, examples
                examples = []
        if examples:
            yield (non_blank_seen - 1) // self.chunk_size, examples
