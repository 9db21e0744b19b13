"""Continue fine-tuning a distilled student on labeled data into a new model directory."""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import tf_keras

from xdistil.config import CONFIG_FILE, DistilConfig, load_run_config
from xdistil.distill.distribution import Distribution
from xdistil.distill.sources import LabeledSource
from xdistil.distill.stage_losses import cross_entropy_loss
from xdistil.distill.trainer import Stage, StageTrainer
from xdistil.distill.unfreezing import unfreezing_groups
from xdistil.evaluate import PRIMARY_METRIC
from xdistil.inference.student import StudentBundle
from xdistil.io_utils import atomic_save_dir, atomic_write_json
from xdistil.models.loading import word_embedding_variable
from xdistil.task_data import Evaluator, encode_task_data, read_task_files

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FinetuneOptions:
    task: str | None = None
    train_file: str | None = None
    dev_file: str | None = None
    test_file: str | None = None
    epochs: int = 3
    learning_rate: float = 3e-5
    batch_size: int = 32
    eval_batch_size: int = 64
    early_stopping_patience: int = 2
    gradual_unfreezing: bool = True
    opt_policy: str = "float32"
    seed: int = 42
    strategy: str = "default"
    num_virtual_cpus: int | None = None
    tpu: str | None = None
    batch_size_scope: str = "global"


def run_finetune(model_dir: str, output_dir: str, options: FinetuneOptions) -> dict:
    """Fine-tune the student of `model_dir` on labeled data; write a model directory to `output_dir`.

    Frozen word embeddings stay frozen; dev selects the epoch; an interrupted run resumes from
    `output_dir/checkpoints`.
    """
    if Path(output_dir).resolve() == Path(model_dir).resolve():
        raise ValueError("--output_dir must differ from --model_dir (the input model is kept as it was)")
    started = time.time()
    distribution = Distribution.create(options.strategy, options.num_virtual_cpus, options.tpu)  # before any TF op
    run = load_run_config(model_dir)
    bundle = StudentBundle.load(model_dir)
    tf_keras.utils.set_random_seed(options.seed)
    tf_keras.mixed_precision.set_global_policy(options.opt_policy)
    labels, splits = read_task_files(options.task, bundle.kind, labels=bundle.labels, train_file=options.train_file,
                                     dev_file=options.dev_file, test_file=options.test_file)
    data = encode_task_data(labels, splits, bundle.tokenizer, bundle.kind, bundle.seq_len,
                            bundle.long_sequence_policy)
    with distribution.strategy.scope():
        model = bundle.load_tf_model()
    frozen = [word_embedding_variable(model)] if run.get("freeze_word_embedding") else []
    groups = unfreezing_groups(model, frozen)
    config = DistilConfig.from_dict({**run, "model_dir": output_dir, "batch_size": options.batch_size,
                                     "opt_policy": options.opt_policy, "seed": options.seed,
                                     "strategy": options.strategy, "num_virtual_cpus": options.num_virtual_cpus,
                                     "tpu": options.tpu, "batch_size_scope": options.batch_size_scope})
    evaluator = Evaluator(model, bundle.kind, labels, options.eval_batch_size)
    metric = PRIMARY_METRIC[bundle.kind]
    out = Path(output_dir)
    trainer = StageTrainer(config, distribution, out / "checkpoints", out / "logs")
    before = evaluator(data.dev)
    summary = trainer.run(Stage(
        name="finetune", model=model, groups=groups, gradual=options.gradual_unfreezing,
        source=LabeledSource(data.train.features), compute_loss=cross_entropy_loss(model),
        epochs=options.epochs, learning_rate=options.learning_rate, evaluate=lambda: evaluator(data.dev),
        metric=metric, patience=options.early_stopping_patience))
    metrics = {"metric": metric, "finetuned_from": str(model_dir), "stages": {"finetune": summary},
               "student": {"dev_before": before, "dev": evaluator(data.dev)}}
    if data.test is not None:
        metrics["student"]["test"] = evaluator(data.test)
    metrics["wall_seconds"] = round(time.time() - started, 1)
    if not distribution.is_chief:
        return metrics
    atomic_save_dir(out / "model", lambda tmp: (model.save_pretrained(str(tmp)),
                                                bundle.tokenizer.save_pretrained(str(tmp))))
    task = options.task or run.get("task")
    atomic_write_json(out / CONFIG_FILE, {**run, "model_dir": output_dir, "task": task,
                                          "finetuned_from": str(model_dir), "finetune": dataclasses.asdict(options)})
    atomic_write_json(out / "metrics.json", metrics)
    log.info("dev %s %.4f -> %.4f", metric, before[metric], metrics["student"]["dev"][metric])
    return metrics
