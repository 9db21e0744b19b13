import xdistil  # noqa: F401

import logging

import numpy as np
import tf_keras

from conftest import write_tiny_bert
from xdistil.models.loading import load_task_model, load_tokenizer, save_task_model
from xdistil.tasks import get_task

CLASSIFICATION = get_task("classification")
LABELS = ["good", "bad"]


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_a_saved_task_model_loads_back_without_a_warning_about_its_dropouts_number(tmp_path):
    source = tmp_path / "source"
    write_tiny_bert(source)
    model = load_task_model(str(source), CLASSIFICATION, LABELS)
    model(model.dummy_inputs)
    written = []
    save_task_model(tmp_path / "saved", model, load_tokenizer(str(source)), lambda tmp: written.append(tmp.name))
    assert written == [".saved.tmp"]  # the extra files go in before the directory is moved into place
    assert (tmp_path / "saved" / "vocab.txt").exists() and (tmp_path / "saved" / "tf_model.h5").exists()

    [tf_keras.layers.Dropout(0.1) for _ in range(3)]  # the loading process numbers its dropouts otherwise
    records = _Records()
    hf_log = logging.getLogger("transformers.modeling_tf_utils")
    hf_log.addHandler(records)
    try:
        loaded = load_task_model(str(tmp_path / "saved"), CLASSIFICATION, LABELS)
        hf_log.warning("Some layers from the model checkpoint at x were not used when initializing "
                       "TFBertForSequenceClassification: ['pooler_extra', 'dropout_3']\n- This IS expected ...")
    finally:
        hf_log.removeHandler(records)
    saved_name = next(layer.name for layer in model.layers if not layer.weights)
    loaded_name = next(layer.name for layer in loaded.layers if not layer.weights)
    assert saved_name != loaded_name  # the case the filter is for
    assert [m for m in records.messages if "were not used" in m] == [  # only the warning about a real layer is left
        "Some layers from the model checkpoint at x were not used when initializing "
        "TFBertForSequenceClassification: ['pooler_extra', 'dropout_3']\n- This IS expected ..."]
    loaded(loaded.dummy_inputs)
    saved = {v.name.split("/", 1)[1]: v.numpy() for v in model.weights}
    reloaded = {v.name.split("/", 1)[1]: v.numpy() for v in loaded.weights}
    assert saved.keys() == reloaded.keys()
    for name, value in saved.items():
        np.testing.assert_array_equal(reloaded[name], value)
