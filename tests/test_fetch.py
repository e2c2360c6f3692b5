"""Fetch Push / PickAndPlace tasks and their scripted experts."""

import numpy as np
import pytest

from expo_sdk.envs import make_expert, make_task
from expo_sdk.envs.fetch import GOAL, GRIP, OBJECT


@pytest.mark.parametrize("task", ["fetch-push", "fetch-pickandplace"])
def test_task_interface(task):
    env = make_task(task)
    obs, info = env.reset(seed=3)
    raw = env.unwrapped._get_obs()
    assert obs.shape == env.observation_space.shape == (28,) and obs.dtype == np.float32
    np.testing.assert_allclose(obs[GRIP], raw["observation"][:3], rtol=1e-6)
    np.testing.assert_allclose(obs[OBJECT], raw["observation"][3:6], rtol=1e-6)
    np.testing.assert_allclose(obs[GOAL], raw["desired_goal"], rtol=1e-6)
    assert env.action_space.shape == (4,) and info["is_success"] is False
    again, _ = make_task(task).reset(seed=3)
    np.testing.assert_array_equal(obs, again)  # the seed fixes object and goal
    _, reward, terminated, truncated, info = env.step(np.zeros(4, np.float32))
    assert reward == float(terminated) == float(info["is_success"]) and not truncated


@pytest.mark.parametrize("task", ["fetch-push", "fetch-pickandplace"])
def test_expert_succeeds_and_quality_knobs_hurt(task):
    def success_rate(**knobs):
        env = make_task(task)
        expert, wins = make_expert(task, env, seed=0, **knobs), 0
        for episode in range(10):
            obs, _ = env.reset(seed=100 + episode)
            expert.reset(seed=episode)
            while True:
                obs, reward, terminated, truncated, _ = env.step(expert.act(obs))
                if terminated or truncated:
                    wins += terminated and reward == 1.0
                    break
        return wins / 10

    assert success_rate() >= 0.9
    assert success_rate(speed=0.3, noise_std=0.5) < success_rate()
