"""Fingerprints of input files and directories: what a model directory, a teacher-logit cache or an ONNX
export was made from, so that a later run can tell whether it may reuse them."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

HEAD_BYTES = 1 << 20


def file_sha256(path, block: int = 1 << 20, limit: int | None = None) -> str:
    """sha256 of a file's contents (of its first `limit` bytes, if given)."""
    digest = hashlib.sha256()
    remaining = limit
    with open(path, "rb") as stream:
        while remaining is None or remaining > 0:
            chunk = stream.read(block if remaining is None else min(block, remaining))
            if not chunk:
                break
            digest.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    return digest.hexdigest()


def small_file_fingerprint(path) -> dict:
    """A task file (train/dev/test/labels): its full content hash."""
    return {"name": Path(path).name, "bytes": os.path.getsize(path), "sha256": file_sha256(path)}


def large_file_fingerprint(path) -> dict:
    """A file that may be far larger than memory (transfer data, weights): size and the hash of its first MiB,
    cheap at any size. Neither its location nor its modification time: a copy, a move or a touch leaves the
    contents, and what was computed from them, as they were."""
    return {"bytes": os.path.getsize(path), "head_sha256": file_sha256(path, limit=HEAD_BYTES)}


# Keys older versions recorded in large-file fingerprints, which no longer tell contents apart.
LOCATION_KEYS = frozenset({"mtime", "path"})


def comparable_fingerprint(fingerprint):
    """A fingerprint saved by an older version (whose large-file fingerprints held "path" and "mtime"),
    comparable to a new one."""
    if isinstance(fingerprint, dict):
        return {key: comparable_fingerprint(value) for key, value in fingerprint.items() if key not in LOCATION_KEYS}
    if isinstance(fingerprint, list):
        return [comparable_fingerprint(value) for value in fingerprint]
    return fingerprint


def directory_fingerprint(directory) -> str:
    """sha256 over the names and contents of every file in `directory` (sorted, recursively)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode() + b"\0" + file_sha256(path).encode())
    return digest.hexdigest()


def checkpoint_fingerprint(resolved: str) -> dict:
    """A teacher or student checkpoint: its weights file for a local directory, else its name."""
    for weights in ("tf_model.h5", "model.safetensors"):
        path = Path(resolved) / weights
        if path.exists():
            return large_file_fingerprint(path)
    return {"name": resolved}
