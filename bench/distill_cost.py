"""Wall time and peak memory of a distillation run, per stage, with the teacher-logit cache on and off:

    python bench/distill_cost.py --base_model_dir out/demo_ner --memory_lines 10000,1000000

Timing: the same short real run (the base run's settings and fine-tuned teacher, fewer epochs and transfer
lines) twice, each in a fresh subprocess: with the teacher-logit cache (logits computed once, float16 on disk)
and with --noteacher_logit_cache (teacher recomputed for every chunk of every epoch of every transfer stage,
as the reference toolkit did). With two or more CPUs the two run side by side, each pinned to a CPU of its
own, so that both see the same machine load (one after the other, a load that changes between them biases
the ratio); --notiming_side_by_side runs them one after the other on every CPU. Every stage is timed and its
peak RSS sampled. Memory: peak RSS (ru_maxrss of
the subprocess) of a run with a tiny random teacher and a 1-layer student on transfer files of real lines
repeated to each --memory_lines length, same chunk size. Writes bench/results/<name>.json.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `python bench/...`
import xdistil  # noqa: F401  (first: selects Keras 2 before TensorFlow loads)

import dataclasses
import json
import os
import shutil
import subprocess
import threading
import time

from absl import app, flags, logging

from bench.common import RESULTS_DIR, base_config, load_average, read_json, run_teacher, write_result

FLAGS = flags.FLAGS
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def define_flags():
    flags.DEFINE_string("base_model_dir", "out/demo_ner", "Finished run whose settings, task and teacher are reused.")
    flags.DEFINE_list("parts", ["timing", "memory"], "What to measure: timing, memory.")
    flags.DEFINE_integer("timing_lines", 500, "Transfer lines of the timing run.")
    flags.DEFINE_bool("timing_side_by_side", True, "Run the timing runs at the same time, each pinned to a CPU of "
                                                   "its own (needs two CPUs; else one after the other).")
    flags.DEFINE_integer("representation_epochs", 1, "Timing run: stage 1 epochs.")
    flags.DEFINE_integer("logit_epochs", 2, "Timing run: stage 2 epochs.")
    flags.DEFINE_integer("finetune_epochs", 1, "Timing run: stage 3 epochs.")
    flags.DEFINE_list("memory_lines", ["10000", "1000000"], "Transfer-file lengths of the memory runs.")
    flags.DEFINE_integer("memory_batch_size", 512, "Memory runs: training and teacher batch size.")
    flags.DEFINE_integer("memory_chunk_size", 10000, "Memory runs: --distil_chunk_size (the same for every length).")
    flags.DEFINE_string("work_dir", "/tmp/xdistil_distill_cost", "Scratch folder (model dirs, transfer files).")
    flags.DEFINE_bool("keep_work_dir", False, "Keep the scratch model dirs (teacher-logit caches are large).")
    flags.DEFINE_string("name", "distill_cost", "Results name: bench/results/<name>.json.")
    flags.DEFINE_string("child_spec", None, "Internal: run one instrumented distillation from this spec file.")


# --- inside the measured subprocess -------------------------------------------------------------------------

class PeakRSS:
    """Samples this process's resident set size every `interval` seconds; `window()` restarts the peak.
    Every `timeline_every` seconds it also notes (seconds, anonymous MB, file-backed MB) in `timeline`."""

    def __init__(self, interval: float = 0.02, timeline_every: float = 5.0):
        self.peak = 0
        self.timeline = []
        self._interval, self._timeline_every = interval, timeline_every
        threading.Thread(target=self._sample, daemon=True).start()

    @staticmethod
    def current() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE_BYTES

    def _sample(self):
        start = next_note = time.perf_counter()
        while True:
            self.peak = max(self.peak, self.current())
            if time.perf_counter() >= next_note:
                with open("/proc/self/status") as f:
                    fields = dict(line.split(":", 1) for line in f if line.startswith(("RssAnon", "RssFile")))
                self.timeline.append([round(time.perf_counter() - start), int(fields["RssAnon"].split()[0]) // 1024,
                                      int(fields["RssFile"].split()[0]) // 1024])
                next_note += self._timeline_every
            time.sleep(self._interval)

    def window(self) -> None:
        self.peak = self.current()


class StageRecorder:
    """A trainer callback: seconds and peak RSS of every stage and of the teacher-logit cache fill."""

    def __init__(self, sampler: PeakRSS):
        self.sampler = sampler
        self.records = []
        self._started = None

    def on_stage_begin(self, name: str) -> None:
        self.sampler.window()
        self._started = time.perf_counter()

    def on_stage_end(self, name: str, result: dict) -> None:
        self.records.append({"stage": name, "seconds": round(time.perf_counter() - self._started, 2),
                             "peak_rss_mb": round(max(self.sampler.peak, self.sampler.current()) / 2**20, 1)})


def run_child(spec_path: str) -> None:
    from xdistil.config import DistilConfig
    from xdistil.distill.pipeline import run_distillation

    spec = read_json(spec_path)
    sampler = PeakRSS()
    recorder = StageRecorder(sampler)
    start = time.perf_counter()
    metrics = run_distillation(DistilConfig.from_dict(spec["config"]), callbacks=[recorder])
    wall = time.perf_counter() - start
    records = recorder.records
    records.append({"stage": "other", "seconds": round(wall - sum(r["seconds"] for r in records), 2),
                    "peak_rss_mb": None, "what": "read/encode labeled data, load models, evaluate, save"})
    write_result(Path(spec["out"]), {"stages": records, "wall_seconds": round(wall, 2),
                                     "student_dev": metrics["student"]["dev"][metrics["metric"]],
                                     "rss_timeline_s_anon_mb_file_mb": sampler.timeline})


# --- the parent ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class MeasuredRun:
    """A distillation running in a subprocess, to be finished by `finish_measured`."""
    tag: str
    process: subprocess.Popen
    out: Path
    log_path: Path
    started: float
    cpu: int | None


def start_measured(config, work_dir: Path, tag: str, cpu: int | None = None) -> MeasuredRun:
    """Start one distillation in a subprocess (pinned to CPU `cpu` when given: TensorFlow then sizes its
    thread pools to that one CPU)."""
    spec = work_dir / f"{tag}.spec.json"
    out, log_path = work_dir / f"{tag}.result.json", work_dir / f"{tag}.log"
    spec.write_text(json.dumps({"config": dataclasses.asdict(config), "out": str(out)}))
    logging.info("running %s%s (log: %s)", tag, "" if cpu is None else f" on CPU {cpu}", log_path)
    pin = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
    with open(log_path, "w") as log_file:
        process = subprocess.Popen([sys.executable, __file__, f"--child_spec={spec}"], stdout=log_file,
                                   stderr=subprocess.STDOUT, preexec_fn=pin)
    return MeasuredRun(tag, process, out, log_path, time.perf_counter(), cpu)


def finish_measured(run: MeasuredRun) -> dict:
    """Wait for the run; its result plus the child's peak RSS (ru_maxrss from wait4) and CPU time."""
    _, status, usage = os.wait4(run.process.pid, 0)
    run.process.returncode = os.waitstatus_to_exitcode(status)
    if run.process.returncode != 0:
        tail = run.log_path.read_text()[-3000:]
        raise RuntimeError(f"{run.tag} failed with exit code {run.process.returncode}:\n{tail}")
    result = read_json(run.out)
    result.update(process_seconds=round(time.perf_counter() - run.started, 1),
                  maxrss_mb=round(usage.ru_maxrss / 1024, 1), cpu_seconds=round(usage.ru_utime + usage.ru_stime, 1))
    if run.cpu is not None:
        result["pinned_cpu"] = run.cpu
    return result


def finish_all(started: dict[str, MeasuredRun]) -> dict:
    """Wait for runs started together, by name; when one fails, the others are stopped rather than left running."""
    try:
        return {name: finish_measured(run) for name, run in started.items()}
    finally:
        for run in started.values():
            if run.process.returncode is None:
                run.process.kill()
                run.process.wait()


def run_measured(config, work_dir: Path, tag: str) -> dict:
    """Run one distillation in a subprocess on every CPU and wait for it."""
    return finish_measured(start_measured(config, work_dir, tag))


def measure_timing(base_model_dir: str, work_dir: Path, *, lines: int, representation_epochs: int,
                   logit_epochs: int, finetune_epochs: int, side_by_side: bool = True,
                   keep_work_dir: bool = False) -> dict:
    """The same run with the teacher-logit cache on and off; per-stage seconds and peak RSS of each."""
    from xdistil.config import read_run_config
    from xdistil.models.loading import resolve_checkpoint

    cpus = sorted(os.sched_getaffinity(0))
    side_by_side = side_by_side and len(cpus) >= 2
    # The base run's teacher through a link of its own, with no run's cache beside it: the cache_on run computes
    # the teacher's logits, as a fresh run does, instead of copying the base run's.
    teacher = work_dir / "teacher"
    work_dir.mkdir(parents=True, exist_ok=True)
    teacher.unlink(missing_ok=True)  # a link left by an earlier run may name another base run's teacher
    teacher.symlink_to(Path(resolve_checkpoint(run_teacher(read_run_config(base_model_dir)))).resolve())
    configs = {mode: base_config(base_model_dir, work_dir / f"timing_{mode}", teacher_logit_cache=cached,
                                 pt_teacher_checkpoint=str(teacher),
                                 max_transfer_lines=lines, representation_epochs=representation_epochs,
                                 logit_epochs=logit_epochs, finetune_epochs=finetune_epochs)
               for mode, cached in (("cache_on", True), ("cache_off", False))}
    if side_by_side:
        started = {mode: start_measured(config, work_dir, f"timing_{mode}", cpu)
                   for (mode, config), cpu in zip(configs.items(), cpus)}
        runs = finish_all(started)
    else:
        runs = {mode: run_measured(config, work_dir, f"timing_{mode}") for mode, config in configs.items()}
    if not keep_work_dir:
        for mode in runs:
            shutil.rmtree(work_dir / f"timing_{mode}")
    seconds = {mode: {r["stage"]: r["seconds"] for r in run["stages"]} | {"total": run["wall_seconds"]}
               for mode, run in runs.items()}
    flat = configs["cache_on"].flat_settings()
    settings = {k: flat[k] for k in ("task", "pt_teacher_checkpoint", "student_layers_from_teacher",
                                     "pt_student_checkpoint", "pt_student_layers", "max_transfer_lines", "seq_len",
                                     "batch_size", "eval_batch_size",
                                     "representation_epochs", "logit_epochs", "finetune_epochs")}
    settings["pt_teacher_checkpoint"] = str(teacher.resolve())  # not the link
    return {"settings": settings, "side_by_side": side_by_side, "runs": runs, "seconds": seconds,
            "off_over_on": round(runs["cache_off"]["wall_seconds"] / runs["cache_on"]["wall_seconds"], 3),
            "off_over_on_cpu": round(runs["cache_off"]["cpu_seconds"] / runs["cache_on"]["cpu_seconds"], 3)}


def repeated_transfer_file(source: str, lines: int, path: Path) -> Path:
    """`lines` lines made by cycling through the non-blank lines of the transfer file(s) `source`."""
    from xdistil.data.transfer import transfer_paths

    real = [line for file in transfer_paths(source)
            for line in Path(file).read_text(encoding="utf-8").splitlines() if line.strip()]
    with open(path, "w", encoding="utf-8") as f:
        f.writelines("\n".join(real[:min(len(real), lines - start)]) + "\n" for start in range(0, lines, len(real)))
    return path


def measure_memory(base_model_dir: str, work_dir: Path, line_counts: list[int]) -> dict:
    from tests.conftest import write_tiny_bert  # the tests' tiny random BERT, saved like a user's checkpoint
    from xdistil.config import read_run_config
    from xdistil.distill.teacher_cache import CACHE_DIR

    teacher = write_tiny_bert(work_dir / "tiny_teacher")
    run = read_run_config(base_model_dir)["data"]
    source = run["transfer_file"] or str(Path(run["task"]) / "train.tsv")
    runs = {}
    for lines in line_counts:
        transfer = repeated_transfer_file(source, lines, work_dir / f"transfer_{lines}.txt")
        model_dir = work_dir / f"memory_{lines}"
        config = base_config(base_model_dir, model_dir, pt_teacher_checkpoint=str(teacher), transfer_file=str(transfer),
                             student_layers_from_teacher=(0,), distil_multi_hidden_states=False,
                             distil_attention=False, representation_epochs=0, logit_epochs=1, finetune_epochs=1,
                             teacher_epochs=1, teacher_min_steps=0, allow_weak_teacher=True,
                             batch_size=FLAGS.memory_batch_size,
                             eval_batch_size=FLAGS.memory_batch_size, distil_chunk_size=FLAGS.memory_chunk_size,
                             max_transfer_lines=None, log_every_steps=200, checkpoint_every_steps=1000)
        result = run_measured(config, work_dir, f"memory_{lines}")
        cache = model_dir / CACHE_DIR
        result.update(transfer_file_mb=round(transfer.stat().st_size / 1e6, 1),
                      teacher_logit_cache_mb=round(sum(p.stat().st_size for p in cache.glob("*.npy")) / 1e6, 1))
        runs[str(lines)] = result
        if not FLAGS.keep_work_dir:
            shutil.rmtree(model_dir)
            transfer.unlink()
    return {"settings": {"teacher": "tests/conftest.write_tiny_bert (hidden 32, 2 layers)", "student_layers": [0],
                         "representation_epochs": 0, "logit_epochs": 1, "finetune_epochs": 1,
                         "batch_size": FLAGS.memory_batch_size, "distil_chunk_size": FLAGS.memory_chunk_size,
                         "transfer": f"real lines of {source} repeated"}, "runs": runs}


def main(argv):
    del argv
    if FLAGS.child_spec:
        run_child(FLAGS.child_spec)
        return
    logging.set_verbosity(logging.INFO)
    from xdistil.inference.onnx_serving import cpu_info

    work_dir = Path(FLAGS.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{FLAGS.name}.json"
    report = read_json(path) if path.exists() else {}  # parts not measured now keep their earlier figures
    report.update(benchmark="distill_cost", cpu=cpu_info(), base_model_dir=FLAGS.base_model_dir)
    if "timing" in FLAGS.parts:
        load = load_average()
        report["timing"] = measure_timing(
            FLAGS.base_model_dir, work_dir, lines=FLAGS.timing_lines, representation_epochs=FLAGS.representation_epochs,
            logit_epochs=FLAGS.logit_epochs, finetune_epochs=FLAGS.finetune_epochs,
            side_by_side=FLAGS.timing_side_by_side, keep_work_dir=FLAGS.keep_work_dir)
        report["timing"]["load_average_before_after"] = [load, load_average()]
    if "memory" in FLAGS.parts:
        load = load_average()
        report["memory"] = measure_memory(FLAGS.base_model_dir, work_dir, [int(n) for n in FLAGS.memory_lines])
        report["memory"]["load_average_before_after"] = [load, load_average()]
    write_result(path, report)
    logging.info("wrote %s", path)


if __name__ == "__main__":
    define_flags()
    app.run(main)
