"""run_predict.py's work: evaluate and/or predict with the TensorFlow student of a model directory."""
from __future__ import annotations

import dataclasses
import logging

import tf_keras

from xdistil.config import OPT_POLICIES, Section, setting
from xdistil.errors import ConfigError
from xdistil.inference.predict import TFPredictor
from xdistil.io_utils import atomic_write_json, atomic_write_text
from xdistil.model_dir import ModelDirectory

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PredictOptions(Section):
    """What run_predict.py scores and predicts."""

    do_eval: bool = setting(False, "Score the task's test.tsv (or --eval_file).")
    eval_file: str | None = setting(None, "Labeled file to score instead of the task's test.tsv.")
    do_predict: bool = setting(False, "Write predictions for --pred_file, in input order.")
    pred_file: str | None = setting(None, "File to predict, in the transfer-file format of the task.")
    output_file: str | None = setting(None, "Where predictions go (default: <model_dir>/predictions.txt).")
    batch_size: int = setting(64, "Prediction batch size.", minimum=1)
    opt_policy: str = setting("float32", "Precision policy.", choices=OPT_POLICIES)

    def check(self):
        if not (self.do_eval or self.do_predict):
            raise ConfigError("do_eval", "give --do_eval and/or --do_predict")
        if self.do_predict and not self.pred_file:
            raise ConfigError("pred_file", "--do_predict needs --pred_file")


def run_tf_prediction(model_dir: ModelDirectory, options: PredictOptions) -> dict:
    """Score a labeled file and/or write predictions for an unlabeled one; returns what was done."""
    tf_keras.mixed_precision.set_global_policy(options.opt_policy)
    eval_path = (options.eval_file or model_dir.default_file("test")) if options.do_eval else None
    eval_examples = model_dir.read_labeled(eval_path) if eval_path else None  # every input checked first
    pred_examples = model_dir.read_unlabeled(options.pred_file) if options.do_predict else None
    predictor = TFPredictor(model_dir.load_tf_model(), options.batch_size)
    result = {}
    if eval_examples is not None:
        features = model_dir.encode(eval_examples)
        scores = model_dir.score(eval_examples, model_dir.predictions(predictor.logits(features), features,
                                                                      eval_examples))
        result["eval"] = {"file": eval_path, "examples": len(eval_examples), **scores}
        atomic_write_json(model_dir.path / "eval_tf.json", result["eval"])
        log.info("%s: %s", eval_path, {k: v for k, v in scores.items() if k != "per_type"})
    if pred_examples is not None:
        output = options.output_file or str(model_dir.path / "predictions.txt")
        predictions = []
        if pred_examples:
            features = model_dir.encode(pred_examples)
            predictions = model_dir.predictions(predictor.logits(features), features, pred_examples)
        atomic_write_text(output, "".join(model_dir.task.format_prediction(p) + "\n" for p in predictions))
        result["predictions"] = {"file": output, "lines": len(predictions)}
        log.info("wrote %d predictions to %s", len(predictions), output)
    return result
