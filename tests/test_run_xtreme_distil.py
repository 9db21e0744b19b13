"""The command line: flags and flagfiles resolve into a config; bad input fails with file:line."""
import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags

from conftest import write_task
from xdistil.distill_flags import config_from_flags, define_flags
from xdistil.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def flag_values():
    values = flags.FlagValues()
    define_flags(values)
    return values


def test_flagfile_resolves_to_config(tmp_path, flag_values):
    flagfile = tmp_path / "run.cfg"
    flagfile.write_text("--task=data/wnut\n--do_NER\n--model_dir=out/ner\n--pt_teacher_checkpoint=teacher\n"
                        "--student_layers_from_teacher=0,4,8,11\n--opt_policy=mixed_bfloat16\n")
    flag_values(["prog", f"--flagfile={flagfile}", "--seq_len=64"])
    config = config_from_flags(flag_values)
    assert config.data.task_kind == "ner" and config.data.seq_len == 64
    assert config.student.student_layers_from_teacher == (0, 4, 8, 11)
    assert config.runtime.opt_policy == "mixed_bfloat16"


def test_exclusive_task_flags(flag_values):
    flag_values(["prog", "--task=t", "--model_dir=m", "--pt_teacher_checkpoint=x", "--do_NER", "--do_pairwise"])
    with pytest.raises(ConfigError, match="exclusive"):
        config_from_flags(flag_values)


def test_malformed_row_stops_with_file_and_line(tmp_path):
    task = write_task(tmp_path / "task", "ner")
    lines = (task / "train.tsv").read_text().splitlines()
    lines[2] = lines[2].rsplit(" ", 1)[0]  # one tag fewer than tokens
    (task / "train.tsv").write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_xtreme_distil.py"), f"--task={task}", "--do_NER",
         f"--model_dir={tmp_path / 'out'}", f"--pt_teacher_checkpoint={tmp_path / 'unused'}",
         "--student_layers_from_teacher=0"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode != 0
    tokens = len(lines[2].split("\t")[0].split())
    assert f"error: {tokens} tokens but {tokens - 1} tags ({task / 'train.tsv'}:3)" in result.stderr
    assert "Traceback" not in result.stderr
