"""Fingerprints tell contents apart, not locations or modification times."""
import os
import shutil

from xdistil.fingerprints import HEAD_BYTES, comparable_fingerprint, large_file_fingerprint, small_file_fingerprint


def test_a_large_file_moved_copied_or_touched_keeps_its_fingerprint(tmp_path):
    original = tmp_path / "a" / "transfer.txt"
    original.parent.mkdir()
    original.write_bytes(b"line\n" * 1000)
    copy = tmp_path / "b" / "renamed.txt"
    copy.parent.mkdir()
    shutil.copyfile(original, copy)
    os.utime(copy, (1, 1))
    assert large_file_fingerprint(copy) == large_file_fingerprint(original)


def test_a_large_file_fingerprint_changes_with_its_size_and_first_mib(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(bytes(HEAD_BYTES + 10))
    before = large_file_fingerprint(path)
    path.write_bytes(bytes(HEAD_BYTES + 11))
    assert large_file_fingerprint(path) != before
    path.write_bytes(b"x" + bytes(HEAD_BYTES + 9))
    assert large_file_fingerprint(path) != before


def test_a_task_file_fingerprint_hashes_all_of_it(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes(bytes(HEAD_BYTES) + b"a")
    before = small_file_fingerprint(path)
    path.write_bytes(bytes(HEAD_BYTES) + b"b")
    assert small_file_fingerprint(path) != before and small_file_fingerprint(path)["name"] == "train.tsv"


def test_fingerprints_saved_with_locations_compare_equal_to_new_ones():
    saved = {"teacher": {"path": "/old/tf_model.h5", "mtime": 5.0, "bytes": 3, "head_sha256": "ab"},
             "transfer": [{"path": "/old/t.txt", "bytes": 1, "head_sha256": "cd"}], "task_files": {"name": "x"}}
    new = {"teacher": {"bytes": 3, "head_sha256": "ab"}, "transfer": [{"bytes": 1, "head_sha256": "cd"}],
           "task_files": {"name": "x"}}
    assert comparable_fingerprint(saved) == new
    assert comparable_fingerprint(new) == new
