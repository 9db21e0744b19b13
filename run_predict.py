"""Predict or evaluate with a distilled TensorFlow student:

    python run_predict.py --model_dir out/ner --do_eval --do_predict --pred_file DATA/unlabeled.txt
"""
import xdistil  # noqa: F401  (must precede TensorFlow: selects Keras 2)

from absl import flags, logging

from xdistil import cli
from xdistil.inference.tf_prediction import PredictOptions

flags.DEFINE_string("model_dir", None, "Model directory written by run_xtreme_distil.py or run_finetune.py.")
cli.define_flags(PredictOptions)


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    options = cli.section_from_flags(PredictOptions)
    from xdistil.inference.tf_prediction import run_tf_prediction
    from xdistil.model_dir import ModelDirectory

    run_tf_prediction(ModelDirectory.load(cli.required(flags.FLAGS, "model_dir")), options)


if __name__ == "__main__":
    cli.main(main)
