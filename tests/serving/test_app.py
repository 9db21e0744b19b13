"""The Starlette application in-process, on a stand-in predictor: routes, JSON errors, the 500 path, metrics."""
import logging

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from xdistil.data.encoding import EncodingSettings
from xdistil.serving.app import create_app
from xdistil.serving.model_service import ModelService
from xdistil.serving.options import ServiceOptions, ServiceSettings
from xdistil.tasks import get_task

FAIL_TEXT = "please fail now"
# Starlette 1.x prefers its httpx2 fork for TestClient; the pinned httpx works the same here.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")


class StandInPredictor:
    """OnlinePredictor's interface without a model: NER tags capitalised words B-PER; classification prefers
    label "1" for longer texts."""

    def __init__(self, kind: str):
        self.task = get_task(kind)
        self.labels = ["O", "B-PER", "I-PER"] if kind == "ner" else ["0", "1"]
        self.encoding = EncodingSettings(16)
        self.tokenizer = self.forward = None

    def predict(self, example):
        if self.task.token_level:
            tags = ["B-PER" if word[:1].isupper() else "O" for word in example.tokens]
            return tags, [np.zeros((len(tags), len(self.labels)), np.float32)]
        logits = np.array([2.0, 0.1 * len(example.text_a)], np.float32)
        return self.task.request_prediction(None, [logits], example, self.labels), [logits]


def settings(**options) -> ServiceSettings:
    return ServiceSettings(model_dir="stand-in", precision="int8", warmup=2, fail_on_text=FAIL_TEXT,
                           options=ServiceOptions(**{"max_request_chars": 50, "max_body_bytes": 400, **options}),
                           export_summary={"sizes_bytes": {"model.int8.onnx": 1234}})


def in_process_client(app):
    """Starlette's TestClient (imported here, where the module's warning filter applies)."""
    from starlette.testclient import TestClient

    return TestClient(app)


def app_for(kind: str, **options):
    def load(service_settings, observe_batch):
        service = ModelService(StandInPredictor(kind), service_settings)
        service.warm_up()
        return service

    return create_app(settings(**options), load=load)


@pytest.fixture(scope="module")
def ner_client():
    with in_process_client(app_for("ner")) as client:  # runs the startup: load and warm up
        yield client


def metric_value(client, name: str, **labels) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_health_is_loading_until_the_startup_has_warmed_up_the_model():
    assert in_process_client(app_for("ner")).get("/health").json() == {"status": "loading"}  # no startup run
    with in_process_client(app_for("ner")) as client:
        answer = client.get("/health")
        assert answer.status_code == 200 and answer.json()["status"] == "ready"


def test_predict_answers_ner_with_words_and_entities(ner_client):
    answer = ner_client.post("/predict", json={"inputs": ["Mary lives in Paris", "no one"]})
    assert answer.status_code == 200
    first, second = answer.json()["predictions"]
    assert [word["tag"] for word in first["words"]] == ["B-PER", "O", "O", "B-PER"]
    assert first["entities"] == [{"type": "PER", "text": "Mary", "start": 0, "end": 4},
                                 {"type": "PER", "text": "Paris", "start": 14, "end": 19}]
    assert second["entities"] == []
    assert answer.headers["server-timing"].startswith("model;dur=")


def test_predict_answers_classification_with_every_probability():
    with in_process_client(app_for("classification")) as client:
        (prediction,) = client.post("/predict", json={"inputs": "a rather long text of words"}).json()["predictions"]
    assert prediction["label"] == "1" and set(prediction["probabilities"]) == {"0", "1"}
    assert prediction["probability"] == pytest.approx(max(prediction["probabilities"].values()))


@pytest.mark.parametrize("body, status, code", [
    (b'{"inputs": ', 400, "invalid_json"),
    (b'{"inputs": "caf\xe9"}', 400, "invalid_utf8"),
    (b'{"inputs": {"text": 1}}', 422, "invalid_field"),
    (b'{"inputs": " "}', 422, "empty_text"),
    (b'{"inputs": "' + b"x" * 51 + b'"}', 413, "text_too_long"),
    (b'{"inputs": "' + b"x " * 200 + b'"}', 413, "body_too_large"),
    (b'{"inputs": {"text": "a", "text_pair": "b"}}', 422, "pair_not_supported"),
])
def test_bad_requests_get_json_errors_and_are_counted(ner_client, body, status, code):
    before = metric_value(ner_client, "xdistil_predict_errors_total", code=code)
    answer = ner_client.post("/predict", content=body)
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code and answer.json()["error"]["message"]
    assert metric_value(ner_client, "xdistil_predict_errors_total", code=code) == before + 1
    assert ner_client.post("/predict", json={"inputs": "still Serving"}).status_code == 200


def test_a_body_without_length_over_the_limit_is_refused(ner_client):
    chunks = iter([b'{"inputs": "', b"y" * 300, b"y" * 300, b'"}'])
    answer = ner_client.post("/predict", content=chunks)  # streamed: no Content-Length
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "body_too_large"


def test_unknown_routes_and_methods_get_json_errors(ner_client):
    missing = ner_client.get("/nothing/here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong_method = ner_client.get("/predict")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert wrong_method.headers["allow"] == "POST"


def test_a_model_failure_is_a_500_with_an_id_in_the_log_and_the_next_request_is_served(ner_client, caplog):
    with caplog.at_level(logging.ERROR, logger="xdistil.serving.app"):
        failed = ner_client.post("/predict", json={"inputs": FAIL_TEXT})
    assert failed.status_code == 500
    error = failed.json()["error"]
    assert error["code"] == "model_error" and error["id"] in error["message"]
    assert any(error["id"] in record.getMessage() and record.exc_info for record in caplog.records)
    assert ner_client.post("/predict", json={"inputs": "Next one"}).status_code == 200


def test_metrics_count_requests_by_route_and_status(ner_client):
    before = metric_value(ner_client, "xdistil_http_requests_total", path="/predict", status="200")
    for _ in range(3):
        ner_client.post("/predict", json={"inputs": "Ann"})
    text = ner_client.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain")
    assert metric_value(ner_client, "xdistil_http_requests_total", path="/predict", status="200") == before + 3
    assert metric_value(ner_client, "xdistil_http_request_duration_seconds_count", path="/predict") >= 3
    ner_client.get("/random/scan")
    assert metric_value(ner_client, "xdistil_http_requests_total", path="other", status="404") >= 1


def test_metadata_and_page(ner_client):
    metadata = ner_client.get("/metadata").json()
    assert metadata["task"] == "ner" and metadata["labels"] == ["O", "B-PER", "I-PER"]
    assert metadata["served_model"] == {"precision": "int8", "file": "model.int8.onnx", "bytes": 1234}
    assert metadata["service"]["micro_batching"] is None and metadata["service"]["limits"]["max_request_chars"] == 50
    page = ner_client.get("/")
    assert page.headers["content-type"].startswith("text/html") and 'fetch("/predict"' in page.text
