"""Bad input refused up front: every setting and every cheap property of the inputs is checked before any
model is built, and each problem names its flag, file and line, or checkpoint."""
import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags

from conftest import write_task, write_tiny_bert
from xdistil.config import DistilConfig
from xdistil.distill_flags import config_from_flags, define_flags
from xdistil.errors import ConfigError, InputFileError, InputFormatError
from xdistil.preflight import check_distillation

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("preflight")
    return write_task(root / "task", "ner"), write_tiny_bert(root / "teacher", num_layers=2)


def _config(inputs, tmp_path, **settings):
    task, teacher = inputs
    values = {"task": str(task), "task_kind": "ner", "transfer_file": str(task / "transfer.txt"),
              "pt_teacher_checkpoint": str(teacher), "student_layers_from_teacher": (0,), "seq_len": 32,
              **{key: str(teacher) if value == "TEACHER" else value for key, value in settings.items()}}
    return DistilConfig.from_settings(str(tmp_path / "out"), **values)


@pytest.mark.parametrize("settings, flag, message", [
    ({"batch_size": -4}, "--batch_size", "at least 1"),
    ({"max_train_examples": -1}, "--max_train_examples", "at least 1"),
    ({"logit_loss": "kl", "temperature": 0.0}, "--temperature", "above 0"),
    ({"distil_chunk_size": 0}, "--distil_chunk_size", "at least 1"),
    ({"checkpoint_every_steps": 0}, "--checkpoint_every_steps", "at least 1"),
    ({"layer_mapping": "bogus"}, "--layer_mapping", "auto, top, uniform, last or teacher layer numbers"),
    ({"student_layers_from_teacher": None, "hidden_size": 30, "num_attention_heads": 4, "num_hidden_layers": 2},
     "--hidden_size", "not a multiple of --num_attention_heads 4"),
    ({"warmup_ratio": 1.0}, "--warmup_ratio", "below 1.0"),
    ({"representation_epochs": 0, "logit_epochs": 0, "finetune_epochs": 0}, "--representation_epochs",
     "nothing would be distilled"),
    ({"strategy": "tpu"}, "--tpu", "needs --tpu"),
    ({"student_layers_from_teacher": (1, 1)}, "--student_layers_from_teacher", "increasing distinct"),
    ({"student_architecture": "bert", "student_layers_from_teacher": None, "pt_student_checkpoint": "x"},
     "--student_architecture", "sets a student from scratch"),
    ({"num_hidden_layers": 2}, "--num_hidden_layers", "sets a student from scratch"),
    ({"teacher_trainable_layers": 0}, "--teacher_trainable_layers", "at least 1"),
    ({"pt_student_layers": (0,)}, "--pt_student_layers", "keeps layers of a --pt_student_checkpoint"),
    ({"task_kind": "pairwise", "augment_crops": 1}, "--augment_crops", "made of single texts and NER sentences"),
    ({"augment_crops": -1}, "--augment_crops", "at least 0"),
])
def test_settings_are_refused_with_their_flag(inputs, tmp_path, settings, flag, message):
    with pytest.raises(ConfigError, match=message) as caught:
        _config(inputs, tmp_path, **settings)
    assert caught.value.flag == flag


@pytest.mark.parametrize("settings, flag, message", [
    ({"seq_len": 512}, "--seq_len", "longer than the 128 positions"),
    ({"student_layers_from_teacher": (0, 5)}, "--student_layers_from_teacher", "layer 5 does not exist"),
    ({"teacher_trainable_layers": 3}, "--teacher_trainable_layers", "3 layers, but the teacher has 2"),
    ({"student_layers_from_teacher": None, "pt_student_checkpoint": "TEACHER", "pt_student_layers": (0, 2)},
     "--pt_student_layers", "layer 2 does not exist: --pt_student_checkpoint has layers 0..1"),
    ({"layer_mapping": "1,2,3", "distil_multi_hidden_states": True}, "--layer_mapping", "lists 3 teacher layers"),
    ({"pt_teacher_checkpoint": "pypi:no_such_module"}, "--pt_teacher_checkpoint", "no_such_module"),
    ({"student_layers_from_teacher": None, "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 1,
      "compress_word_embedding": True}, "--compress_word_embedding", "larger than the teacher's 32"),
    ({"hidden_size": 64}, "--hidden_size", "wider than the teacher's 32"),
    ({"first_token_state_weight": 1.0}, "--first_token_state_weight", "for sentence tasks only"),
    ({"teacher_logits_from": "TEACHER"}, "--teacher_logits_from", "has no teacher-logit cache"),
    ({"hidden_size": 16, "num_attention_heads": 4}, "--num_attention_heads", "multiple of the teacher's head size 8"),
    ({"student_layers_from_teacher": None, "pt_student_checkpoint": "TEACHER", "hidden_size": 64}, "--hidden_size",
     "wider than the student checkpoint's 32"),
    ({"student_layers_from_teacher": None, "pt_student_checkpoint": "TEACHER", "hidden_size": 16,
      "num_attention_heads": 4}, "--num_attention_heads", "multiple of the student checkpoint's head size 8"),
])
def test_inputs_are_checked_against_the_models_configs(inputs, tmp_path, settings, flag, message):
    with pytest.raises(ConfigError, match=message) as caught:
        check_distillation(_config(inputs, tmp_path, **settings))
    assert caught.value.flag == flag


@pytest.mark.parametrize("teacher, settings, message", [
    ("xlm-roberta", {"student_architecture": "bert"}, "a xlm-roberta teacher's layers cannot be copied into a BERT"),
    ("mpnet", {"hidden_size": 16}, "a narrowed copy of a mpnet teacher's layers is a BERT: give "
                                   "--student_architecture bert"),
])
def test_a_copy_of_teacher_layers_needs_an_architecture_it_can_be_cut_into(inputs, tmp_path, teacher, settings,
                                                                            message):
    from conftest import write_tiny_mpnet
    from tiny_models import write_tiny_xlmr

    teacher_dir = (write_tiny_mpnet if teacher == "mpnet" else write_tiny_xlmr)(tmp_path / teacher)
    with pytest.raises(ConfigError, match=message) as caught:
        check_distillation(_config(inputs, tmp_path, pt_teacher_checkpoint=str(teacher_dir), **settings))
    assert caught.value.flag == "--student_architecture"
    check_distillation(_config(inputs, tmp_path, pt_teacher_checkpoint=str(write_tiny_mpnet(tmp_path / "ok")),
                               student_architecture="bert", hidden_size=16))


def test_only_a_bert_family_student_checkpoint_is_narrowed(inputs, tmp_path):
    from conftest import write_tiny_mpnet

    student = write_tiny_mpnet(tmp_path / "mpnet")
    with pytest.raises(ConfigError, match="narrows a BERT-family --pt_student_checkpoint .*this one is a mpnet") as \
            caught:
        check_distillation(_config(inputs, tmp_path, student_layers_from_teacher=None,
                                   pt_student_checkpoint=str(student), compress_word_embedding=True, hidden_size=16))
    assert caught.value.flag == "--hidden_size"
    check_distillation(_config(inputs, tmp_path, student_layers_from_teacher=None, pt_student_checkpoint="TEACHER",
                               hidden_size=16, intermediate_size=24))


def test_an_empty_teacher_directory_is_named(inputs, tmp_path):
    empty = tmp_path / "empty_teacher"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no config.json") as caught:
        check_distillation(_config(inputs, tmp_path, pt_teacher_checkpoint=str(empty)))
    assert caught.value.flag == "--pt_teacher_checkpoint"


def test_a_hub_name_not_in_the_cache_says_how_to_allow_downloads(inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE=0"):
        check_distillation(_config(inputs, tmp_path, pt_teacher_checkpoint="someone/not-a-cached-model"))


@pytest.mark.parametrize("content, error, message", [
    ("", InputFileError, "has no lines"),
    ("\n  \n\n", InputFileError, "has no lines"),
    (b"\xff\xfe broken\n", InputFormatError, "invalid UTF-8"),
])
def test_transfer_data_is_read_before_training(inputs, tmp_path, content, error, message):
    transfer = tmp_path / "transfer.txt"
    transfer.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(error, match=message) as caught:
        check_distillation(_config(inputs, tmp_path, transfer_file=str(transfer)))
    assert str(transfer) in caught.value.where


def test_without_a_transfer_file_the_used_train_texts_are_the_transfer_data(inputs, tmp_path):
    checked = check_distillation(_config(inputs, tmp_path, transfer_file=None, max_train_examples=10,
                                         distil_chunk_size=4))
    chunks = list(checked.transfer_reader(4, None).chunks())
    assert sum(len(examples) for _, examples in chunks) == 10
    assert all(example.tags is None for _, examples in chunks for example in examples)


def test_a_list_flag_of_words_names_the_flag():
    values = flags.FlagValues()
    define_flags(values)
    values(["prog", "--task=t", "--model_dir=m", "--pt_teacher_checkpoint=x", "--student_layers_from_teacher=one"])
    with pytest.raises(ConfigError, match="comma-separated integers") as caught:
        config_from_flags(values)
    assert caught.value.flag == "--student_layers_from_teacher"


@pytest.mark.slow
@pytest.mark.parametrize("args, expected", [
    (["--batch_size=-4"], "error: must be at least 1, got -4 (--batch_size)"),
    (["--student_layers_from_teacher=0,9"], "error: layer 9 does not exist: the teacher has layers 0..1 "
                                            "(--student_layers_from_teacher)"),
    (["--transfer_file=EMPTY"], "the transfer data has no lines"),
])
def test_the_command_line_reports_one_line_and_no_traceback(inputs, tmp_path, args, expected):
    task, teacher = inputs
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    command = [sys.executable, str(ROOT / "run_xtreme_distil.py"), f"--task={task}", "--do_NER",
               f"--model_dir={tmp_path / 'out'}", f"--pt_teacher_checkpoint={teacher}", "--seq_len=32",
               "--student_layers_from_teacher=0"] + [a.replace("EMPTY", str(empty)) for a in args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 1
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # nothing written


def test_transfer_examples_that_repeat_dev_or_test_examples_are_warned_of(inputs, tmp_path, caplog):
    task, _ = inputs
    dev_words = [line.split("\t")[0] for line in (task / "dev.tsv").read_text().splitlines()]
    transfer = tmp_path / "transfer.txt"
    transfer.write_text("".join(f"{words}\n" for words in ["Unseen words here", dev_words[0].upper(), dev_words[1]]))
    with caplog.at_level("WARNING", logger="xdistil.preflight"):
        check_distillation(_config(inputs, tmp_path, transfer_file=str(transfer)))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith("2 of the first 3 transfer examples repeat a dev or test")

    caplog.clear()
    transfer.write_text("Unseen words here\nand more unseen words\n")
    with caplog.at_level("WARNING", logger="xdistil.preflight"):
        check_distillation(_config(inputs, tmp_path, transfer_file=str(transfer)))
    assert not [r for r in caplog.records if "repeat a dev or test" in r.getMessage()]
