import json

import pytest

from xdistil.config import read_run_config
from xdistil.errors import ConfigError, InputFormatError
from xdistil.inference.tf_prediction import PredictOptions, run_tf_prediction
from xdistil.model_dir import ModelDirectory


def test_eval_matches_the_training_run_and_predictions_keep_input_order(distilled_ner_dir, tmp_path):
    run = read_run_config(distilled_ner_dir)
    metrics = json.loads((distilled_ner_dir / "metrics.json").read_text())
    model_dir = ModelDirectory.load(distilled_ner_dir)
    result = run_tf_prediction(model_dir, PredictOptions(do_eval=True, batch_size=5))
    assert result["eval"]["f1"] == pytest.approx(metrics["student"]["test"]["f1"], abs=1e-9)

    lines = ["john works in paris", "mary lives at acme corp", "paris"]
    pred_file = tmp_path / "pred.txt"
    pred_file.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.txt"
    run_tf_prediction(model_dir, PredictOptions(do_predict=True, pred_file=str(pred_file), output_file=str(out)))
    rows = out.read_text().splitlines()
    assert [len(r.split()) for r in rows] == [len(line.split()) for line in lines]
    assert all(tag in run["labels"] for r in rows for tag in r.split())


def test_pairwise_predictions_are_label_and_probability(distilled_pairwise_dir, tmp_path):
    pred_file = tmp_path / "pred.txt"
    pred_file.write_text("the movie is good\tthe film is great\nthe plot is bad\tthe cast is good\n")
    out = tmp_path / "out.txt"
    run_tf_prediction(ModelDirectory.load(distilled_pairwise_dir),
                      PredictOptions(do_predict=True, pred_file=str(pred_file), output_file=str(out)))
    rows = [r.split("\t") for r in out.read_text().splitlines()]
    assert len(rows) == 2
    for label, probability in rows:
        assert label in ("0", "1") and 0.5 <= float(probability) <= 1.0


def test_an_empty_prediction_file_gives_an_empty_output(distilled_pairwise_dir, tmp_path):
    pred_file = tmp_path / "pred.txt"
    pred_file.write_text("")
    out = tmp_path / "out.txt"
    result = run_tf_prediction(ModelDirectory.load(distilled_pairwise_dir),
                               PredictOptions(do_predict=True, pred_file=str(pred_file), output_file=str(out)))
    assert result["predictions"]["lines"] == 0 and out.read_text() == ""


def test_malformed_prediction_file_names_the_line(distilled_pairwise_dir, tmp_path):
    pred_file = tmp_path / "pred.txt"
    pred_file.write_text("the movie is good\tthe film is great\nonly one column\n")
    with pytest.raises(InputFormatError, match=r"pred.txt:2:"):
        run_tf_prediction(ModelDirectory.load(distilled_pairwise_dir),
                          PredictOptions(do_predict=True, pred_file=str(pred_file), output_file=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("settings, flag", [({}, "--do_eval"), ({"do_predict": True}, "--pred_file"),
                                            ({"do_eval": True, "batch_size": 0}, "--batch_size")])
def test_options_are_checked(settings, flag):
    with pytest.raises(ConfigError) as caught:
        PredictOptions(**settings)
    assert caught.value.flag == flag
