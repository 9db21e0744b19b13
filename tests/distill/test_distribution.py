"""tf.distribute: global batches split over replicas, global loss normalisation, the parallel teacher-logit
cache, and real runs under mirrored (2 logical CPUs) and two local multi_worker processes."""
import xdistil  # noqa: F401

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from transformers import BertConfig, TFBertForTokenClassification

from conftest import write_task, write_tiny_bert
from xdistil.data.encoding import IGNORE_INDEX, EncodingSettings, Features
from xdistil.distill import distribution as dist
from xdistil.distill.distribution import Distribution
from xdistil.distill.stage_losses import cross_entropy_loss, logit_distillation_loss, representation_loss
from xdistil.distill.teacher_cache import TeacherLogitCache, worker_rows
from xdistil.distill.trainer import COUNT_KEYS, training_batch
from xdistil.tasks import get_task

NER = get_task("ner")

ROOT = Path(__file__).resolve().parents[2]


def _ner_features(n=7, length=12, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, length - 2, n)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int32)
    ids = rng.integers(5, 40, (n, length)).astype(np.int32) * mask
    word_ids = np.where(mask.astype(bool) & (rng.random((n, length)) < 0.7), 1, -1).astype(np.int32)
    labels = np.where(word_ids >= 0, rng.integers(0, 3, (n, length)), IGNORE_INDEX).astype(np.int32)
    return Features(ids, mask, np.zeros_like(ids), labels, word_ids, np.arange(n, dtype=np.int32), n)


def test_training_batch_pads_rows_and_counts_over_the_global_batch():
    features = _ner_features()
    logits = np.random.default_rng(1).normal(size=(7, 12, 3)).astype(np.float16)
    rows = np.array([0, 2, 3, 5, 6])
    batch = training_batch(features, rows, NER, logits, row_multiple=4)
    length = batch["input_ids"].shape[1]
    assert length % 8 == 0 and length >= features.attention_mask[rows].sum(1).max()
    assert batch["input_ids"].shape == (8, length) and batch["teacher_logits"].shape == (8, length, 3)
    np.testing.assert_array_equal(batch["example_mask"], [1, 1, 1, 1, 1, 0, 0, 0])
    assert not batch["attention_mask"][5:].any() and (batch["labels"][5:] == IGNORE_INDEX).all()
    assert (batch["word_ids"][5:] == -1).all() and not batch["teacher_logits"][5:].any()
    assert batch["real_tokens"] == features.attention_mask[rows].sum()
    assert batch["labeled_positions"] == (features.labels[rows] != IGNORE_INDEX).sum()
    assert batch["logit_positions"] == (features.word_ids[rows] >= 0).sum()
    static = training_batch(features, rows, NER, logits, row_multiple=6, length=12)  # TPU: fixed shapes
    assert static["input_ids"].shape == (6, 12) and static["teacher_logits"].shape == (6, 12, 3)


def _slice(batch, start, stop):
    return {k: tf.constant(v if k in COUNT_KEYS else v[start:stop]) for k, v in batch.items()}


def test_replica_losses_add_up_to_the_global_batch_loss():
    """Sum over masked positions / global count on each replica, summed, is the single-device mean
    (not a mean of per-replica means: the two halves hold different numbers of real tokens)."""
    tf.keras.utils.set_random_seed(0)
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    student, teacher = TFBertForTokenClassification(config), TFBertForTokenClassification(config)
    for model in (student, teacher):
        model(model.dummy_inputs)
    projection = tf.keras.layers.Dense(16)
    features = _ner_features()
    logits = np.random.default_rng(1).normal(size=(7, 12, 3)).astype(np.float16)
    batch = training_batch(features, np.arange(7), NER, logits, row_multiple=2)
    whole = {k: tf.constant(v) for k, v in batch.items() if k not in COUNT_KEYS}
    losses = [cross_entropy_loss(student), logit_distillation_loss(student, NER, "kl", 2.0),
              representation_loss(teacher, student, [projection], [(2, 2)], True, "kl")]
    for compute in losses:
        expected = compute(whole, training=False)["loss"]
        halves = compute(_slice(batch, 0, 4), False)["loss"] + compute(_slice(batch, 4, 8), False)["loss"]
        np.testing.assert_allclose(halves, expected, rtol=1e-5)
        mean_of_means = (compute({k: v for k, v in _slice(batch, 0, 4).items() if k not in COUNT_KEYS}, False)
                         ["loss"] + compute({k: v for k, v in _slice(batch, 4, 8).items() if k not in COUNT_KEYS},
                                            False)["loss"]) / 2
        assert abs(float(mean_of_means) - float(expected)) > 1e-4


def test_worker_rows_split_whole_prediction_batches():
    for num_rows, block, workers in ((24, 8, 2), (23, 8, 2), (5, 8, 3), (100, 7, 3)):
        shares = [worker_rows(num_rows, block, k, workers) for k in range(workers)]
        np.testing.assert_array_equal(np.sort(np.concatenate(shares)), np.arange(num_rows))
        for share in shares:
            assert all(len(set(share[i:i + block] // block)) == 1 for i in range(0, len(share), block))


def test_merged_parts_equal_a_single_worker_cache(tmp_path):
    logits = np.random.default_rng(0).normal(size=(21, 4, 3)).astype(np.float32)
    single = TeacherLogitCache(tmp_path / "single", {"k": 1})
    single.put(0, logits)
    shared = TeacherLogitCache(tmp_path / "shared", {"k": 1})
    for k in range(3):
        shared.put_part(0, k, 3, logits[worker_rows(21, 4, k, 3)])
    assert shared.has_part(0, 2, 3) and 0 not in shared
    shared.merge_parts(3, 4)
    np.testing.assert_array_equal(shared.get(0), single.get(0))
    assert not list((tmp_path / "shared").glob("part_*")) and shared.chunk_rows() == {0: 21}


def test_batch_sizes_are_global_or_per_replica(monkeypatch):
    distribution = Distribution(tf.distribute.get_strategy())
    assert distribution.is_chief and distribution.num_replicas == 1 and distribution.num_workers == 1
    assert distribution.global_batch_size(32, "global") == distribution.global_batch_size(32, "per_replica") == 32
    monkeypatch.setattr(Distribution, "num_replicas", property(lambda self: 4))
    assert distribution.global_batch_size(32, "global") == 32
    assert distribution.global_batch_size(32, "per_replica") == 128
    with pytest.raises(ValueError, match="batch_size_scope"):
        distribution.global_batch_size(32, "local")


def test_strategy_flags_are_checked(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        dist.make_strategy("multi_worker")
    with pytest.raises(ValueError, match="--tpu"):
        dist.make_strategy("tpu")
    with pytest.raises(ValueError, match="--strategy"):
        dist.make_strategy("parameter_server")


def test_tpu_strategy_follows_the_documented_setup(monkeypatch):
    """No TPU here: check the calls TPUStrategy's documentation prescribes, in order."""
    calls = []

    class Resolver:
        def __init__(self, tpu):
            calls.append(("resolver", tpu))

    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", Resolver)
    monkeypatch.setattr(tf.config, "experimental_connect_to_cluster", lambda r: calls.append(("connect", type(r))))
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system", lambda r: calls.append(("init", type(r))))
    monkeypatch.setattr(tf.distribute, "TPUStrategy", lambda r: calls.append(("strategy", type(r))) or "tpu")
    assert dist.make_strategy("tpu", tpu="grpc://10.0.0.2:8470") == "tpu"
    assert calls == [("resolver", "grpc://10.0.0.2:8470"), ("connect", Resolver), ("init", Resolver),
                     ("strategy", Resolver)]


# --- Real runs in fresh processes (a strategy must be made before TensorFlow starts). ---

def _command(task, teacher, model_dir, kind, *extra):
    """A random student: one cut from the teacher starts with a logit loss near 1e-3, where summation order
    alone moves the losses by more than a relative tolerance can tell from a real difference."""
    return [sys.executable, str(ROOT / "run_xtreme_distil.py"), f"--task={task}",
            "--do_NER" if kind == "ner" else "--nodo_NER", f"--transfer_file={task / 'transfer.txt'}",
            f"--model_dir={model_dir}", f"--pt_teacher_checkpoint={teacher}", "--hidden_size=16",
            "--num_hidden_layers=2", "--num_attention_heads=2", "--intermediate_size=32", "--student_init=random",
            "--distil_multi_hidden_states", "--distil_attention", "--seq_len=16", "--batch_size=5",
            "--eval_batch_size=8", "--distil_chunk_size=24", "--teacher_epochs=1", "--representation_epochs=1",
            "--logit_epochs=2", "--finetune_epochs=1", "--checkpoint_every_steps=3", "--log_every_steps=3",
            "--distil_learning_rate=1e-3", "--teacher_min_steps=0", "--allow_weak_teacher", *extra]


def _env(**extra):
    return {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", **extra}


def _train_losses(model_dir):
    """Per-epoch train losses of every stage, the teacher's fine-tuning included."""
    checkpoints = model_dir / "checkpoints"
    return {marker.parent.name: [epoch["train_loss"] for epoch in json.loads(marker.read_text())["history"]]
            for marker in checkpoints.glob("*/DONE.json")}


@pytest.fixture(scope="module")
def ner_task(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    return (write_task(root / "task", "ner", n_train=30, n_transfer=50),
            write_tiny_bert(root / "teacher", hidden_size=32, num_layers=2, num_heads=4))


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_the_default_strategy(tmp_path, ner_task):
    """Batch 5 over 2 replicas: uneven shares padded with empty rows; every stage, teacher fine-tuning
    included, gives the default strategy's losses and scores."""
    task, teacher = ner_task
    for name, extra in (("default", ()), ("mirrored", ("--strategy=mirrored", "--num_virtual_cpus=2"))):
        result = subprocess.run(_command(task, teacher, tmp_path / name, "ner", *extra), env=_env(),
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    assert "2 replicas in sync" in result.stderr
    default, mirrored = _train_losses(tmp_path / "default"), _train_losses(tmp_path / "mirrored")
    assert default.keys() == mirrored.keys() == {"teacher", "representation", "logit", "finetune"}
    for stage in default:
        np.testing.assert_allclose(mirrored[stage], default[stage], rtol=2e-4, err_msg=stage)
    metrics = [json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("default", "mirrored")]
    for who in ("teacher", "student"):
        assert metrics[0][who]["dev"]["f1"] == pytest.approx(metrics[1][who]["dev"]["f1"], abs=0.02)


def _free_ports(count):
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
    except OSError as error:
        pytest.skip(f"no free localhost ports for a two-worker cluster: {error}")
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(command, ports, logs):
    workers = [f"127.0.0.1:{port}" for port in ports]
    processes = []
    for index, log in enumerate(logs):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(command, env=_env(TF_CONFIG=tf_config), stdout=subprocess.DEVNULL,
                                          stderr=open(log, "w")))
    return processes


def _finish(processes, logs, timeout=600):
    for process, log in zip(processes, logs):
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            pytest.fail(f"a worker hung: {Path(log).read_text()[-3000:]}")
        assert process.returncode == 0, Path(log).read_text()[-3000:]
    return [Path(log).read_text() for log in logs]


def _final_line(log):
    return next(line.split("] ", 1)[1] for line in reversed(log.splitlines()) if "| student dev" in line)


@pytest.mark.slow
def test_two_local_workers_distil_and_fill_the_cache_in_parallel(tmp_path):
    """A teacher that already has a head is not fine-tuned, so the cache must equal a one-process fill."""
    task = write_task(tmp_path / "task", "classification", n_train=30, n_transfer=50)
    teacher = write_tiny_bert(tmp_path / "teacher", hidden_size=32, num_layers=2, num_heads=4, labels=["0", "1"])
    out = tmp_path / "out"
    logs = [tmp_path / "worker0.log", tmp_path / "worker1.log"]
    command = _command(task, teacher, out, "classification", "--strategy=multi_worker")
    texts = _finish(_start_workers(command, _free_ports(2), logs), logs)
    assert _final_line(texts[0]) == _final_line(texts[1])
    assert "worker 1 of 2" in texts[1] and (out / "metrics.json").exists()
    assert json.loads((out / "metrics.json").read_text())["distribution"]["workers"] == 2
    assert not (out / "checkpoints" / ".worker_1").exists()

    from xdistil.data.transfer import TransferChunkReader
    from xdistil.distill.sources import TransferSource
    from xdistil.inference.predict import TFPredictor
    from xdistil.models.loading import load_task_model, load_tokenizer

    tokenizer = load_tokenizer(str(teacher))
    classification = get_task("classification")
    model = load_task_model(str(teacher), classification, ["0", "1"])
    reader = TransferChunkReader(str(task / "transfer.txt"), classification, 24)
    single = TeacherLogitCache(tmp_path / "single", {})
    TransferSource(reader, lambda ex: classification.encode(tokenizer, ex, {"0": 0, "1": 1}, EncodingSettings(16))[0],
                   TFPredictor(model, 8), single).fill_cache()
    parallel = TeacherLogitCache(out / "cache" / "teacher_logits", {}, owner=False)
    assert parallel.chunk_rows() == single.chunk_rows() == {0: 24, 1: 24, 2: 2}
    for chunk in range(3):
        np.testing.assert_array_equal(parallel.get(chunk), single.get(chunk))


@pytest.mark.slow
def test_a_killed_worker_stops_the_other_and_both_resume(tmp_path, ner_task):
    task, teacher = ner_task
    out = tmp_path / "out"
    logs = [tmp_path / "worker0.log", tmp_path / "worker1.log"]
    command = _command(task, teacher, out, "ner", "--strategy=multi_worker", "--logit_epochs=4")
    ports = _free_ports(2)
    processes = _start_workers(command, ports, logs)
    deadline = time.time() + 400
    while not (out / "checkpoints" / "logit" / "checkpoint").exists() and time.time() < deadline:
        if any(p.poll() is not None for p in processes):
            pytest.fail("a worker ended before it could be killed: " + logs[0].read_text()[-3000:])
        time.sleep(0.05)
    processes[1].send_signal(signal.SIGKILL)
    try:
        processes[0].wait(timeout=120)
    except subprocess.TimeoutExpired:
        processes[0].kill()
        pytest.fail("the surviving worker hung after its peer was killed")
    assert processes[0].returncode != 0
    assert "Restart every worker with the same command" in logs[0].read_text()
    assert not (out / "checkpoints" / "logit" / "DONE.json").exists()

    texts = _finish(_start_workers(command, _free_ports(2), logs), logs)
    assert all("[logit] resumed at epoch" in text for text in texts)
    assert _final_line(texts[0]) == _final_line(texts[1])
    assert (out / "model" / "tf_model.h5").exists()
