"""The service's settings: the flags (ServiceOptions) and the resolved settings a serving process gets."""
from __future__ import annotations

import dataclasses
import json

from xdistil.config import Section, setting


@dataclasses.dataclass(frozen=True)
class ServiceOptions(Section):
    """How run_predict_onnx.py --serve listens and what requests it accepts."""

    host: str = setting("127.0.0.1", "--serve: address to listen on.")
    port: int = setting(8080, "--serve: port to listen on (0: any free port, logged).", minimum=0, maximum=65535)
    workers: int = setting(1, "--serve: worker processes, each with its own single-thread ONNX session, behind one "
                              "port.", minimum=1)
    max_batch_size: int = setting(1, "--serve: dynamic micro-batching: at most this many rows of concurrent "
                                     "requests run as one batch (1: off, every request alone).", minimum=1)
    max_delay_ms: float = setting(2.0, "--serve: micro-batching: how long the first waiting row waits for others.",
                                  minimum=0.0)
    max_request_chars: int = setting(10_000, "--serve: most characters one input (a text, or both texts of a "
                                             "pair) may have.", minimum=1)
    max_request_inputs: int = setting(64, "--serve: most inputs one request may hold.", minimum=1)
    max_body_bytes: int = setting(1_000_000, "--serve: largest request body, in bytes.", minimum=1)
    shutdown_timeout: int = setting(30, "--serve: on SIGTERM, seconds to let requests in flight finish.",
                                    minimum=1)


@dataclasses.dataclass(frozen=True)
class ServiceSettings:
    """Everything a serving process needs, resolved once by run_predict_onnx.py and handed over as JSON.

    `export_summary` is the checked export report's summary (served as /metadata); `fail_on_text` is a test
    hook: an input whose text is exactly this string makes the model call raise (the 500 path).
    """

    model_dir: str
    precision: str  # "int8" | "fp32"
    options: ServiceOptions
    intra_op_threads: int = 1
    warmup: int = 10
    export_summary: dict = dataclasses.field(default_factory=dict)
    fail_on_text: str | None = None

    @property
    def batching(self) -> bool:
        return self.options.max_batch_size > 1

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServiceSettings:
        values = json.loads(text)
        return cls(**{**values, "options": ServiceOptions.from_dict(values["options"])})
