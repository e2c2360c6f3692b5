"""The embedded default end to end, through the real `expo` console script, at a tiny budget."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

pytest.importorskip("gymnasium_robotics")

EXPO = shutil.which("expo") or os.path.join(os.path.dirname(sys.executable), "expo")
TINY = ["--set", "total_steps=120", "--set", "finetune.checkpoint_every=50", "--set", "base.pretrain_steps=30", "--set", "demos.episodes=3",
        "--set", "finetune.eval_episodes=4", "--set", "finetune.learning_starts=60",
        "--set", "finetune.eval_every=100", "--set", "finetune.log_every=50"]


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    env = {**os.environ, "EXPO_SDK_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "run"
    proc = subprocess.run([EXPO, "demo", "--out", str(out), *TINY], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "base policy alone" in proc.stdout and "EXPO fine-tuned" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] == 120 and summary["eval_episodes"] == 4
    assert summary["task"] == "pointmaze-umaze" and 0.0 <= summary["final_success"] <= 1.0
    for name in ("recipe.yaml", "config.yaml", "metrics.jsonl", "learning_curve.png", "edit_head/model.safetensors"):
        assert (out / name).is_file(), name
    # The run is resumable from its directory (here: already complete, so it only re-evaluates).
    assert (out / "checkpoint" / "tensors.safetensors").is_file()
    again = subprocess.run([EXPO, "finetune", "--resume", str(out)], env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["env_steps"] == 120
    # ...and trains on past its end with a larger budget (its replay moves into a larger one).
    longer = subprocess.run([EXPO, "finetune", "--resume", str(out), "--set", "total_steps=160"], env=env,
                            capture_output=True, text=True, timeout=600)
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["env_steps"] == 160
    # `expo eval` reloads the run as a FinetunedPolicy (base found by its recorded path).
    # On the run's own evaluation seeds (seed + 1_000_000) it reproduces the run's final number.
    evaluated = subprocess.run([EXPO, "eval", str(out), "--episodes", "4", "--seed", "1000000"], env=env,
                               capture_output=True, text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "base policy alone" in evaluated.stdout and "95% CI" in evaluated.stdout
    final = json.loads((out / "summary.json").read_text())["final_success"]
    assert f"EXPO fine-tuned    {final:.2f}" in evaluated.stdout, evaluated.stdout
    # Pushed (to a fake Hub, see test_push.py) and pulled back, it evaluates to the same number.
    from test_push import FakeHubApi

    from expo_sdk import FinetunedPolicy, evaluate
    from expo_sdk.envs import make_task
    from expo_sdk.finetuned import push_run

    api = FakeHubApi(tmp_path / "hub")
    with pytest.warns(UserWarning, match="local path"):
        push_run(out, "org/demo-edit", api=api)
    pulled = FinetunedPolicy.from_pretrained(tmp_path / "hub" / "org/demo-edit")
    generator = torch.Generator().manual_seed(1_000_000)
    again = evaluate(lambda obs: pulled.act(obs, generator), lambda: make_task("pointmaze-umaze", max_episode_steps=60),
                     4, 1_000_000)
    assert again.success_rate == final
    # The demos and the pretrained base are cached: a second run reuses them.
    assert list((tmp_path / "cache" / "demos").glob("*.npz"))
    assert list((tmp_path / "cache" / "bases").iterdir())


def test_cli_rejects_a_misspelled_recipe_key(tmp_path):
    proc = subprocess.run([EXPO, "demo", "--out", str(tmp_path), "--set", "finetune.utd_raito=3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "unknown FinetuneConfig key 'utd_raito'; did you mean 'utd_ratio'" in proc.stderr


def test_cli_resume_needs_a_run_directory(tmp_path):
    proc = subprocess.run([EXPO, "finetune", "--resume", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "has no recipe.yaml; is it a run directory?" in proc.stderr
    proc = subprocess.run([EXPO, "finetune", "--resume", str(tmp_path), "--out", str(tmp_path / "x")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "takes the recipe and output directory from RUN_DIR" in proc.stderr
    proc = subprocess.run([EXPO, "finetune", "--resume", str(tmp_path), "--set", "finetune.utd_ratio=3"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "can only change total_steps and collectors (got finetune.utd_ratio)" in proc.stderr


def test_cli_reports_a_missing_recipe_file(tmp_path):
    proc = subprocess.run([EXPO, "finetune", str(tmp_path / "nope.yaml")], capture_output=True, text=True)
    assert proc.returncode == 2 and "no recipe file" in proc.stderr
