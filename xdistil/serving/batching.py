"""Dynamic micro-batching: the rows of concurrent requests, grouped by length, run as padded batches.

Every row (a request has one; an NER sentence longer than seq_len has several) waits in one queue. The
dispatcher takes the oldest, waits at most `max_delay_s` for more (up to `max_batch_size` rows), sorts what it
has by length, cuts it into groups whose padding stays small, and runs each group as one right-padded batch on
the inference thread. Rows that arrive while a batch runs wait for the next one, so under load batches fill up by
themselves; a request alone waits `max_delay_s` at most.

A batch is not bit-identical to its rows run alone: padding changes float rounding, and dynamic int8
quantization computes its activation scales over the whole batch (see the README's measurements).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

# A group closes when padding it to the next row's length would make its padded tokens exceed its real
# tokens by more than this share.
MAX_PADDING_SHARE = 0.25


def length_groups(lengths: list[int], max_batch_size: int, max_padding: float = MAX_PADDING_SHARE) -> list[list[int]]:
    """Indices of rows grouped for padded batches: by increasing length, each group at most `max_batch_size` rows,
    padded tokens (rows x longest) at most (1 + max_padding) x real tokens."""
    groups, current, tokens = [], [], 0
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        length = lengths[index]
        too_much_padding = length * (len(current) + 1) > (1.0 + max_padding) * (tokens + length)
        if current and (len(current) == max_batch_size or too_much_padding):
            groups.append(current)
            current, tokens = [], 0
        current.append(index)
        tokens += length
    if current:
        groups.append(current)
    return groups


def pad_rows(rows: list[dict], pad_id: int) -> dict:
    """[1, length] model-input rows as one right-padded [rows, longest] batch (attention mask 0 on padding)."""
    longest = max(row["input_ids"].shape[1] for row in rows)
    batch = {}
    for name, fill in (("input_ids", pad_id), ("attention_mask", 0), ("token_type_ids", 0)):
        array = np.full((len(rows), longest), fill, dtype=np.int32)
        for i, row in enumerate(rows):
            array[i, :row[name].shape[1]] = row[name][0]
        batch[name] = array
    return batch


class MicroBatcher:
    """Runs rows through `forward` (a dict of [batch, length] arrays -> logits) in batches, on `executor`.

    `observe_batch(rows)` is called with the size of each batch run.
    """

    def __init__(self, forward: Callable, pad_id: int, max_batch_size: int, max_delay_s: float, executor,
                 observe_batch: Callable[[int], None] = lambda rows: None):
        self.forward = forward
        self.pad_id = pad_id
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.executor = executor
        self.observe_batch = observe_batch
        self._queue: asyncio.Queue | None = None
        self._dispatcher: asyncio.Task | None = None

    async def run_rows(self, rows: list[dict]) -> list[np.ndarray]:
        """The logits of each row ([length, labels] or [labels]), computed in batches with other requests' rows."""
        if self._dispatcher is None:
            self._queue = asyncio.Queue()
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in rows]
        for row, future in zip(rows, futures):
            self._queue.put_nowait((row, future))
        return list(await asyncio.gather(*futures))

    async def close(self) -> None:
        """Stop the dispatcher (rows still waiting are cancelled)."""
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)

    async def _collect(self) -> list:
        """The oldest waiting row, and those that arrive within max_delay_s of taking it (at most max_batch_size)."""
        loop = asyncio.get_running_loop()
        waiting = [await self._queue.get()]
        deadline = loop.time() + self.max_delay_s
        while len(waiting) < self.max_batch_size:
            if not self._queue.empty():
                waiting.append(self._queue.get_nowait())
                continue
            timeout = deadline - loop.time()
            if timeout <= 0:
                break
            try:
                waiting.append(await asyncio.wait_for(self._queue.get(), timeout))
            except TimeoutError:
                break
        return waiting

    async def _dispatch(self) -> None:
        while True:
            waiting = await self._collect()
            lengths = [row["input_ids"].shape[1] for row, _ in waiting]
            for group in length_groups(lengths, self.max_batch_size):
                await self._run([waiting[i] for i in group])

    async def _run(self, group: list) -> None:
        rows = [row for row, _ in group]
        self.observe_batch(len(rows))
        try:
            logits = await asyncio.get_running_loop().run_in_executor(self.executor, self.forward,
                                                                      pad_rows(rows, self.pad_id))
            logits = np.asarray(logits)
        except Exception as error:  # every request in the batch gets the model's error
            for _, future in group:
                if not future.done():
                    future.set_exception(error)
            return
        for i, (row, future) in enumerate(group):
            if not future.done():  # its request may have been cancelled
                future.set_result(logits[i, :row["input_ids"].shape[1]] if logits.ndim == 3 else logits[i])
