"""Collection with gymnasium vector envs (`num_envs > 1`, sync and async)."""

import functools
import json

import numpy as np
import pytest
import torch
from toy_policy import BiasedMixturePolicy

from expo_sdk import FinetuneConfig, Finetuner, Normalizer
from expo_sdk.adapters import DDPMPolicy
from expo_sdk.envs.toy import ReachGoalEnv
from expo_sdk.rollout import ChunkedEnv, EnvError

TINY = dict(batch_size=8, utd_ratio=2, base_mode="frozen", num_samples=2, eval_episodes=2, eval_num_envs=2,
            eval_every=10**6, log_every=20, critic={"ensemble_size": 2, "hidden_dim": 8},
            edit_head={"hidden_dim": 8, "num_layers": 1}, learning_starts=10)


def _tuner(**overrides):
    return Finetuner(BiasedMixturePolicy(), FinetuneConfig(**{**TINY, **overrides}))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_collection_stores_every_envs_transitions_with_true_final_states(mode):
    tuner = _tuner(num_envs=3, vector_env=mode, warmup_steps=10**6, learning_starts=10**6)
    result = tuner.run(ReachGoalEnv, total_steps=300, progress=False)
    buf = tuner.online
    assert result.env_steps == len(buf) == 300  # 100 vector steps of 3 envs, nothing lost
    terminated, next_obs = buf.terminated[:300], buf.next_obs[:300]
    assert torch.equal(terminated, buf.reward[:300] > 0)
    # A terminal transition's s' is the state that reached the goal, not the next
    # episode's first observation (gymnasium's autoreset puts that in its place).
    distance = (next_obs[:, :2] - next_obs[:, 2:]).norm(dim=1)
    assert terminated.sum() >= 3 and bool((distance[terminated] < 0.1).all())
    # ...and the envs really did start new episodes: more episodes than envs
    assert any(r.get("train/episode_success") is not None for r in result.history)


def test_utd_ratio_counts_per_env_step_with_vector_envs():
    tuner = _tuner(num_envs=4, learning_starts=20)
    tuner.run(ReachGoalEnv, total_steps=60, progress=False)
    updates = 60 - 20  # one update (utd_ratio critic steps) per transition after learning_starts
    critic_steps = {int(s["step"]) for s in tuner.critic_optimizer.state.values()}
    edit_steps = {int(s["step"]) for s in tuner.edit_optimizer.state.values()}
    assert critic_steps == {2 * updates} and edit_steps == {updates}


def test_vector_collection_is_deterministic_for_a_seed():
    def history():
        records = _tuner(num_envs=2, seed=3).run(ReachGoalEnv, total_steps=80, progress=False).history
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]

    assert history() == history()


def test_chunked_policies_run_in_vector_envs():
    normalizer = Normalizer([-1.0] * 2, [1.0] * 2, obs_dim=4).to_dict()
    base = DDPMPolicy(4, 2, normalizer, horizon=3, num_diffusion_steps=3, hidden_dim=16, num_blocks=1)
    tuner = Finetuner(base, FinetuneConfig(**{**TINY, "num_envs": 2, "learning_starts": 20}))
    env_fn = functools.partial(ReachGoalEnv, max_episode_steps=8)
    result = tuner.run(env_fn, total_steps=60, progress=False)
    n = len(tuner.online)
    # each transition is one chunk of up to 3 env steps; episodes of 8 steps end mid-chunk
    assert 60 / 3 <= n < 60 and result.env_steps >= 60
    steps = np.round(np.log(tuner.online.discount[:n].numpy()) / np.log(0.99)).astype(int)
    assert set(steps.tolist()) <= {1, 2, 3} and {2, 3} <= set(steps.tolist())  # 8 = 3 + 3 + 2


def test_chunked_env_reports_discount_steps_and_success():
    env = ChunkedEnv(ReachGoalEnv(max_episode_steps=5), horizon=3, gamma=0.5)
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(np.zeros((3, 2), np.float32))
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["chunk_steps"] == 3 and info["chunk_discount"] == 0.125 and info["is_success"] is False
    _, _, _, truncated, info = env.step(np.zeros((3, 2), np.float32))
    assert truncated and info["chunk_steps"] == 2  # the episode's time limit cut the chunk short


class FlakyEnv(ReachGoalEnv):
    calls = 0

    def step(self, action):
        FlakyEnv.calls += 1
        if FlakyEnv.calls % 41 == 0:
            raise ConnectionError("simulator connection lost")
        return super().step(action)


def test_a_failing_sub_env_rebuilds_the_vector_env_and_is_counted(tmp_path):
    FlakyEnv.calls = 0
    tuner = _tuner(num_envs=2)
    with pytest.warns(UserWarning, match="ConnectionError: simulator connection lost; episodes truncated, the 2 envs"):
        result = tuner.run(FlakyEnv, total_steps=200, env_fn=ReachGoalEnv, run_dir=tmp_path, progress=False)
    assert result.env_steps == len(tuner.online) == 200
    logged = [json.loads(line)["faults/env_errors"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
              if "faults/env_errors" in line]
    assert logged[-1] >= 3


def test_vector_env_checks_the_env_against_the_policy_first():
    class WideEnv(ReachGoalEnv):
        def __init__(self):
            super().__init__()
            import gymnasium as gym
            self.observation_space = gym.spaces.Box(-1, 1, (6,), np.float32)

    with pytest.raises(ValueError, match=r"env observations have shape \(6,\) but the base policy expects \(4,\)"):
        _tuner(num_envs=2).run(WideEnv, total_steps=10, progress=False)


def test_too_many_errors_in_vector_envs_stop_with_the_cause():
    class Broken(ReachGoalEnv):
        def step(self, action):
            raise ConnectionError("down")

    tuner = _tuner(num_envs=2, max_env_errors=1)
    with pytest.warns(UserWarning), pytest.raises(EnvError, match="over the limit max_env_errors=1") as info:
        tuner.run(Broken, total_steps=20, env_fn=ReachGoalEnv, progress=False)
    assert info.value.__cause__ is not None


def test_vector_runs_resume_from_a_mid_episode_checkpoint(tmp_path):
    from expo_sdk import Callback

    class StopAt(Callback):
        def on_step(self, tuner, env_step):
            return env_step >= 60

    config = {**TINY, "num_envs": 2, "checkpoint_every": 20}
    _tuner(**config).run(ReachGoalEnv, total_steps=100, run_dir=tmp_path, callbacks=[StopAt()], progress=False)
    resumed = _tuner(**config)
    result = resumed.run(ReachGoalEnv, total_steps=100, run_dir=tmp_path, resume=True, progress=False)
    # the checkpoint at env step 40 (the one at 60 was not reached) plus 60 new transitions
    assert result.env_steps == 100 and len(resumed.online) == 100
    assert resumed.history[0]["env_step"] == 0 and resumed.history[-1].get("final")
