"""Task metrics: entity-level F1 for NER (seqeval), accuracy and macro-F1 for classification."""
import numpy as np
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities

def ner_scores(true_tags: list[list[str]], pred_tags: list[list[str]]) -> dict:
    """Micro entity-level precision/recall/F1 plus per-type scores (seqeval default mode).

    Works for BIO and BIOES tags, on word-level tags (one per input word). An entity counts
    as correct only if its type and both boundaries match. Returns
    {"f1", "precision", "recall", "per_type": {TYPE: {"precision", "recall", "f1",
    "support"}}}; with no entities anywhere, all scores are 0.0 and per_type is empty.
    """
    if len(true_tags) != len(pred_tags):
        raise ValueError(f"{len(true_tags)} true sentences but {len(pred_tags)} predicted")
    for i, (true, pred) in enumerate(zip(true_tags, pred_tags)):
        if len(true) != len(pred):
            raise ValueError(f"sentence {i}: {len(true)} true tags but {len(pred)} predicted")
    true_tags, pred_tags = [list(s) for s in true_tags], [list(s) for s in pred_tags]
    scores = {
        "f1": float(f1_score(true_tags, pred_tags, zero_division=0)),
        "precision": float(precision_score(true_tags, pred_tags, zero_division=0)),
        "recall": float(recall_score(true_tags, pred_tags, zero_division=0)),
        "per_type": {},
    }
    # classification_report averages over entity types and warns when there are none
    if get_entities(true_tags) or get_entities(pred_tags):
        report = classification_report(true_tags, pred_tags, output_dict=True,
                                       zero_division=0)
        scores["per_type"] = {
            entity_type: {"precision": float(row["precision"]), "recall": float(row["recall"]),
                          "f1": float(row["f1-score"]), "support": int(row["support"])}
            for entity_type, row in report.items() if not entity_type.endswith(" avg")}
    return scores


def classification_scores(true_labels: list[str], pred_labels: list[str],
                          label_list: list[str]) -> dict:
    """Accuracy and macro-F1 over `label_list`.

    A label with neither true nor predicted examples is left out of the macro average; a
    label outside `label_list` raises ValueError. Returns {"accuracy", "macro_f1"}.
    """
    if len(true_labels) != len(pred_labels):
        raise ValueError(f"{len(true_labels)} true labels but {len(pred_labels)} predicted")
    if not true_labels:
        raise ValueError("no examples to score")
    index = {label: i for i, label in enumerate(label_list)}
    unknown = sorted({str(x) for x in [*true_labels, *pred_labels] if x not in index})
    if unknown:
        raise ValueError(f"labels not in the label list {list(label_list)}: {unknown}")
    true = np.array([index[x] for x in true_labels])
    pred = np.array([index[x] for x in pred_labels])
    ids = np.arange(len(label_list))[:, None]
    tp = np.sum((true == ids) & (pred == ids), axis=1)
    fp = np.sum((true != ids) & (pred == ids), axis=1)
    fn = np.sum((true == ids) & (pred != ids), axis=1)
    present = (tp + fp + fn) > 0
    # F1 = 2TP / (2TP + FP + FN), equal to 2PR/(P+R) and 0 when TP is 0
    f1 = 2 * tp[present] / (2 * tp[present] + fp[present] + fn[present])
    return {"accuracy": float(np.mean(true == pred)), "macro_f1": float(np.mean(f1))}
