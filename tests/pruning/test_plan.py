"""Choosing what to prune from importance scores; the plan's file and multiply-add counts."""
import dataclasses

import numpy as np
import pytest
from transformers import BertConfig

from xdistil.errors import ModelDirectoryError
from xdistil.pruning.plan import PruningPlan, choose_plan

CONFIG = BertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=10)


def test_per_layer_targets_remove_the_lowest_scores_of_each_layer():
    base = PruningPlan.unpruned(CONFIG)
    heads = np.array([[4.0, 1.0, 3.0, 2.0], [1.0, 2.0, 3.0, 0.5], [9.0, 8.0, 7.0, 6.0]])
    neurons = np.tile(np.arange(10.0)[::-1], (3, 1))
    plan = choose_plan(base, heads, neurons, prune_heads=2, heads_scope="per_layer", ffn_fraction=0.3)
    assert plan.kept_heads == ((0, 2), (1, 2), (0, 1))
    assert plan.kept_neurons == (tuple(range(7)),) * 3
    # Every layer keeps one head and one neuron, whatever the target.
    extreme = choose_plan(base, heads, neurons, prune_heads=9, heads_scope="per_layer", ffn_fraction=0.99)
    assert extreme.kept_heads == ((0,), (2,), (0,)) and all(len(n) == 1 for n in extreme.kept_neurons)


def test_a_total_target_ranks_heads_across_layers_by_normalised_scores():
    base = PruningPlan.unpruned(CONFIG)
    # Layer 2's scores are large but its head 3 is its weakest by far once each layer is normalised.
    heads = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.9], [100.0, 100.0, 100.0, 1.0]])
    plan = choose_plan(base, heads, np.ones((3, 10)), prune_heads=2, heads_scope="total", ffn_fraction=0.0)
    assert plan.kept_heads == ((0, 1, 2, 3), (0, 1, 2), (0, 1, 2))
    assert plan.kept_neurons == (tuple(range(10)),) * 3


def test_what_was_pruned_before_stays_pruned_and_goes_first():
    base = dataclasses.replace(PruningPlan.unpruned(CONFIG), kept_heads=((0, 1), (0, 1, 2, 3), (0, 1, 2, 3)))
    heads = np.ones((3, 4))
    heads[0] = [5.0, 0.1, 5.0, 5.0]  # layer 0's pruned heads 2 and 3 go first even though 1 scores lower
    plan = choose_plan(base, heads, np.ones((3, 10)), prune_heads=1, heads_scope="per_layer", ffn_fraction=0.0)
    assert plan.kept_heads[0] == (0, 1) and all(len(h) == 3 for h in plan.kept_heads[1:])


def test_plan_round_trips_through_its_file_and_counts_multiply_adds(tmp_path):
    plan = dataclasses.replace(PruningPlan.unpruned(CONFIG, dropped_layers=(1,)), kept_heads=((0, 3), (1,)),
                               kept_neurons=(tuple(range(5)), tuple(range(10))), importance={"heads": [[1.0]]})
    plan.write(tmp_path)
    assert PruningPlan.read(tmp_path) == plan
    assert PruningPlan.read(tmp_path / "elsewhere") is None
    counts = plan.multiply_adds_per_token(length=16)
    d = 8
    assert counts["before"]["matmul"] == 3 * (4 * 32 * 32 + 2 * 32 * 10)
    assert counts["after"]["matmul"] == 4 * 32 * 3 * d + 2 * 32 * 15
    assert counts["after"]["attention"] == 2 * 16 * 3 * d
    (tmp_path / "pruning.json").write_text("{")
    with pytest.raises(ModelDirectoryError, match="unreadable pruning plan"):
        PruningPlan.read(tmp_path)
