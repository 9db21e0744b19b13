"""The Starlette application of one worker: POST /predict, GET /health, /metadata, /metrics and the page at /.

The model loads and warms up in the application's startup (lifespan), so a worker accepts no connection before
it can answer; /health says "ready" only once that worker's session is warmed up (503 "loading" before).
Every error is JSON, {"error": {"code": ..., "message": ...}}: a bad request gets a 4xx naming what is wrong;
a failure inside the model a 500 with an error id that the server log shows beside the traceback.
"""
from __future__ import annotations

import contextlib
import logging
import os
import uuid
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from xdistil.serving import metrics
from xdistil.serving.metadata import service_metadata
from xdistil.serving.model_service import ModelService
from xdistil.serving.options import ServiceSettings
from xdistil.serving.schema import RequestError, parse_request

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("page.html")
ROUTES = ("/", "/predict", "/health", "/metadata", "/metrics")


def error_response(status: int, code: str, message: str, headers=None, **extra) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status, headers=headers)


def logged_failure(code: str, what: str, error: BaseException) -> JSONResponse:
    """A 500 answer with a new error id; the log gets the traceback under the same id."""
    error_id = uuid.uuid4().hex[:12]
    log.error("error id %s: %s failed", error_id, what, exc_info=error)
    return error_response(500, code, f"{what} failed on this request; the server log has the details under error id "
                                     f"{error_id}", id=error_id)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length", "")
    too_large = RequestError(413, "body_too_large", f"the body is larger than --max_body_bytes {limit}")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: ServiceSettings, load=ModelService.load) -> Starlette:
    """The application; `load(settings, observe_batch)` makes its ModelService at startup."""
    page = PAGE.read_text(encoding="utf-8")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        service = load(settings, metrics.BATCH_ROWS.observe)
        app.state.service, app.state.metadata = service, service_metadata(settings, service)
        log.info("worker %d ready: %s model of %s warmed up with %d requests", os.getpid(), settings.precision,
                 settings.model_dir, settings.warmup)
        yield
        await service.close()

    async def predict(request: Request) -> Response:
        service: ModelService = request.app.state.service
        try:
            body = await read_body(request, settings.options.max_body_bytes)
            inputs = parse_request(body, service.task, settings.options)
        except RequestError as error:
            metrics.ERRORS.labels(error.code).inc()
            return error_response(error.status, error.code, error.message)
        try:
            answers, seconds = await service.predict(inputs)
        except Exception as error:
            metrics.ERRORS.labels("model_error").inc()
            return logged_failure("model_error", "the model", error)
        metrics.INPUTS.inc(len(answers))
        return JSONResponse({"predictions": answers}, headers={"Server-Timing": f"model;dur={seconds * 1000:.3f}"})

    async def health(request: Request) -> Response:
        service = request.app.state.service
        if service is None or not service.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ready", "worker_pid": os.getpid()})

    async def metadata(request: Request) -> Response:
        return JSONResponse(request.app.state.metadata)

    async def prometheus_metrics(request: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def http_error(request: Request, error: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return error_response(error.status_code, code, f"{request.method} {request.url.path}: {error.detail}",
                              headers=error.headers)

    async def unexpected_error(request: Request, error: Exception) -> Response:
        return logged_failure("internal_error", f"{request.method} {request.url.path}", error)

    app = Starlette(
        routes=[Route("/", index), Route("/predict", predict, methods=["POST"]), Route("/health", health),
                Route("/metadata", metadata), Route("/metrics", prometheus_metrics)],
        middleware=[Middleware(metrics.MetricsMiddleware, routes=ROUTES)],
        exception_handlers={HTTPException: http_error, Exception: unexpected_error},
        lifespan=lifespan)
    app.state.service = None
    return app
