"""A run killed with SIGKILL mid-stage resumes with the same command and ends where an uninterrupted run ends."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import write_task, write_tiny_bert

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # real distillations and exports


def _command(task, teacher, model_dir):
    return [sys.executable, str(ROOT / "run_xtreme_distil.py"), f"--task={task}", "--do_NER",
            f"--transfer_file={task / 'transfer.txt'}", f"--model_dir={model_dir}",
            f"--pt_teacher_checkpoint={teacher}", "--hidden_size=16", "--num_hidden_layers=2",
            "--num_attention_heads=2", "--intermediate_size=32", "--distil_multi_hidden_states",
            "--seq_len=16", "--batch_size=4", "--distil_chunk_size=16", "--teacher_epochs=1",
            "--representation_epochs=1", "--logit_epochs=2", "--finetune_epochs=1", "--checkpoint_every_steps=3",
            "--log_every_steps=3", "--distil_learning_rate=1e-3", "--teacher_min_steps=0", "--allow_weak_teacher"]


def _weights(model_dir):
    import h5py

    values = {}
    with h5py.File(model_dir / "model" / "tf_model.h5", "r") as f:
        f.visititems(lambda name, obj: values.__setitem__(name, obj[()]) if hasattr(obj, "shape") else None)
    return values


def test_sigkill_mid_stage_then_resume_matches_uninterrupted_run(tmp_path):
    teacher = write_tiny_bert(tmp_path / "teacher", hidden_size=32, num_layers=2, num_heads=4)
    task = write_task(tmp_path / "task", "ner", n_train=24, n_transfer=48)
    env = {**os.environ, "TF_DETERMINISTIC_OPS": "1", "PYTHONPATH": str(ROOT)}

    subprocess.run(_command(task, teacher, tmp_path / "straight"), env=env, check=True, timeout=600,
                   capture_output=True)

    resumed = tmp_path / "resumed"
    process = subprocess.Popen(_command(task, teacher, resumed), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    index = resumed / "checkpoints" / "logit" / "checkpoint"
    deadline = time.time() + 400
    while not index.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if process.poll() is not None:
        pytest.fail("the run ended before it could be killed mid-stage: " + process.stderr.read().decode()[-2000:])
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (resumed / "checkpoints" / "logit" / "DONE.json").exists()
    assert not (resumed / "model").exists()

    log = subprocess.run(_command(task, teacher, resumed), env=env, check=True, timeout=600,
                         capture_output=True, text=True).stderr
    assert "reusing fine-tuned teacher" in log and "[logit] resumed at epoch" in log

    straight, again = _weights(tmp_path / "straight"), _weights(resumed)
    assert straight.keys() == again.keys()
    for name in straight:
        np.testing.assert_allclose(again[name], straight[name], atol=1e-5, err_msg=name)
    # metrics.json keeps every stage's whole history (epochs before the kill included), train losses too.
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (tmp_path / "straight", resumed)]
    assert set(metrics[0]["stages"]) == set(metrics[1]["stages"]) == {"representation", "logit", "finetune"}
    for stage in metrics[0]["stages"]:
        before, after = (m["stages"][stage]["history"] for m in metrics)
        assert [h["epoch"] for h in after] == [h["epoch"] for h in before] and len(before) >= 1, stage
        for old, new in zip(before, after):
            assert new["train_loss"] == pytest.approx(old["train_loss"], rel=1e-4, abs=1e-6), stage
            assert ("dev" in new) == ("dev" in old), stage
            if "dev" in old:
                assert new["dev"]["f1"] == pytest.approx(old["dev"]["f1"], abs=1e-6), stage
