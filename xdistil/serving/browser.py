"""Headless Chromium over the DevTools protocol: open the service's page, type a text as a person would, read
what the page shows and take a screenshot. Used by the page's test and by bench/serving.py.

Chromium comes from Debian's packages (`apt-get install chromium-headless-shell`, or `chromium`; scripts/setup.sh
installs the first when it runs as root where apt-get works); the protocol runs over a websocket (the `websockets`
package) on a localhost port. The browser runs in a session (and process group) of its own, which is ended whole:
no Chromium process outlives a HeadlessPage.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_BINARIES = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
CHROMIUM_PACKAGE = "chromium-headless-shell"  # Debian's, what scripts/setup.sh installs
_POLL_SECONDS = 0.05

# What the page shows once it has answered: its state, the highlighted entities, or the label.
_PAGE_RESULT = """({
  state: document.getElementById("result").dataset.state,
  entities: Array.from(document.querySelectorAll("#result mark")).map(
    mark => ({text: mark.firstChild.textContent, type: mark.dataset.type})),
  label: (document.getElementById("label") || {}).textContent || null,
  message: document.getElementById("result").textContent,
})"""


def find_chromium() -> str | None:
    """The first Chromium binary on PATH, or None."""
    return next((path for path in map(shutil.which, CHROMIUM_BINARIES) if path), None)


def chromium_installable() -> bool:
    """Whether this machine could install Debian's Chromium package itself: root, apt-get, and the package known to
    apt (scripts/setup.sh then installs it)."""
    if os.geteuid() != 0 or shutil.which("apt-cache") is None:
        return False
    known = subprocess.run(["apt-cache", "show", CHROMIUM_PACKAGE], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    return known.returncode == 0


def chromium_processes() -> dict[int, str]:
    """The command lines of the live Chromium processes on this machine (any user's), by process id: what is left
    of a browser shows here, its launcher script, renderers and helpers included."""
    found = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            arguments = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # ended meanwhile
        # the first three arguments: Debian's launcher runs as "/bin/sh -e /usr/bin/chromium-headless-shell ..."
        program = [Path(argument.decode(errors="replace")).name for argument in arguments[:3]]
        if state != "Z" and any(name.startswith(CHROMIUM_BINARIES) for name in program):
            found[int(entry)] = b" ".join(arguments).decode(errors="replace").strip()
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False


class HeadlessPage:
    """One page of a headless Chromium started for it (a context manager: the browser ends on exit)."""

    def __init__(self, binary: str, width: int = 900, height: int = 560, timeout: float = 30.0):
        from websockets.sync.client import connect

        self.timeout = timeout
        self._last_id = 0
        with contextlib.ExitStack() as resources:  # everything started so far is undone if the start fails
            profile = resources.enter_context(tempfile.TemporaryDirectory(prefix="xdistil-chromium-",
                                                                          ignore_cleanup_errors=True))
            port = _free_port()
            self.process = subprocess.Popen(
                [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                 f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1",
                 f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            resources.callback(self._end_browser)
            page = next(target for target in self._targets(port) if target["type"] == "page")
            self.connection = resources.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None,
                                                              open_timeout=timeout))
            self._resources = resources.pop_all()

    def _targets(self, port: int) -> list:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as answer:
                    targets = json.loads(answer.read())
                if any(target["type"] == "page" for target in targets):
                    return targets
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Chromium gave no DevTools endpoint on port {port} (exit code "
                                   f"{self.process.poll()})")
            time.sleep(_POLL_SECONDS)

    def call(self, method: str, **params) -> dict:
        """Send one DevTools command and return its result (events in between are skipped)."""
        self._last_id += 1
        self.connection.send(json.dumps({"id": self._last_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.connection.recv(timeout=self.timeout))
            if message.get("id") == self._last_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} raised {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str):
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + self.timeout
        while not (value := self.evaluate(expression)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page never made {expression!r} true")
            time.sleep(_POLL_SECONDS)
        return value

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def type_into(self, selector: str, text: str) -> None:
        """Focus an element and type `text` into it."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", text=text)

    def press_enter(self) -> None:
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13)

    def screenshot(self, path) -> Path:
        path = Path(path)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return path

    def _end_browser(self) -> None:
        """End the browser's whole process group and wait for it: Debian's binary is a shell script that starts the
        real one (and that one its renderers), so ending the script alone would leave them running."""
        group = self.process.pid
        for sig, grace_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace_s
            while _group_alive(group) and time.monotonic() < deadline:
                self.process.poll()  # reaps the script, our own child
                time.sleep(_POLL_SECONDS)
        self.process.wait()

    def close(self) -> None:
        """Close the connection, end the browser, remove its profile."""
        self._resources.close()

    def __enter__(self) -> HeadlessPage:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def try_page(base_url: str, text: str, screenshot, binary: str, text_pair: str | None = None) -> dict:
    """Open the service's page, type `text` (and `text_pair`), press Enter and wait for the answer; write a
    screenshot and return what the page shows: {"state", "entities": [{"text", "type"}], "label", "message"}."""
    with HeadlessPage(binary) as page:
        page.open(base_url.rstrip("/") + "/")
        page.wait_for("document.body.dataset.ready === 'true'")
        page.type_into("#text", text)
        if text_pair is not None:
            page.type_into("#text-pair", text_pair)
        page.press_enter()
        page.wait_for("['done', 'error'].includes(document.getElementById('result').dataset.state)")
        shown = page.evaluate(_PAGE_RESULT)
        page.screenshot(screenshot)
    return shown
