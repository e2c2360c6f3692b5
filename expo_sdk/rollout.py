"""Stepping an env with action chunks, and the checks at the env / policy boundary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def execute_chunk(env, chunk: np.ndarray, gamma: float) -> ChunkStep:
    """Run the env-unit actions chunk [H, A] open loop; stop early when the episode ends."""
    reward, discount, success = 0.0, 1.0, False
    terminated = truncated = False
    info: dict[str, Any] = {}
    steps = 0
    for action in chunk:
        next_obs, r, terminated, truncated, info = env.step(action)
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
