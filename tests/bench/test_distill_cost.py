"""bench/distill_cost.py's timing: the cached and the recomputing run, side by side on CPUs of their own."""
import os
import subprocess
import sys
import time

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


def test_when_one_of_the_runs_side_by_side_fails_the_other_is_stopped(tmp_path):
    def started(tag, code):
        log_path = tmp_path / f"{tag}.log"
        log_path.write_text(f"{tag} log\n")
        process = subprocess.Popen([sys.executable, "-c", code])
        return distill_cost.MeasuredRun(tag, process, tmp_path / f"{tag}.json", log_path, time.perf_counter(), None)

    failing = started("cache_on", "import sys; sys.exit(3)")
    still_running = started("cache_off", "import time; time.sleep(600)")
    with pytest.raises(RuntimeError, match="cache_on failed with exit code 3:\ncache_on log"):
        distill_cost.finish_all({"cache_on": failing, "cache_off": still_running})
    assert still_running.process.poll() is not None  # killed and reaped, not left to run its ten minutes
