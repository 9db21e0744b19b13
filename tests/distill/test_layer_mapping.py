"""Student -> teacher layer mappings."""
import pytest

from xdistil.distill.layer_mapping import layer_mapping, resolve_auto


def test_top_matches_top_layers():
    assert layer_mapping("top", 3, 12) == [(1, 10), (2, 11), (3, 12)]
    assert layer_mapping("top", 6, 6) == [(i, i) for i in range(1, 7)]


def test_uniform_spreads_layers_and_ends_at_last():
    assert layer_mapping("uniform", 4, 12) == [(1, 3), (2, 6), (3, 9), (4, 12)]
    assert layer_mapping("uniform", 3, 6) == [(1, 2), (2, 4), (3, 6)]
    # 12 / 8 = 1.5 per step: halves round up (1.5 -> 2, 4.5 -> 5, ...)
    assert layer_mapping("uniform", 8, 12) == [(1, 2), (2, 3), (3, 5), (4, 6), (5, 8),
                                               (6, 9), (7, 11), (8, 12)]
    assert layer_mapping("uniform", 5, 5) == [(i, i) for i in range(1, 6)]


@pytest.mark.parametrize("s,t", [(s, t) for t in range(1, 25) for s in range(1, t + 1)])
def test_uniform_is_strictly_increasing_and_in_range(s, t):
    pairs = layer_mapping("uniform", s, t)
    teacher = [tl for _, tl in pairs]
    assert [sl for sl, _ in pairs] == list(range(1, s + 1))
    assert teacher[-1] == t and teacher[0] >= 1
    assert all(b > a for a, b in zip(teacher, teacher[1:]))


def test_last_and_spec_normalization():
    assert layer_mapping("last", 3, 12) == [(3, 12)]
    assert layer_mapping("last", 8, 4) == [(8, 4)]
    assert layer_mapping(" TOP ", 2, 4) == [(1, 3), (2, 4)]


def test_numpy_layer_counts_are_accepted():
    import numpy as np

    assert layer_mapping("top", np.int64(2), np.int32(4)) == [(1, 3), (2, 4)]


def test_explicit_list():
    assert layer_mapping("3,6,9,12", 4, 12) == [(1, 3), (2, 6), (3, 9), (4, 12)]
    assert layer_mapping(" 1, 2 ,5", 3, 5) == [(1, 1), (2, 2), (3, 5)]


@pytest.mark.parametrize("spec,match", [
    ("3,6,9", "lists 3 teacher layers but the student has 4"),
    ("0,6,9,12", r"in 1\.\.12"),
    ("3,6,9,13", r"in 1\.\.12"),
    ("3,6,6,12", "strictly increasing"),
    ("6,3,9,12", "strictly increasing"),
    ("middle", "neither one of"),
    ("3,x,9,12", "neither one of"),
    ("", "neither one of"),
])
def test_explicit_list_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        layer_mapping(spec, 4, 12)


@pytest.mark.parametrize("spec", ["top", "uniform"])
def test_student_deeper_than_teacher_is_rejected(spec):
    with pytest.raises(ValueError, match="no deeper than the teacher"):
        layer_mapping(spec, 6, 4)


@pytest.mark.parametrize("s,t", [(0, 12), (3, 0), (-1, 4), (2.0, 4)])
def test_bad_layer_counts(s, t):
    with pytest.raises(ValueError, match="positive integers"):
        layer_mapping("top", s, t)


def test_auto_follows_the_layers_a_student_was_cut_from():
    assert resolve_auto("auto", [1, 3]) == "2,4"  # 0-based cut layers, 1-based blocks
    assert layer_mapping(resolve_auto("AUTO", [0, 2, 4]), 3, 6) == [(1, 1), (2, 3), (3, 5)]
    assert resolve_auto("auto", None) == "top"  # a student not cut from teacher layers
    assert resolve_auto("uniform", [1, 3]) == "uniform"  # an explicit choice stays
