"""Pruning a distilled student through run_finetune: ranked, zeroed, recovered, saved, resumed and exported."""
import dataclasses
import json

import numpy as np
import pytest

from conftest import distil_tiny, write_task, write_tiny_bert
from xdistil.config import TrainerConfig
from xdistil.errors import ConfigError
from xdistil.export.student_export import export_student
from xdistil.finetune import FinetuneConfig, run_finetune
from xdistil.model_dir import ModelDirectory
from xdistil.models.loading import word_embedding_variable
from xdistil.pruning.embedding_rank import factorise_word_embedding, factorised_parameters
from xdistil.pruning.masks import encoder_layers, layer_denses
from xdistil.pruning.plan import PruningPlan
from xdistil.pruning.prune import prune_student, reference_layer_pairs
from xdistil.pruning.targets import PruningConfig
from xdistil.tasks import get_task


def test_prune_student_drops_layers_then_ranks_what_is_left(tmp_path):
    path = write_tiny_bert(tmp_path / "m", hidden_size=32, num_layers=3, num_heads=4, intermediate_size=8,
                           labels=["a", "b"])
    model = get_task("classification").model_class().from_pretrained(str(path))
    seen = []

    def scores(pruned):
        seen.append(len(encoder_layers(pruned)))
        return np.array([[1.0, 0.5, 3.0, 2.0], [0.1, 2.0, 3.0, 4.0]]), np.tile(np.arange(8.0), (2, 1))

    targets = PruningConfig(prune_heads=1, prune_ffn_fraction=0.25, drop_layers=(0,))
    plan_path = tmp_path / "plan.json"
    pruned, plan = prune_student(model, None, targets, plan_path, scores)
    assert seen == [2] and pruned.config.num_hidden_layers == 2
    assert plan.dropped_layers == (0,) and plan.kept_heads == ((0, 2, 3), (1, 2, 3))
    assert plan.kept_neurons == ((2, 3, 4, 5, 6, 7),) * 2 and plan.original["num_hidden_layers"] == 3
    assert not layer_denses(encoder_layers(pruned)[1])["attention_output"].kernel.numpy()[:8].any()
    # A resumed run takes the saved plan, not a new ranking.
    again, same = prune_student(model, None, targets, plan_path, lambda _: pytest.fail("ranked again"))
    assert same == plan and again.config.num_hidden_layers == 2
    # Layers of an already pruned student are numbered as it has them.
    _, twice = prune_student(pruned, plan, PruningConfig(drop_layers=(1,)), tmp_path / "plan2.json", scores_one)
    assert twice.dropped_layers == (0, 2) and twice.kept_heads == ((0, 2, 3),)
    with pytest.raises(ConfigError, match="every layer"):
        prune_student(pruned, plan, PruningConfig(drop_layers=(0, 1)), tmp_path / "plan3.json", scores)


def scores_one(_):
    return np.ones((1, 4)), np.ones((1, 8))


def _pruned_weights_are_zero(model, plan):
    d = plan.head_size
    for layer, heads, neurons in zip(encoder_layers(model), plan.kept_heads, plan.kept_neurons):
        dense = layer_denses(layer)
        gone_heads = [h for h in range(plan.original["num_attention_heads"]) if h not in heads]
        gone_neurons = [n for n in range(plan.original["intermediate_size"]) if n not in neurons]
        rows = np.concatenate([np.arange(h * d, (h + 1) * d) for h in gone_heads])
        assert not dense["attention_output"].kernel.numpy()[rows].any()
        assert not dense["value"].kernel.numpy()[:, rows].any() and not dense["query"].bias.numpy()[rows].any()
        assert not dense["output"].kernel.numpy()[gone_neurons].any()
        assert not dense["intermediate"].bias.numpy()[gone_neurons].any()
        assert dense["attention_output"].kernel.numpy().any()


def test_pruned_student_recovers_survives_save_load_resume_and_exports_smaller(distilled_ner_dir, tmp_path):
    from transformers import TFAutoModelForTokenClassification

    task = write_task(tmp_path / "task", "ner", n_train=32, seed=3)
    out = tmp_path / "pruned"
    settings = FinetuneConfig(model_dir=str(distilled_ner_dir), output_dir=str(out), task=str(task), epochs=1,
                              learning_rate=1e-3)
    targets = PruningConfig(prune_heads=2, prune_ffn_fraction=0.5, importance_examples=16, recovery_logit_epochs=1)
    trainer = TrainerConfig(batch_size=8, checkpoint_every_steps=2)
    metrics = run_finetune(settings, trainer, pruning=targets)
    assert set(metrics["stages"]) == {"recovery_logit", "finetune"}
    assert metrics["pruning"]["heads_per_layer"] == [2] and metrics["pruning"]["neurons_per_layer"] == [32]
    counts = metrics["pruning"]["multiply_adds_per_token"]
    assert counts["after"]["total"] < 0.6 * counts["before"]["total"]
    # What the one layer no longer holds: its removed heads' Q/K/V columns, biases and W_o rows, its removed
    # neurons' W_1 columns, biases and W_2 rows.
    original, parameters = metrics["pruning"]["original"], metrics["pruning"]["parameters"]
    hidden, heads = original["hidden_size"], original["num_attention_heads"]
    d = hidden // heads
    assert parameters["before"] - parameters["after"] == \
        (heads - 2) * (4 * hidden * d + 3 * d) + (original["intermediate_size"] - 32) * (2 * hidden + 1)
    # The teacher logits of the distillation run were reused, not recomputed.
    assert (out / "cache" / "teacher_logits" / "chunk_000000.npy").read_bytes() == \
        (distilled_ner_dir / "cache" / "teacher_logits" / "chunk_000000.npy").read_bytes()

    plan = PruningPlan.read(out / "model")
    assert plan.kept_heads == tuple(tuple(h) for h in json.loads(
        (out / "checkpoints" / "pruning.json").read_text())["kept_heads"])
    _pruned_weights_are_zero(TFAutoModelForTokenClassification.from_pretrained(str(out / "model")), plan)

    # Killed before the end of fine-tuning: the rerun resumes from its checkpoint with the same plan.
    (out / "checkpoints" / "finetune" / "DONE.json").unlink()
    (out / "model" / "tf_model.h5").unlink()
    again = run_finetune(settings, trainer, pruning=targets)
    assert again["student"]["dev"] == metrics["student"]["dev"] and PruningPlan.read(out / "model") == plan
    _pruned_weights_are_zero(ModelDirectory.load(out).load_tf_model(), plan)

    # Fine-tuned further without targets, it stays pruned: same plan, zeros held.
    more = tmp_path / "more"
    run_finetune(FinetuneConfig(model_dir=str(out), output_dir=str(more), task=str(task), epochs=1,
                                learning_rate=1e-2), trainer)
    assert PruningPlan.read(more / "model") == plan
    _pruned_weights_are_zero(ModelDirectory.load(more).load_tf_model(), plan)

    # Pruned again (iterative pruning): ranked and recovered on the first run's teacher logits, its plan extended.
    again_pruned = tmp_path / "again"
    second = run_finetune(FinetuneConfig(model_dir=str(out), output_dir=str(again_pruned), task=str(task),
                                         epochs=1, learning_rate=1e-3), trainer,
                          pruning=dataclasses.replace(targets, prune_heads=3))
    assert second["pruning"]["heads_per_layer"] == [1] and "recovery_logit" in second["stages"]
    assert set(PruningPlan.read(again_pruned / "model").kept_heads[0]) < set(plan.kept_heads[0])
    assert (again_pruned / "cache" / "teacher_logits" / "chunk_000000.npy").read_bytes() == \
        (distilled_ner_dir / "cache" / "teacher_logits" / "chunk_000000.npy").read_bytes()

    report = export_student(ModelDirectory.load(out))
    assert report["fusion"]["structured_pruning"] == {"heads_per_layer": [2], "neurons_per_layer": [32]}
    assert report["parity"]["fp32_vs_tf_max_abs_logit_diff"] <= 1e-4
    assert report["pruning"]["multiply_adds_per_token"] == counts
    assert report["quantization"]["shipped"] and "onnx_int8" in report["dev_scores"]  # still int8, gated


def test_pruning_ranked_on_train_needs_no_teacher_logits(distilled_pairwise_dir, tmp_path):
    task = write_task(tmp_path / "task", "pairwise", n_train=24, seed=5)
    out = tmp_path / "pruned"
    targets = PruningConfig(prune_heads=3, prune_heads_scope="total", importance_data="train",
                            recovery_logit_epochs=0)
    metrics = run_finetune(FinetuneConfig(model_dir=str(distilled_pairwise_dir), output_dir=str(out),
                                          task=str(task), epochs=1), TrainerConfig(batch_size=8), pruning=targets)
    assert set(metrics["stages"]) == {"finetune"} and not (out / "cache").exists()
    assert sum(metrics["pruning"]["heads_per_layer"]) == 4 * len(metrics["pruning"]["heads_per_layer"]) - 3
    plan = PruningPlan.read(out / "model")
    assert np.asarray(plan.importance["heads"]).shape == (len(plan.kept_heads), 4)


def test_reference_layer_pairs_follow_the_layers_pruning_kept():
    assert reference_layer_pairs(3, ()) == [(1, 1), (2, 2), (3, 3)]
    assert reference_layer_pairs(4, (0, 2)) == [(1, 2), (2, 4)]


def test_recovery_with_hidden_states_against_the_unpruned_student(tmp_path):
    """--recovery_hidden_weight: recovery also matches each kept layer's hidden states to the student before
    pruning (its layers as they were, one dropped here), a loss it adds to the logits'."""
    source = distil_tiny(tmp_path / "run", "pairwise", student_layers_from_teacher=(0, 1), representation_epochs=0,
                         finetune_epochs=1)
    task = write_task(tmp_path / "task", "pairwise", n_train=24, seed=5)
    trainer = TrainerConfig(batch_size=8, log_every_steps=1)
    runs = {}
    for weight in (0.0, 1000.0):
        out = tmp_path / f"pruned_{weight:g}"
        targets = PruningConfig(prune_heads=2, drop_layers=(0,), importance_examples=16, recovery_logit_epochs=1,
                                recovery_hidden_weight=weight)
        runs[weight] = run_finetune(FinetuneConfig(model_dir=str(source), output_dir=str(out), task=str(task),
                                                   epochs=1), trainer, pruning=targets)
    with_hidden, logits_only = runs[1000.0]["stages"]["recovery_logit"], runs[0.0]["stages"]["recovery_logit"]
    # Same plan, same batches: only the loss differs, by the weighted hidden-state term (positive: the layers were
    # pruned and shifted by one).
    assert runs[1000.0]["pruning"] == runs[0.0]["pruning"]
    assert with_hidden["history"][0]["train_loss"] > logits_only["history"][0]["train_loss"] + 0.1
    for flags, message in (({"prune_vocabulary_min_count": 2}, "segments"),
                           ({"recovery_logit_epochs": 0}, "recovery_logit_epochs")):
        with pytest.raises(ConfigError, match=message):
            PruningConfig(prune_heads=1, recovery_hidden_weight=1.0, **flags).check()


def test_factorised_word_embeddings_stay_frozen_through_recovery_and_export_as_factors(distilled_pairwise_dir,
                                                                                        tmp_path):
    task = write_task(tmp_path / "task", "pairwise", n_train=24, seed=5)
    out = tmp_path / "factorised"
    targets = PruningConfig(word_embedding_rank=4, prune_heads=1, importance_examples=16, recovery_logit_epochs=1)
    metrics = run_finetune(FinetuneConfig(model_dir=str(distilled_pairwise_dir), output_dir=str(out),
                                          task=str(task), epochs=1, learning_rate=1e-2),
                           TrainerConfig(batch_size=8), pruning=targets)
    assert set(metrics["stages"]) == {"recovery_logit", "finetune"}
    plan = PruningPlan.read(out / "model")
    vocab, hidden = plan.word_embedding["vocab_size"], plan.original["hidden_size"]
    assert plan.word_embedding["rank"] == 4 and metrics["pruning"]["word_embedding"] == plan.word_embedding
    d = hidden // plan.original["num_attention_heads"]
    layers = len(plan.kept_heads)
    parameters = metrics["pruning"]["parameters"]
    assert parameters["before"] - parameters["after"] == \
        layers * (4 * hidden * d + 3 * d) + factorised_parameters(vocab, hidden, 4)

    # Frozen through both stages (trained at a high rate): still the rank-4 fit of the student it started from.
    source = ModelDirectory.load(distilled_pairwise_dir).load_tf_model()
    factorise_word_embedding(source, 4)
    np.testing.assert_array_equal(word_embedding_variable(ModelDirectory.load(out).load_tf_model()).numpy(),
                                  word_embedding_variable(source).numpy())

    report = export_student(ModelDirectory.load(out))
    assert report["fusion"]["word_embedding_factors"] == {"rank": 4, "vocab_size": vocab, "hidden_size": hidden}
    assert report["parity"]["fp32_vs_tf_max_abs_logit_diff"] <= 1e-4
    with pytest.raises(ConfigError, match="of rank 4 already"):
        run_finetune(FinetuneConfig(model_dir=str(out), output_dir=str(tmp_path / "again"), task=str(task),
                                    epochs=1), TrainerConfig(batch_size=8),
                     pruning=PruningConfig(word_embedding_rank=6, recovery_logit_epochs=0))

    # Its vocabulary pruned afterwards: the rows go, the rest stay factorised (still frozen, still rank 4).
    fewer = tmp_path / "fewer_pieces"
    run_finetune(FinetuneConfig(model_dir=str(out), output_dir=str(fewer), task=str(task), epochs=1,
                                learning_rate=1e-2), TrainerConfig(batch_size=8),
                 pruning=PruningConfig(prune_vocabulary_min_count=1, recovery_logit_epochs=1))
    pieces = len(ModelDirectory.load(fewer).tokenizer)
    assert pieces < vocab and PruningPlan.read(fewer / "model").word_embedding["vocab_size"] == pieces
    factors = export_student(ModelDirectory.load(fewer))["fusion"]["word_embedding_factors"]
    assert factors == {"rank": 4, "vocab_size": pieces, "hidden_size": hidden}
