"""Stepping an env with action chunks, and the checks at the env / policy boundary."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .policy import PolicySpec


@dataclass
class ChunkStep:
    """Result of executing one action chunk (H env steps, fewer if the episode ended)."""

    next_obs: np.ndarray
    reward: float  # sum_k gamma^k r_k over the executed steps
    discount: float  # gamma^k, k = number of executed steps
    terminated: bool
    truncated: bool
    success: bool
    env_steps: int
    info: dict[str, Any]


class EnvError(RuntimeError):
    """The env itself raised (a crashed simulator, a dropped robot connection); the
    original exception is chained as `__cause__`."""


def execute_chunk(env, chunk: np.ndarray, gamma: float) -> ChunkStep:
    """Run the env-unit actions chunk [H, A] open loop; stop early when the episode ends.

    Exceptions raised by `env.step` come out as `EnvError`, so callers can tell a failing
    env from a bug on our side.
    """
    reward, discount, success = 0.0, 1.0, False
    terminated = truncated = False
    info: dict[str, Any] = {}
    steps = 0
    for action in chunk:
        try:
            next_obs, r, terminated, truncated, info = env.step(action)
        except Exception as exc:
            raise EnvError(f"env.step raised {type(exc).__name__}: {exc}") from exc
        reward += discount * float(r)
        discount *= gamma
        steps += 1
        success = success or bool(info.get("is_success", False))
        if terminated or truncated:
            break
    return ChunkStep(np.asarray(next_obs, dtype=np.float32), reward, discount, bool(terminated),
                     bool(truncated), success, steps, info)


def check_env(env, spec: PolicySpec) -> None:
    """Raise a clear error when `env` does not match what the base policy expects."""
    obs_space, act_space = env.observation_space, env.action_space
    if not hasattr(obs_space, "shape") or obs_space.shape is None or isinstance(spec.obs_shape, dict):
        raise TypeError(
            f"expo-sdk's Finetuner needs a flat Box observation space, got {obs_space}; "
            "flatten dict observations with gymnasium.wrappers.FlattenObservation"
        )
    if tuple(obs_space.shape) != tuple(spec.obs_shape):
        raise ValueError(
            f"env observations have shape {tuple(obs_space.shape)} but the base policy "
            f"expects {tuple(spec.obs_shape)}; use the env the policy was trained on or wrap it"
        )
    if not hasattr(act_space, "low") or act_space.shape is None or len(act_space.shape) != 1:
        raise TypeError(f"expo-sdk needs a 1-D Box action space, got {act_space}")
    if act_space.shape[0] != spec.action_dim:
        raise ValueError(
            f"env actions have {act_space.shape[0]} dimensions but the base policy produces "
            f"{spec.action_dim}"
        )
    if not (np.allclose(act_space.low, spec.action_low, atol=1e-5)
            and np.allclose(act_space.high, spec.action_high, atol=1e-5)):
        raise ValueError(
            f"env action bounds low={act_space.low.tolist()} high={act_space.high.tolist()} "
            f"differ from the base policy's low={list(spec.action_low)} high="
            f"{list(spec.action_high)}; canonical actions would be scaled wrongly. Rescale the "
            "env (gymnasium.wrappers.RescaleAction) or rebuild the policy's normalizer"
        )


class TrainingEnv:
    """The env being trained on, recreated when it raises instead of ending the run.

    A failing `step` or `reset` counts one error, closes the env and builds a fresh one
    with `make_env`; the episode in progress ends there (its stored transitions stay, as
    a truncated episode: they bootstrap). After `max_errors` errors the last one is raised.
    """

    def __init__(self, env, make_env: Callable | None, max_errors: int, spec: PolicySpec) -> None:
        self.env, self.make_env, self.max_errors, self.spec = env, make_env, max_errors, spec
        self.errors = 0

    def step_chunk(self, chunk: np.ndarray, gamma: float) -> ChunkStep | None:
        """The chunk's `ChunkStep`, or None when the env failed (and was recreated)."""
        try:
            return execute_chunk(self.env, chunk, gamma)
        except EnvError as exc:
            self._recover(exc)
            return None

    def close(self) -> None:
        self.env.close()

    def reset(self, **kwargs) -> np.ndarray:
        while True:
            try:
                return self.env.reset(**kwargs)[0]
            except Exception as exc:
                self._recover(EnvError(f"env.reset raised {type(exc).__name__}: {exc}"), cause=exc)

    def _recover(self, error: EnvError, cause: BaseException | None = None) -> None:
        cause = cause or error.__cause__ or error
        _count_env_error(self, error, cause)
        if self.make_env is None:
            raise EnvError(
                f"{error}; the env cannot be recreated: pass the env as a factory "
                "(Finetuner.run(lambda: make_env(), ...)) to survive env errors"
            ) from cause
        warnings.warn(f"{error}; episode truncated, env recreated "
                      f"({self.errors}/{self.max_errors} errors allowed)", stacklevel=3)
        _close_quietly(self.env)
        self.env = self.make_env()
        check_env(self.env, self.spec)


def _count_env_error(owner: TrainingEnv | VectorTrainingEnv, error: EnvError, cause: BaseException) -> None:
    """Count one env error on `owner`; past `owner.max_errors`, stop the run with it."""
    owner.errors += 1
    if owner.errors > owner.max_errors:
        raise EnvError(
            f"{error} (env error {owner.errors}, over the limit max_env_errors={owner.max_errors}); "
            "fix the env or raise the limit"
        ) from cause


def _close_quietly(env) -> None:
    try:
        env.close()
    except Exception:  # a crashed env may not close cleanly; it is discarded anyway
        pass


# ---------------------------------------------------------------------------- vector envs
class ChunkedEnv:
    """Wraps one env so a single `step` executes a whole action chunk [H, A] open loop.

    This is what lets gymnasium's vector envs (whose sub-envs all take one `step` per
    call) run chunked policies: each sub-env runs its chunk to the end or to the end of
    its episode. The discounted reward sum is the step's reward; `info` adds
    `chunk_discount` (gamma^k), `chunk_steps` (k) and `is_success` (any step's).
    """

    def __init__(self, env, horizon: int, gamma: float) -> None:
        import gymnasium as gym

        self.env, self.gamma = env, gamma
        space = env.action_space
        self.observation_space = env.observation_space
        self.action_space = gym.spaces.Box(np.tile(space.low, (horizon, 1)), np.tile(space.high, (horizon, 1)),
                                           dtype=space.dtype)
        self.metadata, self.render_mode, self.spec = getattr(env, "metadata", {}), None, None

    @property
    def unwrapped(self):
        return self.env.unwrapped

    @property
    def np_random(self):  # the env's own, which a seeded reset replaces
        return getattr(self.env.unwrapped, "np_random", None)

    def reset(self, **kwargs):
        return self.env.reset(**kwargs)

    def step(self, chunk):
        step = execute_chunk(self.env, np.asarray(chunk), self.gamma)
        info = {**step.info, "chunk_discount": step.discount, "chunk_steps": step.env_steps,
                "is_success": step.success}
        return step.next_obs, step.reward, step.terminated, step.truncated, info

    def close(self):
        self.env.close()


def _make_chunked(make_env: Callable, horizon: int, gamma: float) -> ChunkedEnv:
    return ChunkedEnv(make_env(), horizon, gamma)


@dataclass
class VectorStep:
    """One chunk in each of E envs. `next_obs` is each episode's true next state (its
    final observation where it ended); `reset_obs` is where each env stands now (the first
    observation of the next episode where one ended)."""

    next_obs: np.ndarray  # [E, D]
    reset_obs: np.ndarray  # [E, D]
    reward: np.ndarray  # [E]
    discount: np.ndarray  # [E]
    terminated: np.ndarray  # [E] bool
    truncated: np.ndarray  # [E] bool
    success: np.ndarray  # [E] bool
    env_steps: int  # summed over the E envs

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


class VectorTrainingEnv:
    """E copies of the training env in a gymnasium vector env, stepping one chunk each.

    `mode` "sync" steps them in this process (cheap envs), "async" in one subprocess each
    (simulators that cost more than the policy). Sub-envs reset themselves when their
    episode ends (gymnasium's SAME_STEP autoreset), so every step returns E transitions.
    An exception from any sub-env counts one error and rebuilds all E envs: the episodes
    in progress end there (their stored transitions stay, as truncated episodes).
    """

    def __init__(self, make_env: Callable, num_envs: int, mode: str, horizon: int, gamma: float,
                 max_errors: int, spec: PolicySpec) -> None:
        self.make_env, self.num_envs, self.mode = make_env, num_envs, mode
        self.horizon, self.gamma, self.max_errors, self.spec = horizon, gamma, max_errors, spec
        self.errors = 0
        probe = make_env()  # check once, here, with a clear message (not in a subprocess)
        try:
            check_env(probe, spec)
        finally:
            probe.close()
        self.venv = self._build()

    def _build(self):
        from functools import partial

        from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

        fns = [partial(_make_chunked, self.make_env, self.horizon, self.gamma) for _ in range(self.num_envs)]
        vector_cls = AsyncVectorEnv if self.mode == "async" else SyncVectorEnv
        return vector_cls(fns, autoreset_mode=AutoresetMode.SAME_STEP)

    def reset(self, seed: int) -> np.ndarray:
        """Reset all E envs (sub-env i with seed + i); observations [E, D]."""
        while True:
            try:
                return np.asarray(self.venv.reset(seed=seed)[0], dtype=np.float32)
            except Exception as exc:
                self._recover(EnvError(f"env.reset raised {type(exc).__name__}: {exc}"), exc)

    def step(self, chunks: np.ndarray) -> VectorStep | None:
        """chunks [E, H, A] env units -> `VectorStep`, or None when an env failed (all rebuilt)."""
        try:
            obs, reward, terminated, truncated, info = self.venv.step(chunks)
        except Exception as exc:
            self._recover(EnvError(f"env.step raised {type(exc).__name__}: {exc}"), exc)
            return None
        obs = np.asarray(obs, dtype=np.float32)
        done = terminated | truncated
        next_obs, final = obs.copy(), info.get("final_info", {})

        def per_env(key: str, default) -> np.ndarray:
            """`info[key]` of each env's step: from `final_info` where the episode ended."""
            value = np.asarray(info.get(key, np.full(self.num_envs, default)))
            if done.any():
                value = np.where(done, np.asarray(final.get(key, np.full(self.num_envs, default))), value)
            return value

        for i in np.flatnonzero(done):
            next_obs[i] = info["final_obs"][i]
        return VectorStep(next_obs, obs, np.asarray(reward, np.float64), per_env("chunk_discount", 1.0).astype(np.float64),
                          np.asarray(terminated, bool), np.asarray(truncated, bool),
                          per_env("is_success", False).astype(bool), int(per_env("chunk_steps", 1).sum()))

    def _recover(self, error: EnvError, cause: BaseException) -> None:
        _count_env_error(self, error, cause)
        warnings.warn(f"{error}; episodes truncated, the {self.num_envs} envs rebuilt "
                      f"({self.errors}/{self.max_errors} errors allowed)", stacklevel=3)
        _close_quietly(self.venv)
        self.venv = self._build()

    def close(self) -> None:
        self.venv.close()
