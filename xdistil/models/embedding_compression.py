"""Compress a teacher's word-embedding matrix to the student width (SVD or PCA)."""
import numpy as np

METHODS = ("svd", "pca")


def compress_embedding(matrix: np.ndarray, target_dim: int,
                       method: str = "svd") -> tuple[np.ndarray, dict]:
    """Project a [V, H] embedding matrix to [V, target_dim] float32 coordinates.

    "svd": U_k * S_k of the matrix itself, the coordinates of its best rank-k approximation;
           dot products between rows are preserved up to that approximation, and the shared
           mean direction is kept.
    "pca": the columns are centered first, then U_k * S_k (the mean direction is dropped).
    Returns (compressed, {"method", "target_dim", "retained_energy"}), where
    retained_energy = sum of the k largest squared singular values / sum of all of them (of
    the centered matrix for "pca"; 1.0 for an all-zero matrix).

    Runs np.linalg.svd(full_matrices=False) in float64: for V=250k, H=768 that is ~1.5 GB
    per [V, H] array and a few of them at peak. Signs are fixed (largest-magnitude entry of
    each right singular vector positive) so the result is deterministic. If V < target_dim,
    the extra columns are zeros (the matrix has rank <= V).
    """
    if method not in METHODS:
        raise ValueError(f"unknown embedding compression method {method!r}; use one of "
                         f"{METHODS}")
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise ValueError(f"embedding matrix must be a non-empty 2-D array, got shape "
                         f"{matrix.shape}")
    hidden = matrix.shape[1]
    if isinstance(target_dim, bool) or not isinstance(target_dim, (int, np.integer)) \
            or not 1 <= target_dim <= hidden:
        raise ValueError(f"target_dim must be an integer in 1..{hidden} (the embedding "
                         f"width), got {target_dim!r}")
    data = matrix.astype(np.float64)
    if not np.all(np.isfinite(data)):
        raise ValueError("embedding matrix contains NaN or inf")
    if method == "pca":
        data -= data.mean(axis=0, keepdims=True)
    u, s, vt = np.linalg.svd(data, full_matrices=False)
    del data
    k = min(target_dim, len(s))
    signs = np.sign(vt[np.arange(len(s)), np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1.0
    compressed = np.zeros((matrix.shape[0], target_dim), np.float32)
    compressed[:, :k] = u[:, :k] * (s[:k] * signs[:k])
    energy = np.sum(s ** 2)
    retained = float(np.sum(s[:k] ** 2) / energy) if energy > 0 else 1.0
    return compressed, {"method": method, "target_dim": int(target_dim),
                        "retained_energy": retained}
