"""NER entity F1 and classification metrics against hand-computed values."""
import pytest

from xdistil.evaluate import classification_scores, ner_scores


def test_ner_bio_with_partial_entity_counted_wrong():
    true = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"], ["B-ORG", "O", "B-LOC"]]
    # PER exact; LOC in sentence 1 loses its last token (wrong); ORG missed; LOC exact;
    # one spurious PER.
    pred = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["O", "B-PER", "B-LOC"]]
    scores = ner_scores(true, pred)
    # true entities: PER, LOC, ORG, LOC = 4; predicted: PER, LOC(partial), PER, LOC = 4;
    # correct: PER, LOC = 2
    assert scores["precision"] == pytest.approx(2 / 4)
    assert scores["recall"] == pytest.approx(2 / 4)
    assert scores["f1"] == pytest.approx(0.5)
    assert scores["per_type"] == {
        "PER": {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1},
        "LOC": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2},
        "ORG": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
    }
    assert all(type(v) is float for k, v in scores.items() if k != "per_type")
    assert type(scores["per_type"]["LOC"]["support"]) is int


def test_ner_bioes():
    true = [["S-PER", "O", "B-LOC", "I-LOC", "E-LOC"], ["B-ORG", "E-ORG", "S-LOC"]]
    # S-PER right; the 3-token LOC predicted as a 2-token one (wrong); ORG right; S-LOC
    # predicted as S-PER (wrong type).
    pred = [["S-PER", "O", "B-LOC", "E-LOC", "O"], ["B-ORG", "E-ORG", "S-PER"]]
    scores = ner_scores(true, pred)
    # true 4 entities, predicted 4, correct 2
    assert scores["precision"] == pytest.approx(0.5)
    assert scores["recall"] == pytest.approx(0.5)
    assert scores["f1"] == pytest.approx(0.5)
    assert scores["per_type"]["ORG"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0,
                                         "support": 1}
    assert scores["per_type"]["LOC"]["recall"] == 0.0
    assert scores["per_type"]["LOC"]["support"] == 2
    assert scores["per_type"]["PER"]["precision"] == 0.5


def test_ner_perfect_and_empty():
    tags = [["B-MISC", "I-MISC", "O"]]
    assert ner_scores(tags, tags)["f1"] == 1.0
    none = ner_scores([["O", "O"]], [["O", "O"]])
    assert none == {"f1": 0.0, "precision": 0.0, "recall": 0.0, "per_type": {}}


def test_ner_length_mismatch():
    with pytest.raises(ValueError, match="sentence 1: 2 true tags but 3 predicted"):
        ner_scores([["O"], ["O", "O"]], [["O"], ["O", "O", "O"]])
    with pytest.raises(ValueError, match="2 true sentences but 1 predicted"):
        ner_scores([["O"], ["O"]], [["O"]])


def test_classification_scores():
    true = ["pos", "pos", "neg", "neg", "neu", "pos"]
    pred = ["pos", "neg", "neg", "pos", "neg", "pos"]
    scores = classification_scores(true, pred, ["neg", "neu", "pos", "unused"])
    assert scores["accuracy"] == pytest.approx(3 / 6)
    # pos: tp 2, fp 1, fn 1 -> P 2/3, R 2/3, F1 2/3
    # neg: tp 1, fp 2, fn 1 -> P 1/3, R 1/2, F1 0.4
    # neu: tp 0, fn 1 -> F1 0; "unused": no true, no predicted -> excluded
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0.4 + 0.0) / 3)
    assert all(type(v) is float for v in scores.values())


def test_classification_scores_integer_like_labels_and_errors():
    assert classification_scores(["0", "1"], ["0", "1"], ["0", "1"]) == {
        "accuracy": 1.0, "macro_f1": 1.0}
    with pytest.raises(ValueError, match="not in the label list"):
        classification_scores(["a"], ["c"], ["a", "b"])
    with pytest.raises(ValueError, match="2 true labels but 1 predicted"):
        classification_scores(["a", "b"], ["a"], ["a", "b"])
    with pytest.raises(ValueError, match="no examples"):
        classification_scores([], [], ["a"])
