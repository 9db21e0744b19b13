"""run_predict.py's work: evaluate and/or predict with the TensorFlow student of a model directory."""
from __future__ import annotations

import logging
from pathlib import Path

import tf_keras

from xdistil.inference.predict import TFPredictor
from xdistil.inference.student import StudentBundle, format_prediction
from xdistil.io_utils import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


def run_tf_prediction(model_dir: str, *, pred_file: str | None = None, output_file: str | None = None,
                      eval_file: str | None = None, do_eval: bool = False, batch_size: int = 64,
                      opt_policy: str = "float32") -> dict:
    """Score a labeled file and/or write predictions for an unlabeled one; returns what was done."""
    tf_keras.mixed_precision.set_global_policy(opt_policy)
    bundle = StudentBundle.load(model_dir)
    predictor = TFPredictor(bundle.load_tf_model(), batch_size)
    result = {}
    if do_eval:
        path = eval_file or bundle.default_eval_file()
        examples = bundle.read_labeled(path)
        features = bundle.encode(examples)
        scores = bundle.score(examples, bundle.predictions(predictor.logits(features), features, examples))
        result["eval"] = {"file": path, "examples": len(examples), **scores}
        atomic_write_json(Path(model_dir) / "eval_tf.json", result["eval"])
        log.info("%s: %s", path, {k: v for k, v in scores.items() if k != "per_type"})
    if pred_file:
        examples = bundle.read_unlabeled(pred_file)
        features = bundle.encode(examples)
        predictions = bundle.predictions(predictor.logits(features), features, examples)
        output = output_file or str(Path(model_dir) / "predictions.txt")
        atomic_write_text(output, "".join(format_prediction(bundle.kind, p) + "\n" for p in predictions))
        result["predictions"] = {"file": output, "lines": len(predictions)}
        log.info("wrote %d predictions to %s", len(predictions), output)
    return result
