"""onnxruntime sessions for exported students, and feeding them."""
import numpy as np

_ORT_INT_DTYPES = {"tensor(int32)": np.int32, "tensor(int64)": np.int64}


def onnx_session(path, intra_op_threads: int = 1):
    """A CPU InferenceSession with all graph optimizations and `intra_op_threads` threads.

    ORT_ENABLE_ALL is safe for models already fused by the export: onnxruntime only adds its own
    fusions on top of the com.microsoft operators.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def session_feeder(session):
    """A function from a dict of int arrays to the session's logits, feeding only the inputs the session
    declares, cast to its integer dtype (looked up once, not per request)."""
    inputs = []
    for graph_input in session.get_inputs():
        dtype = _ORT_INT_DTYPES.get(graph_input.type)
        if dtype is None:
            raise TypeError(f"unsupported ONNX input type {graph_input.type} for {graph_input.name}")
        inputs.append((graph_input.name, dtype))
    run = session.run

    def logits(arrays: dict) -> np.ndarray:
        try:
            feeds = {name: np.asarray(arrays[name]).astype(dtype, copy=False) for name, dtype in inputs}
        except KeyError as missing:
            raise KeyError(f"ONNX model needs input {missing.args[0]!r}; got {sorted(arrays)}") from None
        return run(["logits"], feeds)[0]

    return logits


def run_onnx(session, arrays: dict) -> np.ndarray:
    """The session's logits for a dict of int arrays (see `session_feeder`)."""
    return session_feeder(session)(arrays)
