"""Prometheus metrics of the service (prometheus_client), summed over every worker process.

prometheus_client's multiprocess mode: PROMETHEUS_MULTIPROC_DIR must name an empty directory before this module
is first imported (server.py makes one per service run and removes it at the end); each worker writes its
values to files there, and /metrics, whichever worker answers it, reads them all. Without the variable (an
application made in-process), the values are this process's own.
"""
from __future__ import annotations

import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0)

REQUESTS = Counter("xdistil_http_requests", "HTTP requests answered, by route and status code.",
                   ("path", "status"))
ERRORS = Counter("xdistil_predict_errors", "/predict requests refused (4xx) or failed (5xx), by error code.",
                 ("code",))
LATENCY = Histogram("xdistil_http_request_duration_seconds", "Time from a request's arrival to the end of its "
                    "answer, by route.", ("path",), buckets=LATENCY_BUCKETS)
INPUTS = Counter("xdistil_predict_inputs", "Inputs (texts or text pairs) answered by /predict.")
BATCH_ROWS = Histogram("xdistil_batch_rows", "Rows per model call with micro-batching.",
                       buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64))


def render() -> tuple[bytes, str]:
    """The metrics in the Prometheus text format, and its content type."""
    if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """ASGI middleware: counts every HTTP request by route and status, and times it to its answer's last byte.

    Paths other than `routes` are counted as "other" (a scan of random URLs adds no label values).
    """

    def __init__(self, app, routes: tuple[str, ...]):
        self.app = app
        self.routes = frozenset(routes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets when the application raises before answering

        async def send_and_record_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            path = scope["path"] if scope["path"] in self.routes else "other"
            REQUESTS.labels(path, str(status)).inc()
            LATENCY.labels(path).observe(time.perf_counter() - start)
