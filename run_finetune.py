"""Continue fine-tuning a distilled student on labeled data:

    python run_finetune.py --model_dir out/ner --output_dir out/ner_more --task DATA/new_task
"""
import sys

import xdistil  # noqa: F401  (must precede TensorFlow: selects Keras 2)

from absl import app, flags, logging

from xdistil.data.errors import InputFormatError
from xdistil.distill_flags import define_distribution_flags

flags.DEFINE_string("model_dir", None, "Model directory of the student to continue from.")
flags.DEFINE_string("output_dir", None, "New model directory (resumes a run found there).")
flags.DEFINE_string("task", None, "Task folder with train.tsv and dev.tsv (test.tsv optional).")
flags.DEFINE_string("train_file", None, "Labeled train file (instead of --task).")
flags.DEFINE_string("dev_file", None, "Labeled dev file (instead of --task).")
flags.DEFINE_string("test_file", None, "Labeled test file, scored once at the end.")
flags.DEFINE_integer("epochs", 3, "Epochs.")
flags.DEFINE_float("learning_rate", 3e-5, "Peak learning rate (warm-up, then linear decay).")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("early_stopping_patience", 2, "Epochs without dev improvement before stopping.")
flags.DEFINE_bool("gradual_unfreezing", True, "Unfreeze from the top, one layer group at a time.")
flags.DEFINE_enum("opt_policy", "float32", ["float32", "mixed_float16", "mixed_bfloat16"], "Precision policy.")
flags.DEFINE_integer("seed", 42, "Random seed.")
define_distribution_flags()
flags.mark_flags_as_required(["model_dir", "output_dir"])
FLAGS = flags.FLAGS


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    from xdistil.distill.distribution import LOST_WORKER_ERRORS, lost_worker_message
    from xdistil.finetune import FinetuneOptions, run_finetune

    if not FLAGS.task and not (FLAGS.train_file and FLAGS.dev_file):
        raise app.UsageError("give --task, or --train_file and --dev_file")
    options = FinetuneOptions(
        task=FLAGS.task, train_file=FLAGS.train_file, dev_file=FLAGS.dev_file, test_file=FLAGS.test_file,
        epochs=FLAGS.epochs, learning_rate=FLAGS.learning_rate, batch_size=FLAGS.batch_size,
        early_stopping_patience=FLAGS.early_stopping_patience, gradual_unfreezing=FLAGS.gradual_unfreezing,
        opt_policy=FLAGS.opt_policy, seed=FLAGS.seed, strategy=FLAGS.strategy,
        num_virtual_cpus=FLAGS.num_virtual_cpus, tpu=FLAGS.tpu, batch_size_scope=FLAGS.batch_size_scope)
    try:
        run_finetune(FLAGS.model_dir, FLAGS.output_dir, options)
    except (InputFormatError, OSError) as error:  # bad input, missing file
        sys.exit(f"error: {error}")
    except LOST_WORKER_ERRORS as error:  # multi-worker: a peer died; every worker stops, none hangs
        sys.exit(f"error: {lost_worker_message(error)}")


if __name__ == "__main__":
    app.run(main)
