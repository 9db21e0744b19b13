"""The one TensorFlow forward pass of a task model: int token arrays in, float32 logits out."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from xdistil.models.loading import model_input_names


class TFLogits:
    """A traced `tf.function` of a HF TF task model for any [batch, length], taking the inputs the model
    uses (`names`, in that order) and returning {"logits": float32}.

    Used for prediction, online serving, benchmarks and the ONNX export (`function` and `signature`).
    """

    def __init__(self, model, int64_inputs: bool = False):
        self.model = model
        self.names = model_input_names(model)
        dtype = tf.int64 if int64_inputs else tf.int32
        self.signature = [tf.TensorSpec([None, None], dtype, name=name) for name in self.names]
        self.dtype = dtype.as_numpy_dtype

        @tf.function(input_signature=self.signature)
        def logits(*inputs):
            outputs = model(dict(zip(self.names, inputs)), training=False)
            return {"logits": tf.cast(outputs.logits, tf.float32)}

        self.function = logits

    def __call__(self, arrays: dict) -> np.ndarray:
        """Logits for a dict of [batch, length] arrays (extra keys ignored)."""
        return self.function(*[np.asarray(arrays[name], dtype=self.dtype) for name in self.names])["logits"].numpy()


class TFLogitsAndFirstTokenState(TFLogits):
    """A teacher's per-row distillation targets: its logits [B, C] followed by its last hidden state at the first
    token ([CLS] or <s>, [B, H]), as one float32 [B, C + H] array (what the teacher-logit cache keeps per row when
    the first-token state is distilled). Sentence-level task models only; called as TFLogits is."""

    def __init__(self, model):
        super().__init__(model)

        @tf.function(input_signature=self.signature)
        def targets(*inputs):
            outputs = model(dict(zip(self.names, inputs)), output_hidden_states=True, training=False)
            return {"logits": tf.concat([tf.cast(outputs.logits, tf.float32),
                                         tf.cast(outputs.hidden_states[-1][:, 0], tf.float32)], axis=-1)}

        self.function = targets
