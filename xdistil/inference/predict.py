"""Batched prediction with a TF model or an ONNX session: logits for encoded features."""
from __future__ import annotations

import logging
import time

import numpy as np

from xdistil.data.encoding import MODEL_INPUT_NAMES
from xdistil.progress import format_seconds

log = logging.getLogger(__name__)

# A pass with a `progress` label logs its rows done at most this often.
PROGRESS_EVERY_SECONDS = 60.0


def trimmed_length(attention_mask: np.ndarray, multiple: int = 8) -> int:
    """The batch's longest real length rounded up to `multiple` (never past the padded length)."""
    longest = int(attention_mask.sum(axis=1).max()) if len(attention_mask) else 1
    return min(attention_mask.shape[1], max(multiple, -(-longest // multiple) * multiple))


def batch_arrays(features, rows, keys=MODEL_INPUT_NAMES, trim: bool = True, multiple: int = 8) -> dict:
    """Rows of `features` as a dict of arrays, cut to the batch's real length (rounded up to
    `multiple`) when `trim`."""
    arrays = {k: getattr(features, k)[rows] for k in keys}
    if trim:
        length = trimmed_length(arrays["attention_mask"], multiple)
        arrays = {k: v[:, :length] if v.ndim >= 2 else v for k, v in arrays.items()}
    return arrays


class BatchedPredictor:
    """Logits batch by batch, each batch run at its own length (its longest row rounded up to
    `length_multiple`; with batch_size 1 and length_multiple 1, each row at exactly its length, as
    served online). Rows are batched in order of length, so that batches hold little padding; the
    logits come back in the rows' order. `forward` maps a dict of [batch, length] int arrays to logits."""

    def __init__(self, forward, batch_size: int = 64, length_multiple: int = 8):
        self.forward = forward
        self.batch_size = batch_size
        self.length_multiple = length_multiple

    def logits(self, features, progress: str | None = None) -> np.ndarray:
        """Float32 logits: [n, seq_len, C] (token level, zero past each batch's length) or [n, C].
        With `progress` (what the pass is), rows done, rows/s and time left (at the pace so far per
        token) are logged every PROGRESS_EVERY_SECONDS: a 100M teacher takes many minutes over a large
        chunk."""
        n = len(features.input_ids)
        lengths = features.attention_mask.sum(axis=1)
        by_length = np.argsort(lengths, kind="stable")
        # tokens left after each row in length order: rows come shortest first, so time left is told
        # from tokens, not rows (a row count would promise the long tail at the short rows' pace)
        tokens_after = np.cumsum(lengths[by_length][::-1])[::-1] if progress else None
        outputs = None
        started = last_report = time.monotonic()
        for start in range(0, n, self.batch_size):
            now = time.monotonic()
            if progress and start and now - last_report >= PROGRESS_EVERY_SECONDS:
                elapsed = now - started
                tokens_done = tokens_after[0] - tokens_after[start]
                log.info("%s: %d/%d rows, %.1f rows/s, eta %s", progress, start, n, start / elapsed,
                         format_seconds(elapsed * tokens_after[start] / max(tokens_done, 1)))
                last_report = now
            rows = np.sort(by_length[start:start + self.batch_size])
            arrays = batch_arrays(features, rows, multiple=self.length_multiple)
            batch_logits = np.asarray(self.forward(arrays))
            if outputs is None:
                shape = (n, features.input_ids.shape[1], batch_logits.shape[-1]) if batch_logits.ndim == 3 \
                    else (n, batch_logits.shape[-1])
                outputs = np.zeros(shape, np.float32)
            if batch_logits.ndim == 3:
                outputs[rows, :batch_logits.shape[1]] = batch_logits
            else:
                outputs[rows] = batch_logits
        if outputs is None:
            raise ValueError("nothing to predict: no input rows")
        return outputs


class TFPredictor(BatchedPredictor):
    """Logits from a HF TF task model; with `first_token_state`, each row's logits followed by the model's last
    hidden state at the first token (a teacher's targets for --first_token_state_weight)."""

    def __init__(self, model, batch_size: int = 64, length_multiple: int = 8, first_token_state: bool = False):
        from xdistil.models.forward import TFLogits, TFLogitsAndFirstTokenState

        forward = TFLogitsAndFirstTokenState(model) if first_token_state else TFLogits(model)
        super().__init__(forward, batch_size, length_multiple)
        self.model = model


class ONNXPredictor(BatchedPredictor):
    """Logits from an onnxruntime session of an exported student."""

    def __init__(self, session, batch_size: int = 64, length_multiple: int = 8):
        from xdistil.inference.onnx_runtime import session_feeder

        super().__init__(session_feeder(session), batch_size, length_multiple)
