import os

import pytest

from conftest import write_task
from xdistil.errors import InputFileError, InputFormatError
from xdistil.task_data import read_task_files
from xdistil.tasks import get_task

CLASSIFICATION = get_task("classification")


def test_labels_file_fixes_the_list_and_train_is_checked_against_it(tmp_path):
    task = write_task(tmp_path / "task", "classification")
    (task / "labels.tsv").write_text("1\n0\n")
    labels, splits = read_task_files(CLASSIFICATION, str(task))
    assert labels == ["1", "0"] and len(splits["train"]) == 48 and splits["test"] is not None
    lines = (task / "train.tsv").read_text().splitlines()
    lines[4] = lines[4].rsplit("\t", 1)[0] + "\t2"
    (task / "train.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputFormatError, match=r"train.tsv:5: unknown label '2'"):
        read_task_files(CLASSIFICATION, str(task))


def test_without_labels_file_the_list_comes_from_train(tmp_path):
    task = write_task(tmp_path / "task", "classification")
    labels, splits = read_task_files(CLASSIFICATION, str(task), max_train_examples=10)
    assert labels == ["0", "1"] and len(splits["train"]) == 10


def test_a_stray_labels_file_in_the_working_directory_is_not_read(tmp_path, monkeypatch):
    task = write_task(tmp_path / "task", "classification")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "labels.tsv").write_text("a\nb\n")  # not the task's: would make every label unknown
    labels, _ = read_task_files(CLASSIFICATION, None, train_file=str(task / "train.tsv"),
                                dev_file=str(task / "dev.tsv"))
    assert labels == ["0", "1"] and os.getcwd() == str(tmp_path)


@pytest.mark.parametrize("remove, message", [
    (None, "no such task folder"), ("train.tsv", "the training examples are needed"),
    ("dev.tsv", "model selection needs a dev set")])
def test_missing_files_are_named(tmp_path, remove, message):
    task = write_task(tmp_path / "task", "classification")
    if remove:
        (task / remove).unlink()
    folder = str(task) if remove else str(tmp_path / "nowhere")
    with pytest.raises(InputFileError, match=message) as caught:
        read_task_files(CLASSIFICATION, folder)
    assert caught.value.where.endswith(remove or "nowhere")


def test_an_empty_train_file_is_refused(tmp_path):
    task = write_task(tmp_path / "task", "classification")
    (task / "train.tsv").write_text("\n \n")
    with pytest.raises(InputFileError, match="no examples"):
        read_task_files(CLASSIFICATION, str(task))
