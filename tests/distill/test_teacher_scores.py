import json

from xdistil.distill.teacher_scores import TeacherScores, teacher_score_key

KEY = teacher_score_key(teacher={"bytes": 3, "head_sha256": "ab"}, task_files={"dev": {"name": "dev.tsv"}},
                        labels=["0", "1"], encoding={"seq_len": 32})


def _evaluations(scores):
    calls = []
    return calls, lambda: calls.append(1) or scores


def test_a_split_is_evaluated_once_and_read_back_by_a_later_run(tmp_path):
    path = tmp_path / "cache" / "teacher_scores.json"
    calls, evaluate = _evaluations({"accuracy": 0.75})
    assert TeacherScores(path, KEY).get("dev", evaluate) == {"accuracy": 0.75}
    assert TeacherScores(path, KEY).get("dev", evaluate) == {"accuracy": 0.75}
    assert len(calls) == 1
    assert json.loads(path.read_text()) == {"key": KEY, "scores": {"dev": {"accuracy": 0.75}}}
    test_calls, evaluate_test = _evaluations({"accuracy": 0.5})
    TeacherScores(path, KEY).get("test", evaluate_test)
    assert set(json.loads(path.read_text())["scores"]) == {"dev", "test"} and len(test_calls) == 1


def test_scores_of_another_teacher_or_task_file_are_not_reused(tmp_path):
    path = tmp_path / "teacher_scores.json"
    TeacherScores(path, KEY).get("dev", lambda: {"accuracy": 0.75})
    for change in ({"teacher": {"bytes": 4, "head_sha256": "ab"}}, {"task_files": {"dev": {"name": "other.tsv"}}},
                   {"labels": ["1", "0"]}, {"encoding": {"seq_len": 64}}):
        calls, evaluate = _evaluations({"accuracy": 0.5})
        assert TeacherScores(path, {**KEY, **change}).get("dev", evaluate) == {"accuracy": 0.5}
        assert len(calls) == 1, change
        TeacherScores(path, KEY).get("dev", lambda: {"accuracy": 0.75})  # back to the first key


def test_a_key_saved_with_file_locations_still_matches(tmp_path):
    path = tmp_path / "teacher_scores.json"
    saved_key = {**KEY, "teacher": {"path": "/old/tf_model.h5", **KEY["teacher"]}}
    path.write_text(json.dumps({"key": saved_key, "scores": {"dev": {"accuracy": 0.75}}}))
    assert TeacherScores(path, KEY).get("dev", lambda: {"accuracy": 0.0}) == {"accuracy": 0.75}


def test_only_the_writer_records(tmp_path):
    path = tmp_path / "teacher_scores.json"
    TeacherScores(path, KEY, writer=False).get("dev", lambda: {"accuracy": 0.75})
    assert not path.exists()


def test_scores_another_run_recorded_for_the_same_key_are_read_and_recorded_here(tmp_path):
    other = tmp_path / "other" / "cache" / "teacher_scores.json"
    TeacherScores(other, KEY).get("dev", lambda: {"accuracy": 0.75})
    path = tmp_path / "run" / "cache" / "teacher_scores.json"
    calls, evaluate = _evaluations({"accuracy": 0.0})
    assert TeacherScores(path, KEY, also_read=[other]).get("dev", evaluate) == {"accuracy": 0.75} and not calls
    assert json.loads(path.read_text())["scores"] == {"dev": {"accuracy": 0.75}}
    # a split the other run did not score, or another key, is evaluated
    assert TeacherScores(path, KEY, also_read=[other]).get("test", evaluate) == {"accuracy": 0.0}
    changed = {**KEY, "labels": ["1", "0"]}
    assert TeacherScores(tmp_path / "new.json", changed, also_read=[other]).get("dev", evaluate) == {"accuracy": 0.0}
    assert len(calls) == 2
