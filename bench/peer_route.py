"""Our ONNX route against the one users would otherwise take, on the same student weights, in one interleaved run:

    python3.11 -m venv .venv-peer && .venv-peer/bin/pip install -r bench/requirements-peer.txt   # once
    .venv/bin/python bench/peer_route.py --ner_model_dir out/demo_ner \\
        --classification_model_dir out/rt_polarity_small --max_requests 300

The peer route is built from the student's HF TF directory in .venv-peer (torch and optimum never enter .venv), by
this file run there as a subprocess (`peer_route.py build ...`): tf_model.h5 becomes a PyTorch model (transformers'
TF->PT weight names, loaded strictly), then `optimum-cli export onnx`, `optimum-cli onnxruntime optimize -O2` and
`quantize_dynamic` with per-channel QInt8 weights and `extra_options={"DefaultTensorType": FLOAT}` (without it the
quantizer cannot type the fused graph's weights: `optimum-cli onnxruntime quantize` fails on an O2 graph with
"Unable to find data type for weight_name"). Both routes are timed here, in .venv, through one onnxruntime with the
same session options, batch 1, one thread, interleaved request by request, in wall and thread CPU time:

- forward: `session.run` alone, each graph fed the same token ids (fp32 and int8 of both routes);
- end to end: ours as served (`OnlinePredictor.predict_line`), and the peer's int8 graph and ours in the same minimal
  loop (fast tokenizer -> session.run -> argmax -> output line; an NER word takes its first sub-token's tag), which
  also measures our serving path's overhead.

Labels are checked against the TF student (agreement) and the gold test labels (NER entity F1, accuracy); our
serving path is then profiled by stage and under cProfile. Writes bench/results/<name>.json and <name>.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PEER_PYTHON = REPO / ".venv-peer" / "bin" / "python"
OPTIMUM_TASKS = {"ner": "token-classification", "classification": "text-classification",
                 "pairwise": "text-classification"}
PEER_BUILD_REPORT = "build.json"
PEER_FP32, PEER_INT8 = "onnx_o2/model_optimized.onnx", "onnx_o2/model_optimized.int8.onnx"
# Timed calls, in interleaving order: forward only, then end to end.
FORWARDS = ("ours_forward_fp32", "peer_forward_fp32", "ours_forward_int8", "peer_forward_int8")
END_TO_END = ("ours_served_int8", "ours_minimal_loop_int8", "peer_minimal_loop_int8")
# (name, numerator, denominator, limit or None, what the limit is): ratios of thread CPU time.
COMPARISONS = (
    ("forward_fp32_ours_vs_peer", "ours_forward_fp32", "peer_forward_fp32", None, None),
    ("forward_int8_ours_vs_peer", "ours_forward_int8", "peer_forward_int8", None, None),
    ("end_to_end_ours_served_vs_peer_minimal_loop", "ours_served_int8", "peer_minimal_loop_int8",
     {"ner": 0.9, "classification": 0.8, "pairwise": 0.8}, "aim"),
    ("end_to_end_same_minimal_loop_ours_vs_peer", "ours_minimal_loop_int8", "peer_minimal_loop_int8", None, None),
    ("serving_overhead_ours_served_vs_minimal_loop", "ours_served_int8", "ours_minimal_loop_int8",
     {"ner": 1.05, "classification": 1.05, "pairwise": 1.05}, "target"),
)


# --- the peer route, built in .venv-peer (torch, optimum; no TensorFlow, no xdistil) ----------------------------

def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def pytorch_weights_from_h5(h5_path) -> dict:
    """A HF TF model's tf_model.h5 as PyTorch state-dict arrays, named and transposed by transformers' own TF->PT
    rules (the model's scope dropped, `_._` and `/` to `.`, kernel -> weight transposed, gamma/beta ->
    weight/bias)."""
    import h5py
    from transformers.modeling_tf_pytorch_utils import apply_transpose, convert_tf_weight_name_to_pt_weight_name

    weights = {}
    with h5py.File(h5_path, "r") as h5:
        for layer in h5.attrs["layer_names"]:
            group = h5[_text(layer)]
            for weight_name in map(_text, group.attrs["weight_names"]):
                array = group[weight_name][()]
                name, transpose = convert_tf_weight_name_to_pt_weight_name(weight_name, tf_weight_shape=array.shape)
                if name in weights:
                    raise ValueError(f"{h5_path}: two TF weights map to {name}")
                weights[name] = np.ascontiguousarray(apply_transpose(transpose, array, pt_to_tf=False))
    return weights


def node_counts(path) -> dict:
    """Nodes of an ONNX graph by op type, most frequent first."""
    import collections

    import onnx

    counts = collections.Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node)
    return dict(counts.most_common())


def build_peer_route(model_path: Path, kind: str, out_dir: Path, student_fingerprint: str) -> dict:
    """PyTorch model -> optimum ONNX export -> -O2 -> dynamic int8, from the HF TF student at `model_path`; writes
    the models and `build.json` (versions, commands, fused operators, sizes) under `out_dir`."""
    import importlib.metadata

    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification
    from transformers import AutoTokenizer

    pytorch_dir, export_dir = out_dir / "pytorch", out_dir / "onnx"
    shutil.rmtree(out_dir, ignore_errors=True)
    model_class = AutoModelForTokenClassification if kind == "ner" else AutoModelForSequenceClassification
    model = model_class.from_config(AutoConfig.from_pretrained(model_path))
    weights = pytorch_weights_from_h5(model_path / "tf_model.h5")
    # strict: every parameter present, nothing left over, every shape equal
    model.load_state_dict({name: torch.from_numpy(array) for name, array in weights.items()}, strict=True)
    model.save_pretrained(pytorch_dir)
    AutoTokenizer.from_pretrained(model_path).save_pretrained(pytorch_dir)

    optimum_cli = str(Path(sys.executable).parent / "optimum-cli")
    fp32, int8 = out_dir / PEER_FP32, out_dir / PEER_INT8
    commands = [[optimum_cli, "export", "onnx", "--model", str(pytorch_dir), "--task", OPTIMUM_TASKS[kind],
                 str(export_dir)],
                [optimum_cli, "onnxruntime", "optimize", "--onnx_model", str(export_dir), "-O2", "-o",
                 str(fp32.parent)]]
    for command in commands:
        subprocess.run(command, check=True)
    quantize_options = {"per_channel": True, "weight_type": QuantType.QInt8,
                        "extra_options": {"DefaultTensorType": onnx.TensorProto.FLOAT}}
    quantize_dynamic(str(fp32), str(int8), **quantize_options)

    packages = ("torch", "transformers", "optimum", "optimum-onnx", "onnxruntime", "onnx", "tokenizers", "h5py")
    report = {"student": str(model_path), "student_fingerprint": student_fingerprint, "kind": kind,
              "state_dict_tensors": len(weights), "parameters": sum(p.numel() for p in model.parameters()),
              "commands": [" ".join(["optimum-cli", *command[1:]]) for command in commands],
              "quantize_dynamic": {"per_channel": True, "weight_type": "QInt8",
                                   "extra_options": {"DefaultTensorType": "FLOAT"}},
              "opset": max(o.version for o in onnx.load(str(export_dir / "model.onnx"),
                                                          load_external_data=False).opset_import if o.domain == ""),
              "node_counts": {"fp32_o2": node_counts(fp32), "int8": node_counts(int8)},
              "sizes_mb": {"fp32_o2": round(fp32.stat().st_size / 1e6, 2), "int8": round(int8.stat().st_size / 1e6, 2)},
              "versions": {name: importlib.metadata.version(name) for name in packages}}
    (out_dir / PEER_BUILD_REPORT).write_text(json.dumps(report, indent=2))
    return report


# --- timing, in the toolkit's .venv -----------------------------------------------------------------------------

def first_subtoken_tags(predicted: list[int], word_ids: list, num_words: int, labels: list[str]) -> list[str]:
    """One tag per word, from the prediction at its first sub-token (`word_ids` as the fast tokenizer gives them:
    the word of each position, None at special tokens); words that got no position keep "O"."""
    tags, previous = ["O"] * num_words, None
    for label, word in zip(predicted, word_ids):
        if word is not None and word != previous:
            tags[word] = labels[label]
        previous = word
    return tags


def minimal_loop_max_length(model_dir) -> int:
    """How many sub-tokens a minimal loop lets one request have: the run's seq_len, or for NER every position
    the student has (a sentence runs whole where it fits; the served path splits longer ones)."""
    from bench.common import read_json

    if model_dir.task.kind != "ner":
        return model_dir.seq_len
    return read_json(model_dir.model_path / "config.json")["max_position_embeddings"]


class MinimalLoop:
    """What a user writes around an exported model: fast tokenizer -> session.run -> argmax -> the output line
    `predict_line` gives (NER: tags by first sub-token; classification: label and its softmax probability)."""

    def __init__(self, tokenizer, session, labels: list[str], kind: str, max_length: int):
        self.tokenizer, self.labels, self.kind, self.max_length = tokenizer, labels, kind, max_length
        self.texts_per_line = 2 if kind == "pairwise" else 1
        self.inputs = [(i.name, np.int32 if i.type == "tensor(int32)" else np.int64) for i in session.get_inputs()]
        self.run = session.run

    def encode(self, line: str):
        if self.kind == "ner":
            return self._encode_words(line.split())
        return self.tokenizer(*line.split("\t")[:self.texts_per_line], truncation=True, max_length=self.max_length,
                              return_tensors="np")

    def _encode_words(self, words: list[str]):
        return self.tokenizer(words, is_split_into_words=True, truncation=True, max_length=self.max_length,
                              return_tensors="np")

    def feeds(self, encoding) -> dict:
        return {name: encoding[name].astype(dtype, copy=False) for name, dtype in self.inputs}

    def __call__(self, line: str) -> str:
        if self.kind == "ner":
            words = line.split()
            encoding = self._encode_words(words)
            logits = self.run(None, self.feeds(encoding))[0][0]
            return " ".join(first_subtoken_tags(logits.argmax(-1).tolist(), encoding.word_ids(), len(words),
                                                self.labels))
        logits = self.run(None, self.feeds(self.encode(line)))[0][0]
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        best = int(probabilities.argmax())
        return f"{self.labels[best]}\t{probabilities[best]:.6f}"


def time_ratio(numerator: list[float], denominator: list[float]) -> dict:
    """numerator / denominator, request by request (the median) and over all requests (ratio of the sums)."""
    return {"median_per_request": float(np.median(np.divide(numerator, denominator))),
            "of_totals": float(np.sum(numerator) / np.sum(denominator))}


def peer_models(model_dir, peer_python: Path, out_dir: Path, rebuild: bool) -> dict:
    """The peer route's build report for `model_dir`'s student, built in .venv-peer unless `out_dir` already
    holds a build of these very student files."""
    from bench.common import read_json

    fingerprint = model_dir.student_fingerprint()
    report_path = out_dir / PEER_BUILD_REPORT
    if not rebuild and report_path.exists() and read_json(report_path)["student_fingerprint"] == fingerprint:
        return read_json(report_path)
    if not peer_python.exists():
        raise FileNotFoundError(f"{peer_python}: make the peer virtualenv first (see bench/requirements-peer.txt)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", PATH=f"{peer_python.parent}{os.pathsep}{env.get('PATH', '')}")
    subprocess.run([str(peer_python), __file__, "build", "--model_path", str(model_dir.model_path), "--kind",
                    model_dir.task.kind, "--out_dir", str(out_dir), "--student_fingerprint", fingerprint],
                   check=True, env=env)
    return read_json(report_path)


def scored(model_dir, examples, outputs: list[str]) -> dict:
    """The task metric of output lines against the examples' gold labels (NER entity F1, else accuracy)."""
    if model_dir.task.kind == "ner":
        predictions = [line.split() for line in outputs]
    else:
        predictions = [(line.split("\t")[0], float(line.split("\t")[1])) for line in outputs]
    score = model_dir.score(examples, predictions)
    return {key: value for key, value in score.items() if key != "per_type"}


class _TimedSession:
    """An onnxruntime session whose `run` adds its thread CPU seconds to `seconds`."""

    def __init__(self, session):
        self.session, self.seconds = session, 0.0

    def get_inputs(self):
        return self.session.get_inputs()

    def run(self, *args, **kwargs):
        start = time.thread_time()
        try:
            return self.session.run(*args, **kwargs)
        finally:
            self.seconds += time.thread_time() - start


def profile_serving(model_dir, onnx_path, lines: list, path: str, top: int = 20) -> dict:
    """Where `predict_line`'s per-request time goes: its stages timed by hand in thread CPU time (mean ms per
    request), the fast tokenizer's Python wrapper against its Rust `encode` on the same inputs, and the functions
    with the most own time under cProfile (per request)."""
    import cProfile
    import pstats

    from xdistil.inference.online import OnlinePredictor
    from xdistil.inference.onnx_runtime import onnx_session, session_feeder

    session = _TimedSession(onnx_session(onnx_path, intra_op_threads=1))
    predictor = OnlinePredictor(model_dir, session_feeder(session))
    task, tokenizer, encoding = model_dir.task, model_dir.tokenizer, model_dir.encoding
    stages = dict.fromkeys(("parse", "encode_request", "forward", "of_which_session_run", "request_prediction",
                            "format_prediction", "predict_line_whole"), 0.0)
    for line_no, text in lines[:10]:
        predictor.predict_line(text, line_no, path)
    for line_no, text in lines:
        session.seconds = 0.0
        marks = [time.thread_time()]
        example = task.parse_unlabeled(text, path, line_no)
        marks.append(time.thread_time())
        request = task.encode_request(tokenizer, example, encoding)
        marks.append(time.thread_time())
        row_logits = [np.asarray(predictor.forward(row))[0] for row in request.rows]
        marks.append(time.thread_time())
        run_seconds = session.seconds
        prediction = task.request_prediction(request, row_logits, example, model_dir.labels)
        marks.append(time.thread_time())
        task.format_prediction(prediction)
        marks.append(time.thread_time())
        predictor.predict_line(text, line_no, path)
        marks.append(time.thread_time())
        for stage, (start, end) in zip(("parse", "encode_request", "forward", "request_prediction",
                                        "format_prediction", "predict_line_whole"), zip(marks, marks[1:])):
            stages[stage] += end - start
        stages["of_which_session_run"] += run_seconds
    per_request = {stage: 1000.0 * seconds / len(lines) for stage, seconds in stages.items()}
    per_request["stages_sum"] = sum(per_request[s] for s in ("parse", "encode_request", "forward",
                                                             "request_prediction", "format_prediction"))

    tokenizer_call, backend_encode = 0.0, 0.0
    for line_no, text in lines:
        example = task.parse_unlabeled(text, path, line_no)
        words = list(example.tokens) if task.kind == "ner" else None
        start = time.thread_time()
        if words is not None:
            tokenizer(words, is_split_into_words=True, verbose=False)
        else:
            tokenizer(example.text_a, example.text_b, truncation="longest_first", max_length=encoding.seq_len,
                      verbose=False)
        middle = time.thread_time()
        if words is not None:
            tokenizer.backend_tokenizer.encode(words, is_pretokenized=True)
        else:
            tokenizer.backend_tokenizer.encode(example.text_a, example.text_b)
        backend_encode += time.thread_time() - middle
        tokenizer_call += middle - start
    tokenizers = {"hf_fast_tokenizer_call_ms": 1000.0 * tokenizer_call / len(lines),
                  "rust_backend_encode_ms": 1000.0 * backend_encode / len(lines)}

    profiler = cProfile.Profile()  # its default clock: thread_time costs a system call per event
    profiler.enable()
    for line_no, text in lines:
        predictor.predict_line(text, line_no, path)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # {(file, line, function): (primitive calls, calls, own, cumulative, _)}
    total = sum(own for _, _, own, _, _ in stats.values())
    rows = sorted(stats.items(), key=lambda item: -item[1][2])[:top]
    functions = [{"function": f"{_short_path(file)}:{line}({function})", "calls_per_request": calls / len(lines),
                  "own_share": own / total, "own_us_per_request": 1e6 * own / len(lines),
                  "cumulative_us_per_request": 1e6 * cum / len(lines)}
                 for (file, line, function), (_, calls, own, cum, _) in rows]
    return {"requests": len(lines), "clock": "stages and tokenizers: thread CPU time; cProfile: wall time, inflated "
                                             "by its own per-call cost and by preemption",
            "stages_ms_per_request": per_request, "tokenizer_ms_per_request": tokenizers,
            "cprofile_top_own_time": functions}


def _short_path(file: str) -> str:
    for marker in ("site-packages/", str(REPO) + "/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def _route_sessions(model_dir, peer_dir: Path) -> dict:
    from xdistil.inference.onnx_runtime import onnx_session

    paths = {"ours_forward_fp32": model_dir.onnx_path("fp32"), "ours_forward_int8": model_dir.onnx_path("int8"),
             "peer_forward_fp32": peer_dir / PEER_FP32, "peer_forward_int8": peer_dir / PEER_INT8,
             "ours_minimal_loop_int8": model_dir.onnx_path("int8"), "peer_minimal_loop_int8": peer_dir / PEER_INT8}
    return {name: onnx_session(path, intra_op_threads=1) for name, path in paths.items()}


def _labels_of(config_path: Path) -> list[str]:
    from bench.common import read_json

    id2label = read_json(config_path)["id2label"]
    return [id2label[str(i)] for i in range(len(id2label))]


def comparisons(kind: str, runs: dict) -> dict:
    """The COMPARISONS of thread CPU (and wall) times, with their aim or target and whether it was met."""
    result = {}
    for name, numerator, denominator, limits, what in COMPARISONS:
        ratio = {"thread_cpu": time_ratio(runs[numerator].cpu_ms, runs[denominator].cpu_ms),
                 "wall": time_ratio(runs[numerator].latencies_ms, runs[denominator].latencies_ms),
                 "numerator": numerator, "denominator": denominator}
        if limits:
            ratio[what] = limits[kind]
            ratio["met"] = ratio["thread_cpu"]["median_per_request"] <= limits[kind]
        result[name] = ratio
    return result


def output_checks(model_dir, examples, runs: dict, tf_outputs: list[str]) -> dict:
    """fp32 logits of both graphs against each other; each end-to-end route's labels against the TF student's and
    the gold test labels."""
    from bench.common import label_agreement

    outputs = {name: runs[name].outputs for name in END_TO_END}
    checks = {"fp32_max_abs_logit_diff_ours_vs_peer": max(float(np.max(np.abs(a - b))) for a, b in zip(
                  runs["ours_forward_fp32"].outputs, runs["peer_forward_fp32"].outputs)),
              "ours_served_same_output_as_ours_minimal_loop": float(np.mean(
                  [a == b for a, b in zip(outputs["ours_served_int8"], outputs["ours_minimal_loop_int8"])])),
              "student_tf_fp32": {"test_score": scored(model_dir, examples, tf_outputs)}}
    for name, model_outputs in outputs.items():
        checks[name] = {"agreement_with_student_tf": label_agreement(model_dir.task.kind, model_outputs, tf_outputs),
                        "test_score": scored(model_dir, examples, model_outputs)}
    return checks


def measure_model(model_dir_path: str, max_requests: int, warmup: int, peer_python: Path, work_dir: Path,
                  rebuild: bool) -> dict:
    """Build (or reuse) the peer route of one student and measure both routes on its test requests."""
    from transformers import AutoTokenizer

    from bench.common import (encoder_multiply_adds, load_average, onnxruntime_gemm_ceiling, peak_summary, read_json,
                              this_cpu_peak)
    from bench.latency import request_lines
    from xdistil.inference.online import OnlinePredictor, latency_summary, time_interleaved
    from xdistil.model_dir import ModelDirectory

    student = ModelDirectory.load(model_dir_path)
    export = student.checked_export()
    kind = student.task.kind
    peer_dir = work_dir / Path(model_dir_path).name
    build = peer_models(student, peer_python, peer_dir, rebuild)
    test_file = student.default_file("test")
    examples = student.read_labeled(test_file)[:max_requests]
    lines = request_lines(student, test_file, max_requests)
    texts = [text for _, text in lines]

    reference = OnlinePredictor.from_tf(student, student.load_tf_model())
    tf_outputs = [reference.predict_line(text, line_no, test_file) for line_no, text in lines]
    del reference

    config = read_json(student.model_path / "config.json")
    max_length = minimal_loop_max_length(student)
    sessions = _route_sessions(student, peer_dir)
    ours_tokenizer = AutoTokenizer.from_pretrained(student.model_path)
    peer_tokenizer = AutoTokenizer.from_pretrained(peer_dir / "pytorch")
    peer_labels = _labels_of(peer_dir / "pytorch" / "config.json")
    if peer_labels != student.labels:
        raise ValueError(f"the peer model's labels {peer_labels} are not the student's {student.labels}")
    loops = {name: MinimalLoop(peer_tokenizer if name.startswith("peer") else ours_tokenizer, session,
                               student.labels, kind, max_length) for name, session in sessions.items()}
    encodings = [loops["ours_forward_int8"].encode(text) for text in texts]
    same_token_ids = all(np.array_equal(e["input_ids"], loops["peer_forward_int8"].encode(t)["input_ids"])
                         for e, t in zip(encodings, texts))
    feeds = {name: [loops[name].feeds(e) for e in encodings] for name in FORWARDS}
    served = OnlinePredictor.from_onnx(student, student.onnx_path("int8"), intra_op_threads=1)

    def forward(name):
        run, name_feeds = sessions[name].run, feeds[name]
        return lambda i: run(None, name_feeds[i])[0]

    calls = {name: forward(name) for name in FORWARDS}
    calls["ours_served_int8"] = lambda i: served.predict_line(lines[i][1], lines[i][0], test_file)
    calls["ours_minimal_loop_int8"] = lambda i: loops["ours_minimal_loop_int8"](texts[i])
    calls["peer_minimal_loop_int8"] = lambda i: loops["peer_minimal_loop_int8"](texts[i])
    load_before = load_average()
    runs = time_interleaved(calls, len(lines), warmup, cpu_clock=time.thread_time)  # onnxruntime: one thread
    load_after = load_average()

    peak, ceiling = this_cpu_peak(), onnxruntime_gemm_ceiling()
    cls_only = bool(export["fusion"].get("cls_only_last_layer"))
    lengths = [e["input_ids"].shape[1] for e in encodings]
    served_rows = [[row["input_ids"].shape[1] for row in student.task.encode_request(
        student.tokenizer, student.task.parse_unlabeled(text, test_file, line_no), student.encoding).rows]
        for line_no, text in lines]

    def work(name):
        ours = name.startswith("ours")
        if name == "ours_served_int8":
            row_work = [[encoder_multiply_adds(config, n, kind, cls_only) for n in rows] for rows in served_rows]
            return [{key: sum(w[key] for w in rows) for key in rows[0]} for rows in row_work]
        return [encoder_multiply_adds(config, n, kind, ours and cls_only) for n in lengths]

    timings = {}
    for name, (_, wall_ms, cpu_ms) in runs.items():
        precision = "fp32" if name.endswith("fp32") else "int8"
        timings[name] = {"wall_ms": latency_summary(wall_ms), "thread_cpu_ms": latency_summary(cpu_ms),
                         "thread_cpu_vs_peak": peak_summary(work(name), [ms / 1000.0 for ms in cpu_ms], precision,
                                                            peak, ceiling)}
    checks = {"same_token_ids_both_tokenizers": same_token_ids,
              "requests_served_in_several_windows": sum(len(rows) > 1 for rows in served_rows),
              **output_checks(student, examples, runs, tf_outputs)}
    profile = profile_serving(student, student.onnx_path("int8"), lines, test_file)
    sizes = {"ours_fp32": round(student.onnx_path("fp32").stat().st_size / 1e6, 2),
             "ours_int8": round(student.onnx_path("int8").stat().st_size / 1e6, 2),
             "peer_fp32_o2": build["sizes_mb"]["fp32_o2"], "peer_int8": build["sizes_mb"]["int8"]}
    return {"model_dir": model_dir_path, "kind": kind, "test_file": test_file, "requests": len(lines),
            "warmup_requests": min(warmup, len(lines)), "tokens_per_request_mean": float(np.mean(lengths)),
            "load_average_before_after": [load_before, load_after], "sizes_mb": sizes,
            "onnxruntime_gemm_ceiling_one_thread": ceiling,
            "ours_export": {"cls_only_last_layer": cls_only, "node_counts_fp32": export["fusion"]["node_counts"]},
            "peer_build": build, "timings": timings, "comparisons": comparisons(kind, runs), "checks": checks,
            "serving_profile": profile}


def markdown_table(models: dict) -> str:
    """The README rows: thread CPU time (p50 ms, and ratios as medians of per-request ratios) and test scores."""
    lines = ["| task (requests, mean tokens) | forward int8 p50 ms, ours / peer | ratio | forward fp32 ratio "
             "| end to end p50 ms, ours served / peer minimal loop | ratio (aim) "
             "| ours served / same int8 model in minimal loop (target <= 1.05) "
             "| test score: TF student / ours int8 / peer int8 | label agreement with TF: ours / peer |",
             "|---|---|---:|---:|---|---:|---:|---|---|"]
    for task, m in models.items():
        c, t, checks = m["comparisons"], m["timings"], m["checks"]
        ratio = {name: c[name]["thread_cpu"]["median_per_request"] for name in c}
        p50 = {name: t[name]["thread_cpu_ms"]["p50"] for name in t}
        end_to_end = "end_to_end_ours_served_vs_peer_minimal_loop"
        metric = "f1" if m["kind"] == "ner" else "accuracy"
        scores = " / ".join(f"{checks[n]['test_score'][metric]:.4f}"
                            for n in ("student_tf_fp32", "ours_served_int8", "peer_minimal_loop_int8"))
        unit = "words" if m["kind"] == "ner" else "requests"
        agreement = " / ".join(f"{checks[n]['agreement_with_student_tf'][unit]:.4f}"
                               for n in ("ours_served_int8", "peer_minimal_loop_int8"))
        lines.append(
            f"| {task} ({m['requests']}, {m['tokens_per_request_mean']:.1f}) "
            f"| {p50['ours_forward_int8']:.2f} / {p50['peer_forward_int8']:.2f} "
            f"| {ratio['forward_int8_ours_vs_peer']:.2f}x | {ratio['forward_fp32_ours_vs_peer']:.2f}x "
            f"| {p50['ours_served_int8']:.2f} / {p50['peer_minimal_loop_int8']:.2f} "
            f"| {ratio[end_to_end]:.2f}x (<= {c[end_to_end]['aim']}) "
            f"| {ratio['serving_overhead_ours_served_vs_minimal_loop']:.3f}x "
            f"| {metric} {scores} | {unit} {agreement} |")
    return "\n".join(lines) + "\n"


def measure(args) -> dict:
    """Measure every given student; write bench/results/<name>.json and <name>.md."""
    import onnxruntime
    import tokenizers
    import transformers

    from bench.common import RESULTS_DIR, this_cpu_peak, write_result
    from xdistil.inference.onnx_serving import cpu_info, limit_tf_threads

    limit_tf_threads(1)
    models = {}
    for task, model_dir in (("ner", args.ner_model_dir), ("classification", args.classification_model_dir)):
        if model_dir:
            models[task] = measure_model(model_dir, args.max_requests, args.warmup, Path(args.peer_python),
                                         Path(args.work_dir), args.rebuild)
    report = {"benchmark": "peer_route", "name": args.name, "cpu": cpu_info(), "cpu_peak_one_core": this_cpu_peak(),
              "threads": {"onnxruntime_intra_op": 1, "onnxruntime_inter_op": 1},
              "order": "interleaved request by request (A B C, B C A, ...)",
              "clocks": "wall (time.perf_counter) and thread CPU (time.thread_time); ratios of thread CPU time",
              "versions": {"onnxruntime": onnxruntime.__version__, "transformers": transformers.__version__,
                           "tokenizers": tokenizers.__version__},
              "models": models}
    write_result(RESULTS_DIR / f"{args.name}.json", report)
    (RESULTS_DIR / f"{args.name}.md").write_text(markdown_table(models))
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    build = commands.add_parser("build", help="(in .venv-peer) build the peer route of one student")
    build.add_argument("--model_path", type=Path, required=True, help="The student's HF TF directory.")
    build.add_argument("--kind", choices=sorted(OPTIMUM_TASKS), required=True)
    build.add_argument("--out_dir", type=Path, required=True)
    build.add_argument("--student_fingerprint", required=True, help="Recorded, so that a build is reused only "
                                                                     "for the same student files.")
    parser.add_argument("--ner_model_dir", help="A distilled NER model directory, exported.")
    parser.add_argument("--classification_model_dir", help="A distilled classification model directory, exported.")
    parser.add_argument("--max_requests", type=int, default=300, help="Requests: the first N test examples.")
    parser.add_argument("--warmup", type=int, default=10, help="Untimed warm-up requests per timed call.")
    parser.add_argument("--peer_python", default=str(PEER_PYTHON), help="The peer virtualenv's python.")
    parser.add_argument("--work_dir", default=str(REPO / "out" / "peer_route"),
                        help="Where the peer models are built, one folder per model directory.")
    parser.add_argument("--rebuild", action="store_true", help="Rebuild the peer models even if up to date.")
    parser.add_argument("--name", default="peer_route", help="Results name: bench/results/<name>.json and .md.")
    args = parser.parse_args(argv)
    if args.command == "build":
        build_peer_route(args.model_path, args.kind, args.out_dir, args.student_fingerprint)
        return
    if not (args.ner_model_dir or args.classification_model_dir):
        parser.error("give --ner_model_dir and/or --classification_model_dir")
    sys.path.insert(0, str(REPO))  # the repo root, for `python bench/...`
    import xdistil  # noqa: F401  (first: selects Keras 2 before TensorFlow loads)

    report = measure(args)
    for task, m in report["models"].items():
        for name, ratio in m["comparisons"].items():
            print(f"{task:15s} {name:48s} thread CPU x{ratio['thread_cpu']['median_per_request']:.3f} "
                  f"(totals x{ratio['thread_cpu']['of_totals']:.3f}), wall x{ratio['wall']['median_per_request']:.3f}")


if __name__ == "__main__":
    main()
