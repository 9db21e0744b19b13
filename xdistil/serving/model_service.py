"""One worker's model: its own ONNX session, loaded and warmed up in the worker, answering on one thread.

Without micro-batching each request runs as the file loop runs it (`OnlinePredictor.predict`: tokenize, forward
at the request's own length, post-process), on the event loop itself: a worker is one thread, and handing each
request to another thread cost 0.15 ms per request here (under load) for no gain. With micro-batching, requests
are tokenized on the event loop, their rows go through the MicroBatcher, whose batches run on one inference
thread so that the loop reads the next requests meanwhile, and each request's prediction is made from its rows'
logits as `predict` makes it.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from xdistil.inference.online import OnlinePredictor
from xdistil.serving.batching import MicroBatcher
from xdistil.serving.options import ServiceSettings
from xdistil.serving.schema import RequestInput, answer

WARMUP_SOURCE = "<warm-up>"
_WARMUP_WORDS = "the quick brown fox jumps over the lazy dog near the river bank".split()
_WARMUP_LENGTHS = (4, 8, 16, 32, 64)


class InjectedFailure(RuntimeError):
    """The failure the `fail_on_text` test hook makes."""


def warmup_lines(task, count: int) -> list[str]:
    """`count` request lines of the task's format, of 4 to 64 words in turn."""
    lines = []
    for i in range(count):
        text = " ".join((_WARMUP_WORDS * 5)[:_WARMUP_LENGTHS[i % len(_WARMUP_LENGTHS)]])
        lines.append(f"{text}\t{text}" if task.pair else text)
    return lines


class ModelService:
    """Answers checked /predict inputs with one predictor; `predict` returns the answers and the seconds spent."""

    def __init__(self, predictor: OnlinePredictor, settings: ServiceSettings, observe_batch=lambda rows: None):
        self.predictor = predictor
        self.task, self.labels = predictor.task, predictor.labels
        self.settings = settings
        self.ready = False
        self.executor = self.batcher = None
        if settings.batching:
            options = settings.options
            self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx")
            self.batcher = MicroBatcher(predictor.forward, predictor.tokenizer.pad_token_id or 0,
                                        options.max_batch_size, options.max_delay_ms / 1000.0, self.executor,
                                        observe_batch)

    @classmethod
    def load(cls, settings: ServiceSettings, observe_batch=lambda rows: None) -> ModelService:
        """Load the model directory's served ONNX model in a single-thread session and warm it up."""
        from xdistil.model_dir import ModelDirectory

        model_dir = ModelDirectory.load(settings.model_dir)
        predictor = OnlinePredictor.from_onnx(model_dir, model_dir.onnx_path(settings.precision),
                                              settings.intra_op_threads)
        service = cls(predictor, settings, observe_batch)
        service.warm_up()
        return service

    def warm_up(self) -> None:
        """Run the warm-up requests, then report ready."""
        for line_no, line in enumerate(warmup_lines(self.task, self.settings.warmup), start=1):
            self.predictor.predict(self.task.parse_unlabeled(line, WARMUP_SOURCE, line_no))
        self.ready = True

    async def predict(self, inputs: list[RequestInput]) -> tuple[list[dict], float]:
        """The answers to a request's inputs, in order, and the seconds they took (batching delay included)."""
        if self.batcher is None:
            return self._predict_alone(inputs)
        return await self._predict_batched(inputs)

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
            self.executor.shutdown(wait=True)

    def _check_test_hook(self, item: RequestInput) -> None:
        if self.settings.fail_on_text is not None and item.text == self.settings.fail_on_text:
            raise InjectedFailure("the model was told to fail on this text (ServiceSettings.fail_on_text)")

    def _predict_alone(self, inputs: list[RequestInput]) -> tuple[list[dict], float]:
        start = time.perf_counter()
        answers = []
        for item in inputs:
            self._check_test_hook(item)
            prediction, row_logits = self.predictor.predict(item.example)
            answers.append(answer(self.task, self.labels, item, prediction, row_logits))
        return answers, time.perf_counter() - start

    async def _predict_batched(self, inputs: list[RequestInput]) -> tuple[list[dict], float]:
        start = time.perf_counter()
        predictor, requests = self.predictor, []
        for item in inputs:
            self._check_test_hook(item)
            requests.append(self.task.encode_request(predictor.tokenizer, item.example, predictor.encoding))
        row_logits = await self.batcher.run_rows([row for request in requests for row in request.rows])
        answers, first = [], 0
        for item, request in zip(inputs, requests):
            logits = row_logits[first:first + len(request.rows)]
            first += len(request.rows)
            prediction = self.task.request_prediction(request, logits, item.example, self.labels)
            answers.append(answer(self.task, self.labels, item, prediction, logits))
        return answers, time.perf_counter() - start
