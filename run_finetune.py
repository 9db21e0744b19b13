"""Continue fine-tuning a distilled student on labeled data:

    python run_finetune.py --model_dir out/ner --output_dir out/ner_more --task DATA/new_task

or prune it first (heads, feed-forward neurons, layers), then recover by distillation and fine-tuning:

    python run_finetune.py --model_dir out/ner --output_dir out/ner_pruned --task DATA/ner \
        --prune_heads 6 --prune_ffn_fraction 0.5 --drop_layers 1
"""
import xdistil  # noqa: F401  (must precede TensorFlow: selects Keras 2)

from absl import flags, logging

from xdistil import cli
from xdistil.finetune import RUN_SECTIONS

for section in RUN_SECTIONS.values():
    cli.define_flags(section)
flags.DEFINE_bool("overwrite", False, "When --output_dir holds a run made with other settings or inputs, delete it "
                                      "and start over.")


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    finetune, trainer, runtime, pruning = (cli.section_from_flags(section) for section in RUN_SECTIONS.values())
    from xdistil.finetune import run_finetune

    run_finetune(finetune, trainer, runtime, overwrite=flags.FLAGS.overwrite, pruning=pruning)


if __name__ == "__main__":
    cli.main(main)
