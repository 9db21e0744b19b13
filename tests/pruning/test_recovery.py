"""The transfer data of a student's run with its teacher's logits, for pruning: reused or remade as the run had them."""
import dataclasses
import shutil

import numpy as np
import pytest

from conftest import distil_tiny
from xdistil.config import TrainerConfig, read_run_config, save_run_config
from xdistil.errors import ConfigError
from xdistil.finetune import FinetuneConfig, run_finetune
from xdistil.model_dir import ModelDirectory
from xdistil.pruning.recovery import run_transfer_paths, run_transfer_reader, teacher_transfer
from xdistil.pruning.targets import PruningConfig


def _cached_logits(cache_dir):
    return {path.name: np.load(path) for path in sorted(cache_dir.glob("chunk_*.npy"))}


def test_an_augmented_run_gives_its_own_copies_with_their_logits(tmp_path):
    """A run distilled on augmented transfer data (a copy and a crop of each text): recovery reuses its cache when
    the run kept one, and without it makes the same copies and crops again (same seed, same neighbours) and the
    teacher labels them as the run's did."""
    run = distil_tiny(tmp_path / "run", "classification", augment_transfer=1, augment_replace_prob=1.0,
                      augment_crops=1, trim_vocabulary=True, representation_epochs=0, logit_epochs=1,
                      finetune_epochs=1)
    source = ModelDirectory.load(run)
    made_by_run = _cached_logits(run / "cache" / "teacher_logits")
    assert sum(len(logits) for logits in made_by_run.values()) == 3 * 64  # each transfer text, its copy, its crop

    reused = teacher_transfer(source, tmp_path / "reused", batch_size=16)
    assert {name: logits.tobytes() for name, logits in _cached_logits(reused.cache.directory).items()} == \
        {name: logits.tobytes() for name, logits in made_by_run.items()}

    # The run's cache gone: the copies are made again and labelled by the run's teacher.
    for chunk in (run / "cache" / "teacher_logits").glob("chunk_*.npy"):
        chunk.unlink()
    remade = teacher_transfer(source, tmp_path / "remade", batch_size=16)
    logits = _cached_logits(remade.cache.directory)
    assert logits.keys() == made_by_run.keys()
    for name, expected in made_by_run.items():
        np.testing.assert_allclose(logits[name], expected, atol=1e-4)
    texts = [example for _, chunk in remade.reader.chunks(0) for example in chunk]
    assert len(texts) == 3 * 64 and texts[0::3] != texts[1::3]  # each original, its copy (words changed), its crop
    assert all(crop.text_a in original.text_a for original, crop in zip(texts[0::3], texts[2::3]))


def test_transfer_files_moved_since_the_run_are_given_where_they_are_now(tmp_path):
    """The run recorded its transfer file's path; moved, pruning stops before it writes anything and says which
    file and flag; --source_transfer_file finds it if it holds what the run read, and the pruned directory records
    the new place for whoever prunes it again."""
    run = distil_tiny(tmp_path / "run", "pairwise", representation_epochs=0, finetune_epochs=1)
    source = ModelDirectory.load(run)
    [recorded] = source.record["transfer_files"]
    examples = list(run_transfer_reader(source).chunks(0))
    moved = str(tmp_path / "elsewhere.txt")
    shutil.move(recorded, moved)

    out = tmp_path / "pruned"
    finetune = FinetuneConfig(model_dir=str(run), output_dir=str(out), task=str(tmp_path / "run" / "task"), epochs=1)
    targets = PruningConfig(prune_heads=1, importance_examples=16, recovery_logit_epochs=1)
    with pytest.raises(ConfigError, match="is not there any more") as caught:
        run_finetune(finetune, TrainerConfig(batch_size=8), pruning=targets)
    assert caught.value.flag == "--source_transfer_file" and recorded in str(caught.value)
    assert not out.exists()

    assert run_transfer_paths(source, moved) == [moved]
    assert list(run_transfer_reader(source, run_transfer_paths(source, moved)).chunks(0)) == examples
    with pytest.raises(ConfigError, match="transfer file not found .*nowhere.txt") as caught:
        run_transfer_paths(source, str(tmp_path / "nowhere.txt"))
    assert caught.value.flag == "--source_transfer_file"
    with pytest.raises(ConfigError, match="names 2 files; the run .* read 1"):
        run_transfer_paths(source, f"{moved},{moved}")
    changed = tmp_path / "changed.txt"
    changed.write_text("".join(open(moved).readlines()[1:]))
    with pytest.raises(ConfigError, match="changed.txt is not the transfer file the run .* read"):
        run_transfer_paths(source, str(changed))

    metrics = run_finetune(finetune, TrainerConfig(batch_size=8),
                           pruning=dataclasses.replace(targets, source_transfer_file=moved))
    assert {"recovery_logit", "finetune"} <= set(metrics["stages"])
    assert read_run_config(out)["transfer_files"] == [moved]
    assert run_transfer_paths(ModelDirectory.load(out)) == [moved]


def test_a_run_without_transfer_files_stops_pruning_that_needs_teacher_logits_before_it_writes(tmp_path):
    """Recovery, or ranking on the teacher's logits, needs the run's transfer data: without any, pruning stops before
    it writes anything and names the setting that asked for it; ranked on train with no recovery, it runs."""
    run = distil_tiny(tmp_path / "run", "pairwise", representation_epochs=0, finetune_epochs=1)
    record = read_run_config(run)
    record["transfer_files"], record["inputs"]["transfer"] = None, None  # as a run given no --transfer_file
    save_run_config(run, record)
    assert run_transfer_paths(ModelDirectory.load(run)) is None

    out = tmp_path / "pruned"
    finetune = FinetuneConfig(model_dir=str(run), output_dir=str(out), task=str(tmp_path / "run" / "task"), epochs=1)
    targets = PruningConfig(prune_heads=1, importance_examples=16, recovery_logit_epochs=1)
    for pruning, flag in ((targets, "--recovery_logit_epochs"),
                          (dataclasses.replace(targets, recovery_logit_epochs=0), "--importance_data")):
        with pytest.raises(ConfigError, match="had no transfer file of its own: give --recovery_logit_epochs 0 "
                                              "--importance_data train") as caught:
            run_finetune(finetune, TrainerConfig(batch_size=8), pruning=pruning)
        assert caught.value.flag == flag and not out.exists()
    with pytest.raises(ConfigError, match="had no transfer file of its own") as caught:
        teacher_transfer(ModelDirectory.load(run), tmp_path / "logits", batch_size=16)
    assert caught.value.flag == "--recovery_logit_epochs"

    metrics = run_finetune(finetune, TrainerConfig(batch_size=8),
                           pruning=dataclasses.replace(targets, recovery_logit_epochs=0, importance_data="train"))
    assert "recovery_logit" not in metrics["stages"] and "finetune" in metrics["stages"]
