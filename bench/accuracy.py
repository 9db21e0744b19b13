"""Dev and test scores of the teacher (TF), the student (TF), and the student's ONNX fp32 and int8 models:

    python bench/accuracy.py --model_dir out/demo_ner --name demo_ner

All four go through the shared batched prediction path (same encoding, same post-processing, same
metrics: entity F1 with per-type scores for NER, accuracy and macro-F1 otherwise).
Writes bench/results/<name>_accuracy.json.
"""
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `python bench/...`
import xdistil  # noqa: F401  (first: selects Keras 2 before TensorFlow loads)

import numpy as np
from absl import app, flags, logging

from bench.common import (RESULTS_DIR, STUDENT_ONNX_FP32, STUDENT_ONNX_INT8, STUDENT_TF, TEACHER, default_teacher_dir,
                          label_agreement, load_teacher, model_sizes_mb, read_json, teacher_view, write_result)

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("model_dir", None, "Distilled model directory (with onnx/ exported).")
    flags.DEFINE_string("teacher_dir", None, "Teacher (default: <model_dir>/teacher, else the run's teacher).")
    flags.DEFINE_integer("batch_size", 64, "Prediction batch size.")
    flags.DEFINE_string("name", None, "Results name: bench/results/<name>_accuracy.json (default: the model dir's name).")
    flags.DEFINE_bool("transfer_agreement", False, "Also each student's agreement with the teacher's labels on the "
                                                   "run's own transfer rows (its cached teacher logits; sentence "
                                                   "tasks): how well it learned the teacher where it was trained.")
    flags.DEFINE_string("source_transfer_file", None, "With --transfer_agreement, for a run whose transfer files have "
                                                      "moved since: where they are now (comma-separated, in the "
                                                      "run's order).")
    flags.mark_flag_as_required("model_dir")


def build_predictors(model_dir, export: dict, teacher_dir: str, batch_size: int) -> dict:
    """{name: (model directory view used to encode and decode, batched predictor)}; the teacher uses its own
    tokenizer."""
    from xdistil.inference.onnx_runtime import onnx_session
    from xdistil.inference.predict import ONNXPredictor, TFPredictor

    predictors = {TEACHER: (teacher_view(model_dir, teacher_dir),
                            TFPredictor(load_teacher(teacher_dir, model_dir), batch_size)),
                  STUDENT_TF: (model_dir, TFPredictor(model_dir.load_tf_model(), batch_size)),
                  STUDENT_ONNX_FP32: (model_dir, ONNXPredictor(onnx_session(model_dir.onnx_path("fp32")), batch_size))}
    if model_dir.onnx_path("int8").name in export["files"]:
        int8 = onnx_session(model_dir.onnx_path("int8"))
        predictors[STUDENT_ONNX_INT8] = (model_dir, ONNXPredictor(int8, batch_size))
        # Dynamic int8 quantizes activations with a range taken over the whole input, so its scores
        # depend on the batch and its padding: as served online (and by bench/latency.py), one request
        # at a time at its own length.
        predictors[STUDENT_ONNX_INT8 + "_batch1"] = (model_dir, ONNXPredictor(int8, batch_size=1, length_multiple=1))
    return predictors


def split_files(model_dir) -> dict:
    task = Path(model_dir.task_dir or "")
    return {split: str(task / f"{split}.tsv") for split in ("dev", "test") if (task / f"{split}.tsv").exists()}


def score_all(predictors: dict, files: dict, model_dir) -> dict:
    """{model: {split: scores}} over the labeled files; beside its metrics, each model's `agreement_with_teacher`
    (`label_agreement`: the share of examples, and for NER of words, where it predicts the teacher's labels)."""

    scores = {name: {} for name in predictors}
    for split, path in files.items():
        examples = model_dir.read_labeled(path)
        outputs = {}
        for name, (model_bundle, predictor) in predictors.items():
            features = model_bundle.encode(examples)
            predictions = model_bundle.predictions(predictor.logits(features), features, examples)
            scores[name][split] = model_bundle.score(examples, predictions)
            outputs[name] = [model_bundle.task.format_prediction(p) for p in predictions]
        for name in predictors:
            scores[name][split]["agreement_with_teacher"] = label_agreement(model_dir.task.kind, outputs[name],
                                                                            outputs[TEACHER])
    return scores


def transfer_agreement(model_dir, predictors: dict, batch_size: int, source_transfer_file: str | None = None) -> dict:
    """{student model: {"rows", "agreement_with_teacher"}} over the transfer rows of the run that made `model_dir`
    (augmented copies and crops included), against the argmax of the teacher's logits the run cached (taken from
    its cache; computed only if the run kept none). Beside the same agreement on dev and test, it separates what
    the student failed to learn from what it learned and does not carry to new text. Batch-1 int8 is left out
    (the batched int8 model stands for it: 30,000 requests one by one would dominate the benchmark).
    `source_transfer_file`: where the run's transfer files are now, if they moved since the run."""
    from xdistil.pruning.recovery import required_run_transfer_paths, teacher_transfer

    if model_dir.task.token_level:
        raise ValueError("--transfer_agreement is measured for sentence tasks (one label per row)")
    students = {name: predictor for name, (_, predictor) in predictors.items()
                if name != TEACHER and not name.endswith("_batch1")}
    agreeing = dict.fromkeys(students, 0)
    rows = 0
    paths = required_run_transfer_paths(model_dir, "transfer_agreement", moved_to=source_transfer_file)
    with tempfile.TemporaryDirectory() as scratch:
        for _, features, teacher_logits in teacher_transfer(model_dir, scratch, batch_size,
                                                            transfer_files=paths).chunks():
            # a row may hold the teacher's first-token state after its logits (--first_token_state_weight)
            teacher_labels = np.asarray(teacher_logits[:, :len(model_dir.labels)], np.float32).argmax(-1)
            rows += len(teacher_labels)
            for name, predictor in students.items():
                agreeing[name] += int((predictor.logits(features).argmax(-1) == teacher_labels).sum())
    return {name: {"rows": rows, "agreement_with_teacher": agreeing[name] / rows} for name in students}


def metrics_json_check(model_dir: str, scores: dict, metric: str) -> dict:
    """Differences from the scores the distillation run recorded in metrics.json (should be ~0)."""
    path = Path(model_dir) / "metrics.json"
    if not path.exists():
        return {}
    recorded = read_json(path)
    check = {}
    for name, role in ((TEACHER, "teacher"), (STUDENT_TF, "student")):
        for split, values in recorded.get(role, {}).items():
            if isinstance(values, dict) and metric in values and split in scores[name]:
                check[f"{name}/{split}"] = scores[name][split][metric] - values[metric]
    return check


def run_benchmark(model_dir: str, teacher_dir: str | None, batch_size: int, name: str,
                  with_transfer: bool = False, source_transfer_file: str | None = None) -> dict:
    from xdistil.model_dir import ModelDirectory

    student = ModelDirectory.load(model_dir)
    export = student.checked_export()  # a stale or unchecked export is never measured
    teacher_dir = teacher_dir or default_teacher_dir(model_dir)
    files = split_files(student)
    if not files:
        raise FileNotFoundError(f"no dev.tsv or test.tsv in the task folder {student.task_dir!r}")
    predictors = build_predictors(student, export, teacher_dir, batch_size)
    scores = score_all(predictors, files, student)
    metric = student.task.metric
    report = {"benchmark": "accuracy", "name": name, "model_dir": str(model_dir), "teacher_dir": teacher_dir,
              "task": student.task_dir, "kind": student.task.kind, "metric": metric, "files": files,
              "seq_len": student.seq_len, "sizes_mb": model_sizes_mb(student, teacher_dir), "scores": scores,
              "difference_from_metrics_json": metrics_json_check(model_dir, scores, metric)}
    if with_transfer:
        report["transfer"] = transfer_agreement(student, predictors, batch_size, source_transfer_file)
    write_result(RESULTS_DIR / f"{name}_accuracy.json", report)
    return report


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    report = run_benchmark(FLAGS.model_dir, FLAGS.teacher_dir, FLAGS.batch_size,
                           FLAGS.name or Path(FLAGS.model_dir).name, FLAGS.transfer_agreement,
                           FLAGS.source_transfer_file)
    metric = report["metric"]
    for model, splits in report["scores"].items():
        logging.info("%-20s %s", model, "  ".join(f"{s} {metric} {v[metric]:.4f} (the teacher's labels "
                                                  f"{v['agreement_with_teacher']['requests']:.1%})"
                                                  for s, v in splits.items()))
    for model, transfer in report.get("transfer", {}).items():
        logging.info("%-20s the teacher's labels on the %d transfer rows %.1f%%", model, transfer["rows"],
                     100 * transfer["agreement_with_teacher"])


if __name__ == "__main__":
    define_flags()
    app.run(main)
