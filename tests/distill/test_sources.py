import numpy as np

from xdistil.data.encoding import Features
from xdistil.distill.sources import TransferSource
from xdistil.distill.teacher_cache import TeacherLogitCache
from xdistil.inference.predict import BatchedPredictor

SEQ_LEN = 6


class ListReader:
    """Rows of token ids in chunks of `size`, as a transfer reader yields examples."""

    def __init__(self, rows, size):
        self.rows, self.size = rows, size

    def chunks(self, start=0):
        for index, begin in enumerate(range(0, len(self.rows), self.size)):
            if index >= start:
                yield index, self.rows[begin:begin + self.size]


def encode(rows):
    ids = np.zeros((len(rows), SEQ_LEN), np.int32)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
    n = len(rows)
    return Features(ids, (ids > 0).astype(np.int32), np.zeros_like(ids), np.zeros(n, np.int32), None, np.arange(n), n)


class CountingTeacher(BatchedPredictor):
    """Logits that depend on each row's ids only; counts the rows it is run on."""

    def __init__(self):
        super().__init__(self.forward, batch_size=4)
        self.rows_run = 0

    def forward(self, arrays):
        self.rows_run += len(arrays["input_ids"])
        ids = arrays["input_ids"].astype(np.float32)
        return np.stack([ids.sum(axis=1), ids.max(axis=1) - ids.min(axis=1)], axis=1)


def _fill(directory, key, rows, chunk_size, also_read=()):
    teacher = CountingTeacher()
    cache = TeacherLogitCache(directory, key, also_read=also_read)
    TransferSource(ListReader(rows, chunk_size), encode, teacher, cache).fill_cache()
    return cache, teacher.rows_run


def _all_logits(cache):
    return np.concatenate([cache.get(i) for i in sorted(cache.chunk_rows())])


def test_a_larger_transfer_set_runs_the_teacher_only_on_rows_another_cache_lacks(tmp_path):
    rng = np.random.default_rng(0)
    old_rows = [list(rng.integers(1, 50, size=rng.integers(1, SEQ_LEN + 1))) for _ in range(10)]
    new_rows = [[60 + i, 3, 4] for i in range(5)]
    key = {"teacher": "t", "seq_len": SEQ_LEN, "kind": "classification", "labels": ["a", "b"], "augmentation": 0}
    first, run = _fill(tmp_path / "first", key, old_rows, chunk_size=4)
    assert run == 10
    # more rows (the old ones interleaved with new ones), other chunks: only the new rows meet the teacher
    rows = [row for pair in zip(old_rows, new_rows + [[]] * 5) for row in pair if row]
    grown = dict(key, augmentation=1)
    second, run = _fill(tmp_path / "second", grown, rows, chunk_size=6, also_read=[first.directory])
    assert run == 5
    alone, _ = _fill(tmp_path / "alone", grown, rows, chunk_size=6)
    np.testing.assert_array_equal(_all_logits(second), _all_logits(alone))
    # a cache of another teacher, or of other labels, lends no rows
    for other in ({"teacher": "u"}, {"labels": ["b", "a"]}):
        _, run = _fill(tmp_path / str(other), dict(grown, **other), rows, chunk_size=6, also_read=[first.directory])
        assert run == len(rows)
