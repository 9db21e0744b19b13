"""Batch-1 online inference on distilled tiny students: TF vs ONNX, online vs batched, latency math."""
import io
import sys

import pytest

from xdistil.errors import InputFormatError
from xdistil.export.onnx_export import export_to_onnx
from xdistil.inference.online import (OnlinePredictor, iter_request_lines, latency_summary, serve,
                                      serve_instances, serve_interleaved, time_interleaved)
from xdistil.inference.onnx_runtime import onnx_session
from xdistil.inference.predict import ONNXPredictor
from xdistil.model_dir import ModelDirectory

LONG_SENTENCE = " ".join(["john works in paris and mary lives at acme corp"] * 4)  # 40 words
NER_LINES = ["john works in paris", "mary lives at acme corp", "paris", LONG_SENTENCE, "acme corp is good ."]
PAIRWISE_LINES = ["the movie is good\tthe film is great", "the plot is bad\tthe cast is good",
                  "a film is awful\ta movie is bad", "the cast is great\tthe plot is awful"]

pytestmark = pytest.mark.slow  # real distillations and exports


def _student(model_dir, tmp_path_factory):
    bundle = ModelDirectory.load(model_dir)
    onnx_path = tmp_path_factory.mktemp(f"online_{bundle.task.kind}") / "model.onnx"
    export_to_onnx(bundle.load_tf_model(float32=True), onnx_path)
    return bundle, onnx_path


@pytest.fixture(scope="module")
def ner_student(distilled_ner_dir, tmp_path_factory):
    return _student(distilled_ner_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def pairwise_student(distilled_pairwise_dir, tmp_path_factory):
    return _student(distilled_pairwise_dir, tmp_path_factory)


def _requests(lines):
    return list(enumerate(lines, start=1))


def _parse(bundle, line, line_no=1):
    return bundle.task.parse_unlabeled(line, "test", line_no)


def _batched_outputs(bundle, onnx_path, lines):
    """The padded batched path: the whole file encoded at once, batches of 4."""
    examples = [_parse(bundle, line) for line in lines]
    features = bundle.encode(examples)
    logits = ONNXPredictor(onnx_session(onnx_path), batch_size=4).logits(features)
    return [bundle.task.format_prediction(p) for p in bundle.predictions(logits, features, examples)]


def _assert_same_predictions(kind, got, expected):
    assert len(got) == len(expected)
    if kind == "ner":
        assert got == expected
        return
    for got_line, expected_line in zip(got, expected):
        (label, probability), (expected_label, expected_probability) = got_line.split("\t"), expected_line.split("\t")
        assert label == expected_label
        assert float(probability) == pytest.approx(float(expected_probability), abs=1e-4)


@pytest.mark.parametrize("student, lines", [("ner_student", NER_LINES), ("pairwise_student", PAIRWISE_LINES)])
def test_onnx_online_matches_tf_online_and_batched(student, lines, request):
    bundle, onnx_path = request.getfixturevalue(student)
    onnx_outputs, latencies = serve(OnlinePredictor.from_onnx(bundle, onnx_path), _requests(lines), warmup=2)
    tf_outputs, _ = serve(OnlinePredictor.from_tf(bundle, bundle.load_tf_model()), _requests(lines), warmup=0)
    _assert_same_predictions(bundle.task.kind, onnx_outputs, tf_outputs)
    _assert_same_predictions(bundle.task.kind, onnx_outputs, _batched_outputs(bundle, onnx_path, lines))
    assert len(latencies) == len(lines) and all(latency > 0 for latency in latencies)


def test_each_forward_sees_exactly_its_real_length(ner_student):
    bundle, onnx_path = ner_student
    predictor = OnlinePredictor.from_onnx(bundle, onnx_path)
    shapes = []
    onnx_forward = predictor.forward

    def recording_forward(arrays):
        shapes.append({name: array.shape for name, array in arrays.items()})
        return onnx_forward(arrays)

    predictor.forward = recording_forward
    all_lengths = []
    for line_no, line in _requests(NER_LINES):
        shapes.clear()
        predictor.predict_line(line, line_no, "test")
        lengths = bundle.encode([_parse(bundle, line)]).attention_mask.sum(axis=1).tolist()
        assert [set(s.values()) for s in shapes] == [{(1, length)} for length in lengths]
        assert all(len(s) == 3 for s in shapes)
        all_lengths += lengths
    assert min(all_lengths) < bundle.seq_len  # nothing padded to seq_len


def test_long_ner_sentence_gets_one_tag_per_word(ner_student):
    bundle, onnx_path = ner_student
    assert len(bundle.encode([_parse(bundle, LONG_SENTENCE)])) > 1  # split into several windows
    tags = OnlinePredictor.from_onnx(bundle, onnx_path).predict_line(LONG_SENTENCE, 1, "test").split()
    assert len(tags) == len(LONG_SENTENCE.split()) == 40
    assert set(tags) <= set(bundle.labels)


def test_warmup_runs_the_first_requests_once_untimed(ner_student):
    bundle, onnx_path = ner_student
    predictor = OnlinePredictor.from_onnx(bundle, onnx_path)
    calls = []
    onnx_forward = predictor.forward
    predictor.forward = lambda arrays: calls.append(1) or onnx_forward(arrays)
    short_lines = NER_LINES[:3]
    outputs, latencies = serve(predictor, _requests(short_lines), warmup=2)
    assert len(calls) == 2 + 3 and len(outputs) == len(latencies) == 3
    calls.clear()
    serve(predictor, _requests(short_lines), warmup=10)
    assert len(calls) == 3 + 3


def test_interleaved_serving_separates_cpu_time_from_waiting():
    """A request that waits (here: sleeps, as when preempted on a shared machine) costs wall time, not CPU."""
    import time

    class Waits:
        def predict_line(self, text, line_no, path):
            time.sleep(0.02)
            return f"waited {line_no}"

    class Computes:
        def predict_line(self, text, line_no, path):
            end = time.process_time() + 0.02
            while time.process_time() < end:
                pass
            return f"computed {line_no}"

    runs = serve_interleaved({"waits": Waits(), "computes": Computes()}, [(1, "a"), (2, "b"), (3, "c")], warmup=1)
    assert runs["waits"].outputs == ["waited 1", "waited 2", "waited 3"]
    assert runs["computes"].outputs == ["computed 1", "computed 2", "computed 3"]
    assert min(runs["waits"].latencies_ms) >= 20.0 and max(runs["waits"].cpu_ms) < 10.0
    # wall and CPU clocks differ in resolution by microseconds: both are 20 ms of busy work
    assert min(runs["computes"].cpu_ms) >= 19.0 and min(runs["computes"].latencies_ms) >= 19.0


def test_time_interleaved_rotates_the_order_and_reads_the_given_cpu_clock():
    order = []

    def call(name):
        def run(i):
            order.append((i, name))
            return f"{name}{i}"
        return run

    ticks = iter(range(100))  # a CPU clock that advances one second per reading
    runs = time_interleaved({"a": call("a"), "b": call("b"), "c": call("c")}, count=3, warmup=1,
                            cpu_clock=lambda: float(next(ticks)))
    assert order[:3] == [(0, "a"), (0, "b"), (0, "c")]  # warm-up, untimed
    assert order[3:] == [(0, "a"), (0, "b"), (0, "c"), (1, "b"), (1, "c"), (1, "a"), (2, "c"), (2, "a"), (2, "b")]
    assert runs["b"].outputs == ["b0", "b1", "b2"]
    assert runs["b"].cpu_ms == [1000.0] * 3 and len(runs["b"].latencies_ms) == 3


def test_latency_summary():
    summary = latency_summary([4.0, 1.0, 3.0, 2.0])
    assert summary["requests"] == 4
    assert summary["p50"] == pytest.approx(2.5)
    assert summary["p90"] == pytest.approx(3.7)
    assert summary["p99"] == pytest.approx(3.97)
    assert (summary["mean"], summary["min"], summary["max"]) == (2.5, 1.0, 4.0)
    assert summary["throughput_per_s"] == pytest.approx(400.0)  # 4 requests in 10 ms
    assert all(type(value) in (int, float) for value in summary.values())  # plain JSON numbers
    assert latency_summary([4.0, 1.0, 3.0, 2.0], wall_seconds=2.0)["throughput_per_s"] == pytest.approx(2.0)
    assert latency_summary([]) == {"requests": 0}  # no requests is a valid input


def test_request_lines_from_stdin_and_file(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("\ufeffjohn works\r\n\nparis".encode())))
    assert list(iter_request_lines("-")) == [(1, "john works"), (2, ""), (3, "paris")]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"john\n\xff paris\n")))
    with pytest.raises(InputFormatError, match=r"<stdin>:2: invalid UTF-8"):
        list(iter_request_lines("-"))
    path = tmp_path / "requests.txt"
    path.write_text("john works\n\nparis\n", encoding="utf-8")
    assert list(iter_request_lines(str(path))) == [(1, "john works"), (2, ""), (3, "paris")]


def test_malformed_request_names_the_line(pairwise_student, ner_student, tmp_path):
    bundle, onnx_path = pairwise_student
    path = tmp_path / "requests.tsv"
    path.write_text("the movie is good\tthe film is great\nonly one column\n", encoding="utf-8")
    predictor = OnlinePredictor.from_onnx(bundle, onnx_path)
    with pytest.raises(InputFormatError, match=r"requests.tsv:2:"):
        serve(predictor, iter_request_lines(str(path)), warmup=0, path=str(path))
    ner_predictor = OnlinePredictor.from_onnx(*ner_student)
    with pytest.raises(InputFormatError, match=r"<stdin>:3: empty sentence"):
        ner_predictor.predict_line("  ", 3, "<stdin>")


def test_two_instances_match_single_instance_serving(ner_student, distilled_ner_dir):
    bundle, onnx_path = ner_student
    requests = _requests(NER_LINES)
    expected, _ = serve(OnlinePredictor.from_onnx(bundle, onnx_path), requests, warmup=0)
    result = serve_instances(distilled_ner_dir, onnx_path, requests, instances=2, warmup=1)
    assert result["outputs"] == expected
    assert result["requests"] == len(requests) and result["instances"] == 2
    assert [s["requests"] for s in result["per_instance"]] == [2, 3]
    assert result["wall_seconds"] > 0 and result["throughput_per_s"] > 0
    with pytest.raises(InputFormatError, match=r"<input>:2: empty sentence"):
        serve_instances(distilled_ner_dir, onnx_path, _requests(["paris", ""]), instances=2, warmup=0)


def test_a_failing_instance_raises_instead_of_hanging(distilled_ner_dir, tmp_path):
    with pytest.raises(RuntimeError, match=r"serving instance \d failed"):
        serve_instances(distilled_ner_dir, tmp_path / "missing.onnx", _requests(["paris", "john"]), instances=2,
                        warmup=0)
