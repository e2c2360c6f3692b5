"""The examples, run as a user runs them, at a tiny budget: an example that stopped working is a bug.

600 env steps: past `learning_starts` (500), so the examples' fine-tuning updates run too.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY = ["--steps", "600", "--pretrain-steps", "20", "--demo-episodes", "2", "--eval-episodes", "2"]


def _run_example(script: str, out: Path) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *TINY, "--out", str(out)], cwd=EXAMPLES,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] == 600 and summary["eval_episodes"] == 2
    assert (out / "edit_head" / "model.safetensors").is_file()
    return proc.stdout


@pytest.mark.parametrize("script", ["finetune_pointmaze.py", "finetune_gmm.py"])
def test_example_fine_tunes_and_reports(script, tmp_path):
    pytest.importorskip("gymnasium_robotics")
    stdout = _run_example(script, tmp_path / "run")
    assert re.search(r"base \d\.\d\d -> EXPO \d\.\d\d \(2 episodes, same seeds\)", stdout), stdout


def test_lerobot_example_fine_tunes_and_reports(tmp_path):
    pytest.importorskip("gymnasium_robotics")
    pytest.importorskip("lerobot")  # the LeRobot extra's venv (make test-lerobot)
    stdout = _run_example("finetune_lerobot.py", tmp_path / "run")
    assert re.search(r"LeRobot DiffusionPolicy: base \d\.\d\d -> EXPO \d\.\d\d \(2 episodes", stdout), stdout
