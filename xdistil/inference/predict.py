"""TensorFlow prediction and the post-processing shared with the ONNX path."""
from __future__ import annotations

import numpy as np

from xdistil.data.encoding import MODEL_INPUT_NAMES, decode_ner
from xdistil.evaluate import classification_scores, ner_scores


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
    """Batched logits, each batch run at its own (trimmed) length; subclasses define `_forward`."""

    input_names: tuple[str, ...]
    batch_size: int
    length_multiple: int = 8  # 1 with batch_size 1: each row at exactly its length, as served online

    def _forward(self, arrays: dict) -> np.ndarray:
        raise NotImplementedError

    def logits(self, features) -> np.ndarray:
        """Float32 logits: [n, seq_len, C] (NER, zero past each batch's length) or [n, C]."""
        n = len(features.input_ids)
        outputs = None
        for start in range(0, n, self.batch_size):
            rows = np.arange(start, min(n, start + self.batch_size))
            arrays = batch_arrays(features, rows, self.input_names, multiple=self.length_multiple)
            batch_logits = np.asarray(self._forward(arrays))
            if outputs is None:
                shape = (n, features.input_ids.shape[1], batch_logits.shape[-1]) if batch_logits.ndim == 3 \
                    else (n, batch_logits.shape[-1])
                outputs = np.zeros(shape, np.float32)
            outputs[rows, ...] = _pad_to(batch_logits, outputs.shape[1:])
        if outputs is None:
            raise ValueError("nothing to predict: no input rows")
        return outputs


class TFPredictor(BatchedPredictor):
    """Logits from a HF TF task model."""

    def __init__(self, model, batch_size: int = 64):
        import tensorflow as tf

        from xdistil.models.loading import model_input_names

        self.model = model
        self.batch_size = batch_size
        self.input_names = model_input_names(model)
        signature = {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in self.input_names}
        self._tf_forward = tf.function(
            lambda inputs: tf.cast(model(inputs, training=False).logits, tf.float32), input_signature=[signature])

    def _forward(self, arrays):
        return self._tf_forward(arrays).numpy()


class ONNXPredictor(BatchedPredictor):
    """Logits from an onnxruntime session of an exported student."""

    def __init__(self, session, batch_size: int = 64, length_multiple: int = 8):
        self.session = session
        self.batch_size = batch_size
        self.length_multiple = length_multiple
        self.input_names = tuple(i.name for i in session.get_inputs())

    def _forward(self, arrays):
        from xdistil.export.parity import run_onnx

        return run_onnx(self.session, arrays)


def _pad_to(batch_logits: np.ndarray, shape) -> np.ndarray:
    if batch_logits.ndim == 3 and batch_logits.shape[1] < shape[0]:
        pad = shape[0] - batch_logits.shape[1]
        return np.pad(batch_logits, ((0, 0), (0, pad), (0, 0)))
    return batch_logits


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def predictions_from_logits(kind: str, logits: np.ndarray, features, examples, labels: list[str]):
    """NER: word-level tag lists per example; text tasks: (label, probability) per example."""
    if kind == "ner":
        return decode_ner(logits.argmax(-1), features, [len(e.tokens) for e in examples], labels)
    probs = softmax(logits)
    best = probs.argmax(-1)
    return [(labels[i], float(p[i])) for i, p in zip(best, probs)]


def score_predictions(kind: str, examples, predictions, labels: list[str]) -> dict:
    """Task metrics of predictions against the gold labels of `examples`."""
    if kind == "ner":
        return ner_scores([list(e.tags) for e in examples], predictions)
    return classification_scores([e.label for e in examples], [p[0] for p in predictions], labels)
