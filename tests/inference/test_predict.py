import logging
import re

import numpy as np

from xdistil.data.encoding import Features
from xdistil.inference import predict
from xdistil.inference.predict import BatchedPredictor


def features_of_lengths(lengths, seq_len=16):
    n = len(lengths)
    mask = np.zeros((n, seq_len), np.int32)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    ids = (np.arange(n)[:, None] + 1) * mask  # each row's ids are its row number + 1
    return Features(ids.astype(np.int32), mask, np.zeros_like(mask), np.zeros(n, np.int32), None, np.arange(n), n)


class RecordingForward:
    """Logits [batch, 1] = each row's own id; remembers the length of every batch it saw."""

    def __init__(self):
        self.lengths = []

    def __call__(self, arrays):
        self.lengths.append(arrays["input_ids"].shape[1])
        return arrays["input_ids"][:, :1].astype(np.float32)


def test_logits_come_back_in_row_order_with_batches_cut_to_their_length():
    lengths = [9, 2, 16, 3, 5]
    forward = RecordingForward()
    logits = BatchedPredictor(forward, batch_size=2, length_multiple=4).logits(features_of_lengths(lengths))
    np.testing.assert_array_equal(logits[:, 0], [1, 2, 3, 4, 5])
    # batches by length: (2, 3) -> 4, (5, 9) -> 12, (16) -> 16
    assert forward.lengths == [4, 12, 16]


def test_a_labelled_pass_logs_its_progress(monkeypatch, caplog):
    monkeypatch.setattr(predict, "PROGRESS_EVERY_SECONDS", 0.0)
    features = features_of_lengths([4] * 6)
    with caplog.at_level(logging.INFO, logger=predict.__name__):
        BatchedPredictor(RecordingForward(), batch_size=2).logits(features, progress="teacher logits, chunk 0")
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(",")[:2] for line in lines] == [["teacher logits", " chunk 0: 2/6 rows"],
                                                      ["teacher logits", " chunk 0: 4/6 rows"]]
    assert all(re.search(r", [0-9.]+ rows/s, eta \d+m\d\ds$", line) for line in lines), lines


def test_an_unlabelled_pass_logs_nothing(monkeypatch, caplog):
    monkeypatch.setattr(predict, "PROGRESS_EVERY_SECONDS", 0.0)
    with caplog.at_level(logging.INFO, logger=predict.__name__):
        BatchedPredictor(RecordingForward(), batch_size=2).logits(features_of_lengths([4] * 6))
    assert caplog.records == []


def test_time_left_is_told_from_the_tokens_left_not_the_rows(monkeypatch, caplog):
    # rows run shortest first: after the two 1-token rows (2 of 18 tokens), 16 tokens are left, 8x
    # the work done, so the eta is 8x the time spent, not the 2x that the rows left would give
    clock = iter([0.0, 0.0, 10.0])  # the pass starts, its first batch at once, the second 10 s later
    monkeypatch.setattr(predict.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(predict, "PROGRESS_EVERY_SECONDS", 0.0)
    features = features_of_lengths([8, 1, 8, 1])
    with caplog.at_level(logging.INFO, logger=predict.__name__):
        BatchedPredictor(RecordingForward(), batch_size=2).logits(features, progress="teacher logits")
    assert [r.getMessage() for r in caplog.records] == ["teacher logits: 2/4 rows, 0.2 rows/s, eta 1m20s"]
