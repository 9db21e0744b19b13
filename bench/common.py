"""Helpers shared by the benchmark scripts: where results go, the teacher of a model directory, sizes, label
agreement."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from xdistil.io_utils import atomic_write_json

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PADDED_TEACHER = "teacher_tf_fp32_padded"
TEACHER = "teacher_tf_fp32"
STUDENT_TF = "student_tf_fp32"
STUDENT_ONNX_FP32 = "student_onnx_fp32"
STUDENT_ONNX_INT8 = "student_onnx_int8"
MODEL_ORDER = (PADDED_TEACHER, TEACHER, STUDENT_TF, STUDENT_ONNX_FP32, STUDENT_ONNX_INT8, STUDENT_ONNX_INT8 + "_batch1")


def model_order(name: str) -> tuple:
    """Sort key: the known models in pipeline order (teacher to int8 student), others after by name."""
    return (MODEL_ORDER.index(name), "") if name in MODEL_ORDER else (len(MODEL_ORDER), name)


def run_teacher(record: dict) -> str:
    """The teacher a run config names: the one it fine-tuned (teacher_source), else its checkpoint."""
    return record.get("teacher_source") or record["teacher"]["pt_teacher_checkpoint"]


def default_teacher_dir(model_dir: str) -> str:
    """<model_dir>/teacher when the run fine-tuned one, else the teacher the run config names."""
    from xdistil.config import read_run_config
    from xdistil.models.loading import resolve_checkpoint
    from xdistil.pruning.recovery import recorded_teacher

    record = read_run_config(model_dir)
    return recorded_teacher(model_dir, record) or resolve_checkpoint(run_teacher(record))


def teacher_view(model_dir, teacher_dir: str, seq_len: int | None = None):
    """The student's ModelDirectory with the teacher's tokenizer (and optionally another seq_len): the
    teacher then goes through exactly the same parsing, encoding and post-processing as the student."""
    from xdistil.model_dir import ModelDirectory
    from xdistil.models.loading import load_tokenizer

    record = {**model_dir.record, "data": {**model_dir.record["data"], "seq_len": seq_len or model_dir.seq_len}}
    return ModelDirectory(Path(teacher_dir), record, load_tokenizer(teacher_dir))


def load_teacher(teacher_dir: str, model_dir):
    """The teacher as a TF task model; it must already have a head for the student's labels."""
    from xdistil.models.loading import has_task_head, load_task_model

    if not has_task_head(teacher_dir, model_dir.task, model_dir.labels):
        raise ValueError(f"{teacher_dir} has no {model_dir.task.kind} head for the labels {model_dir.labels}")
    return load_task_model(teacher_dir, model_dir.task, model_dir.labels)


def _weights_size(directory: Path) -> int | None:
    for name in ("tf_model.h5", "model.safetensors"):
        if (directory / name).exists():
            return (directory / name).stat().st_size
    return None


def model_sizes_mb(model_dir, teacher_dir: str) -> dict:
    """Weight-file sizes in MB (10^6 bytes) of the teacher, the TF student and the ONNX models."""
    teacher = _weights_size(Path(teacher_dir))
    student = _weights_size(model_dir.model_path)
    fp32, int8 = model_dir.onnx_path("fp32"), model_dir.onnx_path("int8")
    sizes = {TEACHER: teacher, PADDED_TEACHER: teacher, STUDENT_TF: student,
             STUDENT_ONNX_FP32: fp32.stat().st_size if fp32.exists() else None,
             STUDENT_ONNX_INT8: int8.stat().st_size if int8.exists() else None}
    return {name: None if size is None else round(size / 1e6, 2) for name, size in sizes.items()}


def label_agreement(kind: str, outputs: list[str], reference: list[str]) -> dict:
    """Share of requests with identical labels (probabilities ignored); NER also per word."""
    labels = [o.split("\t")[0] for o in outputs]
    ref = [r.split("\t")[0] for r in reference]
    result = {"requests": float(np.mean([a == b for a, b in zip(labels, ref)]))}
    if kind == "ner":
        pairs = [(a, b) for line, ref_line in zip(labels, ref) for a, b in zip(line.split(), ref_line.split())]
        result["words"] = float(np.mean([a == b for a, b in pairs]))
    return result


def write_result(path: Path, payload: dict) -> Path:
    atomic_write_json(path, payload)
    return path


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def base_config(base_model_dir: str, model_dir: Path, **overrides):
    """The settings of a finished run, with its fine-tuned teacher, for a fresh run in `model_dir`
    (`overrides` name settings as the flags do)."""
    from xdistil.config import DistilConfig, read_run_config

    run = read_run_config(base_model_dir)
    if model_dir.exists():
        shutil.rmtree(model_dir)  # a fresh run, never a resumed one
    settings = DistilConfig.from_dict(run).flat_settings()
    return DistilConfig.from_settings(str(model_dir), **{**settings, "pt_teacher_checkpoint": run_teacher(run),
                                                         **overrides})


# --- multiply-adds per request and the CPU's peak -------------------------------------------------------------

def encoder_multiply_adds(config: dict, length: int, kind: str, cls_only_last_layer: bool = False,
                          layers: list | None = None) -> dict:
    """Multiply-adds of one forward pass of a BERT-style encoder and its task head over one row of `length` tokens.

    "matmul": weights times activations (per layer the Q/K/V/O projections and the feed-forward; the head), the
    part that dynamic int8 runs in int8; "attention": the scores Q.K^T and their weighted sum over V, which
    onnxruntime's attention kernels run in fp32. Embedding lookups, biases, layer norms, softmax and GELU count
    as free. NER: a token classifier at every position; otherwise a [CLS] head (dense H x H, then H x labels).
    With `cls_only_last_layer` the last layer computes keys and values at every position, and the query,
    attention output and feed-forward at position 0 only (the export's `"cls_only_last_layer"`). `layers`
    ([(heads, feed-forward neurons)] per layer) counts a pruned ONNX model's layers (default: the config's).
    """
    hidden, labels = config["hidden_size"], len(config["id2label"])
    heads = config.get("num_attention_heads", 1)
    head_size = hidden // heads
    layers = layers or [(heads, config["intermediate_size"])] * config["num_hidden_layers"]
    matmul = attention = 0
    for index, (kept_heads, inner) in enumerate(layers):
        width = kept_heads * head_size
        if cls_only_last_layer and index == len(layers) - 1:
            matmul += 2 * length * hidden * width + 2 * hidden * width + 2 * hidden * inner
            attention += 2 * length * width
        else:
            matmul += 4 * length * hidden * width + 2 * length * hidden * inner
            attention += 2 * length ** 2 * width
    matmul += length * hidden * labels if kind == "ner" else hidden ** 2 + hidden * labels
    return {"matmul": matmul, "attention": attention, "total": matmul + attention}


# Multiply-adds per core per cycle, best SIMD level first: (flags needed, fp32 MACs, how). Two vector FMA pipes.
FP32_MACS_PER_CYCLE = (
    (("avx512f",), 32, "AVX-512: 2 FMA pipes x 16 fp32 lanes"),
    (("avx2", "fma"), 16, "AVX2+FMA: 2 FMA pipes x 8 fp32 lanes"),
    (("avx",), 8, "AVX without FMA: 1 multiply + 1 add pipe x 8 fp32 lanes"),
    ((), 4, "SSE: 1 multiply + 1 add pipe x 4 fp32 lanes"),
)
# int8 as onnxruntime's dynamic quantization runs it: u8 activations x s8 weights summed into s32.
INT8_MACS_PER_CYCLE = (
    (("amx_int8",), 1024, "AMX: one TMUL, 1024 int8 MACs per cycle"),
    (("avx512_vnni",), 128, "AVX-512 VNNI: 2 pipes x vpdpbusd zmm (64 MACs)"),
    (("avx_vnni",), 64, "AVX-VNNI: 2 pipes x vpdpbusd ymm (32 MACs)"),
    (("avx512bw",), 64, "AVX-512BW without VNNI: vpmaddubsw + vpmaddwd zmm (64 MACs) per cycle on 2 multiply pipes"),
    (("avx2",), 32, "AVX2 without VNNI: vpmaddubsw + vpmaddwd ymm (32 MACs) per cycle on 2 multiply pipes (a core "
                    "with one vector integer multiply pipe, like AMD Zen 2, gets half)"),
    ((), 16, "SSSE3: pmaddubsw + pmaddwd xmm (16 MACs) per cycle"),
)


# Cores whose throughput the flags do not tell: (vendor, family, models, fp32 and int8 MACs per cycle, why).
KNOWN_CORES = (
    ("AuthenticAMD", 23, range(0x00, 0x30), 8, 8,
     "AMD Zen/Zen+: each 256-bit instruction runs as two 128-bit halves (ymm FMA 1 per cycle, 8 fp32 MACs); "
     "vpmaddubsw and vpmaddwd ymm share one multiply pipe at 0.5 per cycle each: 32 int8 MACs per 4 cycles "
     "(measured with register-resident loops on this project's EPYC)"),
)


def _best_level(table, flags: set) -> tuple[int, str]:
    return next((macs, how) for needed, macs, how in table if set(needed) <= flags)


def _known_core(identity):
    return next((core for core in KNOWN_CORES
                 if identity and (core[0], core[1]) == identity[:2] and identity[2] in core[2]), None)


def cpu_clock_mhz(cpuinfo: Path = Path("/proc/cpuinfo"),
                  max_freq: Path = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")) -> tuple[float, str]:
    """The clock the peak is computed at, and where it came from: cpufreq's maximum when the kernel exposes it,
    else the highest "cpu MHz" in /proc/cpuinfo (on a VM often the nominal clock; turbo can run faster)."""
    if max_freq.exists():
        return int(max_freq.read_text()) / 1000.0, str(max_freq)
    mhz = [float(line.split(":", 1)[1]) for line in cpuinfo.read_text().splitlines() if line.startswith("cpu MHz")]
    if not mhz:
        raise ValueError(f"no clock in {cpuinfo} or {max_freq}")
    return max(mhz), f'{cpuinfo} "cpu MHz"'


def _first_core(cpuinfo: Path) -> dict:
    fields = {}
    for line in cpuinfo.read_text().splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The first core's flags in /proc/cpuinfo."""
    return set(_first_core(cpuinfo).get("flags", "").split())


def cpu_identity(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, int, int] | None:
    """(vendor, family, model) of the first core in /proc/cpuinfo, if it says."""
    core = _first_core(cpuinfo)
    try:
        return core["vendor_id"], int(core["cpu family"]), int(core["model"])
    except (KeyError, ValueError):
        return None


def peak_multiply_adds(flags: set[str], clock_mhz: float, identity: tuple[str, int, int] | None = None) -> dict:
    """One core's peak multiply-adds per second in fp32 and int8 at `clock_mhz`, with what was assumed: the
    KNOWN_CORES entry of `identity` (vendor, family, model), else the best SIMD level of `flags` (see
    FP32_MACS_PER_CYCLE and INT8_MACS_PER_CYCLE)."""
    known = _known_core(identity)
    if known:
        fp32, int8, why = known[3:]
        assumed = {"fp32": why, "int8": why}
    else:
        (fp32, fp32_how), (int8, int8_how) = (_best_level(t, flags) for t in (FP32_MACS_PER_CYCLE, INT8_MACS_PER_CYCLE))
        assumed = {"fp32": fp32_how, "int8": int8_how}
    return {"clock_mhz": clock_mhz, "fp32_macs_per_cycle": fp32, "int8_macs_per_cycle": int8,
            "fp32_per_s": fp32 * clock_mhz * 1e6, "int8_per_s": int8 * clock_mhz * 1e6, "assumed": assumed}


def this_cpu_peak() -> dict:
    """`peak_multiply_adds` of this machine's CPU (one core), with its identity and where the clock came from."""
    clock, source = cpu_clock_mhz()
    identity = cpu_identity()
    return {**peak_multiply_adds(cpu_flags(), clock, identity), "clock_source": source,
            "vendor_family_model": identity}


def seconds_at_peak(multiply_adds: dict, precision: str, peak: dict) -> float:
    """The time `multiply_adds` (from `encoder_multiply_adds`) take at one core's peak: int8 runs its weight
    matmuls at the int8 peak and attention at the fp32 peak; fp32 runs everything at the fp32 peak."""
    if precision == "int8":
        return multiply_adds["matmul"] / peak["int8_per_s"] + multiply_adds["attention"] / peak["fp32_per_s"]
    if precision == "fp32":
        return multiply_adds["total"] / peak["fp32_per_s"]
    raise ValueError(f"unknown precision {precision!r}")


def peak_summary(work: list[dict], seconds: list[float], precision: str, peak: dict,
                 ceiling: dict | None = None) -> dict:
    """Mean multiply-adds per request, the multiply-adds per second achieved over `seconds` (one per request), and
    the percent of one core's peak: the time the requests would take at peak over the time they took; with a
    `ceiling` (`onnxruntime_gemm_ceiling`), the same against it."""
    total_seconds = sum(seconds)
    summary = {"multiply_adds_per_request_mean": sum(w["total"] for w in work) / len(work),
               "achieved_gmacs_per_s": sum(w["total"] for w in work) / total_seconds / 1e9,
               "percent_of_peak": 100.0 * sum(seconds_at_peak(w, precision, peak) for w in work) / total_seconds}
    if ceiling:
        summary["percent_of_gemm_ceiling"] = 100.0 * sum(seconds_at_peak(w, precision, ceiling)
                                                         for w in work) / total_seconds
    return summary


def onnxruntime_gemm_ceiling(rows: int = 256, inner: int = 384, columns: int = 1536, repeats: int = 20) -> dict:
    """Multiply-adds per second that onnxruntime's own single-thread GEMMs reach on this core (thread CPU time,
    best of 5 rounds), fp32 MatMul and int8 MatMulInteger (u8 x s8), at a feed-forward shape: a measured ceiling
    to read the percent of the nominal peak against (the clock /proc/cpuinfo gives may not be the one running)."""
    import time

    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    cases = {"fp32_per_s": ("MatMul", TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT,
                            rng.standard_normal((rows, inner), dtype=np.float32),
                            rng.standard_normal((inner, columns), dtype=np.float32)),
             "int8_per_s": ("MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32,
                            rng.integers(0, 256, (rows, inner), dtype=np.uint8),
                            rng.integers(-127, 128, (inner, columns), dtype=np.int8))}
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    ceiling = {"shape": [rows, inner, columns]}
    for key, (op, a_type, b_type, out_type, a, b) in cases.items():
        graph = helper.make_graph([helper.make_node(op, ["a", "b"], ["c"])], op,
                                  [helper.make_tensor_value_info("a", a_type, [rows, inner]),
                                   helper.make_tensor_value_info("b", b_type, [inner, columns])],
                                  [helper.make_tensor_value_info("c", out_type, [rows, columns])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feeds = {"a": a, "b": b}
        session.run(None, feeds)
        rounds = []
        for _ in range(5):
            start = time.thread_time()
            for _ in range(repeats):
                session.run(None, feeds)
            rounds.append((time.thread_time() - start) / repeats)
        ceiling[key] = rows * inner * columns / min(rounds)
    return ceiling
