"""Compare exported models' logits with the TensorFlow model's."""
import numpy as np


def max_abs_logit_diff(tf_logits, onnx_logits, attention_mask=None) -> float:
    """Largest absolute logit difference; with a mask and 3-D (token) logits, padding is ignored."""
    tf_logits = np.asarray(tf_logits, dtype=np.float64)
    onnx_logits = np.asarray(onnx_logits, dtype=np.float64)
    if tf_logits.shape != onnx_logits.shape:
        raise ValueError(f"logit shapes differ: {tf_logits.shape} vs {onnx_logits.shape}")
    diff = np.abs(tf_logits - onnx_logits)
    if attention_mask is not None and diff.ndim == 3:
        diff = diff[np.asarray(attention_mask).astype(bool)]
    return float(diff.max()) if diff.size else 0.0
