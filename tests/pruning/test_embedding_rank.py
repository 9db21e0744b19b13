"""Word embeddings factorised to a low rank: the best rank-r fit, recorded in the plan, factors read back."""
import dataclasses

import numpy as np
import pytest

from conftest import write_tiny_bert
from xdistil.models.loading import word_embedding_variable
from xdistil.pruning.embedding_rank import factorise_word_embedding, factorised_parameters, word_embedding_factors
from xdistil.pruning.plan import PruningPlan
from xdistil.tasks import get_task


def _model(tmp_path):
    path = write_tiny_bert(tmp_path / "m", hidden_size=32, num_layers=1, num_heads=4, intermediate_size=8,
                           labels=["a", "b"])
    return get_task("classification").model_class().from_pretrained(str(path))


def test_factorising_keeps_the_best_rank_r_fit_and_says_how_much_it_kept(tmp_path):
    model = _model(tmp_path)
    variable = word_embedding_variable(model)
    before = variable.numpy().astype(np.float64)
    report = factorise_word_embedding(model, 6)
    after = variable.numpy().astype(np.float64)
    singular = np.linalg.svd(before, compute_uv=False)
    assert report == {"rank": 6, "vocab_size": before.shape[0], "hidden_size": 32,
                      "energy_kept": pytest.approx(np.sum(singular[:6] ** 2) / np.sum(singular ** 2), abs=1e-6)}
    assert np.linalg.matrix_rank(after, tol=1e-4 * singular[0]) == 6
    # Eckart-Young: the error is exactly the dropped singular values.
    assert np.linalg.norm(before - after) == pytest.approx(np.sqrt(np.sum(singular[6:] ** 2)), rel=1e-4)

    left, right = word_embedding_factors(after, 6)
    assert left.shape == (before.shape[0], 6) and right.shape == (6, 32) and left.dtype == np.float32
    np.testing.assert_allclose(left @ right, after, atol=1e-5)
    with pytest.raises(ValueError, match="not of rank 6"):
        word_embedding_factors(before, 6)  # the full matrix, or one trained after factorising
    for rank in (0, 32):
        with pytest.raises(ValueError, match="1 to 31"):
            factorise_word_embedding(model, rank)


def test_the_plan_records_the_factorisation_and_counts_what_it_saves(tmp_path):
    model = _model(tmp_path)
    plan = PruningPlan.unpruned(model.config)
    factorised = dataclasses.replace(plan, word_embedding=factorise_word_embedding(model, 4))
    vocab = factorised.word_embedding["vocab_size"]
    assert factorised_parameters(vocab, 32, 4) == vocab * 32 - (vocab * 4 + 4 * 32) > 0
    assert factorised.removed_parameters() == plan.removed_parameters() + factorised_parameters(vocab, 32, 4)
    assert PruningPlan.from_json(factorised.to_json()) == factorised
    assert factorised.summary()["word_embedding"]["rank"] == 4
    # Plans written before factorising existed read back without it.
    old = {key: value for key, value in plan.to_json().items() if key != "word_embedding"}
    assert PruningPlan.from_json(old).word_embedding is None
