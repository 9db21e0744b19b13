"""The /predict JSON: requests checked and parsed as the file loop parses lines; answers with offsets and spans."""
import json

import numpy as np
import pytest

from xdistil.data.readers import NerExample, TextExample
from xdistil.serving.options import ServiceOptions
from xdistil.serving.schema import (RequestError, answer, classification_answer, format_answer_line,
                                    input_for_line, ner_answer, parse_request, word_spans)
from xdistil.tasks import get_task

NER, PAIRWISE, CLASSIFICATION = get_task("ner"), get_task("pairwise"), get_task("classification")
OPTIONS = ServiceOptions(max_request_chars=40, max_request_inputs=3)


def parse(payload, task=NER, options=OPTIONS):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_request(body, task, options)


@pytest.mark.parametrize("payload, task, texts", [
    ({"inputs": "John lives in Paris"}, NER, [("John lives in Paris", None)]),
    ({"inputs": ["a b", {"text": "c"}]}, NER, [("a b", None), ("c", None)]),
    ({"inputs": {"text": "a good film", "text_pair": "a bad plot"}}, PAIRWISE, [("a good film", "a bad plot")]),
    ({"inputs": [{"text": "x", "text_pair": "y"}]}, PAIRWISE, [("x", "y")]),
    ({"inputs": "a good film"}, CLASSIFICATION, [("a good film", None)]),
])
def test_inputs_are_parsed_as_the_file_loop_parses_their_lines(payload, task, texts):
    inputs = parse(payload, task)
    assert [(item.text, item.text_pair) for item in inputs] == texts
    for item in inputs:
        line = item.text if item.text_pair is None else f"{item.text}\t{item.text_pair}"
        assert item.example == task.parse_unlabeled(line, "requests", 1)


@pytest.mark.parametrize("task, line", [(NER, "John  lives in Paris"), (PAIRWISE, "a good film\ta bad plot"),
                                        (CLASSIFICATION, "a good film")])
def test_input_for_line_asks_what_the_line_asks(task, line):
    (item,) = parse({"inputs": input_for_line(task, line)}, task)
    assert item.example == task.parse_unlabeled(line, "requests", 1)


@pytest.mark.parametrize("body, task, status, code, message", [
    (b"\xff\xfe{}", NER, 400, "invalid_utf8", "byte 0xff at offset 0"),
    (b'{"inputs": "a"', NER, 400, "invalid_json", "line 1"),
    (b"\xef\xbb\xbf{}", NER, 400, "invalid_json", "BOM"),
    ([1, 2], NER, 422, "invalid_request", "got array"),
    ({"input": "a"}, NER, 422, "invalid_request", "unknown field 'input'"),
    ({}, NER, 422, "invalid_request", 'missing field "inputs"'),
    ({"inputs": []}, NER, 422, "no_inputs", "empty list"),
    ({"inputs": ["a", "b", "c", "d"]}, NER, 413, "too_many_inputs", "--max_request_inputs 3"),
    ({"inputs": 7}, NER, 422, "invalid_field", "inputs must be a string or an object"),
    ({"inputs": [None]}, NER, 422, "invalid_field", "inputs[0] must be a string or an object with text"),
    ({"inputs": {"text": 3}}, NER, 422, "invalid_field", "inputs.text must be a string, got number"),
    ({"inputs": {"txt": "a"}}, NER, 422, "invalid_field", "unknown field 'txt'"),
    ({"inputs": {"text_pair": "a"}}, PAIRWISE, 422, "invalid_field", 'missing field "text"'),
    ({"inputs": {"text": "a", "text_pair": True}}, PAIRWISE, 422, "invalid_field", "got boolean"),
    ({"inputs": ["fine", "  "]}, NER, 422, "empty_text", "inputs[1] is empty"),
    ({"inputs": {"text": "a", "text_pair": ""}}, PAIRWISE, 422, "empty_text", "inputs.text_pair is empty"),
    ({"inputs": "a\tb"}, CLASSIFICATION, 422, "invalid_text", "contains a tab"),
    ({"inputs": "x" * 41}, NER, 413, "text_too_long", "41 characters, more than --max_request_chars 40"),
    ({"inputs": {"text": "x" * 20, "text_pair": "y" * 21}}, PAIRWISE, 413, "text_too_long", "41 characters"),
    ({"inputs": {"text": "a", "text_pair": "b"}}, NER, 422, "pair_not_supported", "takes one text (ner)"),
    ({"inputs": {"text": "a", "text_pair": "b"}}, CLASSIFICATION, 422, "pair_not_supported", "(classification)"),
    ({"inputs": "a film"}, PAIRWISE, 422, "pair_required", "classifies text pairs"),
    (b'{"inputs": "a \\ud800 b"}', NER, 422, "invalid_text", "unpaired surrogate"),
])
def test_bad_requests_are_refused_with_a_status_code_and_message(body, task, status, code, message):
    with pytest.raises(RequestError) as refused:
        parse(body, task)
    assert (refused.value.status, refused.value.code) == (status, code)
    assert message in refused.value.message


def test_word_spans_are_offsets_into_the_text():
    text = "  Zoë\u00a0lives\tin  Köln 😀x "
    words = text.split()
    spans = word_spans(text, words)
    assert [text[start:end] for start, end in spans] == words
    assert spans[0] == (2, 5)


def test_ner_answer_has_words_tags_and_entity_spans():
    text = "Mary  Ann lives in New York City ."
    tags = ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "I-LOC", "O"]
    result = ner_answer(text, text.split(), tags)
    assert result["words"][1] == {"word": "Ann", "tag": "I-PER", "start": 6, "end": 9}
    assert result["entities"] == [{"type": "PER", "text": "Mary  Ann", "start": 0, "end": 9},
                                  {"type": "LOC", "text": "New York City", "start": 19, "end": 32}]


def test_ner_answer_reads_bioes_tags():
    text = "Ada met Bob Ray"
    result = ner_answer(text, text.split(), ["S-PER", "O", "B-PER", "E-PER"])
    assert [(e["text"], e["type"]) for e in result["entities"]] == [("Ada", "PER"), ("Bob Ray", "PER")]


def test_classification_answer_gives_every_label_probability():
    logits = np.array([0.5, 2.0, -1.0], np.float32)
    task = CLASSIFICATION
    example = TextExample("a film", None, None)
    prediction = task.request_prediction(None, [logits], example, ["neg", "pos", "mixed"])
    result = classification_answer(["neg", "pos", "mixed"], prediction, logits)
    assert result["label"] == "pos" and result["probability"] == result["probabilities"]["pos"]
    assert list(result["probabilities"]) == ["neg", "pos", "mixed"]
    assert sum(result["probabilities"].values()) == pytest.approx(1.0)
    assert format_answer_line(task, result) == task.format_prediction(prediction)


def test_answer_lines_match_the_file_loop_format():
    (item,) = parse({"inputs": "John lives in Paris"})
    assert item.example == NerExample(("John", "lives", "in", "Paris"), None)
    tags = ["B-PER", "O", "O", "B-LOC"]
    assert format_answer_line(NER, answer(NER, ["O", "B-PER", "B-LOC"], item, tags, None)) == "B-PER O O B-LOC"
