"""AntMaze: gymnasium-robotics' quadruped maze tasks and a scripted gait-controller expert.

The task is gymnasium-robotics ``AntMaze_<maze>-v5`` (the Gymnasium ``Ant-v5`` robot,
4 m maze cells, 20 Hz control) made episodic (``continuing_task=False``) with a sparse
reward, a time limit and a flat ``float32`` observation, exactly like the PointMaze
tasks (:mod:`expo_sdk.envs.pointmaze`):

    obs = concat(torso x, y (2), the ant's own observation (27), goal x, y (2))   # D = 31
        = qpos (15: x, y, z, quaternion w x y z, 8 joint angles)
          + qvel (14: torso linear, angular velocity, 8 joint velocities) + goal,
        i.e. D4RL AntMaze's 29-dim state with the goal appended
    action = 8 joint torques in [-1, 1] (gymnasium's order: hip_4, ankle_4, hip_1, ...)
    reward = 1.0 on the step the torso gets within 0.45 m of the goal, else 0.0
    terminated = goal reached;  truncated = time limit hit without success

Start and goal are random free cells with +-1 m of uniform jitter (the env's default
for mazes without fixed ``r``/``g`` cells); the ant falling over does not end the episode.

``AntMazeExpert`` plans like the PointMaze expert (BFS over maze cells, the shared
:class:`~expo_sdk.envs.maze_grid.MazeGrid`) and walks with a hand-designed trot: see its
docstring.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from expo_sdk.envs.maze_grid import MazeGrid
from expo_sdk.envs.pointmaze import SparseGoalObservation, _make_maze_env

__all__ = ["AntMazeExpert", "AntMazeObservation", "make_antmaze"]

# Layout of the flat observation (see the module docstring).
POS = slice(0, 2)
Z = 2
QUAT = slice(3, 7)  # w, x, y, z
JOINTS = slice(7, 15)  # hip_1, ankle_1, hip_2, ankle_2, hip_3, ankle_3, hip_4, ankle_4
JOINT_VEL = slice(21, 29)
GOAL = slice(29, 31)
OBS_DIM = 31
SUCCESS_RADIUS = 0.45  # gymnasium-robotics' threshold (its docs say 0.5; the code uses 0.45)

# Ant geometry (gymnasium's ant.xml): leg i (hip_i/ankle_i) points along _LEG_ANGLES[i]
# in the torso frame. A positive hip angle swings the leg counter-clockwise seen from
# above, so its foot moves along _TANGENTS[i]; ankle_i bends the foot down for positive
# angles on legs 1 and 4 and for negative angles on legs 2 and 3 (range 30-70 degrees).
_LEG_ANGLES = np.deg2rad([45.0, 135.0, 225.0, 315.0])
_TANGENTS = np.stack([-np.sin(_LEG_ANGLES), np.cos(_LEG_ANGLES)], axis=1)
_ANKLE_DOWN = np.array([1.0, -1.0, -1.0, 1.0])
_TROT_PHASE = np.array([0.0, np.pi, 0.0, np.pi])  # diagonal pairs (1, 3) and (2, 4) alternate
# Action slot of each joint in observation order (the actuators are listed hip_4 first).
_ACTION_SLOT = np.array([2, 3, 4, 5, 6, 7, 0, 1])


class AntMazeObservation(SparseGoalObservation):
    """:class:`SparseGoalObservation` with the ant's flat ``[31]`` observation.

    The ant's own observation excludes the torso's x, y (they are the goal dict's
    ``achieved_goal``), so unlike PointMaze the achieved goal is kept, in front.
    """

    obs_dim = OBS_DIM

    @staticmethod
    def flatten(obs: dict[str, np.ndarray]) -> np.ndarray:
        """Goal-dict observation -> ``float32 [31]`` (x, y, ant state, desired goal)."""
        return np.concatenate([obs["achieved_goal"], obs["observation"], obs["desired_goal"]]).astype(np.float32)


def make_antmaze(
    maze: str = "UMaze",
    max_episode_steps: int = 700,
    seed: int | None = None,
    **kwargs: Any,
) -> AntMazeObservation:
    """Create the sparse-reward episodic AntMaze task.

    Args:
        maze: gymnasium-robotics maze name: ``"UMaze"``, ``"Medium"``, ``"Large"``
            (or any ``X`` for which ``AntMaze_X-v5`` exists, e.g. ``"Open"``).
        max_episode_steps: time limit (20 Hz control: 700 steps = 35 s).
        seed: optional seed for the first ``reset()``; each ``reset(seed=s)`` is
            deterministic (same start, goal and initial ant state).
        **kwargs: forwarded to ``AntMazeEnv`` (e.g. ``maze_map=...``,
            ``render_mode="rgb_array"``).

    Returns:
        An :class:`AntMazeObservation`-wrapped env: observation
        ``Box(-inf, inf, (31,), float32)``, action ``Box(-1, 1, (8,), float32)``.
    """
    # Ant-v5 appends 78 contact forces by default; D4RL's AntMaze state (and this task) has none.
    if kwargs.pop("include_cfrc_ext_in_observation", False):
        raise ValueError("make_antmaze has no contact forces in its observation")
    kwargs["include_cfrc_ext_in_observation"] = False
    return _make_maze_env("AntMaze", "v5", maze, max_episode_steps, AntMazeObservation, seed, kwargs)


def _quat_yaw_up(q: np.ndarray) -> tuple[float, float]:
    """Yaw of a ``(w, x, y, z)`` quaternion and the world-z component of the body's z axis."""
    w, x, y, z = q
    yaw = float(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))
    return yaw, float(1.0 - 2.0 * (x * x + y * y))


class AntMazeExpert:
    """Scripted AntMaze expert: BFS over maze cells + an omnidirectional trot + joint PD.

    Planning: each step, the BFS cell path from the torso's cell to the goal's cell
    (:class:`~expo_sdk.envs.maze_grid.MazeGrid`, as the PointMaze expert) is turned into
    waypoints (the cell centres, the goal last), and the ant heads for the farthest
    waypoint that a disc of radius ``clearance`` can reach in a straight line without
    touching a wall cell (line-of-sight shortcutting: it cuts corners but not walls).

    Gait: a trot, the diagonal leg pairs (1, 3) and (2, 4) half a period apart. With
    phase ``p`` of a leg, its ankle lifts the foot by ``lift * max(0, sin(p + lag))``
    and its hip follows ``stride * k * -cos(p)``: the foot swings forward while lifted and
    pushes back while down. ``k = t . d``, the component of the walking direction ``d``
    (torso frame, from the torso quaternion's yaw) along the direction in which the hip
    moves that foot: the four hips sit at 90 degrees from each other, so the same pattern
    walks in any direction without turning the torso, and steering is just a change of
    ``d``. The joint targets are tracked by a PD controller on the joint angles and
    velocities from the observation, ``tau = clip(kp * (target - q) - kd * dq, -1, 1)``.
    The stride shrinks within ``slow_radius`` of the goal so that the ant does not
    overshoot the 0.45 m success disc.

    Quality knobs: ``speed`` scales the stride (``< 1``: shorter steps, a slower walk;
    the torques are not scaled, or the ant could not carry itself); ``noise_std`` adds
    ``N(0, (noise_std * noise_scale)^2)`` to each torque before clipping. The gait
    tolerates little independent per-step torque noise (UMaze, 10 episodes, speed 1: 0.2 ->
    0.40 success, 0.5 -> 0.00), hence ``noise_scale = 0.25``: the demonstration qualities'
    noise levels (0.2, 0.5) then degrade the expert gradually, as on the other tasks. If
    the ant ends on its back it cannot get up: it keeps walking in the air and the episode
    times out.

    Args:
        env: an AntMaze env (any wrapping); the layout is read from ``env.unwrapped.maze``.
        noise_std: std of the Gaussian torque noise, in units of ``noise_scale``.
        speed: stride scale, ``> 0``.
        seed: seed of the noise generator (see :meth:`reset`).
        period: gait period in control steps (20 Hz).
        stride, lift, stance: hip amplitude, ankle lift and standing ankle angle (rad).
        lag: phase of the lift relative to the hip swing (rad).
        kp, kd: joint PD gains (per rad, per rad/s; the actuators' gear is 150).
        clearance: radius of the disc kept away from walls when shortcutting (m).
        slow_radius: distance to the goal below which the stride shrinks (m).
        noise_scale: torque noise std per unit of ``noise_std``.
    """

    def __init__(
        self,
        env: gym.Env,
        noise_std: float = 0.0,
        speed: float = 1.0,
        seed: int | None = None,
        period: int = 12,
        stride: float = 0.45,
        lift: float = np.deg2rad(15.0),
        stance: float = np.deg2rad(57.5),
        lag: float = 0.0,
        kp: float = 2.5,
        kd: float = 0.1,
        clearance: float = 1.0,
        slow_radius: float = 1.0,
        noise_scale: float = 0.25,
    ):
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.grid = MazeGrid(env.unwrapped.maze)
        self.noise_std = float(noise_std)
        self.speed = float(speed)
        self.seed = seed
        self.period = int(period)
        self.stride = float(stride)
        self.lift = float(lift)
        self.stance = float(stance)
        self.lag = float(lag)
        self.kp = float(kp)
        self.kd = float(kd)
        self.clearance = float(clearance)
        self.slow_radius = float(slow_radius)
        self.noise_scale = float(noise_scale)
        self._rng = np.random.default_rng(seed)
        self._t = 0

    def reset(self, seed: int | None = None) -> None:
        """Restart the gait cycle; reseed the noise with ``seed`` (mixed with the constructor seed)."""
        self._t = 0
        if seed is not None:
            entropy = [seed] if self.seed is None else [self.seed, seed]
            self._rng = np.random.default_rng(entropy)

    def act(self, obs: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        """Action ``float32 [8]`` in ``[-1, 1]`` for one observation."""
        if isinstance(obs, dict):
            obs = AntMazeObservation.flatten(obs)
        obs = np.asarray(obs, dtype=np.float64)
        pos, goal = obs[POS], obs[GOAL]
        target = self.waypoint(pos, goal)
        to_target = target - pos
        direction = to_target / max(float(np.linalg.norm(to_target)), 1e-6)
        scale = self.speed * min(1.0, max(0.3, float(np.linalg.norm(goal - pos)) / self.slow_radius))
        tau = self.joint_torques(obs, direction, scale)
        self._t += 1
        if self.noise_std > 0:
            tau = tau + self._rng.normal(0.0, self.noise_std * self.noise_scale, size=8)
        return np.clip(tau, -1.0, 1.0).astype(np.float32)

    def waypoint(self, pos: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """The farthest point of the planned route that is reachable in a straight line."""
        path = self.grid.path(self.grid.cell(pos), self.grid.cell(goal))
        points = [self.grid.centre(c) for c in path[1:-1]] + [np.asarray(goal, dtype=np.float64)]
        for point in reversed(points[1:]):
            if self.grid.segment_is_clear(pos, point, self.clearance):
                return point
        return points[0]

    def joint_torques(self, obs: np.ndarray, direction: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Trot step toward the world direction ``direction`` ``[2]``: torques in action order."""
        yaw, _ = _quat_yaw_up(obs[QUAT])
        c, s = np.cos(yaw), np.sin(yaw)
        d_body = np.array([c * direction[0] + s * direction[1], -s * direction[0] + c * direction[1]])
        phase = 2.0 * np.pi * self._t / self.period + _TROT_PHASE
        hip = self.stride * scale * (_TANGENTS @ d_body) * -np.cos(phase)
        ankle = _ANKLE_DOWN * (self.stance - self.lift * np.maximum(0.0, np.sin(phase + self.lag)))
        target = np.stack([hip, ankle], axis=1).reshape(8)
        tau = self.kp * (target - obs[JOINTS]) - self.kd * obs[JOINT_VEL]
        out = np.empty(8)
        out[_ACTION_SLOT] = np.clip(tau, -1.0, 1.0)
        return out
