import json

import numpy as np
import pytest

from conftest import write_task
from xdistil.config import load_run_config
from xdistil.finetune import FinetuneOptions, run_finetune
from xdistil.inference.tf_prediction import run_tf_prediction


def _word_embedding(model_dir):
    import h5py

    with h5py.File(model_dir / "model" / "tf_model.h5", "r") as f:
        names = []
        f.visit(names.append)
        (name,) = [n for n in names if n.endswith("word_embeddings/weight:0")]
        return f[name][()]


def test_finetune_writes_a_model_directory_and_keeps_frozen_embeddings(distilled_ner_dir, tmp_path):
    task = write_task(tmp_path / "new_task", "ner", n_train=32, seed=7)
    out = tmp_path / "more"
    metrics = run_finetune(str(distilled_ner_dir), str(out),
                           FinetuneOptions(task=str(task), epochs=2, batch_size=8, learning_rate=1e-3))
    assert set(metrics["student"]) == {"dev_before", "dev", "test"}
    assert json.loads((out / "metrics.json").read_text())["student"]["dev"] == metrics["student"]["dev"]
    run = load_run_config(out)
    assert run["task"] == str(task) and run["finetuned_from"] == str(distilled_ner_dir)
    assert run["labels"] == load_run_config(distilled_ner_dir)["labels"]
    np.testing.assert_array_equal(_word_embedding(out), _word_embedding(distilled_ner_dir))
    assert (out / "checkpoints" / "finetune" / "DONE.json").exists()
    # run_predict accepts the new directory and scores its task's test file.
    result = run_tf_prediction(str(out), do_eval=True)
    assert result["eval"]["f1"] == pytest.approx(metrics["student"]["test"]["f1"], abs=1e-9)


def test_finetune_refuses_unknown_labels_with_file_and_line(distilled_ner_dir, tmp_path):
    from xdistil.data.errors import InputFormatError

    task = write_task(tmp_path / "task", "ner", n_train=8)
    lines = (task / "train.tsv").read_text().splitlines()
    lines[1] = lines[1].replace("B-PER", "B-MISC", 1)
    (task / "train.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputFormatError, match=r"train.tsv:2:.*B-MISC"):
        run_finetune(str(distilled_ner_dir), str(tmp_path / "out"), FinetuneOptions(task=str(task)))
    assert not (tmp_path / "out").exists()
