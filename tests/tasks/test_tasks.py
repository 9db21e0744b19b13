"""What varies by task kind, each in its one class: heads, loss positions, predictions, baselines."""
import numpy as np
import pytest
from transformers import BertConfig

from xdistil.data.encoding import Features
from xdistil.data.readers import NerExample, TextExample
from xdistil.tasks import TASK_KINDS, get_task, task_kind_from_flags
from xdistil.errors import ConfigError


def test_kinds_and_their_properties():
    assert TASK_KINDS == ("ner", "classification", "pairwise")
    ner, single, pair = (get_task(kind) for kind in TASK_KINDS)
    assert (ner.metric, single.metric, pair.metric) == ("f1", "accuracy", "accuracy")
    assert ner.token_level and not single.token_level and not pair.token_level
    assert not ner.cls_only_export and single.cls_only_export and pair.cls_only_export
    assert ner.model_class().__name__ == "TFAutoModelForTokenClassification"
    assert pair.model_class().__name__ == "TFAutoModelForSequenceClassification"


def test_task_kind_from_flags():
    assert [task_kind_from_flags(n, p) for n, p in ((True, False), (False, True), (False, False))] == [
        "ner", "pairwise", "classification"]
    with pytest.raises(ConfigError, match="exclusive"):
        task_kind_from_flags(True, True)


def test_has_head_needs_the_architecture_and_the_labels_in_order():
    config = BertConfig(architectures=["BertForTokenClassification"], id2label={0: "O", 1: "B-PER"})
    ner = get_task("ner")
    assert ner.has_head(config, ["O", "B-PER"])
    assert not ner.has_head(config, ["B-PER", "O"])
    assert not get_task("classification").has_head(config, ["O", "B-PER"])


def test_logit_positions_ner_first_subtokens_text_tasks_rows():
    arrays = {"word_ids": np.array([[-1, 0, -1, 1], [-1, 0, 1, 2]])}
    assert get_task("ner").count_logit_positions(arrays, 2) == 5
    assert get_task("pairwise").count_logit_positions({}, 7) == 7


def test_predictions_and_output_lines():
    logits = np.array([[2.0, 0.0], [0.0, 1.0]], np.float32)
    single = get_task("classification")
    predictions = single.predictions(logits, None, [None, None], ["neg", "pos"])
    assert [label for label, _ in predictions] == ["neg", "pos"]
    assert predictions[0][1] == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert single.format_prediction(predictions[1]) == f"pos\t{predictions[1][1]:.6f}"
    ner = get_task("ner")
    word_ids = np.array([[-1, 0, -1, 1]])
    features = Features(np.zeros((1, 4)), np.ones((1, 4)), np.zeros((1, 4)), np.zeros((1, 4)), word_ids,
                        np.array([0]), 1)
    token_logits = np.zeros((1, 4, 2), np.float32)
    token_logits[0, 3, 1] = 1.0
    tags = ner.predictions(token_logits, features, [NerExample(("a", "b"), None)], ["O", "B-PER"])
    assert tags == [["O", "B-PER"]] and ner.format_prediction(tags[0]) == "O B-PER"
    assert ner.predicted_ids(token_logits, features).tolist() == [0, 1]


def test_trivial_baselines():
    train = [TextExample("a", None, "no"), TextExample("b", None, "no"), TextExample("c", None, "yes")]
    dev = [TextExample("d", None, "no"), TextExample("e", None, "yes")]
    single = get_task("classification")
    assert single.trivial_score(train, dev, ["no", "yes"])["accuracy"] == 0.5
    assert single.trivial_name(train, ["no", "yes"]) == "always 'no'"
    ner = get_task("ner")
    sentences = [NerExample(("john", "works"), ("B-PER", "O"))]
    assert ner.trivial_score(sentences, sentences, ["O", "B-PER"])["f1"] == 0.0
    assert ner.trivial_name(sentences, ["O", "B-PER"]) == "every word 'O'"


def test_without_labels_and_unlabeled_lines():
    pair = get_task("pairwise")
    example = TextExample("a b", "c", "1")
    assert pair.without_labels(example) == TextExample("a b", "c", None)
    assert pair.unlabeled_line(example) == "a b\tc"
    ner = get_task("ner")
    assert ner.without_labels(NerExample(("x", "y"), ("O", "O"))) == NerExample(("x", "y"), None)
    assert ner.unlabeled_line(NerExample(("x", "y"), None)) == "x y"
