"""The same short distillation under each tf.distribute strategy, side by side:

    python bench/strategies.py --base_model_dir out/rt_polarity

default (one device), mirrored on --num_virtual_cpus logical CPUs, and multi_worker with two worker
processes on localhost (TF_CONFIG with two 127.0.0.1 ports, one model directory). Each run reuses the base
run's settings and fine-tuned teacher, with fewer epochs and lines, the same global batch size and seed.
Writes bench/results/<name>.json: per strategy, wall time, dev/test scores and per-stage train losses.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `python bench/...`
import xdistil  # noqa: F401  (first: selects Keras 2 before TensorFlow loads)

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import time

from absl import app, flags, logging

from bench.common import RESULTS_DIR, base_config, load_average, read_json, write_result

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("base_model_dir", "out/rt_polarity", "Finished run whose settings, task and teacher are reused.")
    flags.DEFINE_list("strategies", ["default", "mirrored", "multi_worker"], "Strategies to run, in this order.")
    flags.DEFINE_integer("num_virtual_cpus", 2, "Logical CPUs of the mirrored run.")
    flags.DEFINE_integer("workers", 2, "Worker processes of the multi_worker run (all on localhost).")
    flags.DEFINE_integer("max_transfer_lines", 2000, "Transfer lines.")
    flags.DEFINE_integer("max_train_examples", 2000, "Labeled training examples.")
    flags.DEFINE_integer("representation_epochs", 1, "Stage 1 epochs.")
    flags.DEFINE_integer("logit_epochs", 1, "Stage 2 epochs.")
    flags.DEFINE_integer("finetune_epochs", 1, "Stage 3 epochs.")
    flags.DEFINE_string("work_dir", "/tmp/xdistil_strategies", "Scratch folder for the model dirs.")
    flags.DEFINE_string("name", "strategies", "Results name: bench/results/<name>.json.")
    flags.DEFINE_string("child_spec", None, "Internal: run one distillation from this spec file.")


def run_child(spec_path: str) -> None:
    from xdistil.config import DistilConfig
    from xdistil.distill.pipeline import run_distillation

    run_distillation(DistilConfig.from_dict(read_json(spec_path)))


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_strategy(strategy: str, work_dir: Path) -> dict:
    """One distillation under `strategy` in fresh processes; wall time, scores, per-stage train losses."""
    model_dir = work_dir / strategy
    config = base_config(FLAGS.base_model_dir, model_dir, strategy=strategy, max_transfer_lines=FLAGS.max_transfer_lines,
                         max_train_examples=FLAGS.max_train_examples, representation_epochs=FLAGS.representation_epochs,
                         logit_epochs=FLAGS.logit_epochs, finetune_epochs=FLAGS.finetune_epochs,
                         num_virtual_cpus=FLAGS.num_virtual_cpus if strategy == "mirrored" else None)
    spec = work_dir / f"{strategy}.spec.json"
    spec.write_text(json.dumps(dataclasses.asdict(config)))
    processes = 1
    environments = [dict(os.environ)]
    if strategy == "multi_worker":
        processes = FLAGS.workers
        cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(processes)]}
        environments = [{**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                                                                "index": i}})}
                        for i in range(processes)]
    logging.info("running %s (%d process%s, logs in %s)", strategy, processes, "es" if processes > 1 else "", work_dir)
    start = time.perf_counter()
    running = [subprocess.Popen([sys.executable, __file__, f"--child_spec={spec}"], env=env,
                                stdout=subprocess.DEVNULL, stderr=open(work_dir / f"{strategy}.{i}.log", "w"))
               for i, env in enumerate(environments)]
    codes = [p.wait() for p in running]
    wall = time.perf_counter() - start
    if any(codes):
        tail = (work_dir / f"{strategy}.0.log").read_text()[-3000:]
        raise RuntimeError(f"{strategy} failed with exit codes {codes}:\n{tail}")
    metrics = read_json(model_dir / "metrics.json")
    metric = metrics["metric"]
    losses = {marker.parent.name: [epoch["train_loss"] for epoch in read_json(marker)["history"]]
              for marker in (model_dir / "checkpoints").glob("*/DONE.json")}
    return {"wall_seconds": round(wall, 1), "processes": processes, "distribution": metrics["distribution"],
            "teacher_dev": metrics["teacher"]["dev"][metric], "student_dev": metrics["student"]["dev"][metric],
            "student_test": metrics["student"].get("test", {}).get(metric), "train_losses": losses,
            "stage_seconds": {name: stage.get("seconds") for name, stage in metrics["stages"].items()}}


def main(argv):
    del argv
    if FLAGS.child_spec:
        run_child(FLAGS.child_spec)
        return
    work_dir = Path(FLAGS.work_dir)
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    load_before = load_average()
    runs = {strategy: run_strategy(strategy, work_dir) for strategy in FLAGS.strategies}
    base = runs[FLAGS.strategies[0]]
    from xdistil.config import DistilConfig

    flat = DistilConfig.from_dict(read_json(work_dir / f"{FLAGS.strategies[0]}.spec.json")).flat_settings()
    settings = {k: flat[k] for k in ("task", "pt_teacher_checkpoint", "student_layers_from_teacher", "batch_size",
                                     "seq_len", "max_transfer_lines", "max_train_examples", "representation_epochs",
                                     "logit_epochs", "finetune_epochs", "seed")}
    result = {"settings": settings, "cpu_count": os.cpu_count(), "load_average_before": load_before,
              "load_average_after": load_average(), "runs": runs}
    path = write_result(RESULTS_DIR / f"{FLAGS.name}.json", result)
    print(f"{'strategy':<14} {'processes':>9} {'replicas':>8} {'wall s':>8} {'student dev':>11} {'test':>7}")
    for strategy, run in runs.items():
        print(f"{strategy:<14} {run['processes']:>9} {run['distribution']['replicas']:>8} {run['wall_seconds']:>8.1f} "
              f"{run['student_dev']:>11.4f} {run['student_test'] or float('nan'):>7.4f}")
    print(f"teacher dev {base['teacher_dev']:.4f}; results: {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
