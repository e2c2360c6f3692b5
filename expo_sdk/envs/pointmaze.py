"""PointMaze: the embedded sparse-reward demo task and its scripted expert.

The task is gymnasium-robotics ``PointMaze_<maze>-v3`` made episodic
(``continuing_task=False``) with a sparse reward, a short time limit and a flat
``float32`` observation, so that any policy that maps ``[D]`` vectors to ``[2]``
actions can be trained on it:

    obs = concat(position (2), velocity (2), goal position (2))   # D = 6
    reward = 1.0 on the step the goal is reached, else 0.0
    terminated = goal reached;  truncated = time limit hit without success

``PointMazeExpert`` is a scripted BFS-plus-PD controller used to generate
demonstrations (``generate_demonstrations``). Its ``speed`` and ``noise_std``
knobs produce deliberately imperfect demonstrators (slow and/or noisy), which is
what the demo needs: a base policy that succeeds only part of the time.

gymnasium-robotics (and MuJoCo) are optional dependencies: they are imported
lazily inside :func:`make_pointmaze`, so importing this module only needs
gymnasium and numpy.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np

# Task-agnostic; re-exported here, where it used to live.
from expo_sdk.envs.demos import generate_demonstrations
from expo_sdk.envs.maze_grid import MazeGrid

__all__ = [
    "PointMazeExpert",
    "SparseGoalObservation",
    "generate_demonstrations",
    "make_pointmaze",
]

# Observation layout of ``SparseGoalObservation``: [x, y, vx, vy, goal_x, goal_y].
POS = slice(0, 2)
VEL = slice(2, 4)
GOAL = slice(4, 6)
OBS_DIM = 6


def _import_gymnasium_robotics():
    """Import gymnasium-robotics on demand with an actionable error message."""
    try:
        import gymnasium_robotics
    except ImportError as err:
        raise ImportError(
            "The PointMaze tasks need gymnasium-robotics and mujoco. "
            'Install them with: pip install "expo-sdk[sim]"'
        ) from err
    # Importing the package already registers its ids; register_envs is the
    # gymnasium 1.x idiom (a no-op) and is absent from older gymnasium.
    if hasattr(gym, "register_envs"):
        gym.register_envs(gymnasium_robotics)
    return gymnasium_robotics


class SparseGoalObservation(gym.Wrapper):
    """Flat-observation, sparse-reward, episodic view of a PointMaze env.

    Wraps a ``PointMaze_*-v3`` env created with ``continuing_task=False`` (and
    usually a ``TimeLimit``) and changes its interface to:

    * observation: ``float32`` array of shape ``[6]`` =
      ``concat(observation[4] (x, y, vx, vy), desired_goal[2])``.
      ``achieved_goal`` is dropped because it equals ``(x, y)``.
    * reward: ``1.0`` on the step the goal is reached, else ``0.0``.
    * terminated: ``True`` exactly when the goal is reached.
    * truncated: the time limit was hit *without* success. The two flags are
      made mutually exclusive: a success on the last allowed step is reported
      as termination only, because that transition must not be bootstrapped.
    * ``info["is_success"]``: a ``bool`` on every reset and step.

    Args:
        env: the PointMaze env (possibly wrapped by gymnasium's TimeLimit etc.).
        seed: if given, used by the first ``reset()`` that is called without
            an explicit seed, so that ``make_pointmaze(seed=s)`` alone is
            reproducible.
    """

    obs_dim = OBS_DIM  # flat observation size; subclasses with another flatten() change it

    def __init__(self, env: gym.Env, seed: int | None = None):
        super().__init__(env)
        self.observation_space = gym.spaces.Box(
            low=-np.inf, high=np.inf, shape=(self.obs_dim,), dtype=np.float32
        )
        self._pending_seed = seed
        if seed is not None:
            # Makes action_space.sample() reproducible as well.
            self.action_space.seed(seed)

    @staticmethod
    def flatten(obs: dict[str, np.ndarray]) -> np.ndarray:
        """Goal-dict observation -> ``float32 [6]`` (pos, vel, desired goal)."""
        return np.concatenate([obs["observation"], obs["desired_goal"]]).astype(np.float32)

    @property
    def goal(self) -> np.ndarray:
        """Current goal position ``[2]`` (x, y) in world coordinates."""
        return np.array(self.env.unwrapped.goal, dtype=np.float64)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is None and self._pending_seed is not None:
            seed = self._pending_seed
        self._pending_seed = None
        obs, info = self.env.reset(seed=seed, options=options)
        info["is_success"] = bool(info.get("success", False))
        return self.flatten(obs), info

    def step(self, action):
        obs, _, _, truncated, info = self.env.step(action)
        # PointMaze reports success (distance <= 0.45) in info["success"]; with
        # continuing_task=False its own terminated flag and sparse reward use
        # the same threshold, so success is the single source of truth here.
        success = bool(info["success"])
        info["is_success"] = success
        reward = 1.0 if success else 0.0
        return self.flatten(obs), reward, success, bool(truncated) and not success, info


def make_pointmaze(
    maze: str = "UMaze",
    max_episode_steps: int = 100,
    seed: int | None = None,
    **kwargs: Any,
) -> SparseGoalObservation:
    """Create the sparse-reward episodic PointMaze task.

    Args:
        maze: gymnasium-robotics maze name: ``"UMaze"``, ``"Medium"``,
            ``"Large"`` (or any ``X`` for which ``PointMaze_X-v3`` exists,
            e.g. ``"Open"``, ``"Medium_Diverse_GR"``).
        max_episode_steps: time limit; hitting it gives ``truncated=True``.
            The control step is 0.01 s of simulated time.
        seed: optional seed for the first ``reset()`` (see
            :class:`SparseGoalObservation`). Each ``reset(seed=s)`` is
            deterministic: same ``s`` -> same start and goal.
        **kwargs: forwarded to the underlying ``PointMazeEnv`` (e.g.
            ``maze_map=[[1, 1, 1], ...]``, ``render_mode="rgb_array"``).

    Returns:
        A :class:`SparseGoalObservation`-wrapped env with observation
        ``Box(-inf, inf, (6,), float32)`` and action ``Box(-1, 1, (2,), float32)``.
        Without reset options every reset samples a random start cell and a
        different random goal cell, each with +-0.25 cell of uniform jitter.
    """
    return _make_maze_env("PointMaze", "v3", maze, max_episode_steps, SparseGoalObservation, seed, kwargs)


def _make_maze_env(
    family: str,
    version: str,
    maze: str,
    max_episode_steps: int,
    wrapper: type[SparseGoalObservation],
    seed: int | None,
    kwargs: dict[str, Any],
) -> SparseGoalObservation:
    """``gym.make("<family>_<maze>-<version>")`` episodic and sparse, wrapped by ``wrapper``.

    Shared by PointMaze and AntMaze (:mod:`expo_sdk.envs.antmaze`).
    """
    _import_gymnasium_robotics()
    env_id = f"{family}_{maze}-{version}"
    if env_id not in gym.registry:
        # "<X>Dense" ids differ only by reward type, which is overridden here.
        prefix, suffix = f"{family}_", f"-{version}"
        known = sorted(
            k[len(prefix) : -len(suffix)]
            for k in gym.registry
            if k.startswith(prefix) and k.endswith(suffix) and not k.endswith(f"Dense{suffix}")
        )
        raise ValueError(f"Unknown {family} maze {maze!r}; known mazes: {', '.join(known)}")
    # The wrapper's contract (terminate on success, 0/1 reward) needs these.
    for key, required in (("continuing_task", False), ("reward_type", "sparse")):
        if key in kwargs and kwargs.pop(key) != required:
            raise ValueError(f"make_{family.lower()} requires {key}={required!r}")
    env = gym.make(
        env_id,
        max_episode_steps=max_episode_steps,
        continuing_task=False,
        reward_type="sparse",
        **kwargs,
    )
    # The maze envs write their MJCF model to /tmp/ant_maze<time>.xml and never
    # delete it; MuJoCo has already loaded it, so drop it to avoid leaking
    # one file per env.
    tmp_xml = getattr(env.unwrapped, "tmp_xml_file_path", None)
    if tmp_xml and os.path.exists(tmp_xml):
        try:
            os.remove(tmp_xml)
        except OSError:
            pass
    return wrapper(env, seed=seed)


# Expert geometry, in cell units (PointMaze cells are 1 m; the ball radius is 0.1).
_CLEAR = 0.35  # 0.5 - ball radius - 0.05 margin: how far from a cell's centre the ball may go
_LANE = 0.3  # lateral set-point offset on the outside of a coming turn (the run-up)
_RUN_STOP = -0.2  # along-run set-point relative to the corner cell's centre
_THRUST = 2.0  # a set-point this far into the next corridor saturates the PD: full thrust
_LEAD = 2.0  # start the turn when time-to-corner <= _LEAD * time-to-cross-laterally
_DEFAULT_ACCEL = 100.0 / 4.19  # m/s^2 per unit action: motor gear / ball mass


def _xy_dir(d_rowcol: np.ndarray) -> np.ndarray:
    """Grid step ``(drow, dcol)`` -> world direction ``(dx, dy)`` (rows grow with -y)."""
    return np.array([d_rowcol[1], -d_rowcol[0]], dtype=np.float64)


class PointMazeExpert:
    """Scripted PointMaze expert: BFS over maze cells + PD control.

    At every step :meth:`act`

    1. finds the ball's cell and the BFS shortest 4-connected cell path to the
       goal's cell (distance fields are cached per goal cell);
    2. takes the straight run of that path that starts at the ball's cell. If
       the run ends in the goal cell the set-point is the goal itself, driven
       with low damping ``kd_goal`` because success only needs the ball within
       0.45 of the goal, not stopped there. Otherwise the run ends in a corner
       cell and the set-point is placed "racing line" style: along the run just
       short of the corner centre; across the run on the outside of the coming
       turn (a run-up), switching to full thrust into the turn once the time to
       reach the corner drops to about the time needed to cross the corridor;
    3. applies ``u = clip(kp * (set_point - pos) - kd * vel, -1, 1)``, then
       ``u * speed``, adds ``N(0, noise_std^2)`` noise and clips to ``[-1, 1]``.

    Why the racing line: the env steps at 100 Hz, the ball accelerates at
    ~24 m/s^2 per unit action and its velocity is capped at ~5 m/s per axis,
    so the longest UMaze routes (one end of the U to the other, 2 of the 42
    start/goal cell pairs) take ~95-110 steps even when driven hard. Stopping
    at every cell centre would fail all of them and more under a 100-step limit.

    Args:
        env: a PointMaze env (any wrapping); the layout is read from
            ``env.unwrapped.maze`` (``maze_map``, ``maze_size_scaling``,
            ``cell_xy_to_rowcol``, ``cell_rowcol_to_xy``).
        noise_std: std of the Gaussian noise added to each action component.
        speed: scale of the commanded action (force) magnitude; ``< 1`` gives
            a slow, cautious expert that accelerates and brakes more gently.
        seed: seed of the action-noise generator (see :meth:`reset`).
        kp, kd: PD gains (per metre of position error, per m/s of velocity).
        kd_goal: velocity gain on the final leg to the goal.

    :meth:`act` takes the flat ``[6]`` observation of
    :class:`SparseGoalObservation` (or a PointMaze goal dict).
    """

    def __init__(
        self,
        env: gym.Env,
        noise_std: float = 0.0,
        speed: float = 1.0,
        seed: int | None = None,
        kp: float = 10.0,
        kd: float = 1.0,
        kd_goal: float = 0.3,
    ):
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        unwrapped = env.unwrapped
        self.maze = unwrapped.maze
        self.noise_std = float(noise_std)
        self.speed = float(speed)
        self.kp = float(kp)
        self.kd = float(kd)
        self.kd_goal = float(kd_goal)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        model = getattr(unwrapped, "model", None)
        try:  # acceleration per unit action, for timing the turns
            self._accel = float(model.actuator_gear[0, 0] / model.body_mass.max())
        except AttributeError:
            self._accel = _DEFAULT_ACCEL
        self.grid = MazeGrid(self.maze)  # BFS planning, shared with the AntMaze expert

    def reset(self, seed: int | None = None) -> None:
        """Reseed the action noise with ``seed`` (mixed with the constructor seed).

        The planner itself is stateless; without a seed this is a no-op.
        """
        if seed is not None:
            entropy = [seed] if self.seed is None else [self.seed, seed]
            self._rng = np.random.default_rng(entropy)

    def act(self, obs: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        """Action ``float32 [2]`` in ``[-1, 1]`` for one observation."""
        if isinstance(obs, dict):
            pos = np.asarray(obs["achieved_goal"], dtype=np.float64)
            vel = np.asarray(obs["observation"][2:4], dtype=np.float64)
            goal = np.asarray(obs["desired_goal"], dtype=np.float64)
        else:
            obs = np.asarray(obs, dtype=np.float64)
            pos, vel, goal = obs[POS], obs[VEL], obs[GOAL]
        set_point, is_goal = self.set_point(pos, vel, goal)
        kd = self.kd_goal if is_goal else self.kd
        u = np.clip(self.kp * (set_point - pos) - kd * vel, -1.0, 1.0) * self.speed
        if self.noise_std > 0:
            u = u + self._rng.normal(0.0, self.noise_std, size=2)
        return np.clip(u, -1.0, 1.0).astype(np.float32)

    # -- planning ---------------------------------------------------------

    def set_point(self, pos: np.ndarray, vel: np.ndarray, goal: np.ndarray) -> tuple[np.ndarray, bool]:
        """PD set-point ``[2]`` for this step, and whether it is the goal itself.

        Args:
            pos, vel, goal: ball position, ball velocity, goal position, ``[2]`` each.
        """
        goal_cell = self.grid.cell(goal)
        path = self.grid.path(self.grid.cell(pos), goal_cell)
        if len(path) == 1:  # in the goal cell (or the goal is unreachable)
            return np.asarray(goal, dtype=np.float64), True
        # The straight run of the path that starts at the ball's cell.
        axis = 0 if path[1][0] == path[0][0] else 1  # 0: run along a row (x)
        end = 2
        while end < len(path) and path[end][axis] == path[0][axis]:
            end += 1
        corner = path[end - 1]
        if corner == goal_cell:
            return np.asarray(goal, dtype=np.float64), True

        h = float(self.maze.maze_size_scaling)
        centre = np.asarray(self.maze.cell_rowcol_to_xy(np.array(corner)), dtype=np.float64)
        d_run = _xy_dir(np.subtract(corner, path[end - 2]))
        d_turn = _xy_dir(np.subtract(path[end], corner))
        # Distance / time until the ball clears the inner wall of the turn.
        to_apex = float(np.dot(centre - _CLEAR * h * d_run - pos, d_run))
        time_to_apex = to_apex / max(float(np.dot(vel, d_run)), 0.1)
        # Time to move across the corridor to the inner side of the turn from
        # the current lateral velocity (ignores the velocity cap: optimistic).
        gap = max(float(np.dot(centre + _CLEAR * h * d_turn - pos, d_turn)), 0.0)
        v_lat = float(np.dot(vel, d_turn))
        accel = self._accel * self.speed
        time_to_cross = (-v_lat + np.sqrt(v_lat * v_lat + 2.0 * accel * gap)) / accel
        if to_apex <= 0 or time_to_apex <= _LEAD * time_to_cross:
            lateral = _THRUST  # turn now: full thrust into the next corridor
        else:
            lateral = -_LANE  # run-up: hold the outside of the coming turn
        return centre + h * (_RUN_STOP * d_run + lateral * d_turn), False
