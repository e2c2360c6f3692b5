"""Fetch Push and PickAndPlace (gymnasium-robotics) as sparse-reward episodic tasks, with
scripted experts.

Observation (flat, float32 [28]): gymnasium-robotics' `observation` [25] = gripper position
(0:3), object position (3:6), object relative to gripper (6:9), finger widths (9:11),
object rotation (11:14), object linear / angular velocity (14:20), gripper velocity (20:25),
then the `desired_goal` [3] (25:28). Action [4] in [-1, 1]: gripper displacement (x 0.05 m
per step) and finger command (+1 open, -1 close). Reward 1 and termination on success
(object within 5 cm of the goal), time limit as truncation, `info["is_success"]`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from .pointmaze import _import_gymnasium_robotics

GRIP, OBJECT, FINGERS, GOAL = slice(0, 3), slice(3, 6), slice(9, 11), slice(25, 28)
OBS_DIM = 28


class FetchTask(gym.Wrapper):
    """Flat observation, 0/1 reward, terminate on success (see the module docstring)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)

    @staticmethod
    def flatten(obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([obs["observation"], obs["desired_goal"]]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        info["is_success"] = False
        return self.flatten(obs), info

    def step(self, action):
        obs, _, _, truncated, info = self.env.step(action)
        success = bool(info["is_success"])
        info["is_success"] = success
        return self.flatten(obs), float(success), success, bool(truncated) and not success, info


def make_fetch(task: str = "PickAndPlace", max_episode_steps: int = 50, **kwargs: Any) -> FetchTask:
    """`task`: "Push" or "PickAndPlace" (gymnasium-robotics `Fetch<task>-v4`, sparse)."""
    _import_gymnasium_robotics()
    if task not in ("Push", "PickAndPlace"):
        raise ValueError(f"unknown Fetch task {task!r}; choose 'Push' or 'PickAndPlace'")
    return FetchTask(gym.make(f"Fetch{task}-v4", max_episode_steps=max_episode_steps, **kwargs))


class FetchExpert:
    """Waypoint controller for Push and PickAndPlace, from the flat observation alone.

    PickAndPlace: above the object with open fingers -> down -> close -> carry to the goal.
    Push: behind the object on the goal line, fingers closed -> push toward the goal,
    re-approaching from behind when the object drifts off the line.

    Args:
        env: the task (its name picks the strategy).
        speed: scales the displacement commands (< 1: a slow operator).
        noise_std: Gaussian noise added to every action (a shaky operator).
        seed: seed of the noise.
    """

    GAIN = 10.0  # action per metre of error: full speed until 10 cm away

    def __init__(self, env: gym.Env, speed: float = 1.0, noise_std: float = 0.0, seed: int | None = None) -> None:
        self.push = "Push" in env.unwrapped.spec.id
        self.speed, self.noise_std = speed, noise_std
        self.rng = np.random.default_rng(seed)
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.phase, self.closing = "approach", 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        grip, obj, goal = obs[GRIP], obs[OBJECT], obs[GOAL]
        target, fingers = (self._push if self.push else self._pick)(grip, obj, goal)
        move = np.clip((target - grip) * self.GAIN, -1.0, 1.0) * self.speed
        action = np.append(move, fingers) + self.rng.normal(0.0, self.noise_std, 4)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def _pick(self, grip, obj, goal):
        above = obj + [0.0, 0.0, 0.06]
        if self.phase == "approach":
            if np.linalg.norm((above - grip)[:2]) < 0.01 and abs(above[2] - grip[2]) < 0.02:
                self.phase = "descend"
            return above, 1.0
        if self.phase == "descend":
            if np.linalg.norm(obj - grip) < 0.01:
                self.phase, self.closing = "grasp", 0
            return obj, 1.0
        if self.phase == "grasp":
            self.closing += 1
            if self.closing >= 3:
                self.phase = "carry"
            return obj, -1.0
        if np.linalg.norm(obj - grip) > 0.04:  # dropped it: start over
            self.phase = "approach"
        return goal + (grip - obj), -1.0

    def _push(self, grip, obj, goal):
        to_goal = (goal - obj)[:2]
        direction = to_goal / max(np.linalg.norm(to_goal), 1e-6)
        behind = np.append(obj[:2] - 0.06 * direction, obj[2])
        # how far the gripper is from the line behind the object (the pushing lane)
        offset = grip[:2] - obj[:2]
        lateral = abs(offset[0] * direction[1] - offset[1] * direction[0])
        along = offset @ direction
        if self.phase == "push" and (lateral > 0.02 or along > -0.01):
            self.phase = "approach"  # slipped off the object: come back from behind
        if self.phase == "approach":
            hover = behind + [0.0, 0.0, 0.1]
            if np.linalg.norm((hover - grip)[:2]) > 0.02 and grip[2] < hover[2] - 0.02:
                return np.append(grip[:2], hover[2]), -1.0  # rise first: never sweep through the object
            if np.linalg.norm(hover - grip) < 0.015:
                self.phase = "lower"
            return hover, -1.0
        if self.phase == "lower":
            if abs(grip[2] - obj[2]) < 0.01 and np.linalg.norm((behind - grip)[:2]) < 0.015:
                self.phase = "push"
            return behind, -1.0
        return np.append(obj[:2] + 0.05 * direction, obj[2]), -1.0
