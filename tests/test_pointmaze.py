"""Tests for the PointMaze demo task, its scripted expert and demo generation."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics", reason='needs pip install "expo-sdk[sim]"')

from expo_sdk.envs import TASKS, make_task  # noqa: E402
from expo_sdk.envs.pointmaze import (  # noqa: E402
    PointMazeExpert,
    SparseGoalObservation,
    generate_demonstrations,
    make_pointmaze,
)

SUCCESS_RADIUS = 0.45  # PointMaze's goal threshold


@pytest.fixture(scope="module")
def env():
    return make_pointmaze("UMaze", max_episode_steps=100)


def test_observation_and_action_spaces(env):
    assert isinstance(env, SparseGoalObservation)
    assert env.observation_space.shape == (6,)
    assert env.observation_space.dtype == np.float32
    assert env.action_space.shape == (2,)
    np.testing.assert_array_equal(env.action_space.low, -1.0)
    np.testing.assert_array_equal(env.action_space.high, 1.0)

    obs, info = env.reset(seed=0)
    assert obs.shape == (6,) and obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    assert info["is_success"] is False
    np.testing.assert_allclose(obs[4:6], env.goal, atol=1e-6)  # goal is in the obs
    np.testing.assert_array_equal(obs[2:4], 0.0)  # starts at rest

    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs.shape == (6,) and obs.dtype == np.float32
    assert isinstance(reward, float)
    assert isinstance(info["is_success"], bool)


def test_reward_and_termination_on_success(env):
    expert = PointMazeExpert(env)
    obs, _ = env.reset(seed=1)
    rewards = []
    for _ in range(100):
        obs, reward, terminated, truncated, info = env.step(expert.act(obs))
        rewards.append(reward)
        if terminated or truncated:
            break
    assert terminated and not truncated
    assert info["is_success"] is True
    assert rewards[-1] == 1.0
    assert all(r == 0.0 for r in rewards[:-1])
    assert np.linalg.norm(obs[0:2] - obs[4:6]) <= SUCCESS_RADIUS + 1e-6


def test_time_limit_truncates_not_terminates():
    env = make_pointmaze("UMaze", max_episode_steps=10)
    env.reset(seed=0)
    for t in range(10):
        # Zero force: the ball stays at its start cell, away from the goal.
        obs, reward, terminated, truncated, info = env.step(np.zeros(2, np.float32))
        assert reward == 0.0 and not terminated and info["is_success"] is False
        assert truncated == (t == 9)


def test_reset_is_deterministic_given_seed(env):
    a, _ = env.reset(seed=123)
    env.step(env.action_space.sample())
    b, _ = env.reset(seed=123)
    np.testing.assert_array_equal(a, b)
    # A fresh env with the factory seed reproduces the same first reset.
    c, _ = make_pointmaze("UMaze", seed=123).reset()
    np.testing.assert_array_equal(a, c)
    # Different seeds give different start/goal pairs.
    starts_goals = {tuple(np.round(env.reset(seed=s)[0][[0, 1, 4, 5]], 4)) for s in range(10)}
    assert len(starts_goals) == 10


def test_kwargs_are_forwarded_to_pointmaze():
    corridor = [[1, 1, 1, 1], [1, 0, 0, 1], [1, 1, 1, 1]]
    env = make_pointmaze("UMaze", maze_map=corridor)
    assert env.unwrapped.maze.maze_map == corridor
    obs, _ = env.reset(seed=0)
    # Two free cells: start and goal are in different ones, both in row 1.
    maze = env.unwrapped.maze
    cells = {tuple(maze.cell_xy_to_rowcol(obs[0:2])), tuple(maze.cell_xy_to_rowcol(obs[4:6]))}
    assert cells == {(1, 1), (1, 2)}


def test_conflicting_kwargs_are_rejected():
    with pytest.raises(ValueError, match="continuing_task"):
        make_pointmaze("UMaze", continuing_task=True)


def test_expert_solves_umaze():
    env = make_task("pointmaze-umaze")
    expert = PointMazeExpert(env)
    data = generate_demonstrations(env, expert, num_episodes=20, seed=0)
    successes = data["terminals"].sum()
    assert successes / 20 >= 0.9


def test_expert_is_deterministic_and_bounded(env):
    obs, _ = env.reset(seed=0)
    e1 = PointMazeExpert(env, noise_std=1.0, speed=0.5, seed=7)
    e2 = PointMazeExpert(env, noise_std=1.0, speed=0.5, seed=7)
    a1 = np.stack([e1.act(obs) for _ in range(50)])
    a2 = np.stack([e2.act(obs) for _ in range(50)])
    np.testing.assert_array_equal(a1, a2)
    assert a1.dtype == np.float32 and a1.shape == (50, 2)
    assert np.all(np.abs(a1) <= 1.0)
    assert np.std(a1) > 0.1  # the noise is actually applied
    # Without noise, the slow expert commands at most `speed`.
    slow = PointMazeExpert(env, speed=0.5)
    assert np.all(np.abs(slow.act(obs)) <= 0.5 + 1e-6)


def test_unknown_task_lists_known_names():
    with pytest.raises(ValueError) as err:
        make_task("pointmaze-huge")
    for name in TASKS:
        assert name in str(err.value)
    assert {"pointmaze-umaze", "pointmaze-medium", "pointmaze-large"} <= set(TASKS)


def test_missing_gymnasium_robotics_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium_robotics", None)  # import fails
    with pytest.raises(ImportError, match=r'pip install "expo-sdk\[sim\]"'):
        make_pointmaze("UMaze")


def test_generate_demonstrations_shapes_and_determinism():
    # A short limit and a slow, noisy expert give a mix of successes and timeouts.
    env = make_pointmaze("UMaze", max_episode_steps=60)
    expert = PointMazeExpert(env, noise_std=0.3, speed=0.5, seed=0)
    data = generate_demonstrations(env, expert, num_episodes=6, seed=10)
    again = generate_demonstrations(env, PointMazeExpert(env, noise_std=0.3, speed=0.5, seed=0), 6, seed=10)
    assert data.keys() == again.keys()
    for key in data:
        np.testing.assert_array_equal(data[key], again[key], err_msg=key)

    m = len(data["observations"])
    expected = {
        "observations": ((m, 6), np.float32),
        "actions": ((m, 2), np.float32),
        "rewards": ((m,), np.float32),
        "next_observations": ((m, 6), np.float32),
        "terminals": ((m,), np.bool_),
        "timeouts": ((m,), np.bool_),
        "episode_ids": ((m,), np.int64),
        "episode_starts": ((m,), np.bool_),
    }
    for key, (shape, dtype) in expected.items():
        assert data[key].shape == shape and data[key].dtype == dtype, key
    np.testing.assert_array_equal(np.unique(data["episode_ids"]), np.arange(6))
    assert data["episode_starts"].sum() == 6
    np.testing.assert_array_equal(data["rewards"], data["terminals"].astype(np.float32))
    assert not np.any(data["terminals"] & data["timeouts"])
    assert np.all(np.abs(data["actions"]) <= 1.0)

    # Every episode ends with exactly one terminal or timeout, at its last step.
    ends = np.flatnonzero(data["terminals"] | data["timeouts"])
    last = np.flatnonzero(np.append(data["episode_ids"][1:] != data["episode_ids"][:-1], True))
    np.testing.assert_array_equal(ends, last)
    # Within an episode, next_observations[t] == observations[t + 1].
    same_ep = data["episode_ids"][1:] == data["episode_ids"][:-1]
    np.testing.assert_array_equal(data["next_observations"][:-1][same_ep], data["observations"][1:][same_ep])
    # Episode i starts from env.reset(seed=seed + i).
    first = data["observations"][data["episode_starts"]]
    np.testing.assert_array_equal(first[2], env.reset(seed=12)[0])

    # This setting must produce both outcomes, or only_successes is untested.
    n_success = int(data["terminals"].sum())
    assert 0 < n_success < 6
    kept = generate_demonstrations(env, expert, num_episodes=6, seed=10, only_successes=True)
    assert len(np.unique(kept["episode_ids"])) == n_success
    assert kept["terminals"].sum() == n_success and not kept["timeouts"].any()
