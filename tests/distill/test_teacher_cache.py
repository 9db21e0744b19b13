import numpy as np

from xdistil.distill.teacher_cache import TeacherLogitCache


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
