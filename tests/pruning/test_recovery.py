"""The transfer data of a student's run with its teacher's logits, for pruning: reused or remade as the run had them."""
import numpy as np

from conftest import distil_tiny
from xdistil.model_dir import ModelDirectory
from xdistil.pruning.recovery import teacher_transfer


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
