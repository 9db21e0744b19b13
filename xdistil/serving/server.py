"""Starting the service: bind the port, become a light serving process, run uvicorn with N workers.

run_predict_onnx.py --serve binds the port first (a port in use stops it at once with `error: ... (--port)`),
then checks or makes the export (TensorFlow), then replaces itself (exec, same process id) with
`python -m xdistil.serving`, which never imports TensorFlow and hands the bound socket to uvicorn: with
--workers 1 it serves in that process; with more, uvicorn's supervisor spawns the workers, which share the one
socket (the kernel hands each new connection to one of them) and each load their own single-thread session
after the spawn. SIGTERM (or Ctrl-C): uvicorn stops accepting, lets requests in flight finish (at most
--shutdown_timeout seconds), and exits.
"""
from __future__ import annotations

import copy
import errno
import functools
import logging
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from xdistil.errors import ConfigError
from xdistil.inference.onnx_serving import ServeOptions, served_precision
from xdistil.serving.metadata import export_summary
from xdistil.serving.options import ServiceOptions, ServiceSettings

log = logging.getLogger(__name__)

# prometheus_client reads it when first imported: it must be set before any worker imports the metrics.
PROMETHEUS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
LOG_FORMAT = "%(asctime)s %(levelprefix)s [pid %(process)d] %(name)s: %(message)s"


def bind_listener(options: ServiceOptions) -> socket.socket:
    """A socket bound to --host:--port (not yet listening); ConfigError naming the flag when that fails."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(options.host, options.port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as error:
        raise ConfigError("host", f"cannot listen on {options.host!r}: {error.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise ConfigError("port", f"{options.host}:{options.port} is already in use: stop what listens there or "
                                      "choose another --port") from None
        raise ConfigError("port", f"cannot listen on {options.host}:{options.port}: {error.strerror}") from None
    return sock


def run_service(listener: socket.socket, model_dir, export_report: dict, serve_options: ServeOptions,
                options: ServiceOptions) -> NoReturn:
    """Serve the checked export of `model_dir` on `listener` until SIGTERM; this process becomes the service."""
    settings = ServiceSettings(model_dir=str(Path(model_dir.path).resolve()),
                               precision=served_precision(export_report, serve_options.serve_model), options=options,
                               intra_op_threads=serve_options.intra_op_threads, warmup=serve_options.warmup,
                               export_summary=export_summary(export_report))
    become_serving_process(listener, settings)


def become_serving_process(listener: socket.socket, settings: ServiceSettings) -> NoReturn:
    """Replace this process (and the TensorFlow it may hold) by `python -m xdistil.serving` on `listener`."""
    listener.set_inheritable(True)
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "xdistil.serving", "--fd", str(listener.fileno()),
                               "--settings", settings.to_json()], {**os.environ, "PYTHONPATH": path})


def log_config() -> dict:
    """uvicorn's logging configuration, with process ids and the xdistil loggers."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["default"].update(fmt=LOG_FORMAT, use_colors=False)
    config["loggers"]["xdistil"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def end_through_system_exit_on_signals() -> None:
    """Make SIGTERM and SIGINT raise SystemExit(128 + signal number).

    After its graceful shutdown, uvicorn's server re-raises the signal it got under the handlers it found: with
    these, the process still ends with the shell's status for that signal (143 for SIGTERM), but through SystemExit,
    so that cleanup (the metrics directory) runs, and with no KeyboardInterrupt traceback."""
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda number, frame: sys.exit(128 + number))


def serve_on_socket(listener: socket.socket, settings: ServiceSettings) -> int:
    """Serve until SIGTERM or SIGINT; the exit status (1 when the workers could not start)."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    options = settings.options
    with tempfile.TemporaryDirectory(prefix="xdistil-metrics-") as metrics_dir:
        os.environ[PROMETHEUS_DIR_VARIABLE] = metrics_dir
        from xdistil.serving.app import create_app

        config = uvicorn.Config(functools.partial(create_app, settings), factory=True, workers=options.workers,
                                log_config=log_config(), access_log=False, ws="none", lifespan="on",
                                timeout_graceful_shutdown=options.shutdown_timeout)
        host, port = listener.getsockname()[:2]
        log.info("listening on http://%s:%d: %s model of %s, %d worker(s), micro-batching %s; each worker answers "
                 "once warmed up", f"[{host}]" if ":" in host else host, port, settings.precision,
                 settings.model_dir, options.workers,
                 f"up to {options.max_batch_size} rows, {options.max_delay_ms:g} ms" if settings.batching else "off")
        if options.workers == 1:
            end_through_system_exit_on_signals()
            server = uvicorn.Server(config)
            server.run(sockets=[listener])
            return 0 if server.started else 1
        supervisor = Multiprocess(config, sockets=[listener])
        supervisor.run()
        return 1 if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes) else 0
