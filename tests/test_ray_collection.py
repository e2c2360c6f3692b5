"""Remote collection on Ray actors (a local Ray cluster on this machine, tiny sizes)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from ray_cluster import start_local_ray_cluster
from toy_policy import BiasedMixturePolicy

from expo_sdk import FinetuneConfig, Finetuner
from expo_sdk.checkpoint import find_checkpoint, load_checkpoint
from expo_sdk.envs.toy import ReachGoalEnv

ray = pytest.importorskip("ray")
from expo_sdk.ray_collection import RayCollectors  # noqa: E402

EXPO = shutil.which("expo") or os.path.join(os.path.dirname(sys.executable), "expo")

TINY = dict(batch_size=8, utd_ratio=2, base_mode="frozen", num_samples=2, eval_episodes=2, eval_num_envs=2,
            eval_every=10**6, log_every=16, critic={"ensemble_size": 2, "hidden_dim": 8},
            edit_head={"hidden_dim": 8, "num_layers": 1}, learning_starts=32, warmup_steps=16)


@pytest.fixture(scope="module", autouse=True)
def local_cluster():
    start_local_ray_cluster(ray)  # the actors unpickle the test's policy class
    yield
    ray.shutdown()


def test_collectors_feed_the_learner_and_receive_its_weights(tmp_path):
    tuner = Finetuner(BiasedMixturePolicy(), FinetuneConfig(**TINY))
    collectors = RayCollectors(num_collectors=2, transitions_per_call=8, sync_every=16)
    result = tuner.run(ReachGoalEnv, total_steps=128, run_dir=tmp_path, collectors=collectors, progress=False)
    # every transition the actors sent is in the replay, and counted as env steps
    assert result.env_steps == len(tuner.online) >= 128
    obs = tuner.online.obs[: len(tuner.online)]
    assert len(torch.unique(obs[:, 2:], dim=0)) > 4  # goals of many episodes, from both actors
    # utd_ratio critic steps per received transition once learning started
    critic_steps = {int(s["step"]) for s in tuner.critic_optimizer.state.values()}
    assert len(critic_steps) == 1 and critic_steps.pop() % (2 * 8) == 0
    # weights went out on schedule: the actors acted with several successive versions
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    versions = {r["env_step"] - r["collect/weights_lag"] for r in records if "collect/weights_lag" in r}
    assert len(versions) >= 3 and max(versions) >= 64
    assert collectors.actors == []  # stopped at the end of the run


def test_collectors_run_vector_envs_and_cache_base_samples():
    config = FinetuneConfig(**{**TINY, "num_envs": 2, "cache_base_candidates": True})
    tuner = Finetuner(BiasedMixturePolicy(), config)
    tuner.run(ReachGoalEnv, total_steps=64, collectors=RayCollectors(num_collectors=1, transitions_per_call=8),
              progress=False)
    n = len(tuner.online)
    cached = tuner.online.next_base_actions[:n]
    assert n >= 64 and cached.shape == (n, 2, 2) and bool(cached.abs().sum(-1).gt(0).all())


def test_collector_runs_checkpoint_and_resume_with_actors_on_the_restored_weights(tmp_path):
    config = FinetuneConfig(**{**TINY, "checkpoint_every": 48})
    first = Finetuner(BiasedMixturePolicy(), config)
    first.run(ReachGoalEnv, total_steps=100, run_dir=tmp_path, progress=False,
              collectors=RayCollectors(num_collectors=2, transitions_per_call=8, sync_every=16))
    tensors, state = load_checkpoint(find_checkpoint(tmp_path))
    checkpoint_step, stored = state["env_step"], state["replay"]["size"]
    assert 96 <= checkpoint_step < 100 + 8 and stored == checkpoint_step
    assert "loop/obs" not in tensors  # the learner has no episode of its own to replay

    resumed = Finetuner(BiasedMixturePolicy(), config)
    result = resumed.run(ReachGoalEnv, total_steps=160, run_dir=tmp_path, progress=False, resume=True,
                         collectors=RayCollectors(num_collectors=2, transitions_per_call=8, sync_every=16))
    assert result.env_steps == len(resumed.online) >= 160
    assert resumed.online.obs[:stored].equal(tensors["replay/obs"])  # nothing stored before is lost
    # the new actors started from the checkpoint's weights and clock, not from step 0
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    after = [r["env_step"] - r["collect/weights_lag"] for r in records
             if "collect/weights_lag" in r and r["env_step"] > checkpoint_step]
    assert after and min(after) >= checkpoint_step
    # utd_ratio critic steps per transition over both parts, none lost or repeated
    critic_steps = {int(s["step"]) for s in resumed.critic_optimizer.state.values()}
    assert critic_steps == {2 * (result.env_steps - 32)}


def test_collectors_refuse_bad_settings():
    with pytest.raises(ValueError, match="must be >= 1"):
        RayCollectors(num_collectors=0)


def test_collectors_without_ray_are_refused_when_made(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # Ray not installed: `import ray` raises ImportError
    with pytest.raises(ImportError, match=r"RayCollectors needs Ray: pip install 'expo-sdk\[distributed\]'"):
        RayCollectors(num_collectors=1)


@pytest.mark.slow
def test_a_recipe_collects_on_ray_actors_and_resumes_with_more_of_them(tmp_path):
    """`collectors:` in a recipe, through the real `expo` command (the demo recipe, tiny)."""
    pytest.importorskip("gymnasium_robotics")
    # The CLI processes join this module's cluster, as they would join one `ray start` made.
    env = {**os.environ, "EXPO_SDK_CACHE": str(tmp_path / "cache"),
           "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    tiny = ["total_steps=96", "base.pretrain_steps=30", "demos.episodes=3", "finetune.eval_episodes=2",
            "finetune.learning_starts=48", "finetune.warmup_steps=32", "finetune.eval_every=1000",
            "finetune.log_every=16", "finetune.checkpoint_every=32", "collectors.num_collectors=1",
            "collectors.transitions_per_call=16", "collectors.sync_every=32"]
    out = tmp_path / "run"
    first = subprocess.run([EXPO, "demo", "--out", str(out), *[a for o in tiny for a in ("--set", o)]], env=env,
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["env_steps"] >= 96
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("collect/weights_lag" in r for r in records)  # the actors collected, not the CLI's process
    # trained on with two actors: the collection may change on resume, the learner's recipe not
    more = subprocess.run([EXPO, "finetune", "--resume", str(out), "--set", "total_steps=160",
                           "--set", "collectors.num_collectors=2"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert more.returncode == 0, more.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["env_steps"] >= 160
    assert yaml.safe_load((out / "recipe.yaml").read_text())["collectors"]["num_collectors"] == 2
