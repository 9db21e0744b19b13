"""run_predict_onnx.py --serve and `python -m xdistil.serving` as real servers on 127.0.0.1, real HTTP requests.

Every server runs in a subprocess on a port the OS picks (--port 0; the port is read from its log), and is
stopped with SIGTERM at the end of its test or module.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import copy_model_dir
from xdistil.inference.online import OnlinePredictor
from xdistil.inference.onnx_serving import ServeOptions, run_onnx_prediction
from xdistil.model_dir import ModelDirectory
from xdistil.serving.browser import (CHROMIUM_BINARIES, CHROMIUM_PACKAGE, chromium_installable, chromium_processes,
                                     find_chromium, try_page)
from xdistil.serving.metadata import export_summary
from xdistil.serving.options import ServiceOptions, ServiceSettings
from xdistil.serving.schema import format_answer_line, input_for_line
from xdistil.serving.service_process import ROOT, STOPPED_CLEANLY, ServiceProcess

pytestmark = pytest.mark.slow  # real distillations, exports and server processes

START_TIMEOUT_S = 300  # an export, or TensorFlow's import on a loaded machine, takes a while
LONG_SENTENCE = " ".join(["john works in paris and mary lives at acme corp"] * 4)  # 40 words: several windows
NER_LINES = ["john works in paris", "mary lives at acme corp", "paris", LONG_SENTENCE, "Mary  lives\u00a0in London ."]
PAIRWISE_LINES = ["the movie is good\tthe film is great", "the plot is bad\tthe cast is good",
                  "a film is awful\ta movie is bad", "the cast is great\tthe plot is awful"]
FAIL_TEXT = "the model fails on this sentence"


def serve_cli(model_dir, log_path, *flags) -> ServiceProcess:
    return ServiceProcess.run_predict_onnx(model_dir, log_path, "--warmup=2", *flags)


def serve_module(settings: ServiceSettings, log_path) -> ServiceProcess:
    """`python -m xdistil.serving` (what run_predict_onnx.py becomes) on a socket bound here."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    try:
        return ServiceProcess([sys.executable, "-m", "xdistil.serving", "--fd", str(listener.fileno()),
                               "--settings", settings.to_json()], log_path, pass_fds=(listener.fileno(),))
    finally:
        listener.close()  # the service holds its own copy


def module_settings(model_dir: ModelDirectory, precision="int8", **options) -> ServiceSettings:
    return ServiceSettings(model_dir=str(model_dir.path), precision=precision, warmup=2, fail_on_text=FAIL_TEXT,
                           options=ServiceOptions(**options), export_summary=export_summary(model_dir.checked_export()))


def predict(url: str, inputs, client=httpx) -> httpx.Response:
    return client.post(url + "/predict", json={"inputs": inputs}, timeout=120)


def metric(url: str, name: str, **labels) -> float:
    """A sample's value in /metrics (0 when absent)."""
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=30).text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


@pytest.fixture(scope="module")
def ner_server(distilled_ner_dir, tmp_path_factory):
    """run_predict_onnx.py --serve on a copy of the NER model directory that has no export yet."""
    root = tmp_path_factory.mktemp("ner_server")
    copy = copy_model_dir(distilled_ner_dir, root / "model_dir")
    server = serve_cli(copy, root / "server.log")
    yield server.wait_ready(), ModelDirectory.load(copy)
    assert server.stop() in STOPPED_CLEANLY, server.log()[-3000:]


@pytest.fixture(scope="module")
def exported_pairwise(distilled_pairwise_dir, tmp_path_factory):
    from xdistil.export.student_export import ExportOptions, export_student

    copy = copy_model_dir(distilled_pairwise_dir, tmp_path_factory.mktemp("pairwise_server") / "model_dir")
    model_dir = ModelDirectory.load(copy)
    export_student(model_dir, ExportOptions(batch_size=8))
    return model_dir


def file_loop_lines(model_dir: ModelDirectory, precision: str, lines: list[str], tmp_path) -> list[str]:
    """What `run_predict_onnx.py --pred_file` answers for `lines`: its predictions file, written by the function the
    command calls."""
    requests, predictions = tmp_path / "requests.txt", tmp_path / "predictions.txt"
    requests.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    run_onnx_prediction(model_dir, model_dir.checked_export(),
                        ServeOptions(pred_file=str(requests), output_file=str(predictions), serve_model=precision,
                                     warmup=0))
    return predictions.read_text(encoding="utf-8").splitlines()


def served_precision(url: str) -> str:
    return httpx.get(url + "/metadata", timeout=30).json()["served_model"]["precision"]


def test_ner_service_exports_first_and_answers_as_the_file_loop(ner_server, tmp_path):
    server, model_dir = ner_server
    assert "exporting now" in server.log()
    expected = file_loop_lines(model_dir, served_precision(server.url), NER_LINES, tmp_path)
    singles = [predict(server.url, line).json()["predictions"][0] for line in NER_LINES]
    assert [format_answer_line(model_dir.task, answer) for answer in singles] == expected
    together = predict(server.url, NER_LINES).json()["predictions"]
    assert together == singles
    for line, answer in zip(NER_LINES, singles):
        assert [line[w["start"]:w["end"]] for w in answer["words"]] == line.split()
        for entity in answer["entities"]:
            assert line[entity["start"]:entity["end"]] == entity["text"]


def test_pairwise_service_answers_as_the_file_loop(exported_pairwise, tmp_path):
    server = serve_module(module_settings(exported_pairwise), tmp_path / "server.log").wait_ready()
    try:
        expected = file_loop_lines(exported_pairwise, "int8", PAIRWISE_LINES, tmp_path)
        inputs = [input_for_line(exported_pairwise.task, line) for line in PAIRWISE_LINES]
        answers = predict(server.url, inputs).json()["predictions"]
        assert [format_answer_line(exported_pairwise.task, answer) for answer in answers] == expected
        for answer in answers:
            assert answer["probabilities"][answer["label"]] == answer["probability"]
            assert set(answer["probabilities"]) == set(exported_pairwise.labels)
    finally:
        assert server.stop() in STOPPED_CLEANLY


@pytest.mark.parametrize("body, status, code", [
    (b'{"inputs": "john works', 400, "invalid_json"),
    (b'{"inputs": "\xc3\x28"}', 400, "invalid_utf8"),
    (b'{"inputs": ["john", 5]}', 422, "invalid_field"),
    (b'{"inputs": ""}', 422, "empty_text"),
    (b'{"inputs": {"text": "john", "text_pair": "mary"}}', 422, "pair_not_supported"),
    (b'{"inputs": "' + b"paris " * 2000 + b'"}', 413, "text_too_long"),
    (b'{"inputs": "paris"}' + b" " * 1_000_000, 413, "body_too_large"),
])
def test_bad_requests_get_4xx_and_the_server_keeps_serving(ner_server, body, status, code):
    server, _ = ner_server
    answer = httpx.post(server.url + "/predict", content=body, timeout=30)
    assert (answer.status_code, answer.json()["error"]["code"]) == (status, code)
    assert predict(server.url, "john works in paris").status_code == 200


def test_limits_are_the_flags(exported_pairwise, tmp_path):
    settings = module_settings(exported_pairwise, max_request_chars=40, max_body_bytes=2000)
    server = serve_module(settings, tmp_path / "server.log").wait_ready()
    try:
        too_long = predict(server.url, {"text": "good " * 5, "text_pair": "bad " * 6})
        assert too_long.status_code == 413 and too_long.json()["error"]["code"] == "text_too_long"
        body = json.dumps({"inputs": {"text": "a", "text_pair": "b"}}).encode() + b" " * 3000
        too_large = httpx.post(server.url + "/predict", content=body, timeout=30)
        assert too_large.status_code == 413 and too_large.json()["error"]["code"] == "body_too_large"
        assert predict(server.url, {"text": "good", "text_pair": "bad"}).status_code == 200
    finally:
        assert server.stop() in STOPPED_CLEANLY
def test_a_model_failure_is_a_500_with_the_logged_id_and_the_next_request_is_served(exported_pairwise, tmp_path):
    server = serve_module(module_settings(exported_pairwise), tmp_path / "server.log").wait_ready()
    try:
        failed = predict(server.url, {"text": FAIL_TEXT, "text_pair": "the film is great"})
        assert failed.status_code == 500
        error_id = failed.json()["error"]["id"]
        assert predict(server.url, {"text": "the movie is good", "text_pair": "the film is great"}).status_code == 200
        assert metric(server.url, "xdistil_predict_errors_total", code="model_error") == 1
    finally:
        assert server.stop() in STOPPED_CLEANLY
    log = server.log()
    assert f"error id {error_id}" in log and "Traceback" in log and "InjectedFailure" in log


def test_sigterm_lets_the_request_in_flight_finish(exported_pairwise, tmp_path):
    settings = module_settings(exported_pairwise, max_request_inputs=20_000, max_body_bytes=10_000_000)
    server = serve_module(settings, tmp_path / "server.log").wait_ready()
    inputs = [{"text": f"the movie number {i} is good and the cast is great", "text_pair": "the plot is bad"}
              for i in range(8000)]  # seconds of work for the tiny model
    answers = {}

    def send():
        answers["response"] = predict(server.url, inputs)
        answers["at"] = time.monotonic()

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(0.5)  # the request is in: its body takes milliseconds to send
    terminated_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    sender.join(timeout=120)
    assert server.process.wait(timeout=60) in STOPPED_CLEANLY
    response = answers["response"]
    assert answers["at"] > terminated_at, "the request finished before SIGTERM: it was not in flight"
    assert response.status_code == 200 and len(response.json()["predictions"]) == len(inputs)
    assert "Shutting down" in server.log()


def test_a_port_in_use_is_a_clear_error(ner_server, tmp_path):
    _, model_dir = ner_server
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, str(ROOT / "run_predict_onnx.py"), f"--model_dir={model_dir.path}",
                                 "--serve", "--host=127.0.0.1", f"--port={port}"],
                                capture_output=True, text=True, timeout=START_TIMEOUT_S, cwd=ROOT)
    assert result.returncode == 1
    assert f"error: 127.0.0.1:{port} is already in use" in result.stderr and "(--port)" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_file_loops_flags_are_refused_beside_serve(ner_server):
    _, model_dir = ner_server
    result = subprocess.run([sys.executable, str(ROOT / "run_predict_onnx.py"), f"--model_dir={model_dir.path}",
                             "--serve", "--port=0", "--compare"],
                            capture_output=True, text=True, timeout=START_TIMEOUT_S, cwd=ROOT)
    assert result.returncode == 1
    assert "error: --compare belongs to the file loop and --serve to HTTP requests" in result.stderr
    assert "Traceback" not in result.stderr


def answering_workers(url: str, count: int, tries: int = 300) -> tuple[set, int]:
    """The process ids of the workers answering GET /health on new connections (the kernel picks a worker for each),
    until `count` distinct ones answered; and the number of requests sent."""
    pids, sent = set(), 0
    while len(pids) < count and sent < tries:
        pids.add(httpx.get(url + "/health", timeout=30).json()["worker_pid"])
        sent += 1
    return pids, sent


def test_two_workers_share_the_port_sum_their_metrics_and_a_killed_one_is_replaced(ner_server, tmp_path):
    _, model_dir = ner_server
    server = serve_cli(model_dir.path, tmp_path / "server.log", "--workers=2").wait_ready(workers=2)
    try:
        pids, health_requests = answering_workers(server.url, 2)
        assert len(pids) == 2
        with httpx.Client() as client:
            for line in NER_LINES * 4:
                assert predict(server.url, line, client).status_code == 200
        assert metric(server.url, "xdistil_http_requests_total", path="/predict", status="200") == len(NER_LINES) * 4
        assert metric(server.url, "xdistil_http_requests_total", path="/health",
                      status="200") == health_requests + 1  # and wait_ready's
        assert metric(server.url, "xdistil_predict_inputs_total") == len(NER_LINES) * 4

        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        for line in NER_LINES:  # the other worker answers meanwhile
            assert predict(server.url, line).status_code == 200
        server.wait_ready(workers=3)  # the supervisor started a replacement, which warmed up
        assert f"Child process [{victim}] died" in server.log()
        replaced, _ = answering_workers(server.url, 2)
        assert len(replaced) == 2 and victim not in replaced
    finally:
        assert server.stop() in STOPPED_CLEANLY


def test_micro_batching_groups_concurrent_requests_and_answers_as_the_file_loop(exported_pairwise, tmp_path):
    """In fp32 (dynamic int8 scales activations over the whole batch, so int8 batches are not bit-identical)."""
    settings = module_settings(exported_pairwise, precision="fp32", max_batch_size=8, max_delay_ms=50)
    server = serve_module(settings, tmp_path / "server.log").wait_ready()
    lines = PAIRWISE_LINES * 4
    try:
        answers = [None] * len(lines)

        def send(i):
            answers[i] = predict(server.url, input_for_line(exported_pairwise.task, lines[i])).json()["predictions"][0]

        senders = [threading.Thread(target=send, args=(i,)) for i in range(len(lines))]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(timeout=120)
        batches = metric(server.url, "xdistil_batch_rows_count")
        assert metric(server.url, "xdistil_batch_rows_sum") == len(lines) and batches < len(lines)
    finally:
        assert server.stop() in STOPPED_CLEANLY
    predictor = OnlinePredictor.from_onnx(exported_pairwise, exported_pairwise.onnx_path("fp32"))
    for line, answer in zip(lines, answers):
        label, probability = predictor.predict(exported_pairwise.task.parse_unlabeled(line, "requests", 1))[0]
        assert answer["label"] == label and answer["probability"] == pytest.approx(probability, abs=1e-5)


def chromium_binary() -> str:
    """The Chromium to drive; a failure where this machine could install one (scripts/setup.sh does), a skip with the
    reason where it cannot."""
    binary = find_chromium()
    if binary is None and chromium_installable():
        pytest.fail(f"no Chromium binary, though this machine can install one: run `bash scripts/setup.sh` (it "
                    f"installs {CHROMIUM_PACKAGE} when run as root)")
    if binary is None:
        pytest.skip(f"no Chromium binary ({', '.join(CHROMIUM_BINARIES)}) and no way to install one here (not root, "
                    f"no apt-get, or apt knows no {CHROMIUM_PACKAGE}): install one to run the page's test")
    return binary


def test_the_page_highlights_entities_in_a_real_browser_which_then_ends_whole(ner_server, tmp_path):
    server, _ = ner_server
    binary = chromium_binary()
    sentence = "mary lives in paris and john works at acme corp"
    expected = predict(server.url, sentence).json()["predictions"][0]["entities"]
    before = chromium_processes()
    shown = try_page(server.url, sentence, tmp_path / "page.png", binary)
    assert shown["state"] == "done"
    assert shown["entities"] == [{"text": entity["text"], "type": entity["type"]} for entity in expected]
    assert (tmp_path / "page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    left = {pid: command for pid, command in chromium_processes().items() if pid not in before}
    assert not left, f"Chromium processes outlived the page: {left}"


def test_the_page_shows_a_pair_classifiers_label_in_a_real_browser(exported_pairwise, tmp_path):
    binary = chromium_binary()
    server = serve_module(module_settings(exported_pairwise), tmp_path / "server.log").wait_ready()
    try:
        pair = {"text": "the movie is good", "text_pair": "the film is great"}
        expected = predict(server.url, pair).json()["predictions"][0]
        shown = try_page(server.url, pair["text"], tmp_path / "page.png", binary, text_pair=pair["text_pair"])
    finally:
        assert server.stop() in STOPPED_CLEANLY
    assert shown["state"] == "done" and shown["label"] == expected["label"]
    assert f"with probability {100 * expected['probability']:.1f}%" in shown["message"]
