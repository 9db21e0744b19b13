"""Prune a student to the --prune_* targets: drop layers, rank heads and neurons, zero the least important."""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from xdistil.errors import ConfigError
from xdistil.io_utils import atomic_write_text
from xdistil.models.loading import word_embedding_variable
from xdistil.pruning.embedding_rank import factorise_word_embedding
from xdistil.pruning.masks import apply_plan, drop_encoder_layers
from xdistil.pruning.plan import PruningPlan, choose_plan

log = logging.getLogger(__name__)


def _without_layers(plan: PruningPlan, dropped) -> PruningPlan:
    """`plan` after its kept layers `dropped` (indices among them) went too."""
    survivors = [i for i in range(plan.original["num_hidden_layers"]) if i not in plan.dropped_layers]
    gone = set(dropped)
    if gone and max(gone) >= len(survivors):
        raise ConfigError("drop_layers", f"the student has layers 0-{len(survivors) - 1}, got "
                                         f"{','.join(map(str, sorted(gone)))}")
    if len(gone) >= len(survivors):
        raise ConfigError("drop_layers", "would drop every layer of the student")
    return dataclasses.replace(
        plan, dropped_layers=tuple(sorted(set(plan.dropped_layers) | {survivors[i] for i in gone})),
        kept_heads=tuple(h for i, h in enumerate(plan.kept_heads) if i not in gone),
        kept_neurons=tuple(n for i, n in enumerate(plan.kept_neurons) if i not in gone))


def prune_student(model, inherited: PruningPlan | None, pruning, plan_path: Path, measure_importance):
    """The student pruned to the `pruning` targets (a PruningConfig) and its plan.

    `inherited` is the plan the student was already pruned with (None: none); its pruned units go first.
    `measure_importance(model)` returns (head scores, neuron scores) of the model after its layers were
    dropped. The plan is kept at `plan_path` once chosen, so a resumed run prunes the same units.
    """
    base = _without_layers(inherited or PruningPlan.unpruned(model.config), pruning.drop_layers or ())
    model = drop_encoder_layers(model, pruning.drop_layers or ())
    if plan_path.exists():
        plan = PruningPlan.from_json(json.loads(plan_path.read_text()))
    else:
        apply_plan(model, base)
        heads, neurons = measure_importance(model)
        plan = choose_plan(base, heads, neurons, pruning.prune_heads, pruning.prune_heads_scope,
                           pruning.prune_ffn_fraction)
        plan_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(plan_path, json.dumps(plan.to_json()))
    apply_plan(model, plan)
    summary = plan.summary()
    log.info("pruned: dropped layers %s, heads per layer %s, neurons per layer %s", summary["dropped_layers"],
             summary["heads_per_layer"], summary["neurons_per_layer"])
    return model, plan


def factorise_embeddings(model, plan: PruningPlan | None, rank: int) -> PruningPlan:
    """`plan` (None: the unpruned student) once the word embeddings of `model` are factorised to `rank`."""
    done = plan.word_embedding["rank"] if plan is not None and plan.word_embedding else None
    if done is not None and rank >= done:
        raise ConfigError("word_embedding_rank", f"the student's word embeddings are of rank {done} already: give a "
                                                 "lower rank, or 0 to keep them")
    factorised = factorise_word_embedding(model, rank)
    log.info("word embeddings factorised to rank %d (%d pieces; %.1f%% of their squared singular values kept)", rank,
             factorised["vocab_size"], 100 * factorised["energy_kept"])
    return dataclasses.replace(plan or PruningPlan.unpruned(model.config), word_embedding=factorised)


def with_vocabulary_of(plan: PruningPlan | None, model) -> PruningPlan | None:
    """`plan` after the vocabulary of `model` was pruned: factorised word embeddings lost the rows it dropped."""
    if plan is None or not plan.word_embedding:
        return plan
    return dataclasses.replace(plan, word_embedding={**plan.word_embedding,
                                                     "vocab_size": int(word_embedding_variable(model).shape[0])})


def reference_layer_pairs(num_layers: int, dropped) -> list[tuple[int, int]]:
    """(pruned student, student before pruning) hidden-state indices of each encoder layer of a student of
    `num_layers` layers that pruning kept when it dropped layers `dropped` (0-based; hidden state 0 is the
    embedding output, which units pruning leaves as it was)."""
    kept = [i for i in range(num_layers) if i not in set(dropped)]
    return [(position + 1, layer + 1) for position, layer in enumerate(kept)]
