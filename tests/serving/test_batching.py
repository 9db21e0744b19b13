"""Micro-batching: length groups, padding, and every row's logits back to its own request."""
import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from xdistil.serving.batching import MicroBatcher, length_groups, pad_rows

PAD = 0


def row(length: int, first_id: int = 1) -> dict:
    ids = np.arange(first_id, first_id + length, dtype=np.int32)[None, :]
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def token_forward(batch: dict) -> np.ndarray:
    """Token-level logits that depend on each real token alone: [ids, ids * 2] per position, 0 on padding."""
    ids = batch["input_ids"] * batch["attention_mask"]
    return np.stack([ids, ids * 2], axis=-1).astype(np.float32)


def test_length_groups_bound_size_and_padding():
    lengths = [10, 30, 11, 12, 31, 9, 50]
    groups = length_groups(lengths, max_batch_size=3)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    assert [[lengths[i] for i in group] for group in groups] == [[9, 10, 11], [12], [30, 31], [50]]
    for group in groups:
        real = sum(lengths[i] for i in group)
        assert len(group) <= 3 and len(group) * max(lengths[i] for i in group) <= 1.25 * real


def test_a_single_row_is_its_own_group():
    assert length_groups([7], max_batch_size=8) == [[0]]


def test_pad_rows_right_pads_with_a_zero_mask():
    batch = pad_rows([row(2, 5), row(4, 1)], pad_id=PAD)
    assert batch["input_ids"].tolist() == [[5, 6, PAD, PAD], [1, 2, 3, 4]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert batch["token_type_ids"].shape == (2, 4)


def test_concurrent_requests_share_batches_and_get_their_own_logits():
    batch_sizes = []
    executor = ThreadPoolExecutor(max_workers=1)

    async def scenario():
        batcher = MicroBatcher(token_forward, PAD, max_batch_size=8, max_delay_s=0.05, executor=executor,
                               observe_batch=batch_sizes.append)
        requests = [[row(3, 10)], [row(4, 20), row(2, 30)], [row(3, 40)]]
        answers = await asyncio.gather(*(batcher.run_rows(rows) for rows in requests))
        await batcher.close()
        return requests, answers

    requests, answers = asyncio.run(scenario())
    executor.shutdown()
    for rows, logits in zip(requests, answers):
        assert len(logits) == len(rows)
        for one_row, one_logits in zip(rows, logits):
            np.testing.assert_array_equal(one_logits, token_forward(one_row)[0])
    assert sum(batch_sizes) == 4 and len(batch_sizes) < 4  # rows were grouped, none lost


def test_a_failing_batch_fails_its_requests_and_the_next_batch_runs():
    calls = []

    def forward(batch):
        calls.append(batch["input_ids"].shape[0])
        if len(calls) == 1:
            raise RuntimeError("boom")
        return token_forward(batch)

    executor = ThreadPoolExecutor(max_workers=1)

    async def scenario():
        batcher = MicroBatcher(forward, PAD, max_batch_size=4, max_delay_s=0.0, executor=executor)
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.run_rows([row(3)])
        logits = await batcher.run_rows([row(2)])
        await batcher.close()
        return logits

    (logits,) = asyncio.run(scenario())
    executor.shutdown()
    np.testing.assert_array_equal(logits, token_forward(row(2))[0])
