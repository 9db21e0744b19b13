"""Comparing exported logits with TensorFlow's."""
import numpy as np
import pytest

from xdistil.export.parity import max_abs_logit_diff


def test_max_abs_logit_diff_ignores_padding_for_token_logits():
    reference = np.zeros((1, 3, 2))
    other = reference.copy()
    other[0, 2] = 5.0  # a padded position
    other[0, 1, 0] = 0.25
    mask = np.array([[1, 1, 0]])
    assert max_abs_logit_diff(reference, other, mask) == 0.25
    assert max_abs_logit_diff(reference, other) == 5.0


def test_max_abs_logit_diff_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shapes differ"):
        max_abs_logit_diff(np.zeros((1, 2)), np.zeros((2, 2)))
