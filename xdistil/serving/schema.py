"""The JSON of POST /predict: a request checked and parsed into the file loop's examples; predictions as answers.

Request body (UTF-8 JSON):

    {"inputs": INPUT}  or  {"inputs": [INPUT, ...]}
    INPUT: "a text"  or  {"text": "a text"}  or  {"text": "first text", "text_pair": "second text"}

Pairwise models need `text_pair`; NER and classification models refuse it. Each input becomes the request
line the file loop reads (the text, or `text<TAB>text_pair`) and is parsed by the task exactly as that line
would be, so both paths give the same predictions.

Answer: {"predictions": [ANSWER, ...]}, one per input, in order:

    NER:            {"words": [{"word", "tag", "start", "end"}, ...], "entities": [{"type", "text", "start", "end"}]}
    classification: {"label", "probability", "probabilities": {label: probability, ...}}

NER words are the whitespace-separated words of the text; offsets are Python string indices (Unicode code
points) into the input text, `end` exclusive; entities are decoded from the tags as the entity-F1 metric
decodes them (seqeval's default mode, BIO or BIOES).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from xdistil.errors import InputFormatError
from xdistil.serving.options import ServiceOptions
from xdistil.tasks.classification import softmax

_JSON_TYPES = ((bool, "boolean"), (str, "string"), (int, "number"), (float, "number"), (list, "array"),
               (dict, "object"), (type(None), "null"))
_INPUT_FIELDS = ("text", "text_pair")


class RequestError(Exception):
    """A request the service refuses: the HTTP status, a short machine-readable code and a message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class RequestInput:
    """One checked input: its texts and the task's example parsed from its request line."""

    text: str
    text_pair: str | None
    example: object


def json_type(value) -> str:
    """The JSON name of a decoded value's type (for error messages)."""
    return next(name for kind, name in _JSON_TYPES if isinstance(value, kind))


def decode_body(body: bytes):
    """The body as JSON: strictly UTF-8 (400 invalid_utf8), then valid JSON (400 invalid_json)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestError(400, "invalid_utf8", f"the body is not UTF-8: byte 0x{body[error.start]:02x} at offset "
                                                f"{error.start}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise RequestError(400, "invalid_json", f"the body is not JSON: {error.msg} (line {error.lineno}, column "
                                                f"{error.colno})") from None


def parse_request(body: bytes, task, options: ServiceOptions) -> list[RequestInput]:
    """The checked inputs of a /predict body, in order; RequestError when anything is wrong."""
    payload = decode_body(body)
    if not isinstance(payload, dict):
        raise RequestError(422, "invalid_request", f'the body must be a JSON object {{"inputs": ...}}, got '
                                                   f"{json_type(payload)}")
    unknown = sorted(set(payload) - {"inputs"})
    if unknown:
        raise RequestError(422, "invalid_request", f'unknown field {unknown[0]!r}: the body is {{"inputs": ...}}')
    if "inputs" not in payload:
        raise RequestError(422, "invalid_request", 'missing field "inputs"')
    inputs = payload["inputs"]
    is_list = isinstance(inputs, list)
    items = inputs if is_list else [inputs]
    if not items:
        raise RequestError(422, "no_inputs", "inputs is an empty list")
    if len(items) > options.max_request_inputs:
        raise RequestError(413, "too_many_inputs", f"{len(items)} inputs, more than --max_request_inputs "
                                                   f"{options.max_request_inputs}")
    names = [f"inputs[{i}]" for i in range(len(items))] if is_list else ["inputs"]
    return [parse_input(item, name, task, options) for item, name in zip(items, names)]


def parse_input(item, name: str, task, options: ServiceOptions) -> RequestInput:
    """One input (a string, or an object with text and text_pair), checked and parsed by the task."""
    if isinstance(item, str):
        text, pair = item, None
    elif isinstance(item, dict):
        unknown = sorted(set(item) - set(_INPUT_FIELDS))
        if unknown:
            raise RequestError(422, "invalid_field", f"{name}: unknown field {unknown[0]!r} (an input has text and, "
                                                     "for pairwise models, text_pair)")
        if "text" not in item:
            raise RequestError(422, "invalid_field", f'{name}: missing field "text"')
        text, pair = _string(item["text"], f"{name}.text"), item.get("text_pair")
        if pair is not None:
            pair = _string(pair, f"{name}.text_pair")
    else:
        raise RequestError(422, "invalid_field", f"{name} must be a string or an object with text (and text_pair), "
                                                 f"got {json_type(item)}")
    _check_pairing(pair is not None, name, task)
    characters = len(text) + len(pair or "")
    if characters > options.max_request_chars:
        raise RequestError(413, "text_too_long", f"{name} has {characters} characters, more than "
                                                 f"--max_request_chars {options.max_request_chars}")
    texts = {f"{name}.text" if isinstance(item, dict) else name: text}
    if pair is not None:
        texts[f"{name}.text_pair"] = pair
    for field, value in texts.items():
        _check_text(value, field)
    line = text if pair is None else f"{text}\t{pair}"
    try:
        example = task.parse_unlabeled(line, name, 1)
    except InputFormatError as error:
        raise RequestError(422, "invalid_text", f"{name}: {error.message}") from None
    return RequestInput(text, pair, example)


def _string(value, field: str) -> str:
    if not isinstance(value, str):
        raise RequestError(422, "invalid_field", f"{field} must be a string, got {json_type(value)}")
    return value


def _check_pairing(has_pair: bool, name: str, task) -> None:
    if has_pair and not task.pair:
        raise RequestError(422, "pair_not_supported", f"{name}: this model takes one text ({task.kind}), not a "
                                                      "text_pair")
    if task.pair and not has_pair:
        raise RequestError(422, "pair_required", f'{name}: this model classifies text pairs: give {{"text": ..., '
                                                 f'"text_pair": ...}}')


def _check_text(value: str, field: str) -> None:
    if not value.strip():
        raise RequestError(422, "empty_text", f"{field} is empty")
    if "\t" in value:
        raise RequestError(422, "invalid_text", f"{field} contains a tab, the column separator of the request "
                                                "format: use a space (or text_pair for a pair)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        surrogate = f"\\u{ord(value[error.start]):04x}"
        raise RequestError(422, "invalid_text", f"{field} holds an unpaired surrogate escape ({surrogate}), which is "
                                                "not Unicode text") from None


# --- answers -------------------------------------------------------------------------------------------------

def answer(task, labels: list[str], item: RequestInput, prediction, row_logits) -> dict:
    """The JSON answer for one input, from `OnlinePredictor.predict`'s prediction and row logits."""
    if task.token_level:
        return ner_answer(item.text, item.example.tokens, prediction)
    return classification_answer(labels, prediction, row_logits[0])


def ner_answer(text: str, words, tags) -> dict:
    """Words with their tags and character spans, and the entities the tags make, with theirs."""
    from seqeval.metrics.sequence_labeling import get_entities

    spans = word_spans(text, words)
    entities = [{"type": kind, "text": text[spans[first][0]:spans[last][1]], "start": spans[first][0],
                 "end": spans[last][1]} for kind, first, last in get_entities(list(tags))]
    return {"words": [{"word": word, "tag": tag, "start": start, "end": end}
                      for word, tag, (start, end) in zip(words, tags, spans)],
            "entities": entities}


def word_spans(text: str, words) -> list[tuple[int, int]]:
    """(start, end) of each whitespace-separated word of `text`, in order."""
    spans, position = [], 0
    for word in words:
        start = text.index(word, position)  # only whitespace lies between `position` and the word
        position = start + len(word)
        spans.append((start, position))
    return spans


def classification_answer(labels: list[str], prediction, logits) -> dict:
    """The predicted label, its probability, and the probability of every label."""
    label, probability = prediction
    return {"label": label, "probability": probability,
            "probabilities": dict(zip(labels, softmax(logits).tolist()))}


def input_for_line(task, line: str):
    """The /predict input that asks what a request line of the file format asks (the inverse of the parsing)."""
    if task.pair:
        text, pair = line.split("\t")[:2]
        return {"text": text, "text_pair": pair}
    return line


def format_answer_line(task, prediction_answer: dict) -> str:
    """The file loop's output line for an answer (`predict_line`'s format)."""
    if task.token_level:
        return task.format_prediction([word["tag"] for word in prediction_answer["words"]])
    return task.format_prediction((prediction_answer["label"], prediction_answer["probability"]))
