"""Checkpoints: a run killed with SIGKILL resumes and ends with the same metrics."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from resume_worker import CONFIG
from toy_policy import BiasedMixturePolicy

from expo_sdk import FinetuneConfig, Finetuner
from expo_sdk.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from expo_sdk.envs.toy import ReachGoalEnv

WORKER = str(Path(__file__).with_name("resume_worker.py"))


def _metrics(run_dir):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")} for line in lines]


def _worker(run_dir, *flags):
    return subprocess.Popen([sys.executable, WORKER, str(run_dir), *flags], cwd=Path(WORKER).parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigkilled_run_resumes_to_identical_metrics(tmp_path):
    reference = _worker(tmp_path / "reference")
    assert reference.wait(timeout=300) == 0, reference.stderr.read()[-2000:]

    killed_dir = tmp_path / "killed"
    victim = _worker(killed_dir)
    deadline = time.time() + 300
    while find_checkpoint(killed_dir) is None or _checkpoint_step(killed_dir) < 300:
        assert victim.poll() is None, "the run finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (killed_dir / "summary.json").exists()  # it really died mid-run

    resumed = _worker(killed_dir, "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-2000:]
    assert _metrics(killed_dir) == _metrics(tmp_path / "reference")
    summary = json.loads((killed_dir / "summary.json").read_text())
    reference_summary = json.loads((tmp_path / "reference" / "summary.json").read_text())
    for key in ("base_success", "final_success", "final_base_success", "env_steps"):
        assert summary[key] == reference_summary[key]


def _checkpoint_step(run_dir):
    try:
        return load_checkpoint(find_checkpoint(run_dir))[1]["env_step"]
    except (ValueError, TypeError):
        return -1


def test_in_process_resume_matches_and_rejects_a_changed_config(tmp_path):
    def tuner(**overrides):
        return Finetuner(BiasedMixturePolicy(), FinetuneConfig(**{**CONFIG, **overrides}))

    full = tuner().run(ReachGoalEnv, 400, run_dir=tmp_path / "full", progress=False)

    class StopAt(__import__("expo_sdk").Callback):
        def on_step(self, t, env_step):
            return env_step >= 250

    tuner().run(ReachGoalEnv, 400, run_dir=tmp_path / "part", callbacks=[StopAt()], progress=False)
    assert find_checkpoint(tmp_path / "part") is not None
    with pytest.raises(ValueError, match="different config"):
        tuner(utd_ratio=3).run(ReachGoalEnv, 400, run_dir=tmp_path / "part", resume=True, progress=False)
    resumed = Finetuner.resume(tmp_path / "part", BiasedMixturePolicy(), ReachGoalEnv, 400, progress=False)
    assert resumed.final_success == full.final_success and resumed.env_steps == 400
    assert _metrics(tmp_path / "part") == _metrics(tmp_path / "full")


def test_interrupted_swap_falls_back_to_the_previous_checkpoint(tmp_path):
    import torch

    save_checkpoint(tmp_path, {"x": torch.ones(2)}, {"env_step": 1})
    (tmp_path / "checkpoint").rename(tmp_path / "checkpoint.old")  # killed between the two renames
    (tmp_path / "checkpoint.tmp123").mkdir()  # and a half-written new one
    tensors, state = load_checkpoint(find_checkpoint(tmp_path))
    assert state["env_step"] == 1 and torch.equal(tensors["x"], torch.ones(2))
    save_checkpoint(tmp_path, {"x": torch.zeros(2)}, {"env_step": 2})
    assert load_checkpoint(find_checkpoint(tmp_path))[1]["env_step"] == 2


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    import torch

    path = save_checkpoint(tmp_path, {"x": torch.ones(2)}, {"env_step": 1})
    (path / "tensors.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="unreadable.*delete it to restart"):
        load_checkpoint(path)
