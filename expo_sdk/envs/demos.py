"""Demonstrations: roll out a scripted expert in any registered task and keep flat transitions.

Task-agnostic: works with every env of :data:`expo_sdk.envs.TASKS` and the experts of
:func:`expo_sdk.envs.make_expert` (anything with ``act(obs)`` and optionally
``reset(seed=...)``). The arrays are what :class:`expo_sdk.replay.OfflineDataset` and
``expo_sdk.recipe.load_or_generate_demos`` use.
"""

from __future__ import annotations

import inspect
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["generate_demonstrations", "concatenate_demonstrations"]


def generate_demonstrations(
    env: gym.Env,
    expert: Any,
    num_episodes: int,
    seed: int = 0,
    only_successes: bool = False,
) -> dict[str, np.ndarray]:
    """Roll out ``expert`` in ``env`` and return flat transition arrays.

    Episode ``i`` starts with ``env.reset(seed=seed + i)``, and, if the expert
    has a ``reset(seed=...)`` method, ``expert.reset(seed=seed + i)``, so the
    output is a deterministic function of ``seed`` (and the expert's own
    constructor seed).

    Args:
        env: a flat-observation env with ``info["is_success"]`` (any registered task,
            e.g. :func:`~expo_sdk.envs.pointmaze.make_pointmaze`,
            :func:`~expo_sdk.envs.robosuite_tasks.make_robosuite`).
        expert: object with ``act(obs[D]) -> action[A]`` (e.g. ``make_expert(task, env)``).
        num_episodes: number of episodes to roll out.
        seed: base reset seed.
        only_successes: keep only episodes that ended by reaching the goal.

    Returns:
        dict with ``M`` = total kept transitions:
          ``observations`` float32 ``[M, D]``, ``actions`` float32 ``[M, A]``
          (env action space), ``rewards`` float32 ``[M]``,
          ``next_observations`` float32 ``[M, D]``, ``terminals`` bool ``[M]``
          (true termination = success), ``timeouts`` bool ``[M]`` (time-limit
          truncation), ``episode_ids`` int64 ``[M]`` (rollout index ``i``; the
          reset seed was ``seed + i``; not renumbered by ``only_successes``),
          ``episode_starts`` bool ``[M]`` (first transition of an episode).
    """
    obs_dim = int(np.prod(env.observation_space.shape))
    act_dim = int(np.prod(env.action_space.shape))
    reset_fn = getattr(expert, "reset", None)
    expert_takes_seed = reset_fn is not None and "seed" in inspect.signature(reset_fn).parameters
    keys = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts", "episode_ids")
    chunks: dict[str, list[np.ndarray]] = {k: [] for k in keys}

    for i in range(num_episodes):
        obs, _ = env.reset(seed=seed + i)
        if expert_takes_seed:
            reset_fn(seed=seed + i)
        elif reset_fn is not None:
            reset_fn()
        ep: dict[str, list] = {k: [] for k in keys}
        success = False
        while True:
            action = np.asarray(expert.act(obs), dtype=np.float32).reshape(act_dim)
            next_obs, reward, terminated, truncated, info = env.step(action)
            ep["observations"].append(obs)
            ep["actions"].append(action)
            ep["rewards"].append(reward)
            ep["next_observations"].append(next_obs)
            ep["terminals"].append(terminated)
            ep["timeouts"].append(truncated and not terminated)
            obs = next_obs
            if terminated or truncated:
                success = bool(info.get("is_success", terminated))
                break
        if only_successes and not success:
            continue
        ep["episode_ids"] = [i] * len(ep["observations"])
        for k in keys:
            chunks[k].append(np.asarray(ep[k]))

    def cat(key: str, dtype, shape: tuple[int, ...]) -> np.ndarray:
        if not chunks[key]:
            return np.zeros((0, *shape), dtype=dtype)
        return np.concatenate(chunks[key]).astype(dtype).reshape(-1, *shape)

    data = {
        "observations": cat("observations", np.float32, (obs_dim,)),
        "actions": cat("actions", np.float32, (act_dim,)),
        "rewards": cat("rewards", np.float32, ()),
        "next_observations": cat("next_observations", np.float32, (obs_dim,)),
        "terminals": cat("terminals", bool, ()),
        "timeouts": cat("timeouts", bool, ()),
        "episode_ids": cat("episode_ids", np.int64, ()),
    }
    ids = data["episode_ids"]
    data["episode_starts"] = np.concatenate([[True], ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, bool)
    return data


def concatenate_demonstrations(parts: list[dict[str, np.ndarray]],
                               id_offsets: list[int] | None = None) -> dict[str, np.ndarray]:
    """Join several :func:`generate_demonstrations` outputs into one dataset.

    Args:
        parts: the datasets, in order.
        id_offsets: added to each part's ``episode_ids``; by default each part starts after
            the previous part's largest id, so ids stay distinct. Pass the cumulative
            rollout counts when part ``k`` was recorded with ``seed = seed_0 + offset_k``:
            then ``seed_0 + episode_id`` is every episode's reset seed.
    """
    if not parts:
        raise ValueError("no demonstrations to concatenate")
    if id_offsets is not None and len(id_offsets) != len(parts):
        raise ValueError(f"{len(parts)} parts but {len(id_offsets)} id offsets")
    out: dict[str, list[np.ndarray]] = {k: [] for k in parts[0]}
    offset = 0
    for k, part in enumerate(parts):
        if id_offsets is not None:
            offset = id_offsets[k]
        ids = part["episode_ids"] + offset
        for key, value in part.items():
            out[key].append(ids if key == "episode_ids" else value)
        if len(ids):
            offset = int(ids.max()) + 1
    data = {k: np.concatenate(v) for k, v in out.items()}
    ids = data["episode_ids"]
    data["episode_starts"] = np.concatenate([[True], ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, bool)
    return data
