"""bench/distill_cost.py's timing: the cached and the recomputing run, side by side on CPUs of their own."""
import os

import pytest

from bench import distill_cost


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="side by side needs two CPUs")
def test_the_two_timing_runs_go_side_by_side_each_on_a_cpu_of_its_own(distilled_pairwise_dir, tmp_path):
    timing = distill_cost.measure_timing(str(distilled_pairwise_dir), tmp_path, lines=16, representation_epochs=0,
                                         logit_epochs=2, finetune_epochs=1)
    runs = timing["runs"]
    assert timing["side_by_side"] is True
    cpus = sorted(os.sched_getaffinity(0))
    assert [runs["cache_on"]["pinned_cpu"], runs["cache_off"]["pinned_cpu"]] == cpus[:2]
    # only the cached run fills the cache; the other runs the teacher in each logit epoch instead
    logs = {mode: (tmp_path / f"timing_{mode}.log").read_text() for mode in runs}
    assert "teacher logits cached for transfer chunk 0" in logs["cache_on"]
    assert "teacher logits cached" not in logs["cache_off"]
    assert [stage["stage"] for stage in runs["cache_on"]["stages"]] == \
        [stage["stage"] for stage in runs["cache_off"]["stages"]]
    assert timing["off_over_on"] == pytest.approx(
        runs["cache_off"]["wall_seconds"] / runs["cache_on"]["wall_seconds"], abs=1e-3)
    assert not (tmp_path / "timing_cache_on").exists() and not (tmp_path / "timing_cache_off").exists()
