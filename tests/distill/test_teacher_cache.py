import numpy as np

from xdistil.data.encoding import Features
from xdistil.distill.teacher_cache import TeacherLogitCache, row_hashes


def test_put_get_float16_memory_mapped(tmp_path):
    cache = TeacherLogitCache(tmp_path / "cache", {"teacher": "a"})
    logits = np.random.default_rng(0).normal(size=(5, 7, 3)).astype(np.float32)
    assert 0 not in cache
    cache.put(0, logits)
    assert 0 in cache
    stored = cache.get(0)
    assert isinstance(stored, np.memmap) and stored.dtype == np.float16
    np.testing.assert_allclose(stored, logits, atol=2e-3)
    assert cache.chunk_rows() == {0: 5}


def test_cache_made_for_other_settings_is_discarded(tmp_path):
    TeacherLogitCache(tmp_path / "cache", {"teacher": "a"}).put(0, np.zeros((2, 3)))
    assert 0 in TeacherLogitCache(tmp_path / "cache", {"teacher": "a"})
    assert 0 not in TeacherLogitCache(tmp_path / "cache", {"teacher": "b"})


def test_cache_made_by_an_older_version_with_file_locations_is_kept(tmp_path):
    """Older versions fingerprinted large files with their path and mtime; the same files now fingerprint
    without them, and the cache they made still holds."""
    transfer = {"bytes": 10, "head_sha256": "ab"}
    old_key = {"teacher": "a", "transfer": [dict(transfer, path="/old/t.txt", mtime=123.0)]}
    TeacherLogitCache(tmp_path / "cache", old_key).put(0, np.zeros((2, 3)))
    cache = TeacherLogitCache(tmp_path / "cache", {"teacher": "a", "transfer": [transfer]})
    assert 0 in cache


def test_chunks_another_run_cached_for_the_same_key_are_copied_not_those_of_another_key(tmp_path):
    other = TeacherLogitCache(tmp_path / "other" / "cache" / "teacher_logits", {"teacher": "a"})
    other.put(0, np.full((2, 3), 1.0))
    other.put(1, np.full((4, 3), 2.0))
    mine = TeacherLogitCache(tmp_path / "run", {"teacher": "a"})
    mine.put(1, np.full((4, 3), 3.0))  # a chunk of its own stays as it is
    mine = TeacherLogitCache(tmp_path / "run", {"teacher": "a"}, also_read=[other.directory])
    assert mine.chunk_rows() == {0: 2, 1: 4}
    np.testing.assert_array_equal(mine.get(0), 1.0)
    np.testing.assert_array_equal(mine.get(1), 3.0)
    assert not list(mine.directory.glob(".tmp.*"))
    assert 0 in TeacherLogitCache(tmp_path / "other" / "cache" / "teacher_logits", {"teacher": "a"})  # left alone
    changed = TeacherLogitCache(tmp_path / "new", {"teacher": "b"}, also_read=[other.directory])
    assert changed.chunk_rows() == {}
    worker = TeacherLogitCache(tmp_path / "worker", {"teacher": "a"}, owner=False, also_read=[other.directory])
    assert worker.chunk_rows() == {}  # only the chief copies
    nowhere = TeacherLogitCache(tmp_path / "missing", {"teacher": "a"}, also_read=[tmp_path / "nowhere"])
    assert nowhere.chunk_rows() == {}


def test_row_hashes_tell_rows_apart_by_every_model_input():
    ids = np.array([[5, 6, 0], [5, 6, 0], [5, 7, 0], [5, 6, 0]], np.int32)
    mask = np.array([[1, 1, 0], [1, 1, 0], [1, 1, 0], [1, 1, 1]], np.int32)
    types = np.zeros_like(ids)
    features = Features(ids, mask, types, np.zeros(4, np.int32), None, np.arange(4), 4)
    hashes = row_hashes(features)
    assert hashes.dtype == np.uint64 and hashes[0] == hashes[1] and len(set(hashes.tolist())) == 3
    types[1, 1] = 1
    assert row_hashes(features)[1] != hashes[1]


def test_rows_held_under_another_key_are_reused_and_their_hashes_travel_with_copied_chunks(tmp_path):
    row_key = {"teacher": "t", "seq_len": 8, "kind": "classification", "labels": ["a", "b"]}
    other = TeacherLogitCache(tmp_path / "other", dict(row_key, transfer="small"))
    other.put(0, np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([11, 12], np.uint64))
    other.put(1, np.array([[5.0, 6.0]]), np.array([13], np.uint64))
    other.put(2, np.array([[7.0, 8.0]]))  # no hashes (an older cache): never reused
    mine = TeacherLogitCache(tmp_path / "mine", dict(row_key, transfer="large"), also_read=[other.directory])
    assert mine.chunk_rows() == {}  # another key: no chunk copied whole
    found, logits = mine.reused_logits(np.array([13, 99, 11], np.uint64))
    assert found.tolist() == [True, False, True]
    np.testing.assert_array_equal(logits, [[5.0, 6.0], [1.0, 2.0]])
    found, logits = mine.reused_logits(np.array([99], np.uint64))
    assert found.tolist() == [False] and logits is None
    other_teacher = TeacherLogitCache(tmp_path / "u", dict(row_key, teacher="u"), also_read=[other.directory])
    assert not other_teacher.reused_logits(np.array([11], np.uint64))[0].any()
    same = TeacherLogitCache(tmp_path / "same", dict(row_key, transfer="small"), also_read=[other.directory])
    assert same.chunk_rows() == {0: 2, 1: 1, 2: 1}
    assert sorted(p.name for p in same.directory.glob("rows_*.npy")) == ["rows_000000.npy", "rows_000001.npy"]
