"""A tiny point-reaching task for tests and smoke runs (no simulator needed).

A point in [-1, 1]^2 must come within `tolerance` of a goal within `max_episode_steps`.
Observation: concat(position, goal) [4]; action: velocity in [-1, 1]^2, scaled by
`step_size`. Sparse reward: 1 on the step the goal is reached (terminated), else 0.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class ReachGoalEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, max_episode_steps: int = 15, tolerance: float = 0.1, step_size: float = 0.2):
        self.max_episode_steps, self.tolerance, self.step_size = max_episode_steps, tolerance, step_size
        self.observation_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._pos = np.zeros(2, np.float32)
        self._goal = np.zeros(2, np.float32)
        self._t = 0

    def _obs(self) -> np.ndarray:
        return np.concatenate([self._pos, self._goal]).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._pos = self.np_random.uniform(-0.8, 0.8, 2).astype(np.float32)
        self._goal = self.np_random.uniform(-0.8, 0.8, 2).astype(np.float32)
        self._t = 0
        return self._obs(), {"is_success": False}

    def step(self, action):
        action = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        self._pos = np.clip(self._pos + self.step_size * action, -1.0, 1.0)
        self._t += 1
        success = bool(np.linalg.norm(self._pos - self._goal) < self.tolerance)
        truncated = self._t >= self.max_episode_steps and not success
        return self._obs(), float(success), success, truncated, {"is_success": success}
