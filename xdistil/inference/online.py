"""Batch-1 online inference: one request at a time, each run at its own real length, timed end to end.

A request is one input line; its latency covers parsing, tokenization, the forward pass and
post-processing. `serve_instances` measures FastFormers-style throughput: several single-thread
processes, each serving its own contiguous share of the requests.
"""
from __future__ import annotations

import queue as queue_module
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import numpy as np

from xdistil.data.readers import decode_line, iter_lines
from xdistil.model_dir import ModelDirectory

STDIN_NAME = "<stdin>"
DEFAULT_SOURCE = "<input>"
_POLL_SECONDS = 1.0

Forward = Callable[[dict], np.ndarray]


def iter_request_lines(path) -> Iterator[tuple[int, str]]:
    """Yield `(line_no, text)` for each line of a UTF-8 file, or of stdin when `path` is "-".

    Nothing is skipped: an empty line is a request, which parsing rejects. Invalid UTF-8 raises
    InputFormatError naming the file (`<stdin>` for stdin) and line.
    """
    if path != "-":
        yield from iter_lines(path)
        return
    for line_no, raw in enumerate(sys.stdin.buffer, start=1):
        yield line_no, decode_line(raw, STDIN_NAME, line_no)


class OnlinePredictor:
    """Answers one request line at a time with a `forward(arrays) -> logits` function.

    `forward` gets `input_ids`, `attention_mask` and `token_type_ids`, each [1, length] int32, and
    feeds the model the ones it takes; TensorFlow and ONNX share everything else.
    """

    def __init__(self, model_dir: ModelDirectory, forward: Forward):
        self.model_dir = model_dir
        self.task, self.tokenizer, self.encoding, self.labels = (model_dir.task, model_dir.tokenizer,
                                                                 model_dir.encoding, model_dir.labels)
        self.forward = forward

    @classmethod
    def from_onnx(cls, model_dir: ModelDirectory, onnx_path, intra_op_threads: int = 1) -> OnlinePredictor:
        """A predictor over an onnxruntime CPU session of `onnx_path`."""
        from xdistil.inference.onnx_runtime import onnx_session, session_feeder

        return cls(model_dir, session_feeder(onnx_session(onnx_path, intra_op_threads=intra_op_threads)))

    @classmethod
    def from_tf(cls, model_dir: ModelDirectory, tf_model) -> OnlinePredictor:
        """A predictor over a HF TF task model, traced once for any [batch, length]."""
        from xdistil.models.forward import TFLogits

        return cls(model_dir, TFLogits(tf_model))

    def predict(self, example):
        """(prediction, logits of each row) for one parsed example: each row (NER sentences longer than
        seq_len have several) runs at its exact length, with no padding."""
        request = self.task.encode_request(self.tokenizer, example, self.encoding)
        row_logits = [np.asarray(self.forward(row))[0] for row in request.rows]
        return self.task.request_prediction(request, row_logits, example, self.labels), row_logits

    def predict_line(self, text: str, line_no: int, path) -> str:
        """Parse, tokenize, run and post-process one request line; return its output line."""
        prediction, _ = self.predict(self.task.parse_unlabeled(text, path, line_no))
        return self.task.format_prediction(prediction)


def _warm_up(predictor: OnlinePredictor, lines: list, warmup: int, path) -> None:
    for line_no, text in lines[:warmup]:
        predictor.predict_line(text, line_no, path)


def serve(predictor: OnlinePredictor, lines: Iterable[tuple[int, str]], warmup: int = 10,
          path=DEFAULT_SOURCE) -> tuple[list[str], list[float]]:
    """Answer `(line_no, text)` requests one at a time, in order; return outputs and latencies (ms).

    The first `warmup` requests are run once beforehand, untimed and discarded; then every request
    is timed with `time.perf_counter`. `path` names the input in error messages.
    """
    run = serve_interleaved({"served": predictor}, lines, warmup, path)["served"]  # one predictor: in order
    return run.outputs, run.latencies_ms


class InterleavedRun(NamedTuple):
    """One predictor's share of an interleaved run: its output lines and, per request, wall and CPU milliseconds.

    cpu_ms is the CPU time the whole process spent on each request (every thread: TensorFlow runs ops on its
    own pool): on a shared machine, wall time minus it is the time the request waited for a core."""
    outputs: list
    latencies_ms: list
    cpu_ms: list


def time_interleaved(calls: dict, count: int, warmup: int = 10,
                     cpu_clock: Callable[[], float] = time.process_time) -> dict[str, InterleavedRun]:
    """Call `calls[name](i)` for requests i < count, interleaved request by request in rotating order (A B C,
    B C A, ...) so that machine drift hits all alike, after `warmup` untimed requests each. CPU time is read
    from `cpu_clock`: the whole process's by default (TensorFlow computes on its own threads);
    `time.thread_time` counts only the calling thread."""
    names = list(calls)
    for name in names:
        for i in range(min(warmup, count)):
            calls[name](i)
    results = {name: InterleavedRun([], [], []) for name in names}
    for i in range(count):
        for name in names[i % len(names):] + names[:i % len(names)]:
            wall, cpu = time.perf_counter(), cpu_clock()
            output = calls[name](i)
            cpu, wall = cpu_clock() - cpu, time.perf_counter() - wall
            results[name].outputs.append(output)
            results[name].latencies_ms.append(wall * 1000.0)
            results[name].cpu_ms.append(cpu * 1000.0)
    return results


def serve_interleaved(predictors: dict, lines: Iterable[tuple[int, str]], warmup: int = 10,
                      path=DEFAULT_SOURCE) -> dict[str, InterleavedRun]:
    """Serve the same `(line_no, text)` requests with several predictors in one run, interleaved request by
    request (see time_interleaved); the first `warmup` requests are run once beforehand by each, untimed."""
    lines = list(lines)
    calls = {name: (lambda i, predictor=predictor: predictor.predict_line(lines[i][1], lines[i][0], path))
             for name, predictor in predictors.items()}
    return time_interleaved(calls, len(lines), warmup)


def latency_summary(latencies_ms, wall_seconds: float | None = None) -> dict:
    """Percentiles p50/p90/p99 (linear interpolation), mean, min and max in milliseconds, the
    number of requests, and throughput_per_s: requests over `wall_seconds` when given, else over
    the summed latencies. With no requests, only {"requests": 0}."""
    latencies = np.asarray(latencies_ms, dtype=np.float64)
    if latencies.size == 0:  # no requests: a valid input, nothing to summarise
        return {"requests": 0}
    p50, p90, p99 = np.percentile(latencies, [50, 90, 99], method="linear").tolist()
    seconds = latencies.sum() / 1000.0 if wall_seconds is None else wall_seconds
    return {"requests": int(latencies.size), "p50": p50, "p90": p90, "p99": p99,
            "mean": float(latencies.mean()), "min": float(latencies.min()), "max": float(latencies.max()),
            "throughput_per_s": float(latencies.size / seconds)}


def _instance_worker(index, model_dir, onnx_path, lines, warmup, path, start_event, messages):
    """One serving process: load, warm up, report ready, wait for the start, serve its shard."""
    try:
        predictor = OnlinePredictor.from_onnx(ModelDirectory.load(model_dir), onnx_path, intra_op_threads=1)
        _warm_up(predictor, lines, warmup, path)
        messages.put(("ready", index, None))
        start_event.wait()
        messages.put(("done", index, serve(predictor, lines, warmup=0, path=path)))
    except BaseException:
        messages.put(("error", index, traceback.format_exc()))


def _receive(messages, processes) -> dict:
    """One message's payload per process, by instance index; raise if an instance fails or dies."""
    received = {}
    while len(received) < len(processes):
        try:
            tag, index, payload = messages.get(timeout=_POLL_SECONDS)
        except queue_module.Empty:
            for index, process in enumerate(processes):
                # Workers catch their errors and exit 0 after reporting; anything else is a crash.
                if index not in received and process.exitcode not in (None, 0):
                    raise RuntimeError(f"serving instance {index} exited with code {process.exitcode}") from None
            continue
        if tag == "error":
            raise RuntimeError(f"serving instance {index} failed:\n{payload}")
        received[index] = payload
    return received


def serve_instances(model_dir, onnx_path, lines: list[tuple[int, str]], instances: int, warmup: int = 10,
                    path=DEFAULT_SOURCE) -> dict:
    """Serve `lines` with `instances` processes, each with its own single-thread ONNX session and a
    contiguous shard of the lines, all starting together once every one has loaded and warmed up.

    Returns "instances", "requests", "wall_seconds" (start signal to last finish),
    "throughput_per_s" (requests / wall seconds), "latency" (summary of all requests), "per_instance"
    (each instance's summary) and "outputs" in input order. Malformed lines raise InputFormatError
    before any process starts.
    """
    import multiprocessing

    lines = list(lines)
    if not 1 <= instances <= len(lines):
        raise ValueError(f"instances must be between 1 and the number of requests ({len(lines)}), got {instances}")
    task = ModelDirectory.load(model_dir).task
    for line_no, text in lines:
        task.parse_unlabeled(text, path, line_no)
    bounds = np.linspace(0, len(lines), instances + 1).round().astype(int).tolist()
    shards = [lines[start:end] for start, end in zip(bounds, bounds[1:])]

    context = multiprocessing.get_context("spawn")
    start_event, messages = context.Event(), context.Queue()
    processes = [context.Process(target=_instance_worker, daemon=True,
                                 args=(i, str(model_dir), str(onnx_path), shard, warmup, path, start_event, messages))
                 for i, shard in enumerate(shards)]
    try:
        for process in processes:
            process.start()
        _receive(messages, processes)
        start = time.perf_counter()
        start_event.set()
        results = _receive(messages, processes)
        wall_seconds = time.perf_counter() - start
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
    outputs = [line for i in range(instances) for line in results[i][0]]
    latencies = [latency for i in range(instances) for latency in results[i][1]]
    return {"instances": instances, "requests": len(lines), "wall_seconds": wall_seconds,
            "throughput_per_s": len(lines) / wall_seconds, "latency": latency_summary(latencies, wall_seconds),
            "per_instance": [latency_summary(results[i][1]) for i in range(instances)], "outputs": outputs}
