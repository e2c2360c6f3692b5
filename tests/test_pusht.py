"""PushT task (gym-pusht, state observations) and its scripted expert."""

import sys

import numpy as np
import pytest

pytest.importorskip("gym_pusht")

from expo_sdk.envs import make_expert, make_task  # noqa: E402
from expo_sdk.envs.pusht import AGENT, ANGLE, BLOCK, GOAL_POSE, OBS_DIM, SIN_COS, make_pusht  # noqa: E402


def _put_block_on_goal(env):
    """Place the T exactly on the goal pose (angle first: setting the position keeps it)."""
    block = env.unwrapped.block
    block.angle = GOAL_POSE[2]
    block.position = tuple(GOAL_POSE[:2])
    env.unwrapped.agent.position = (40.0, 40.0)


def test_spaces_and_layout():
    env = make_task("pusht")
    obs, info = env.reset(seed=3)
    assert obs.shape == env.observation_space.shape == (OBS_DIM,) and obs.dtype == np.float32
    assert env.action_space.shape == (2,) and env.action_space.dtype == np.float32
    np.testing.assert_array_equal(env.action_space.low, [0, 0])
    np.testing.assert_array_equal(env.action_space.high, [512, 512])
    raw = env.unwrapped.get_obs()  # gym-pusht's own [agent_x, agent_y, block_x, block_y, angle]
    np.testing.assert_allclose(obs[AGENT], raw[:2], rtol=1e-6)
    np.testing.assert_allclose(obs[BLOCK], raw[2:4], rtol=1e-6)
    np.testing.assert_allclose(obs[ANGLE], raw[4], rtol=1e-6)
    np.testing.assert_allclose(obs[SIN_COS], [np.sin(raw[4]), np.cos(raw[4])], atol=1e-6)
    assert info["is_success"] is False


def test_reset_seed_is_deterministic():
    first, second = make_task("pusht"), make_task("pusht")
    a, _ = first.reset(seed=7)
    np.testing.assert_array_equal(a, second.reset(seed=7)[0])
    assert not np.array_equal(a, second.reset(seed=8)[0])
    actions = np.random.default_rng(0).uniform(0, 512, (5, 2)).astype(np.float32)
    for env in (first, second):
        env.reset(seed=7)
    for action in actions:  # same seed, same actions -> same trajectory
        np.testing.assert_array_equal(first.step(action)[0], second.step(action)[0])


def test_reward_and_termination():
    env = make_pusht(max_episode_steps=3)
    env.reset(seed=0)
    env.unwrapped.agent.position = (40.0, 40.0)
    env.unwrapped.block.position = (300.0, 300.0)  # far from the goal pose
    for step in range(3):  # an agent that stays away: no reward, truncated at the limit only
        _, reward, terminated, truncated, info = env.step(np.array([40.0, 40.0], np.float32))
        assert reward == 0.0 and not terminated and info["is_success"] is False
        assert truncated == (step == 2)

    env = make_pusht(max_episode_steps=1)
    env.reset(seed=0)
    _put_block_on_goal(env)  # success on the last allowed step: terminated, not truncated
    _, reward, terminated, truncated, info = env.step(np.array([40.0, 40.0], np.float32))
    assert reward == 1.0 and terminated and not truncated and info["is_success"] is True
    assert info["coverage"] > 0.95


def test_actions_are_clipped_to_the_table():
    env = make_task("pusht")
    env.reset(seed=1)
    env.step(np.array([-500.0, 1e4], np.float32))
    assert env.unwrapped._last_action.tolist() == [0.0, 512.0]


def test_lazy_import_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gym_pusht", None)  # as if it were not installed
    with pytest.raises(ImportError, match="pip install"):
        make_pusht()


def test_only_state_observations():
    with pytest.raises(ValueError, match="state"):
        make_pusht(obs_type="pixels")


def _rollouts(episodes, seeds, **knobs):
    env = make_task("pusht")
    expert = make_expert("pusht", env, seed=0, **knobs)
    wins, lengths = 0, []
    for seed in seeds[:episodes]:
        obs, _ = env.reset(seed=seed)
        expert.reset(seed=seed)
        for steps in range(1, 301):
            action = expert.act(obs)
            assert env.action_space.contains(action)
            obs, reward, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        wins += terminated and reward == 1.0 and info["coverage"] > 0.95
        lengths.append(steps)
    return wins, np.mean(lengths)


def test_expert_succeeds():
    wins, _ = _rollouts(10, list(range(100, 110)))
    assert wins >= 9


def test_slow_noisy_expert_takes_longer():
    seeds = [3, 4]
    _, fast = _rollouts(2, seeds)
    _, slow = _rollouts(2, seeds, speed=0.4, noise_std=0.5)
    assert slow > fast
