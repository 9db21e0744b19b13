"""Predict or evaluate with a distilled TensorFlow student:

    python run_predict.py --model_dir out/ner --do_eval --do_predict --pred_file DATA/unlabeled.txt
"""
import sys

import xdistil  # noqa: F401  (must precede TensorFlow: selects Keras 2)

from absl import app, flags, logging

from xdistil.data.errors import InputFormatError

flags.DEFINE_string("model_dir", None, "Model directory written by run_xtreme_distil.py.")
flags.DEFINE_string("pred_file", None, "File to predict, in the transfer-file format of the task.")
flags.DEFINE_string("output_file", None, "Where predictions go (default: <model_dir>/predictions.txt).")
flags.DEFINE_bool("do_eval", False, "Score the task's test.tsv (or --eval_file).")
flags.DEFINE_string("eval_file", None, "Labeled file to score instead of the task's test.tsv.")
flags.DEFINE_bool("do_predict", False, "Write predictions for --pred_file, in input order.")
flags.DEFINE_integer("batch_size", 64, "Prediction batch size.")
flags.DEFINE_enum("opt_policy", "float32", ["float32", "mixed_float16", "mixed_bfloat16"], "Precision policy.")
flags.mark_flag_as_required("model_dir")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    from xdistil.inference.tf_prediction import run_tf_prediction

    if not (FLAGS.do_eval or FLAGS.do_predict):
        raise app.UsageError("give --do_eval and/or --do_predict")
    if FLAGS.do_predict and not FLAGS.pred_file:
        raise app.UsageError("--do_predict needs --pred_file")
    try:
        run_tf_prediction(FLAGS.model_dir, pred_file=FLAGS.pred_file if FLAGS.do_predict else None,
                          output_file=FLAGS.output_file, eval_file=FLAGS.eval_file, do_eval=FLAGS.do_eval,
                          batch_size=FLAGS.batch_size, opt_policy=FLAGS.opt_policy)
    except (InputFormatError, OSError) as error:  # bad input, missing file
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    app.run(main)
