"""Distil a teacher into a small student: python run_xtreme_distil.py --flagfile configs/demo_ner.cfg"""
import sys

import xdistil  # noqa: F401  (must precede TensorFlow: selects Keras 2)

from absl import app, flags, logging

from xdistil.data.errors import InputFormatError

from xdistil.distill_flags import config_from_flags, define_flags

define_flags()


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    from xdistil.distill.distribution import LOST_WORKER_ERRORS, lost_worker_message
    from xdistil.distill.pipeline import run_distillation

    try:
        config = config_from_flags(flags.FLAGS)
    except ValueError as error:
        raise app.UsageError(str(error))
    try:
        run_distillation(config)
    except (InputFormatError, OSError) as error:  # bad input, missing file or checkpoint
        sys.exit(f"error: {error}")
    except LOST_WORKER_ERRORS as error:  # multi-worker: a peer died; every worker stops, none hangs
        sys.exit(f"error: {lost_worker_message(error)}")


if __name__ == "__main__":
    app.run(main)
