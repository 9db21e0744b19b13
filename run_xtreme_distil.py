"""Distil a teacher into a small student: python run_xtreme_distil.py --flagfile configs/demo_ner.cfg"""
import xdistil  # noqa: F401  (must precede TensorFlow: selects Keras 2)

from absl import flags, logging

from xdistil import cli
from xdistil.distill_flags import config_from_flags, define_flags

define_flags()


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    config = config_from_flags(flags.FLAGS)  # every setting checked before anything is read
    from xdistil.distill.pipeline import run_distillation

    run_distillation(config, overwrite=flags.FLAGS.overwrite)


if __name__ == "__main__":
    cli.main(main)
