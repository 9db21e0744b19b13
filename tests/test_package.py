"""What importing xdistil sets up: Keras 2 for HF TF models, and hub downloads off unless the user says."""
import os
import subprocess
import sys


def _environment_after_import(**environment):
    script = "import os, xdistil; print(os.environ['HF_HUB_OFFLINE'], os.environ['TF_USE_LEGACY_KERAS'])"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TF_USE_LEGACY_KERAS")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            env={**env, **environment}, cwd=os.path.dirname(os.path.dirname(__file__)))
    return result.stdout.split()


def test_offline_by_default_and_the_users_setting_wins():
    assert _environment_after_import() == ["1", "1"]
    assert _environment_after_import(HF_HUB_OFFLINE="0") == ["0", "1"]
