"""SVD / PCA compression of an embedding matrix."""
import numpy as np
import pytest

from xdistil.models.embedding_compression import compress_embedding


def _low_rank(v=60, h=24, rank=5, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(v, rank)) @ rng.normal(size=(rank, h)) + offset).astype(np.float32)


def _reconstruct(compressed, matrix):
    """Best linear map back to the original space: exact iff the row space is kept."""
    w, *_ = np.linalg.lstsq(compressed.astype(np.float64), matrix.astype(np.float64),
                            rcond=None)
    return compressed @ w


def test_svd_of_low_rank_matrix_is_exact_and_keeps_dot_products():
    m = _low_rank(rank=5, offset=0.5)  # the offset adds a shared mean direction
    c, report = compress_embedding(m, 8, "svd")
    assert c.shape == (60, 8) and c.dtype == np.float32
    np.testing.assert_allclose(_reconstruct(c, m), m, atol=1e-4)
    np.testing.assert_allclose(c @ c.T, m.astype(np.float64) @ m.T, rtol=1e-4, atol=1e-3)
    assert report == {"method": "svd", "target_dim": 8,
                      "retained_energy": pytest.approx(1.0)}
    # columns beyond the rank carry (numerically) nothing
    assert np.abs(c[:, 6:]).max() < 1e-4


def test_svd_truncation_is_the_best_rank_k_approximation():
    rng = np.random.default_rng(1)
    m = rng.normal(size=(50, 16)).astype(np.float32)
    c, report = compress_embedding(m, 4, "svd")
    s = np.linalg.svd(m.astype(np.float64), compute_uv=False)
    # column norms are the singular values, largest first
    np.testing.assert_allclose(np.linalg.norm(c, axis=0), s[:4], rtol=1e-5)
    residual = np.sum((m - _reconstruct(c, m)) ** 2)
    np.testing.assert_allclose(residual, np.sum(s[4:] ** 2), rtol=1e-4)
    assert report["retained_energy"] == pytest.approx(np.sum(s[:4] ** 2) / np.sum(s ** 2))


def test_pca_drops_the_mean_direction():
    m = _low_rank(rank=3, offset=5.0)
    c, report = compress_embedding(m, 3, "pca")
    centered = m.astype(np.float64) - m.mean(axis=0)
    np.testing.assert_allclose(c.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(c @ c.T, centered @ centered.T, rtol=1e-4, atol=1e-3)
    assert report["method"] == "pca" and report["retained_energy"] == pytest.approx(1.0)
    # svd with the same k keeps the mean direction instead, so it differs from pca
    c_svd, _ = compress_embedding(m, 3, "svd")
    assert np.abs(c_svd.mean(axis=0)).max() > 1.0


def test_full_width_svd_is_a_rotation_and_deterministic():
    rng = np.random.default_rng(2)
    m = rng.normal(size=(30, 10)).astype(np.float32)
    c, report = compress_embedding(m, 10)
    np.testing.assert_allclose(c @ c.T, m.astype(np.float64) @ m.T, rtol=1e-4, atol=1e-4)
    assert report["retained_energy"] == pytest.approx(1.0)
    np.testing.assert_array_equal(c, compress_embedding(m.copy(), 10)[0])
    # the sign convention does not depend on the sign of the input
    np.testing.assert_allclose(compress_embedding(-m, 10)[0], -c, atol=1e-5)


def test_fewer_rows_than_target_dim_pads_with_zero_columns():
    m = np.random.default_rng(3).normal(size=(4, 12)).astype(np.float32)
    c, report = compress_embedding(m, 8)
    assert c.shape == (4, 8)
    np.testing.assert_array_equal(c[:, 4:], 0.0)
    np.testing.assert_allclose(c @ c.T, m.astype(np.float64) @ m.T, rtol=1e-4, atol=1e-4)
    assert report["retained_energy"] == pytest.approx(1.0)


def test_zero_matrix():
    c, report = compress_embedding(np.zeros((5, 6)), 3)
    assert c.shape == (5, 3) and not c.any() and report["retained_energy"] == 1.0


@pytest.mark.parametrize("kwargs,match", [
    ({"target_dim": 13}, r"in 1\.\.12"),
    ({"target_dim": 0}, r"in 1\.\.12"),
    ({"target_dim": 4.0}, r"in 1\.\.12"),
    ({"target_dim": 4, "method": "nmf"}, "unknown embedding compression method"),
])
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        compress_embedding(np.ones((20, 12)), **kwargs)


def test_matrix_errors():
    with pytest.raises(ValueError, match="2-D"):
        compress_embedding(np.ones(12), 4)
    with pytest.raises(ValueError, match="NaN or inf"):
        compress_embedding(np.full((3, 4), np.nan), 2)
