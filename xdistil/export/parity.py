"""Run exported ONNX models and compare their logits with the TensorFlow model's."""
import numpy as np

_ORT_INT_DTYPES = {"tensor(int32)": np.int32, "tensor(int64)": np.int64}


def onnx_session(path, intra_op_threads: int = 1):
    """A CPU InferenceSession with all graph optimizations and `intra_op_threads` threads.

    ORT_ENABLE_ALL is safe for models already fused by `fusion.optimize_for_cpu` too:
    onnxruntime only adds its own fusions on top of the com.microsoft operators.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def run_onnx(session, features: dict) -> np.ndarray:
    """Feed only the inputs `session` declares, cast to its integer dtype; return the logits."""
    feeds = {}
    for graph_input in session.get_inputs():
        if graph_input.name not in features:
            raise KeyError(f"ONNX model needs input {graph_input.name!r}; got {sorted(features)}")
        dtype = _ORT_INT_DTYPES.get(graph_input.type)
        if dtype is None:
            raise TypeError(f"unsupported ONNX input type {graph_input.type} for {graph_input.name}")
        feeds[graph_input.name] = np.asarray(features[graph_input.name]).astype(dtype, copy=False)
    return session.run(["logits"], feeds)[0]


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
