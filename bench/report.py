"""One markdown table and one accuracy-vs-latency scatter plot from the JSON files in bench/results:

    python bench/report.py --results_dir bench/results --out bench/results/README_table.md

`<name>.json` (bench/latency.py) and `<name>_accuracy.json` (bench/accuracy.py) are joined by name;
the padded teacher takes the teacher's scores. Other JSON files (e.g. distill_cost.json) are ignored.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `python bench/...`
import xdistil  # noqa: F401  (first: selects Keras 2 before TensorFlow loads)

from absl import app, flags, logging

from bench.common import (PADDED_TEACHER, RESULTS_DIR, STUDENT_ONNX_FP32, STUDENT_ONNX_INT8, STUDENT_TF, TEACHER,
                          model_order, read_json)

FLAGS = flags.FLAGS
ACCURACY_SUFFIX = "_accuracy"
BATCH1_SUFFIX = "_batch1"
COLUMNS = ("task", "model", "dev", "test", "p50 ms", "p99 ms", "speed-up vs padded teacher", "size MB")


def define_flags():
    flags.DEFINE_string("results_dir", str(RESULTS_DIR), "Folder with the latency and accuracy JSON files.")
    flags.DEFINE_string("out", str(RESULTS_DIR / "README_table.md"), "Markdown table to write.")
    flags.DEFINE_string("plot", None, "Scatter PNG (default: <out's folder>/accuracy_vs_latency.png).")


def load_results(results_dir) -> dict:
    """{name: {"latency": ..., "accuracy": ...}} from the benchmark JSON files of `results_dir`."""
    results = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        data = read_json(path)
        kind = data.get("benchmark") if isinstance(data, dict) else None
        if kind == "latency":
            results.setdefault(path.stem, {})["latency"] = data
        elif kind == "accuracy":
            results.setdefault(path.stem.removesuffix(ACCURACY_SUFFIX), {})["accuracy"] = data
    return results


def _score(scores: dict, model: str, split: str, metric: str | None):
    value = scores.get(TEACHER if model == PADDED_TEACHER else model, {}).get(split, {}).get(metric)
    return None if value is None else float(value)


def build_rows(results: dict) -> list[dict]:
    """One row per (run, model): every model timed or scored, teacher first."""
    rows = []
    for name, parts in sorted(results.items()):
        latency, accuracy = parts.get("latency", {}), parts.get("accuracy", {})
        timed, scores = latency.get("latency_ms", {}), accuracy.get("scores", {})
        metric = accuracy.get("metric")
        sizes = {**accuracy.get("sizes_mb", {}), **latency.get("sizes_mb", {})}
        reference = timed.get(PADDED_TEACHER, {}).get("p50")
        for model in sorted(set(timed) | set(scores), key=model_order):
            timing = timed.get(model) or timed.get(model.removesuffix(BATCH1_SUFFIX), {})  # served at batch 1
            p50 = timing.get("p50")
            rows.append({"name": name, "task": latency.get("task") or accuracy.get("task"), "metric": metric,
                         "model": model, "dev": _score(scores, model, "dev", metric),
                         "test": _score(scores, model, "test", metric), "p50": p50,
                         "p99": timing.get("p99"),
                         "speedup": reference / p50 if reference and p50 else None,
                         "size_mb": sizes.get(model.removesuffix(BATCH1_SUFFIX))})
    return rows


def _cell(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def markdown_table(rows: list[dict], results: dict) -> str:
    """The table (scores x100 in the task's primary metric) and one line per run saying how it was measured."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(COLUMNS) - 2)) + "|"]
    for r in rows:
        task = f"{r['task']} ({r['metric'] or 'no scores'}) [{r['name']}]"
        lines.append("| " + " | ".join([
            task, r["model"], _cell(None if r["dev"] is None else 100 * r["dev"], ".2f"),
            _cell(None if r["test"] is None else 100 * r["test"], ".2f"), _cell(r["p50"], ".2f"),
            _cell(r["p99"], ".2f"), _cell(r["speedup"], ".1f"), _cell(r["size_mb"], ".1f")]) + " |")
    notes = []
    for name, parts in sorted(results.items()):
        latency = parts.get("latency")
        if not latency:
            continue
        cpu, threads = latency.get("cpu", {}), latency.get("threads", {})
        note = (f"- `{name}`: {latency.get('requests')} requests of {latency.get('test_file')}, batch 1, interleaved; "
                f"{threads.get('onnxruntime_intra_op')} thread(s); {cpu.get('model')} "
                f"({cpu.get('cores')} cores, {', '.join(cpu.get('flags', [])) or 'no AVX flags'}); "
                f"padded teacher at {latency.get('padded_teacher_seq_len')} tokens")
        multi = latency.get("instances")
        if multi:
            note += f"; int8 x{multi['instances']} processes: {multi['throughput_per_s']:.0f} requests/s"
        notes.append(note + ".")
    footer = ["", ("Scores x100 (NER entity F1, otherwise accuracy); p50/p99 per request at its own length, "
              "parse to post-process; `_batch1`: int8 scored one example at a time, as served.")]
    return "\n".join(lines + footer + ([""] + notes if notes else [])) + "\n"


PLOT_LABELS = {PADDED_TEACHER: "teacher padded", TEACHER: "teacher", STUDENT_TF: "TF", STUDENT_ONNX_FP32: "fp32",
               STUDENT_ONNX_INT8 + BATCH1_SUFFIX: "int8"}


def pruning_curves(results_dir) -> dict:
    """{name: [(int8 p50 ms, test (else dev) score, model), ...]} from bench/pruning.py results, fastest last."""
    curves = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        data = read_json(path)
        if isinstance(data, dict) and data.get("benchmark") == "pruning":
            metric = data["metric"]
            curves[data["name"]] = sorted(
                ((m["p50_ms"], (m["scores"].get("test") or m["scores"]["dev"])[metric], model)
                 for model, m in data["models"].items()), reverse=True)
    return curves


# Nine markers beside matplotlib's ten colours: run i is drawn in colour i % 10 with marker i % 9, a pair of its own
# for the first 90 runs.
MARKERS = "os^Dv<>ph"


def series_markers(names) -> dict:
    """{run name: marker} for every run, in name order."""
    return {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(sorted(set(names)))}


def scatter_plot(rows: list[dict], path, curves: dict | None = None) -> Path | None:
    """Test (else dev) score against p50 latency (log axis), one point per timed and scored model; each
    pruning curve (`pruning_curves`) as a dashed line through its int8 students."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # int8 is plotted as served (scored one request at a time): its batched-scoring row would repeat it.
    points = [r for r in rows if r["p50"] and (r["test"] if r["test"] is not None else r["dev"]) is not None
              and r["model"] != STUDENT_ONNX_INT8]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(11, 5.5))
    markers = series_markers(r["name"] for r in points)
    for name, marker in markers.items():
        mine = [r for r in points if r["name"] == name]
        scores = [100 * (r["test"] if r["test"] is not None else r["dev"]) for r in mine]
        latencies = [r["p50"] for r in mine]
        line = ax.plot(latencies, scores, marker=marker, markersize=7, linewidth=0.8, alpha=0.8,
                       label=f"{name} ({mine[0]['metric']})")[0]
        for r, score in zip(mine, scores):
            ax.annotate(PLOT_LABELS.get(r["model"], r["model"]), (r["p50"], score), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=6.5, color=line.get_color())
    for name, points in (curves or {}).items():
        line = ax.plot([p[0] for p in points], [100 * p[1] for p in points], linestyle="--", marker="x",
                       label=f"{name} (int8, pruned)")[0]
        for latency, score, model in points:
            ax.annotate(model, (latency, 100 * score), textcoords="offset points", xytext=(0, -10), ha="center",
                        fontsize=6, color=line.get_color())
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}" if f"{x:g}"[0] in "25" else ""))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("p50 latency per request, ms (batch 1, log)")
    ax.set_ylabel("test score x100 (dev where no test)")
    ax.set_title("accuracy vs latency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the points, not over them
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(results_dir, out, plot=None) -> tuple[str, Path | None]:
    """Write the markdown table to `out` and the scatter plot; return the table and the plot's path."""
    from xdistil.io_utils import atomic_write_text

    results = load_results(results_dir)
    rows = build_rows(results)
    table = markdown_table(rows, results)
    atomic_write_text(out, table)
    return table, scatter_plot(rows, plot or Path(out).parent / "accuracy_vs_latency.png", pruning_curves(results_dir))


def main(argv):
    del argv
    table, plot = write_report(FLAGS.results_dir, FLAGS.out, FLAGS.plot)
    print(table)
    logging.info("wrote %s and %s", FLAGS.out, plot)


if __name__ == "__main__":
    define_flags()
    app.run(main)
