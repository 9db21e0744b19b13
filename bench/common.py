"""Helpers shared by the benchmark scripts: where results go, the teacher of a model directory, sizes."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

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

    saved = Path(model_dir) / "teacher"
    if (saved / "config.json").exists():
        return str(saved)
    return resolve_checkpoint(run_teacher(read_run_config(model_dir)))


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
