"""Low-rank word embeddings: the student's [vocabulary, hidden] matrix as the product of two factors.

A small student's word embeddings are often most of its parameters (17,656 pieces x 384 = 6.8M of a
12.5M student), and every row is kept: unlike a pruned vocabulary, no word changes its segmentation.
`factorise_word_embedding` replaces the matrix W by its best rank-r approximation U_r S_r V_r^T (SVD),
which costs V*r + r*H parameters instead of V*H. In TensorFlow the product stays one [V, H] matrix (the
model directory stays a plain HF directory) and is kept frozen while the rest of the student recovers, so it
stays of rank r; the ONNX export factors it again (`word_embedding_factors`) into a [V, r] table looked up
per token and an [r, H] projection (`xdistil.export.fusion`).
"""
from __future__ import annotations

import numpy as np

from xdistil.models.loading import word_embedding_variable

# How far the singular values beyond the rank may reach (relative to the largest) in a matrix said to be of
# that rank: float32 rounding of the product leaves about 1e-7.
RANK_TOLERANCE = 1e-4


def low_rank(matrix: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left [V, r], right [r, H], singular values) of `matrix` with left @ right its best rank-`rank` fit."""
    u, s, vt = np.linalg.svd(np.asarray(matrix, dtype=np.float64), full_matrices=False)
    return u[:, :rank] * s[:rank], vt[:rank], s


def factorise_word_embedding(model, rank: int) -> dict:
    """Replace the word embeddings of `model` (a HF TF model) by their best rank-`rank` approximation.

    Returns {"rank", "vocab_size", "hidden_size", "energy_kept"} (the share of the squared singular values the
    rank keeps), which the pruning plan records."""
    variable = word_embedding_variable(model)
    vocab_size, hidden_size = (int(n) for n in variable.shape)
    if not 0 < rank < hidden_size:
        raise ValueError(f"--word_embedding_rank {rank}: needs 1 to {hidden_size - 1} (the student's hidden size "
                         f"is {hidden_size})")
    left, right, singular = low_rank(variable.numpy(), rank)
    variable.assign((left @ right).astype(variable.dtype.as_numpy_dtype))
    energy = float(np.sum(singular[:rank] ** 2) / np.sum(singular ** 2))
    return {"rank": rank, "vocab_size": vocab_size, "hidden_size": hidden_size, "energy_kept": round(energy, 6)}


def word_embedding_factors(matrix: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 factors (left [V, r], right [r, H]) of a word-embedding matrix that is of rank `rank`; raises
    ValueError when it is not (its weights changed after they were factorised)."""
    left, right, singular = low_rank(matrix, rank)
    beyond = float(singular[rank] / singular[0]) if len(singular) > rank and singular[0] > 0 else 0.0
    if beyond > RANK_TOLERANCE:
        raise ValueError(f"the word embeddings are not of rank {rank}: singular value {rank + 1} is {beyond:.3g} "
                         f"of the largest (more than {RANK_TOLERANCE:g}); were they trained after factorising?")
    return left.astype(np.float32), right.astype(np.float32)


def factorised_parameters(vocab_size: int, hidden_size: int, rank: int) -> int:
    """Parameters a rank-`rank` factorisation saves over the full [vocab_size, hidden_size] matrix."""
    return vocab_size * hidden_size - rank * (vocab_size + hidden_size)
