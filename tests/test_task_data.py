import pytest

from conftest import write_task
from xdistil.data.errors import InputFormatError
from xdistil.task_data import read_task_files


def test_labels_file_fixes_the_list_and_train_is_checked_against_it(tmp_path):
    task = write_task(tmp_path / "task", "classification")
    (task / "labels.tsv").write_text("1\n0\n")
    labels, splits = read_task_files(str(task), "classification")
    assert labels == ["1", "0"] and len(splits["train"]) == 48 and splits["test"] is not None
    lines = (task / "train.tsv").read_text().splitlines()
    lines[4] = lines[4].rsplit("\t", 1)[0] + "\t2"
    (task / "train.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputFormatError, match=r"train.tsv:5: unknown label '2'"):
        read_task_files(str(task), "classification")


def test_without_labels_file_the_list_comes_from_train(tmp_path):
    task = write_task(tmp_path / "task", "classification")
    labels, splits = read_task_files(str(task), "classification", max_train_examples=10)
    assert labels == ["0", "1"] and len(splits["train"]) == 10
