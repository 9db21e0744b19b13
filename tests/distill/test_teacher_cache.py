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
