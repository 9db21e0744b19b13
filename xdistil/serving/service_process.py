"""A service started as a subprocess (the tests and bench/serving.py use it): its log, its URL once it listens,
a readiness wait, and SIGTERM to stop it.

The service is asked for --port 0; the port the OS gave is read from its log line `listening on http://...`.
"""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"listening on (http://[\w.:\[\]-]+:\d+)")
WORKER_READY = re.compile(r"worker \d+ ready")
# A clean stop after SIGTERM: one worker exits with the shell's status for that signal (128 + 15), the
# multi-worker supervisor with 0 (see server.end_through_system_exit_on_signals).
STOPPED_CLEANLY = (0, 128 + signal.SIGTERM)


class ServiceProcess:
    """A serving subprocess writing its log (stdout and stderr) to `log_path`."""

    def __init__(self, command: list[str], log_path, **popen):
        self.log_path = Path(log_path)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, **popen)
        self.url: str | None = None

    @classmethod
    def run_predict_onnx(cls, model_dir, log_path, *flags: str) -> ServiceProcess:
        """`run_predict_onnx.py --serve` on 127.0.0.1, on a port the OS picks; `flags` are more of its flags."""
        return cls([sys.executable, str(ROOT / "run_predict_onnx.py"), f"--model_dir={model_dir}", "--serve",
                    "--host=127.0.0.1", "--port=0", *flags], log_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, workers: int = 1, timeout: float = 300.0) -> ServiceProcess:
        """Wait until the log names the URL and `workers` workers ready, and GET /health answers 200.

        RuntimeError (with the log's end) when the process exits or the time runs out first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            log = self.log()
            found = LISTENING.search(log)
            if found and len(WORKER_READY.findall(log)) >= workers:
                self.url = found.group(1)
                with urllib.request.urlopen(self.url + "/health", timeout=30) as answer:
                    if answer.status == 200:
                        return self
            time.sleep(0.2)
        raise RuntimeError(f"the service was not ready within {timeout:g} s:\n{self.log()[-4000:]}")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the exit status (see STOPPED_CLEANLY)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
