"""The benchmark scripts' pure helpers: request lines, label agreement, repeated transfer files (no models)."""
import pytest

from bench import common, distill_cost
from xdistil.data.readers import NerExample, TextExample
from xdistil.tasks import get_task


@pytest.mark.parametrize("kind, example, line", [
    ("ner", NerExample(("John", "lives", "in", "Paris"), ("B-PER", "O", "O", "B-LOC")), "John lives in Paris"),
    ("pairwise", TextExample("a good film", "a bad plot", "0"), "a good film\ta bad plot"),
    ("classification", TextExample("a good film", None, "1"), "a good film"),
])
def test_requests_are_the_unlabeled_format(kind, example, line):
    task = get_task(kind)
    assert task.unlabeled_line(example) == line
    assert task.parse_unlabeled(line, "requests", 1) == task.without_labels(example)


def test_label_agreement():
    ner = common.label_agreement("ner", ["B-PER O O B-LOC", "O O"], ["B-PER O O O", "O O"])
    assert ner == {"requests": 0.5, "words": pytest.approx(5 / 6)}
    text = common.label_agreement("classification", ["1\t0.900000", "0\t0.600000"], ["1\t0.700000", "1\t0.800000"])
    assert text == {"requests": 0.5}


def test_repeated_transfer_file(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("one\n\ntwo\nthree\n", encoding="utf-8")
    path = distill_cost.repeated_transfer_file(str(source), 7, tmp_path / "out.txt")
    assert path.read_text(encoding="utf-8").splitlines() == ["one", "two", "three"] * 2 + ["one"]
