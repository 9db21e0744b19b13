"""Batch-1 online latency of teacher and student on real sentences, in one interleaved run:

    python bench/latency.py --model_dir out/demo_ner --max_requests 300 --name demo_ner

Every request is one test sentence at its own length (parse + tokenize + forward + post-process timed),
served in turn by: the teacher TF fp32 padded to --seq_len (the reference toolkit's way), the teacher TF
fp32 unpadded, the student TF fp32, the student ONNX fp32 and ONNX int8; then the int8 student with
--instances single-thread processes for throughput. Each model's summary also has its multiply-adds per request
(counted from its config and each request's length), the rate achieved and the percent of one core's peak
(bench/common.py), and the process CPU time per request (wall time minus it is time spent waiting for a core on
a shared machine). Writes bench/results/<name>.json and <name>_latency.png.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `python bench/...`
import xdistil  # noqa: F401  (first: selects Keras 2 before TensorFlow loads)

import numpy as np
from absl import app, flags, logging

from bench.common import (PADDED_TEACHER, RESULTS_DIR, STUDENT_ONNX_FP32, STUDENT_ONNX_INT8, STUDENT_TF, TEACHER,
                          default_teacher_dir, encoder_multiply_adds, label_agreement, load_average, load_teacher,
                          model_sizes_mb, onnxruntime_gemm_ceiling, peak_summary, read_json, teacher_view,
                          this_cpu_peak, write_result)

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("model_dir", None, "Distilled model directory (with onnx/ exported).")
    flags.DEFINE_string("teacher_dir", None, "Teacher (default: <model_dir>/teacher, else the run's teacher).")
    flags.DEFINE_string("test_file", None, "Labeled file whose texts are the requests (default: the task's test.tsv).")
    flags.DEFINE_integer("max_requests", 300, "Requests: the first N examples of --test_file.")
    flags.DEFINE_integer("seq_len", 128, "Length the padded teacher pads every request to.")
    flags.DEFINE_integer("instances", 2, "Parallel single-thread int8 sessions for the throughput run (<2: skip).")
    flags.DEFINE_integer("warmup", 10, "Untimed warm-up requests per model.")
    flags.DEFINE_integer("intra_op_threads", 1, "Threads per model: onnxruntime intra-op and TensorFlow intra-op.")
    flags.DEFINE_string("name", None, "Results name: bench/results/<name>.json (default: the model dir's name).")
    flags.mark_flag_as_required("model_dir")


def request_lines(model_dir, test_file: str, max_requests: int) -> list[tuple[int, str]]:
    """The texts of a labeled file's first examples as request lines (the transfer/prediction format)."""
    examples = model_dir.read_labeled(test_file)[:max_requests]
    return [(i, model_dir.task.unlabeled_line(e)) for i, e in enumerate(examples, start=1)]


def padded_tf_forward(model, seq_len: int):
    """A forward that zero-pads each [1, length] request to [1, seq_len] (the reference toolkit's serving),
    then cuts token logits back to the request's length."""
    from xdistil.models.forward import TFLogits

    logits_fn = TFLogits(model)

    def forward(arrays):
        length = arrays["input_ids"].shape[1]
        if length > seq_len:
            raise ValueError(f"request of {length} sub-tokens is longer than --seq_len {seq_len}")
        logits = logits_fn({n: np.pad(arrays[n], ((0, 0), (0, seq_len - length))) for n in logits_fn.names})
        return logits[:, :length] if logits.ndim == 3 else logits

    return forward


def build_predictors(model_dir, export: dict, teacher_dir: str, seq_len: int, threads: int) -> dict:
    """The five online predictors, in interleaving order."""
    from xdistil.inference.online import OnlinePredictor

    # Windows of long NER sentences at --seq_len, so every teacher row fits the padded shape.
    teacher_dir_view = teacher_view(model_dir, teacher_dir, seq_len)
    teacher = load_teacher(teacher_dir, model_dir)
    predictors = {PADDED_TEACHER: OnlinePredictor(teacher_dir_view, padded_tf_forward(teacher, seq_len)),
                  TEACHER: OnlinePredictor.from_tf(teacher_dir_view, teacher),
                  STUDENT_TF: OnlinePredictor.from_tf(model_dir, model_dir.load_tf_model()),
                  STUDENT_ONNX_FP32: OnlinePredictor.from_onnx(model_dir, model_dir.onnx_path("fp32"), threads)}
    if model_dir.onnx_path("int8").name in export["files"]:
        predictors[STUDENT_ONNX_INT8] = OnlinePredictor.from_onnx(model_dir, model_dir.onnx_path("int8"), threads)
    else:
        logging.warning("no int8 model in the export: int8 not measured")
    return predictors


def _row_lengths(view, lines, path) -> list[list[int]]:
    """The length of each model-input row of each request, as `view` encodes it for serving."""
    task = view.task
    return [[row["input_ids"].shape[1] for row in task.encode_request(
        view.tokenizer, task.parse_unlabeled(text, path, line_no), view.encoding).rows] for line_no, text in lines]


def request_work(model_dir, export: dict, teacher_dir: str, seq_len: int, lines, path) -> dict:
    """{model: (multiply-adds of each request, precision)}: the padded teacher at seq_len for every row, the teacher
    and the TF student at each row's length, the ONNX students likewise with their last layer at [CLS] only when
    the export computes it so."""
    kind = model_dir.task.kind
    teacher_config = read_json(Path(teacher_dir) / "config.json")
    student_config = read_json(model_dir.model_path / "config.json")
    cls_only = bool(export["fusion"].get("cls_only_last_layer"))
    pruning = export.get("pruning")  # the ONNX students lost their pruned heads and neurons; the TF one computes them
    onnx_layers = list(zip(pruning["heads_per_layer"], pruning["neurons_per_layer"])) if pruning else None

    def per_request(config, row_lengths, cls_only_last_layer=False, layers=None):
        rows = [[encoder_multiply_adds(config, n, kind, cls_only_last_layer, layers) for n in lengths]
                for lengths in row_lengths]
        return [{key: sum(w[key] for w in request) for key in request[0]} for request in rows]

    teacher_rows = _row_lengths(teacher_view(model_dir, teacher_dir, seq_len), lines, path)
    student_rows = _row_lengths(model_dir, lines, path)
    return {PADDED_TEACHER: (per_request(teacher_config, [[seq_len] * len(r) for r in teacher_rows]), "fp32"),
            TEACHER: (per_request(teacher_config, teacher_rows), "fp32"),
            STUDENT_TF: (per_request(student_config, student_rows), "fp32"),
            STUDENT_ONNX_FP32: (per_request(student_config, student_rows, cls_only, onnx_layers), "fp32"),
            STUDENT_ONNX_INT8: (per_request(student_config, student_rows, cls_only, onnx_layers), "int8")}


def summarize(kind: str, runs: dict, work: dict, peak: dict, ceiling: dict) -> dict:
    """Latency summaries with p50 speed-ups, label agreement with the (padded and unpadded) teacher, and
    multiply-adds per request, the rate achieved and the percent of `peak` (and of the GEMM `ceiling`) over the
    end-to-end latencies."""
    from xdistil.inference.online import latency_summary

    summaries = {name: latency_summary(run.latencies_ms) for name, run in runs.items()}
    cpu = {name: latency_summary(run.cpu_ms) for name, run in runs.items()}
    for name, summary in summaries.items():
        multiply_adds, precision = work[name]
        seconds = [ms / 1000.0 for ms in runs[name].latencies_ms]
        summary.update(peak_summary(multiply_adds, seconds, precision, peak, ceiling))
        summary["p50_speedup_vs_padded_teacher"] = summaries[PADDED_TEACHER]["p50"] / summary["p50"]
        summary["p50_speedup_vs_student_tf_fp32"] = summaries[STUDENT_TF]["p50"] / summary["p50"]
        summary["cpu_ms"] = {key: cpu[name][key] for key in ("p50", "p90", "p99", "mean")}
        summary["cpu_p50_speedup_vs_padded_teacher"] = cpu[PADDED_TEACHER]["p50"] / cpu[name]["p50"]
        summary["agreement_with_padded_teacher"] = label_agreement(kind, runs[name].outputs,
                                                                   runs[PADDED_TEACHER].outputs)
        summary["agreement_with_teacher"] = label_agreement(kind, runs[name].outputs, runs[TEACHER].outputs)
        summary["latencies_ms"] = [round(x, 4) for x in runs[name].latencies_ms]
    return summaries


def measure_instances(model_dir, lines, instances: int, warmup: int, single_outputs, single_throughput) -> dict:
    """Throughput of `instances` single-thread int8 processes over the same requests."""
    from xdistil.inference.online import serve_instances

    multi = serve_instances(model_dir.path, model_dir.onnx_path("int8"), lines, instances, warmup)
    multi["same_outputs_as_single_instance"] = multi.pop("outputs") == single_outputs
    multi["speedup_vs_one_instance"] = multi["throughput_per_s"] / single_throughput
    return multi


def _plain_log_labels(matplotlib, minor: bool = False):
    """Tick labels as plain numbers; minor ticks labelled only at 2x and 5x."""
    return matplotlib.ticker.FuncFormatter(
        lambda v, _: "" if minor and f"{v:g}"[0] not in "25" else f"{v:g}")


def plot_latency(models: dict, instances: dict | None, title: str, path: Path) -> Path:
    """Box plot of per-request latency (log axis, whiskers p1-p99) and a throughput bar chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(models)
    fig, (box_ax, bar_ax) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})
    box_ax.boxplot([models[n]["latencies_ms"] for n in names], whis=(1, 99), showfliers=False)
    box_ax.set_xticks(range(1, len(names) + 1), [n.replace("_", "\n", 2) for n in names], fontsize=8)
    box_ax.set_yscale("log")
    box_ax.set_ylabel("latency per request, ms (log)")
    for i, name in enumerate(names, start=1):
        box_ax.annotate(f"p50 {models[name]['p50']:.1f}", (i, models[name]["p50"]), textcoords="offset points",
                        xytext=(30, -3), ha="left", fontsize=7)
    box_ax.set_title("batch-1 latency (box p25-p75, whiskers p1-p99)")
    bars = {n: models[n]["throughput_per_s"] for n in names}
    if instances:
        bars[f"int8 x{instances['instances']} proc"] = instances["throughput_per_s"]
    bar_ax.bar(range(len(bars)), list(bars.values()), color="tab:green")
    bar_ax.set_xticks(range(len(bars)), [n.replace("_", "\n", 2) for n in bars], fontsize=7)
    bar_ax.set_yscale("log")
    bar_ax.set_ylabel("requests / s (log)")
    bar_ax.set_title("throughput")
    for ax in (box_ax, bar_ax):  # log axes labelled 2, 5, 10, 20 rather than 2x10^0
        ax.yaxis.set_major_formatter(_plain_log_labels(matplotlib))
        ax.yaxis.set_minor_formatter(_plain_log_labels(matplotlib, minor=True))
        ax.tick_params(axis="y", which="minor", labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_benchmark(model_dir: str, teacher_dir: str | None, test_file: str | None, max_requests: int, seq_len: int,
                  instances: int, warmup: int, threads: int, name: str) -> dict:
    """Measure, write bench/results/<name>.json and <name>_latency.png, and return the report."""
    import onnxruntime
    import tensorflow as tf

    from xdistil.inference.online import serve_interleaved
    from xdistil.inference.onnx_serving import cpu_info, limit_tf_threads
    from xdistil.inference.onnx_serving import tf_threads as current_tf_threads
    from xdistil.model_dir import ModelDirectory

    if not limit_tf_threads(threads):
        raise RuntimeError("TensorFlow started before its threads could be limited")
    tf_threads = current_tf_threads()
    student = ModelDirectory.load(model_dir)
    export = student.checked_export()  # a stale or unchecked export is never measured
    teacher_dir = teacher_dir or default_teacher_dir(model_dir)
    test_file = test_file or student.default_file("test")
    lines = request_lines(student, test_file, max_requests)
    predictors = build_predictors(student, export, teacher_dir, seq_len, threads)
    load_before = load_average()
    runs = serve_interleaved(predictors, lines, warmup, test_file)
    peak, ceiling = this_cpu_peak(), onnxruntime_gemm_ceiling()
    models = summarize(student.task.kind, runs, request_work(student, export, teacher_dir, seq_len, lines, test_file),
                       peak, ceiling)
    multi = None
    if instances > 1 and STUDENT_ONNX_INT8 in runs:
        multi = measure_instances(student, lines, instances, warmup, runs[STUDENT_ONNX_INT8].outputs,
                                  models[STUDENT_ONNX_INT8]["throughput_per_s"])
    report = {"benchmark": "latency", "name": name, "model_dir": str(model_dir), "teacher_dir": teacher_dir,
              "task": student.task_dir, "kind": student.task.kind, "test_file": test_file, "requests": len(lines),
              "warmup_requests": min(warmup, len(lines)), "padded_teacher_seq_len": seq_len,
              "student_seq_len": student.seq_len, "order": "interleaved request by request (A B C, B C A, ...)",
              "timed_path": "parse + tokenize + forward + post-process, batch 1",
              "threads": {"onnxruntime_intra_op": threads, "onnxruntime_inter_op": 1, "tensorflow": tf_threads},
              "cpu": cpu_info(), "load_average_before_after": [load_before, load_average()],
              "cpu_peak_one_core": peak, "onnxruntime_gemm_ceiling_one_thread": ceiling,
              "percent_of_peak": "time at one core's peak (int8 models: weight matmuls at the int8 peak, attention at "
              "the fp32 peak) over the end-to-end latency; percent_of_gemm_ceiling: the same at onnxruntime's "
              "measured single-thread GEMM rates",
              "versions": {"tensorflow": tf.__version__, "onnxruntime": onnxruntime.__version__},
              "sizes_mb": model_sizes_mb(student, teacher_dir), "latency_ms": models, "instances": multi}
    write_result(RESULTS_DIR / f"{name}.json", report)
    plot_latency(models, multi, f"{name}: {len(lines)} requests, {threads} thread(s), {report['cpu']['model']}",
                 RESULTS_DIR / f"{name}_latency.png")
    return report


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    name = FLAGS.name or Path(FLAGS.model_dir).name
    report = run_benchmark(FLAGS.model_dir, FLAGS.teacher_dir, FLAGS.test_file, FLAGS.max_requests, FLAGS.seq_len,
                           FLAGS.instances, FLAGS.warmup, FLAGS.intra_op_threads, name)
    for model, s in report["latency_ms"].items():
        logging.info("%-24s p50 %7.2f  p90 %7.2f  p99 %7.2f ms  %6.1f req/s  x%.1f vs padded teacher  %5.1f%% of "
                     "peak | CPU p50 %7.2f ms, x%.1f", model, s["p50"], s["p90"], s["p99"], s["throughput_per_s"],
                     s["p50_speedup_vs_padded_teacher"], s["percent_of_peak"], s["cpu_ms"]["p50"],
                     s["cpu_p50_speedup_vs_padded_teacher"])
    if report["instances"]:
        logging.info("int8 x%d instances: %.1f req/s", FLAGS.instances, report["instances"]["throughput_per_s"])


if __name__ == "__main__":
    define_flags()
    app.run(main)
