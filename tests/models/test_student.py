import xdistil  # noqa: F401

import numpy as np
import pytest

from conftest import write_tiny_bert
from xdistil.config import StudentConfig
from xdistil.data.encoding import Features
from xdistil.errors import ConfigError
from xdistil.models.embedding_compression import compress_embedding
from xdistil.models.loading import (CheckpointError, has_task_head, load_task_model, load_tokenizer,
                                    word_embedding_variable)
from xdistil.models.student import build_student, check_vocabulary_matches
from xdistil.tasks import get_task

NER = get_task("ner")

LABELS = ["O", "B-PER", "I-PER"]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("teacher"), hidden_size=32, num_layers=4, num_heads=4)


@pytest.fixture(scope="module")
def teacher(teacher_dir):
    return load_task_model(str(teacher_dir), NER, LABELS)


def _config(teacher_dir, **overrides):
    return StudentConfig(**overrides)


def test_student_from_teacher_layers_copies_those_layers(teacher_dir, teacher):
    tokenizer = load_tokenizer(str(teacher_dir))
    student, start = build_student(_config(teacher_dir, student_layers_from_teacher=(1, 3)), NER, teacher, tokenizer,
                                   LABELS)
    assert student.config.num_hidden_layers == 2
    assert start == {"from": "teacher_layers", "layers": [1, 3], "sizes": None}
    t = {v.name.split("/", 1)[1]: v.numpy() for v in teacher.weights}
    s = {v.name.split("/", 1)[1]: v.numpy() for v in student.weights}
    key = "bert/encoder/layer_._{}/attention/self/query/kernel:0"
    np.testing.assert_array_equal(s[key.format(0)], t[key.format(1)])
    np.testing.assert_array_equal(s[key.format(1)], t[key.format(3)])
    np.testing.assert_array_equal(s["bert/embeddings/word_embeddings/weight:0"],
                                  t["bert/embeddings/word_embeddings/weight:0"])
    np.testing.assert_array_equal(s["classifier/kernel:0"], t["classifier/kernel:0"])  # the task head too
    student.weights[0].assign(student.weights[0] + 1.0)  # its own variables: training it leaves the teacher
    np.testing.assert_array_equal(teacher.weights[0].numpy(), t[teacher.weights[0].name.split("/", 1)[1]])


def _calibration(rows=40, length=12, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 40, (rows, length)).astype(np.int32)
    return Features(ids, np.ones_like(ids), np.zeros_like(ids), np.zeros_like(ids), None, np.arange(rows), rows)


def test_a_narrowed_copy_of_teacher_layers_is_a_plain_smaller_model(tmp_path, teacher_dir, teacher):
    tokenizer = load_tokenizer(str(teacher_dir))
    config = _config(teacher_dir, student_layers_from_teacher=(1, 3), hidden_size=16)
    assert config.narrowing_sizes == {"hidden_size": 16}
    student, _ = build_student(config, NER, teacher, tokenizer, LABELS, calibration=_calibration())
    assert (student.config.hidden_size, student.config.num_attention_heads, student.config.intermediate_size,
            student.config.num_hidden_layers) == (16, 2, 32, 2)
    student.save_pretrained(tmp_path / "s")
    from transformers import TFBertForTokenClassification

    loaded = TFBertForTokenClassification.from_pretrained(tmp_path / "s")
    inputs = {"input_ids": _calibration(rows=3).input_ids}
    np.testing.assert_allclose(loaded(inputs).logits.numpy(), student(inputs).logits.numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="needs rows to measure"):
        build_student(config, NER, teacher, tokenizer, LABELS)


def test_a_narrowed_copy_keeps_the_teachers_embedding_columns_even_with_compress_word_embedding(teacher_dir, teacher):
    tokenizer = load_tokenizer(str(teacher_dir))
    plain, compressed = (build_student(_config(teacher_dir, student_layers_from_teacher=(1, 3), hidden_size=16,
                                               compress_word_embedding=compress), NER, teacher, tokenizer, LABELS,
                                       calibration=_calibration())[0] for compress in (False, True))
    np.testing.assert_array_equal(word_embedding_variable(compressed).numpy(), word_embedding_variable(plain).numpy())
    svd, _ = compress_embedding(word_embedding_variable(teacher).numpy(), 16, "svd")
    assert not np.allclose(word_embedding_variable(compressed).numpy(), svd, atol=1e-3)


def test_a_student_from_scratch_starts_from_evenly_spaced_teacher_layers_cut_to_its_sizes(teacher_dir, teacher):
    tokenizer = load_tokenizer(str(teacher_dir))
    sizes = {"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 2}
    from_scratch, start = build_student(_config(teacher_dir, **sizes, compress_word_embedding=True), NER, teacher,
                                        tokenizer, LABELS, calibration=_calibration())
    assert start == {"from": "teacher_layers", "layers": [1, 3],
                     "sizes": {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}}
    cut, _ = build_student(_config(teacher_dir, student_layers_from_teacher=(1, 3), hidden_size=16), NER, teacher,
                        tokenizer, LABELS, calibration=_calibration())
    assert [w.name.split("/", 1)[1] for w in from_scratch.weights] == [w.name.split("/", 1)[1] for w in cut.weights]
    for mine, theirs in zip(from_scratch.weights, cut.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    # one student head of two teacher heads; a width that is not whole teacher heads starts from random weights
    merged, _ = build_student(_config(teacher_dir, hidden_size=16, num_attention_heads=1, num_hidden_layers=2), NER,
                           teacher, tokenizer, LABELS, calibration=_calibration())
    np.testing.assert_array_equal(word_embedding_variable(merged).numpy(), word_embedding_variable(cut).numpy())
    random, start = build_student(_config(teacher_dir, hidden_size=12, num_attention_heads=2, num_hidden_layers=2,
                                          compress_word_embedding=True), NER, teacher, tokenizer, LABELS,
                                  calibration=_calibration())
    assert start["from"] == "random" and "multiple of 8" in start["reason"]
    assert start["word_embedding"] == "the teacher's, svd-compressed"
    expected, _ = compress_embedding(word_embedding_variable(teacher).numpy(), 12, "svd")
    np.testing.assert_allclose(word_embedding_variable(random).numpy(), expected, rtol=1e-6)


def test_a_student_from_scratch_starts_from_random_weights_where_no_cut_exists(teacher_dir, teacher, caplog):
    from xdistil.models.student import evenly_spaced_layers, teacher_start

    assert evenly_spaced_layers(4, 12) == [2, 5, 8, 11] and evenly_spaced_layers(6, 12) == [1, 3, 5, 7, 9, 11]
    assert evenly_spaced_layers(1, 4) == [3] and evenly_spaced_layers(4, 4) == [0, 1, 2, 3]
    sizes = {"hidden_size": 16, "num_attention_heads": 2}
    assert teacher_start(teacher, StudentConfig(**sizes, num_hidden_layers=3)) == {
        "from": "teacher_layers", "layers": [0, 2, 3],
        "sizes": {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}}
    assert teacher_start(teacher, StudentConfig(**sizes, num_hidden_layers=3, student_init="random")) == {
        "from": "random", "reason": "--student_init random"}
    for settings, reason in [({**sizes, "num_hidden_layers": 5}, "5 layers are more than the teacher's 4"),
                             ({"hidden_size": 12, "num_attention_heads": 2, "num_hidden_layers": 2}, "multiple of 8"),
                             ({"hidden_size": 16, "num_attention_heads": 4, "num_hidden_layers": 2},
                              "multiple of the teacher's head size 8"),
                             ({**sizes, "num_hidden_layers": 2, "intermediate_size": 80}, "larger than the teacher's")]:
        caplog.clear()
        start = teacher_start(teacher, StudentConfig(**settings))
        assert start["from"] == "random" and reason in start["reason"]
        assert reason in caplog.text and "student from random weights" in caplog.text


def test_narrowing_flags_exclude_a_layer_count():
    with pytest.raises(ConfigError, match="exclude") as caught:
        StudentConfig(student_layers_from_teacher=(0, 1), num_hidden_layers=2)
    assert caught.value.flag == "--num_hidden_layers"
    assert StudentConfig(student_layers_from_teacher=(0, 1), compress_word_embedding=True).narrowing_sizes is None


def test_student_from_teacher_layers_rejects_bad_indices(teacher_dir, teacher):
    tokenizer = load_tokenizer(str(teacher_dir))
    with pytest.raises(ValueError, match="0..3"):
        build_student(_config(teacher_dir, student_layers_from_teacher=(2, 7)), NER, teacher, tokenizer, LABELS)


def test_a_pretrained_student_keeps_only_the_given_layers(teacher_dir, teacher):
    tokenizer = load_tokenizer(str(teacher_dir))
    config = _config(teacher_dir, pt_student_checkpoint=str(teacher_dir), pt_student_layers=(0, 3))
    student, start = build_student(config, NER, teacher, tokenizer, LABELS)
    assert start == {"from": "checkpoint", "checkpoint": str(teacher_dir), "layers": [0, 3],
                     "vocabulary_remapped": False}
    assert student.config.num_hidden_layers == 2 and student.config.id2label == dict(enumerate(LABELS))
    t = {v.name.split("/", 1)[1]: v.numpy() for v in teacher.weights}
    s = {v.name.split("/", 1)[1]: v.numpy() for v in student.weights}
    key = "bert/encoder/layer_._{}/output/dense/kernel:0"
    np.testing.assert_array_equal(s[key.format(0)], t[key.format(0)])
    np.testing.assert_array_equal(s[key.format(1)], t[key.format(3)])
    assert key.format(2) not in s
    with pytest.raises(ValueError, match=r"--pt_student_layers \[0, 7\]: .* in 0..3"):
        build_student(_config(teacher_dir, pt_student_checkpoint=str(teacher_dir), pt_student_layers=(0, 7)), NER,
                      teacher, tokenizer, LABELS)
    with pytest.raises(ConfigError, match="none is given") as caught:
        StudentConfig(pt_student_layers=(0,), hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    assert caught.value.flag == "--pt_student_layers"


def test_a_layer_named_twice_is_stacked(teacher_dir, teacher):
    """--pt_student_layers 0,2,2: a deeper student whose second and third layers both start as layer 2."""
    tokenizer = load_tokenizer(str(teacher_dir))
    config = _config(teacher_dir, pt_student_checkpoint=str(teacher_dir), pt_student_layers=(0, 2, 2))
    student, start = build_student(config, NER, teacher, tokenizer, LABELS)
    assert student.config.num_hidden_layers == 3 and start["layers"] == [0, 2, 2]
    t = {v.name.split("/", 1)[1]: v.numpy() for v in teacher.weights}
    s = {v.name.split("/", 1)[1]: v for v in student.weights}
    key = "bert/encoder/layer_._{}/attention/self/query/kernel:0"
    for layer, source in enumerate((0, 2, 2)):
        np.testing.assert_array_equal(s[key.format(layer)].numpy(), t[key.format(source)])
    assert s[key.format(1)] is not s[key.format(2)]  # copies that train apart, not one shared layer
    for layers in ((2, 0), (0, 2, 1)):
        with pytest.raises(ConfigError, match="non-decreasing") as caught:
            StudentConfig(pt_student_checkpoint=str(teacher_dir), pt_student_layers=layers)
        assert caught.value.flag == "--pt_student_layers"
    with pytest.raises(ConfigError, match="increasing distinct"):
        StudentConfig(student_layers_from_teacher=(0, 2, 2))


def test_a_pretrained_student_is_narrowed_to_its_most_active_units(teacher_dir, teacher):
    """Narrowing every layer of a checkpoint is the narrowed copy of those layers: the same sub-matrices."""
    tokenizer = load_tokenizer(str(teacher_dir))
    config = _config(teacher_dir, pt_student_checkpoint=str(teacher_dir), hidden_size=16, intermediate_size=24)
    assert config.narrowing_sizes == {"hidden_size": 16, "intermediate_size": 24}
    student, start = build_student(config, NER, teacher, tokenizer, LABELS, calibration=_calibration())
    assert start == {"from": "checkpoint", "checkpoint": str(teacher_dir), "layers": None,
                     "vocabulary_remapped": False,
                     "narrowed_to": {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 24}}
    assert (student.config.hidden_size, student.config.num_attention_heads, student.config.intermediate_size,
            student.config.num_hidden_layers) == (16, 2, 24, 4)
    cut, _ = build_student(_config(teacher_dir, student_layers_from_teacher=(0, 1, 2, 3), hidden_size=16,
                                   intermediate_size=24), NER, teacher, tokenizer, LABELS, calibration=_calibration())
    assert [w.name.split("/", 1)[1] for w in student.weights] == [w.name.split("/", 1)[1] for w in cut.weights]
    for mine, theirs in zip(student.weights, cut.weights):
        if "classifier" not in mine.name:  # the checkpoint has no NER head: the student's is new
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    kept = [np.flatnonzero((word_embedding_variable(teacher).numpy() == column[:, None]).all(axis=0))
            for column in word_embedding_variable(student).numpy().T]
    assert all(len(k) == 1 for k in kept) and [k[0] for k in kept] == sorted(k[0] for k in kept)  # teacher columns

    shallow, start = build_student(_config(teacher_dir, pt_student_checkpoint=str(teacher_dir),
                                           pt_student_layers=(1, 3), num_attention_heads=1),
                                   NER, teacher, tokenizer, LABELS, calibration=_calibration())
    assert (shallow.config.hidden_size, shallow.config.num_attention_heads, shallow.config.num_hidden_layers) == \
        (8, 1, 2) and start["layers"] == [1, 3]
    with pytest.raises(ValueError, match="student checkpoint layers needs rows"):
        build_student(config, NER, teacher, tokenizer, LABELS)
    with pytest.raises(ConfigError, match="wider than the student checkpoint's 32") as caught:
        build_student(_config(teacher_dir, pt_student_checkpoint=str(teacher_dir), hidden_size=40), NER, teacher,
                      tokenizer, LABELS, calibration=_calibration())
    assert caught.value.flag == "--hidden_size"


def test_a_pretrained_student_is_narrowed_but_not_deepened_or_rebuilt():
    for flags, flag in [({"num_hidden_layers": 2}, "--num_hidden_layers"),
                        ({"student_architecture": "bert"}, "--student_architecture")]:
        with pytest.raises(ConfigError, match="exclude") as caught:
            StudentConfig(pt_student_checkpoint="x", hidden_size=16, **flags)
        assert caught.value.flag == flag
    assert StudentConfig(pt_student_checkpoint="x").narrowing_sizes is None
    assert StudentConfig(pt_student_checkpoint="x", num_attention_heads=2).may_narrow


def test_student_from_scratch_with_compressed_embeddings(teacher_dir, teacher):
    tokenizer = load_tokenizer(str(teacher_dir))
    config = _config(teacher_dir, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=24, compress_word_embedding=True, student_init="random")
    student, start = build_student(config, NER, teacher, tokenizer, LABELS)
    assert start == {"from": "random", "reason": "--student_init random",
                     "word_embedding": "the teacher's, svd-compressed"}
    assert (student.config.hidden_size, student.config.num_hidden_layers) == (16, 1)
    expected, _ = compress_embedding(word_embedding_variable(teacher).numpy(), 16, "svd")
    np.testing.assert_allclose(word_embedding_variable(student).numpy(), expected, rtol=1e-6)
    assert student.config.id2label == dict(enumerate(LABELS))


def test_student_from_scratch_needs_sizes():
    with pytest.raises(ConfigError, match="--num_hidden_layers") as caught:
        StudentConfig(hidden_size=16)
    assert caught.value.flag == "--num_hidden_layers"
    with pytest.raises(ConfigError, match="not a multiple") as caught:
        StudentConfig(hidden_size=30, num_hidden_layers=2, num_attention_heads=4)
    assert caught.value.flag == "--hidden_size"


def test_pretrained_student_with_other_vocabulary_is_refused(tmp_path, teacher_dir, teacher):
    other = write_tiny_bert(tmp_path / "other", hidden_size=16, num_layers=1, num_heads=2)
    (other / "vocab.txt").write_text((other / "vocab.txt").read_text().replace("paris", "berlin"))
    (other / "tokenizer.json").unlink()
    tokenizer = load_tokenizer(str(teacher_dir))
    with pytest.raises(CheckpointError, match="different vocabulary"):
        check_vocabulary_matches(str(other), 10_000, tokenizer)
    config = _config(teacher_dir, pt_student_checkpoint=str(other), compress_word_embedding=True)
    student, _ = build_student(config, NER, teacher, tokenizer, LABELS)
    assert word_embedding_variable(student).shape == (teacher.config.vocab_size, 16)


def test_has_task_head_only_for_the_same_labels_in_order(tmp_path):
    path = write_tiny_bert(tmp_path / "cls", labels=["neg", "pos"])
    assert has_task_head(str(path), get_task("classification"), ["neg", "pos"])
    assert not has_task_head(str(path), get_task("classification"), ["pos", "neg"])
    assert not has_task_head(str(path), NER, ["neg", "pos"])


def test_a_student_without_tokenizer_files_is_refused(tmp_path, teacher_dir):
    """Its vocabulary cannot be compared with the teacher's, so it is not taken on trust."""
    same_size = write_tiny_bert(tmp_path / "bare", hidden_size=16, num_layers=1, num_heads=2)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (same_size / name).unlink(missing_ok=True)
    tokenizer = load_tokenizer(str(teacher_dir))
    with pytest.raises(CheckpointError, match="no loadable tokenizer"):
        check_vocabulary_matches(str(same_size), len(tokenizer), tokenizer)


def test_piece_keys_spell_wordpiece_like_sentencepiece(teacher_dir):
    from xdistil.models.student import piece_keys

    tokenizer = load_tokenizer(str(teacher_dir))
    keys = piece_keys(tokenizer)
    vocab = tokenizer.get_vocab()
    assert keys["\u2581paris"] == vocab["paris"] and keys["ing"] == vocab["##ing"]
    assert keys["<cls>"] == tokenizer.cls_token_id and keys["<mask>"] == tokenizer.mask_token_id
    assert "[CLS]" not in keys and "paris" not in keys


def test_a_pretrained_student_takes_a_sentencepiece_teachers_vocabulary(tmp_path):
    """A WordPiece student under an e5-style teacher (BERT encoder, XLM-R SentencePiece tokenizer): shared
    pieces keep the student's rows, the others come through the least-squares map."""
    from tiny_models import write_tiny_xlmr
    from xdistil.models.student import piece_keys, remap_vocabulary

    teacher_path = write_tiny_xlmr(tmp_path / "teacher", architecture="bert")
    student_path = write_tiny_bert(tmp_path / "student", hidden_size=16, num_layers=1, num_heads=2)
    teacher_tokenizer, student_tokenizer = load_tokenizer(str(teacher_path)), load_tokenizer(str(student_path))
    teacher = load_task_model(str(teacher_path), NER, LABELS)
    student = load_task_model(str(student_path), NER, LABELS)
    student(student.dummy_inputs)
    before = word_embedding_variable(student).numpy().copy()
    report = remap_vocabulary(student, student_tokenizer, teacher, teacher_tokenizer)
    after = word_embedding_variable(student).numpy()
    assert after.shape == (teacher.config.vocab_size, 16) and student.config.pad_token_id == 1
    student_keys = piece_keys(student_tokenizer)
    shared = {t: student_keys[k] for k, t in piece_keys(teacher_tokenizer).items() if k in student_keys}
    assert report["shared_pieces"] >= len(shared) >= 10
    for teacher_id, student_id in shared.items():
        np.testing.assert_array_equal(after[teacher_id], before[student_id])
    assert np.isfinite(after).all() and 0.0 <= report["map_r2"] <= 1.0


def test_a_bert_student_is_cut_from_an_mpnet_teachers_layers(tmp_path):
    from conftest import write_tiny_mpnet

    mpnet_dir = write_tiny_mpnet(tmp_path / "mpnet", hidden_size=32, num_layers=4, num_heads=4)
    classification, labels = get_task("classification"), ["neg", "pos"]
    teacher = load_task_model(str(mpnet_dir), classification, labels)
    tokenizer = load_tokenizer(str(mpnet_dir))
    sizes = {"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 2}
    student, start = build_student(StudentConfig(**sizes, student_architecture="bert"), classification, teacher,
                                   tokenizer, labels, calibration=_calibration())
    assert start == {"from": "teacher_layers", "layers": [1, 3], "converted_from": "mpnet",
                     "sizes": {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}}
    assert student.config.model_type == "bert" and student.config.num_hidden_layers == 2
    _, random_start = build_student(StudentConfig(**sizes), classification, teacher, tokenizer, labels,
                                    calibration=_calibration())
    assert random_start["from"] == "random" and "give --student_architecture bert" in random_start["reason"]

    # every layer at full width: the teacher itself, but for the relative position bias the BERT copy drops
    for weight in teacher.weights:
        if "relative_attention_bias" in weight.name:
            weight.assign(np.zeros(weight.shape, np.float32))
    whole, start = build_student(StudentConfig(student_layers_from_teacher=(0, 1, 2, 3), student_architecture="bert"),
                                 classification, teacher, tokenizer, labels)
    assert start["converted_from"] == "mpnet" and whole.config.model_type == "bert"
    ids = _calibration(rows=3).input_ids
    np.testing.assert_allclose(whole(input_ids=ids, training=False).logits.numpy(),
                               teacher(input_ids=ids, training=False).logits.numpy(), atol=1e-5)


def test_student_dropout_sets_every_dropout_layer_and_the_saved_config(tmp_path, teacher_dir, teacher):
    """The tiny teacher drops nothing; --student_dropout 0.5 makes its student drop half in training only."""
    tokenizer = load_tokenizer(str(teacher_dir))
    ids = np.random.default_rng(0).integers(5, 40, (4, 10)).astype(np.int32)

    def student_outputs(**dropout):
        student, _ = build_student(_config(teacher_dir, student_layers_from_teacher=(0, 1), **dropout), NER, teacher,
                                   tokenizer, LABELS)
        return student, [student(ids, training=training).logits.numpy() for training in (False, True, True)]

    _, (inference, first, second) = student_outputs()
    np.testing.assert_allclose(first, inference, rtol=1e-5, atol=1e-6)
    heavy, (heavy_inference, first, second) = student_outputs(student_dropout=0.5)
    np.testing.assert_allclose(heavy_inference, inference, rtol=1e-5, atol=1e-6)  # inference keeps every unit
    assert not np.allclose(first, second) and not np.allclose(first, inference)
    assert {layer.rate for layer in heavy.submodules if type(layer).__name__ == "Dropout"} == {0.5}
    heavy.save_pretrained(tmp_path)
    saved = load_task_model(str(tmp_path), NER, LABELS).config
    assert (saved.hidden_dropout_prob, saved.attention_probs_dropout_prob, saved.classifier_dropout) == (0.5, 0.5, 0.5)
    assert teacher.config.hidden_dropout_prob == 0.0  # the student's config is its own
    with pytest.raises(ConfigError, match="below 1.0") as caught:
        StudentConfig(student_dropout=1.0, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    assert caught.value.flag == "--student_dropout"
