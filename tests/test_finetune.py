import json

import numpy as np
import pytest

from conftest import write_task
from xdistil.config import TrainerConfig, read_run_config
from xdistil.errors import ConfigError, InputFormatError, ModelDirectoryError
from xdistil.finetune import FinetuneConfig, run_finetune
from xdistil.inference.tf_prediction import PredictOptions, run_tf_prediction
from xdistil.model_dir import ModelDirectory


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
    settings = FinetuneConfig(model_dir=str(distilled_ner_dir), output_dir=str(out), task=str(task), epochs=2,
                              learning_rate=1e-3, seq_len=24)
    metrics = run_finetune(settings, TrainerConfig(batch_size=8, warmup_ratio=0.2, weight_decay=0.0))
    assert set(metrics["student"]) == {"dev_before", "dev", "test"}
    assert json.loads((out / "metrics.json").read_text())["student"]["dev"] == metrics["student"]["dev"]
    run = read_run_config(out)
    assert run["data"]["task"] == str(task) and run["finetuned_from"] == str(distilled_ner_dir)
    assert run["labels"] == read_run_config(distilled_ner_dir)["labels"]
    # The settings it was given, not silently inherited ones: seq_len, warm-up, weight decay.
    assert run["data"]["seq_len"] == 24 and run["trainer"]["warmup_ratio"] == 0.2
    assert run["trainer"]["weight_decay"] == 0.0 and run["finetune"]["learning_rate"] == 1e-3
    np.testing.assert_array_equal(_word_embedding(out), _word_embedding(distilled_ner_dir))
    assert (out / "checkpoints" / "finetune" / "DONE.json").exists()
    # run_predict accepts the new directory and scores its task's test file.
    result = run_tf_prediction(ModelDirectory.load(out), PredictOptions(do_eval=True))
    assert result["eval"]["f1"] == pytest.approx(metrics["student"]["test"]["f1"], abs=1e-9)


def test_finetune_refuses_unknown_labels_with_file_and_line(distilled_ner_dir, tmp_path):
    task = write_task(tmp_path / "task", "ner", n_train=8)
    lines = (task / "train.tsv").read_text().splitlines()
    lines[1] = lines[1].replace("B-PER", "B-MISC", 1)
    (task / "train.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputFormatError, match=r"train.tsv:2:.*B-MISC"):
        run_finetune(FinetuneConfig(model_dir=str(distilled_ner_dir), output_dir=str(tmp_path / "out"),
                                    task=str(task)))
    assert not (tmp_path / "out").exists()


def test_finetune_settings_are_checked_before_anything_runs(distilled_ner_dir, tmp_path):
    with pytest.raises(ConfigError, match="must differ") as caught:
        FinetuneConfig(model_dir=str(distilled_ner_dir), output_dir=str(distilled_ner_dir), task="t")
    assert caught.value.flag == "--output_dir"
    with pytest.raises(ConfigError, match="give --task"):
        FinetuneConfig(model_dir="a", output_dir="b")
    task = write_task(tmp_path / "task", "ner", n_train=8)
    with pytest.raises(ConfigError, match="longer than the 128 positions") as caught:
        run_finetune(FinetuneConfig(model_dir=str(distilled_ner_dir), output_dir=str(tmp_path / "out"),
                                    task=str(task), seq_len=512))
    assert caught.value.flag == "--seq_len" and not (tmp_path / "out").exists()


def test_finetune_into_a_directory_of_another_run_is_refused(distilled_ner_dir, tmp_path):
    task = write_task(tmp_path / "task", "ner", n_train=8)
    out = tmp_path / "out"
    settings = dict(model_dir=str(distilled_ner_dir), output_dir=str(out), task=str(task), epochs=1)
    first = run_finetune(FinetuneConfig(**settings), TrainerConfig(batch_size=8))
    config_before = (out / "xtremedistil-config.json").read_bytes()
    with pytest.raises(ModelDirectoryError, match="--epochs 1 -> 2"):
        run_finetune(FinetuneConfig(**{**settings, "epochs": 2}), TrainerConfig(batch_size=8))
    assert (out / "xtremedistil-config.json").read_bytes() == config_before
    again = run_finetune(FinetuneConfig(**settings), TrainerConfig(batch_size=8))  # identical: finds it done
    assert again["stages"] == first["stages"] and again["student"]["dev"] == first["student"]["dev"]
