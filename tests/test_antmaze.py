"""Tests for the AntMaze tasks, their gait-controller expert and the shared maze planner."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics", reason='needs pip install "expo-sdk[sim]"')

from expo_sdk.envs import TASKS, make_expert, make_task
from expo_sdk.envs.antmaze import (
    GOAL,
    JOINTS,
    POS,
    QUAT,
    SUCCESS_RADIUS,
    AntMazeExpert,
    AntMazeObservation,
    make_antmaze,
)
from expo_sdk.envs.maze_grid import MazeGrid


@pytest.fixture(scope="module")
def env():
    return make_task("antmaze-umaze")


def test_tasks_are_registered_with_their_time_limits():
    limits = {"antmaze-umaze": 700, "antmaze-medium": 1000, "antmaze-large": 1000}
    assert set(limits) <= set(TASKS)
    for name, limit in limits.items():
        assert TASKS[name].keywords["max_episode_steps"] == limit


def test_observation_and_action_spaces(env):
    assert isinstance(env, AntMazeObservation)
    assert env.observation_space.shape == (31,) and env.observation_space.dtype == np.float32
    assert env.action_space.shape == (8,)
    np.testing.assert_array_equal(env.action_space.low, -1.0)
    np.testing.assert_array_equal(env.action_space.high, 1.0)

    obs, info = env.reset(seed=0)
    assert obs.shape == (31,) and obs.dtype == np.float32
    assert info["is_success"] is False
    data = env.unwrapped.data
    np.testing.assert_allclose(obs[GOAL], env.goal, atol=1e-6)
    # x, y, z, quaternion, joints, velocities: the ant's qpos then qvel.
    np.testing.assert_allclose(obs[:29], np.concatenate([data.qpos, data.qvel]), atol=1e-6)
    np.testing.assert_allclose(obs[QUAT], [1.0, 0.0, 0.0, 0.0], atol=1e-6)  # upright

    obs, reward, _, _, info = env.step(env.action_space.sample())
    assert obs.shape == (31,) and isinstance(reward, float) and isinstance(info["is_success"], bool)
    np.testing.assert_allclose(obs[POS], env.unwrapped.data.qpos[:2], atol=1e-6)


def test_reset_is_deterministic_given_seed(env):
    a, _ = env.reset(seed=7)
    for _ in range(5):
        env.step(env.action_space.sample())
    b, _ = env.reset(seed=7)
    np.testing.assert_array_equal(a, b)
    c, _ = make_antmaze("UMaze", seed=7).reset()
    np.testing.assert_array_equal(a, c)
    # ... and so is the episode that follows, with the same actions.
    actions = np.random.default_rng(0).uniform(-1, 1, size=(20, 8)).astype(np.float32)
    runs = []
    for _ in range(2):
        env.reset(seed=7)
        runs.append(np.stack([env.step(u)[0] for u in actions]))
    np.testing.assert_array_equal(runs[0], runs[1])
    starts_goals = {tuple(np.round(env.reset(seed=s)[0][[0, 1, 29, 30]], 4)) for s in range(10)}
    assert len(starts_goals) == 10


def test_time_limit_truncates_not_terminates():
    env = make_antmaze("UMaze", max_episode_steps=10)
    env.reset(seed=0)
    for t in range(10):
        _, reward, terminated, truncated, info = env.step(np.zeros(8, np.float32))
        assert reward == 0.0 and not terminated and info["is_success"] is False
        assert truncated == (t == 9)


def test_expert_reaches_the_goal(env):
    # Seed 4: start and goal two cells apart (~85 steps), so the test stays fast.
    expert = make_expert("antmaze-umaze", env)
    assert isinstance(expert, AntMazeExpert)
    obs, _ = env.reset(seed=4)
    expert.reset(seed=4)
    rewards = []
    for _ in range(300):
        obs, reward, terminated, truncated, info = env.step(expert.act(obs))
        rewards.append(reward)
        if terminated or truncated:
            break
    assert terminated and not truncated and info["is_success"] is True
    assert rewards[-1] == 1.0 and all(r == 0.0 for r in rewards[:-1])
    assert np.linalg.norm(obs[POS] - obs[GOAL]) <= SUCCESS_RADIUS + 1e-6
    assert obs[2] > 0.3  # the torso is up on its legs, not dragged


def test_expert_is_deterministic_bounded_and_tracks_joints(env):
    obs, _ = env.reset(seed=0)
    e1 = AntMazeExpert(env, noise_std=0.5, speed=0.5, seed=3)
    e2 = AntMazeExpert(env, noise_std=0.5, speed=0.5, seed=3)
    a1 = np.stack([e1.act(obs) for _ in range(30)])
    a2 = np.stack([e2.act(obs) for _ in range(30)])
    np.testing.assert_array_equal(a1, a2)
    assert a1.dtype == np.float32 and a1.shape == (30, 8) and np.all(np.abs(a1) <= 1.0)
    e1.reset(seed=1)
    e2.reset(seed=1)
    np.testing.assert_array_equal(e1.act(obs), e2.act(obs))
    # Without noise, the PD pushes each joint toward its gait target: at reset the ankles
    # are at 0, below their 30-70 degree stance, so every ankle torque bends it down.
    quiet = AntMazeExpert(env)
    u = quiet.act(obs)
    ankle_torques = u[[3, 5, 7, 1]]  # ankle_1..4 in action order
    assert np.all(np.sign(ankle_torques) == [1, -1, -1, 1])
    np.testing.assert_allclose(obs[JOINTS], 0.0, atol=1e-6)
    with pytest.raises(ValueError):
        AntMazeExpert(env, speed=0.0)


def test_maze_grid_plans_around_walls(env):
    grid = MazeGrid(env.unwrapped.maze)
    # UMaze: free cells (1,1..3), (2,3), (3,1..3); (2,1..2) is the wall in the middle.
    assert grid.path((3, 1), (1, 1)) == [(3, 1), (3, 2), (3, 3), (2, 3), (1, 3), (1, 2), (1, 1)]
    assert grid.distances((1, 1))[2, 2] == -1  # wall cell
    assert grid.segment_is_clear(grid.centre((1, 1)), grid.centre((1, 3)), margin=1.0)
    assert not grid.segment_is_clear(grid.centre((3, 1)), grid.centre((1, 1)), margin=1.0)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="continuing_task"):
        make_antmaze("UMaze", continuing_task=True)
    with pytest.raises(ValueError, match="contact forces"):
        make_antmaze("UMaze", include_cfrc_ext_in_observation=True)
    with pytest.raises(ValueError, match="UMaze"):
        make_antmaze("Huge")
