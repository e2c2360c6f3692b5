"""robosuite tasks (Lift, Can, Square, Stack) with flat state observations and scripted experts.

The tasks are robosuite 1.5 environments with a Panda arm and its default ``OSC_POSE``
controller, wrapped in the same sparse, episodic gymnasium interface as PointMaze:

    obs = concat(robot0_eef_pos (3), robot0_eef_quat (4), robot0_gripper_qpos (2),
                 object-state (task-specific))                  # float32 [D], see OBS_KEYS
    action = [dx, dy, dz, dax, day, daz, gripper] in [-1, 1]^7   # OSC_POSE deltas (0.05 m and
                                                                 # 0.5 rad at 1), gripper -1 open / +1 close
    reward = 1.0 on the step the task succeeds, else 0.0;  terminated = success
    truncated = time limit hit without success;  info["is_success"] on every reset and step

D is 19 (Lift), 23 (Can), 23 (Square) and 32 (Stack): the same keys as robomimic's low-dim
datasets (``object`` is robosuite's ``object-state``), in this fixed order.

Seeding: robosuite draws object placements and the arm's initial joint noise from one
``numpy.random.Generator`` (``env.rng``) that its placement samplers share. ``reset(seed=s)``
reseeds that generator in place, so the same ``s`` gives the same initial state every
time, in any process. Resets are soft (``hard_reset=False``: the MuJoCo model is built once,
about 5 s, then each reset takes milliseconds); no renderer is created.

The scripted experts (:class:`RobosuiteExpert` and its per-task subclasses) read object,
gripper and target poses from the simulator (not from the flat observation) and follow a
waypoint state machine: hover above the grasp point with the fingers aligned to the object,
descend, close, lift, (carry over the target, lower, open, retreat). ``speed`` scales the arm
motion and ``noise_std`` adds Gaussian action noise, as for :class:`~expo_sdk.envs.pointmaze.PointMazeExpert`.

robosuite is an optional dependency (``make install-robosuite``, its own venv): it is
imported lazily inside :func:`make_robosuite`, so importing this module needs only gymnasium
and numpy.
"""

from __future__ import annotations

import logging
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = [
    "OBS_KEYS",
    "ROBOSUITE_TASKS",
    "RobosuiteEnv",
    "make_robosuite",
    "RobosuiteExpert",
    "LiftExpert",
    "CanExpert",
    "SquareExpert",
    "StackExpert",
    "make_robosuite_expert",
]

# The flat observation, in this order. Per-task object-state layouts (robosuite 1.5):
#   Lift   (10): cube_pos 3, cube_quat 4, gripper_to_cube_pos 3
#   Can    (14): Can_pos 3, Can_quat 4, Can_to_robot0_eef_pos 3, Can_to_robot0_eef_quat 4
#   Square (14): SquareNut_pos 3, SquareNut_quat 4, SquareNut_to_robot0_eef_pos 3, ..._quat 4
#   Stack  (23): cubeA_pos 3, cubeA_quat 4, cubeB_pos 3, cubeB_quat 4, cubeA_to_cubeB 3,
#                gripper_to_cubeA 3, gripper_to_cubeB 3
OBS_KEYS = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object-state")

# Short task name -> robosuite environment name.
ROBOSUITE_TASKS = {
    "lift": "Lift",
    "can": "PickPlaceCan",
    "square": "NutAssemblySquare",
    "stack": "Stack",
}


def _import_robosuite():
    """Import robosuite on demand with an actionable error message."""
    try:
        import robosuite
    except ImportError as err:
        raise ImportError(
            "The robosuite tasks need robosuite 1.5 (mujoco <3.10, numpy <2), which lives in its "
            "own venv: run `make install-robosuite` and use .venv-robosuite/bin/python "
            '(or pip install "expo-sdk[robosuite]" into an env with numpy<2).'
        ) from err
    from robosuite.utils.log_utils import ROBOSUITE_DEFAULT_LOGGER

    # robosuite logs an INFO line for every env it builds (evaluation builds several).
    if ROBOSUITE_DEFAULT_LOGGER.level < logging.WARNING:
        ROBOSUITE_DEFAULT_LOGGER.setLevel(logging.WARNING)
    return robosuite


class RobosuiteEnv(gym.Env):
    """Gymnasium view of one robosuite manipulation env (state observations, sparse reward).

    Use :func:`make_robosuite`, which also adds the time limit.

    Args:
        env_name: robosuite environment name (``"Lift"``, ``"PickPlaceCan"``,
            ``"NutAssemblySquare"``, ``"Stack"``, ...).
        seed: if given, used by the first ``reset()`` called without a seed.
        model_seed: seeds robosuite's generator while the model is built (Lift draws its
            cube's size there), so every instance simulates the same model.
        **kwargs: forwarded to ``robosuite.make`` (e.g. ``control_freq``).

    The underlying robosuite env is :attr:`robosuite_env` (its simulator is
    ``robosuite_env.sim``); it never ends episodes by itself (``ignore_done=True``).
    """

    metadata = {"render_modes": []}

    def __init__(self, env_name: str, seed: int | None = None, model_seed: int = 0, **kwargs: Any):
        suite = _import_robosuite()
        from robosuite.controllers import load_composite_controller_config

        options = dict(
            robots="Panda",
            controller_configs=load_composite_controller_config(robot="Panda"),  # OSC_POSE arm
            has_renderer=False,
            has_offscreen_renderer=False,
            use_camera_obs=False,
            use_object_obs=True,
            reward_shaping=False,
            hard_reset=False,
            ignore_done=True,  # the TimeLimit wrapper owns episode ends
            horizon=10**9,
            control_freq=20,
            seed=model_seed,
        )
        options.update(kwargs)
        self.env_name = env_name
        self.robosuite_env = suite.make(env_name, **options)
        self.robosuite_env.reset()
        low, high = self.robosuite_env.action_spec
        self.action_space = gym.spaces.Box(low=low.astype(np.float32), high=high.astype(np.float32),
                                           dtype=np.float32)
        obs_dim = len(self._flatten(self.robosuite_env._get_observations(force_update=True)))
        self.observation_space = gym.spaces.Box(low=-np.inf, high=np.inf, shape=(obs_dim,), dtype=np.float32)
        self._pending_seed = seed
        if seed is not None:
            self.action_space.seed(seed)

    @staticmethod
    def _flatten(obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(obs[k], dtype=np.float64).ravel() for k in OBS_KEYS]).astype(np.float32)

    @property
    def sim(self):
        """The MuJoCo simulator wrapper (``robosuite.utils.binding_utils.MjSim``)."""
        return self.robosuite_env.sim

    def is_success(self) -> bool:
        return bool(self.robosuite_env._check_success())

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is None and self._pending_seed is not None:
            seed = self._pending_seed
        self._pending_seed = None
        super().reset(seed=seed)
        env = self.robosuite_env
        if seed is not None:
            # The placement samplers hold a reference to env.rng: reseed it in place.
            env.rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state
        # A soft reset keeps the grippers' internal open/close state from the last episode.
        for robot in env.robots:
            grippers = robot.gripper.values() if isinstance(robot.gripper, dict) else [robot.gripper]
            for gripper in grippers:
                gripper.current_action = np.zeros(gripper.dof)
        obs = env.reset()
        return self._flatten(obs), {"is_success": self.is_success()}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), self.action_space.low, self.action_space.high)
        obs, _, _, _ = self.robosuite_env.step(action)
        success = self.is_success()
        return self._flatten(obs), 1.0 if success else 0.0, success, False, {"is_success": success}

    def close(self):
        self.robosuite_env.close()


class _SuccessTimeLimit(gym.wrappers.TimeLimit):
    """gymnasium's TimeLimit, with a success on the last step reported as termination only."""

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, bool(truncated) and not terminated, info


def make_robosuite(task: str, max_episode_steps: int = 200, seed: int | None = None, **kwargs: Any) -> gym.Env:
    """Create a sparse-reward robosuite task with a flat state observation.

    Args:
        task: ``"lift"``, ``"can"``, ``"square"``, ``"stack"`` (or a robosuite env name).
        max_episode_steps: time limit in control steps (20 Hz); hitting it gives
            ``truncated=True``.
        seed: optional seed for the first ``reset()``; each ``reset(seed=s)`` is
            deterministic: same ``s`` -> same initial object poses and arm configuration.
        **kwargs: forwarded to ``robosuite.make``.

    Returns:
        A TimeLimit-wrapped :class:`RobosuiteEnv` with observation
        ``Box(-inf, inf, (D,), float32)`` (D = 19/23/23/32) and action
        ``Box(-1, 1, (7,), float32)``.
    """
    env_name = ROBOSUITE_TASKS.get(task, task)
    return _SuccessTimeLimit(RobosuiteEnv(env_name, seed=seed, **kwargs), max_episode_steps=max_episode_steps)


# -- scripted experts ----------------------------------------------------------------------

def _yaw(xmat: np.ndarray) -> float:
    """Heading of a body's local x axis in the world xy plane."""
    m = np.asarray(xmat).reshape(3, 3)
    return float(np.arctan2(m[1, 0], m[0, 0]))


def _wrap(angle: float, period: float = 2 * np.pi) -> float:
    """``angle`` wrapped to ``[-period/2, period/2)``."""
    return float((angle + period / 2) % period - period / 2)


def _down_rotation(finger_yaw: float) -> np.ndarray:
    """Gripper site orientation pointing straight down with the fingers closing along ``finger_yaw``.

    The Panda gripper site's x axis is the finger-closing axis, its z axis the approach axis.
    """
    x = np.array([np.cos(finger_yaw), np.sin(finger_yaw), 0.0])
    z = np.array([0.0, 0.0, -1.0])
    return np.stack([x, np.cross(z, x), z], axis=1)


def _rotvec(rot: np.ndarray) -> np.ndarray:
    """Axis-angle vector of a rotation matrix (angle in [0, pi])."""
    cos = np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    if angle < 1e-6:
        return np.zeros(3)
    axis = np.array([rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]])
    norm = np.linalg.norm(axis)
    if norm < 1e-9:  # angle ~ pi: axis from the symmetric part
        w, v = np.linalg.eigh((rot + rot.T) / 2.0)
        axis = v[:, np.argmax(w)]
        norm = 1.0
    return axis / norm * angle


class RobosuiteExpert:
    """Waypoint state machine for pick(-and-place) tasks, driven by simulator state.

    Phases: ``reach`` (hover above the grasp point, fingers aligned), ``descend``, ``close``,
    ``lift``; tasks with a place target then ``carry`` (the held point over the target at
    carry height), ``lower``, ``release``, ``retreat``. If the object slips out of the
    fingers the expert starts again from ``reach``. Translation is a saturated P-controller
    on the end-effector position; orientation keeps the gripper pointing down and turns it
    about the vertical to the grasp yaw.

    Subclasses define the geometry: :meth:`grasp_point`, :meth:`finger_yaw`, and for
    placing :meth:`held_point` and :meth:`place_point`.

    Args:
        env: a :func:`make_robosuite` env (any wrapping).
        speed: scale of the arm's translation/rotation commands (``< 1``: slow expert).
        noise_std: std of Gaussian noise added to every action component (then clipped).
        seed: seed of the noise generator (see :meth:`reset`).
    """

    hover = 0.08  # m above the grasp point before descending
    grasp_dz = 0.0  # end-effector height relative to the grasp point when closing
    carry_height = 0.12  # m above the table while carrying (lift target)
    reach_tol = 0.01  # m, horizontal error allowed above the grasp point before descending
    close_steps = 10  # the Panda gripper needs ~10 steps from open to closed
    release_steps = 6
    place: bool = False

    def __init__(self, env: gym.Env, speed: float = 1.0, noise_std: float = 0.0, seed: int | None = None):
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.rs = env.unwrapped.robosuite_env
        self.speed = float(speed)
        self.noise_std = float(noise_std)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        robot = self.rs.robots[0]
        self._eef_site = robot.eef_site_id["right"] if isinstance(robot.eef_site_id, dict) else robot.eef_site_id
        self.table_z = float(np.asarray(getattr(self.rs, "table_offset", (0, 0, 0.8)))[2])
        self._reset_state()

    def _reset_state(self) -> None:
        self.phase = "reach"
        self._phase_steps = 0
        self._last_timestep = None
        self._memory: dict[str, Any] = {}  # per-episode choices of subclasses

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode; reseed the action noise with ``seed`` (mixed with the constructor seed)."""
        self._reset_state()
        if seed is not None:
            entropy = [seed] if self.seed is None else [self.seed, seed]
            self._rng = np.random.default_rng(entropy)

    # -- geometry (subclasses) --

    def grasp_point(self) -> np.ndarray:
        raise NotImplementedError

    def finger_yaw(self) -> float | None:
        """World yaw of the finger-closing axis for the grasp (None: keep the current yaw)."""
        return None

    def held_point(self) -> np.ndarray:
        """The point of the held object that must reach :meth:`place_point`."""
        return self.grasp_point()

    def place_point(self) -> np.ndarray:
        raise NotImplementedError

    def carry_yaw_correction(self) -> float:
        """Extra rotation about z while carrying (e.g. align a nut with its peg)."""
        return 0.0

    # -- sim readings --

    def _body(self, name: str) -> np.ndarray:
        return np.array(self.rs.sim.data.body_xpos[self.rs.sim.model.body_name2id(name)])

    def _body_yaw(self, name: str) -> float:
        return _yaw(self.rs.sim.data.body_xmat[self.rs.sim.model.body_name2id(name)])

    def _site(self, name: str) -> np.ndarray:
        return np.array(self.rs.sim.data.site_xpos[self.rs.sim.model.site_name2id(name)])

    @property
    def eef(self) -> np.ndarray:
        return np.array(self.rs.sim.data.site_xpos[self._eef_site])

    @property
    def eef_rot(self) -> np.ndarray:
        return np.array(self.rs.sim.data.site_xmat[self._eef_site]).reshape(3, 3)

    def _aligned_yaw(self, candidates_from: float, period: float) -> float:
        """The yaw ``candidates_from + k * period`` closest to the gripper's current finger yaw."""
        current = _yaw(self.eef_rot)
        return current + _wrap(candidates_from - current, period)

    # -- control --

    def act(self, obs: np.ndarray | None = None) -> np.ndarray:
        """Action ``float32 [7]`` in ``[-1, 1]`` (``obs`` is unused: the expert reads the simulator)."""
        if self._last_timestep is not None and self.rs.timestep < self._last_timestep:
            self._reset_state()  # the env was reset without expert.reset()
        self._last_timestep = self.rs.timestep
        target, grip, yaw = self._plan()
        self._phase_steps += 1
        action = np.zeros(7)
        action[:3] = np.clip((target - self.eef) / 0.05 * 1.5, -1.0, 1.0)
        if yaw is None:
            yaw = _yaw(self.eef_rot)
        err = _rotvec(_down_rotation(yaw) @ self.eef_rot.T)
        action[3:6] = np.clip(err / 0.5 * 1.5, -1.0, 1.0)
        action[:6] *= self.speed
        action[6] = grip
        if self.noise_std > 0:
            action = action + self._rng.normal(0.0, self.noise_std, size=7)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def _goto(self, phase: str) -> None:
        self.phase = phase
        self._phase_steps = 0

    def _holding(self) -> bool:
        return bool(np.linalg.norm(self.grasp_point() - self.eef) < 0.05)

    def _plan(self) -> tuple[np.ndarray, float, float | None]:
        """(end-effector target [3], gripper command, finger yaw or None) for this step."""
        eef = self.eef
        grasp = self.grasp_point()
        carry_z = self.table_z + self.carry_height
        if self.phase == "reach":
            yaw = self.finger_yaw()
            target = grasp + [0, 0, self.hover]
            yaw_err = 0.0 if yaw is None else abs(_wrap(yaw - _yaw(self.eef_rot)))
            if np.linalg.norm((target - eef)[:2]) < self.reach_tol and abs(target[2] - eef[2]) < 0.03 and yaw_err < 0.1:
                self._goto("descend")
            return target, -1.0, yaw
        if self.phase == "descend":
            yaw = self.finger_yaw()
            target = grasp + [0, 0, self.grasp_dz]
            if np.linalg.norm(target - eef) < 0.01 or self._phase_steps > 40:
                self._goto("close")
            if np.linalg.norm((grasp - eef)[:2]) > 0.03:  # object pushed away: hover again
                self._goto("reach")
            return target, -1.0, yaw
        if self.phase == "close":
            target = grasp + [0, 0, self.grasp_dz]
            if self._phase_steps >= self.close_steps:
                self._goto("lift")
            return target, 1.0, None
        if self.phase in ("lift", "carry", "lower") and not self._holding():
            self._goto("reach")  # dropped it
            return eef + [0, 0, 0.03], -1.0, None
        if self.phase == "lift":
            target = np.array([eef[0], eef[1], carry_z])
            if eef[2] > carry_z - 0.02 and self.place:
                self._goto("carry")
            return target, 1.0, None
        yaw_fix = self.carry_yaw_correction()
        yaw = _yaw(self.eef_rot) + yaw_fix
        if self.phase == "carry":
            place, held = self.place_point(), self.held_point()
            target = eef + place - held
            target[2] = max(carry_z, eef[2] + place[2] - held[2] + self.hover)
            if np.linalg.norm((place - held)[:2]) < 0.006 and abs(yaw_fix) < 0.05:
                self._goto("lower")
            return target, 1.0, yaw
        if self.phase == "lower":
            place, held = self.place_point(), self.held_point()
            target = eef + place - held
            if held[2] < place[2] + 0.005 or self._phase_steps > 60:
                self._goto("release")
            if np.linalg.norm((place - held)[:2]) > 0.015:
                self._goto("carry")
            return target, 1.0, yaw
        if self.phase == "release":
            if self._phase_steps >= self.release_steps:
                self._goto("retreat")
            return eef, -1.0, None
        # retreat: straight up, open. The episode ends on success, so still retreating after
        # a while means the placement failed: start over.
        if self._phase_steps > 30:
            self._goto("reach")
        return eef + [0, 0, 0.1], -1.0, None


class LiftExpert(RobosuiteExpert):
    """Lift: grasp the cube (fingers square to its faces) and raise it."""

    def grasp_point(self) -> np.ndarray:
        return self._body("cube_main")

    def finger_yaw(self) -> float:
        return self._aligned_yaw(self._body_yaw("cube_main"), np.pi / 2)


class CanExpert(RobosuiteExpert):
    """PickPlaceCan: grasp the can and put it in its quadrant of the target bin."""

    place = True
    carry_height = 0.15  # clear the bin walls (the bins have no table: table_z is the bins' base)

    def grasp_point(self) -> np.ndarray:
        return self._body("Can_main")

    def place_point(self) -> np.ndarray:
        # Success = the can's centre inside its quadrant of bin 2 (x >= bin2 x, y >= bin2 y for
        # the can). The quadrant's centre is at the edge of the Panda's reach at carry height,
        # so aim 6 cm inside the quadrant's corner nearest the robot.
        bin2 = np.asarray(self.rs.bin2_pos, dtype=np.float64)
        return np.array([bin2[0] + 0.06, bin2[1] + 0.06, bin2[2] + 0.07])


class SquareExpert(RobosuiteExpert):
    """NutAssemblySquare: grasp the nut by its handle, align it over the square peg, lower it."""

    place = True
    carry_height = 0.18  # the peg's top is 0.13 m above the table
    reach_tol = 0.005  # the handle is 3 cm wide; a miss lands the fingers on the ring

    def grasp_point(self) -> np.ndarray:
        # 1 cm beyond the handle's centre, away from the ring: at the centre the fingers
        # (about 2 cm wide) graze the ring's outer wall and can end up resting on it.
        handle_dir = np.asarray(self.rs.sim.data.body_xmat[self.rs.sim.model.body_name2id("SquareNut_main")])
        handle_dir = handle_dir.reshape(3, 3)[:, 0]
        return self._site("SquareNut_handle_site") + 0.01 * handle_dir

    def finger_yaw(self) -> float:
        # Fingers close across the handle, which points along the nut's local x axis.
        return self._aligned_yaw(self._body_yaw("SquareNut_main") + np.pi / 2, np.pi)

    def held_point(self) -> np.ndarray:
        return self._body("SquareNut_main")

    def place_point(self) -> np.ndarray:
        peg = self._body("peg1")
        return np.array([peg[0], peg[1], self.table_z + 0.03])

    def carry_yaw_correction(self) -> float:
        # The square hole fits the peg (yaw 0) every quarter turn, but with the handle pointing
        # away from the robot (nut yaw 0) the gripper would be beyond the Panda's reach: turn the
        # nut to the nearest of yaw pi/2, pi, -pi/2 (at most a quarter turn), chosen once.
        yaw = self._body_yaw("SquareNut_main")
        if self._memory.get("nut_yaw") is None:
            options = [np.pi / 2, np.pi, -np.pi / 2]
            self._memory["nut_yaw"] = min(options, key=lambda o: abs(_wrap(o - yaw)))
        return _wrap(self._memory["nut_yaw"] - yaw)


class StackExpert(RobosuiteExpert):
    """Stack: grasp cube A and put it on cube B."""

    place = True
    carry_height = 0.12

    def grasp_point(self) -> np.ndarray:
        return self._body("cubeA_main")

    def finger_yaw(self) -> float:
        return self._aligned_yaw(self._body_yaw("cubeA_main"), np.pi / 2)

    def place_point(self) -> np.ndarray:
        b = self._body("cubeB_main")
        # cube A (half size 0.02) resting on cube B (half size 0.025), plus a few mm of drop.
        return b + [0, 0, 0.025 + 0.02 + 0.008]

    def carry_yaw_correction(self) -> float:
        return _wrap(self._body_yaw("cubeB_main") - self._body_yaw("cubeA_main"), np.pi / 2)


_EXPERTS = {"lift": LiftExpert, "can": CanExpert, "square": SquareExpert, "stack": StackExpert}


def make_robosuite_expert(task: str, env: gym.Env, **kwargs: Any) -> RobosuiteExpert:
    """The scripted expert for ``task`` (``"lift"``, ``"can"``, ``"square"``, ``"stack"``)."""
    if task not in _EXPERTS:
        raise ValueError(f"no scripted robosuite expert for {task!r}; known: {', '.join(_EXPERTS)}")
    return _EXPERTS[task](env, **kwargs)
