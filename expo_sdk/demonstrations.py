"""Scripted-expert demonstrations of a chosen size and quality, for any registered task.

The paper's datasets come in regimes: a few proficient demos (robomimic Lift, 10 demos),
many of mixed quality (Can "multi-human", 300 demos from better / okay / worse
operators), mid-size proficient sets (Square, 200). `generate_demos` reproduces such
regimes with each task's scripted expert, whose `speed` (action scale) and `noise_std`
knobs play the operators:

    proficient   speed 1.0, noise 0.0
    okay         speed 0.6, noise 0.2
    worse        speed 0.4, noise 0.5
    mixed        a third of the episodes from each of the three above (as robomimic MH)

The output is a deterministic function of (task, episodes, quality, seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OPERATORS = {"proficient": (1.0, 0.0), "okay": (0.6, 0.2), "worse": (0.4, 0.5)}
QUALITIES = (*OPERATORS, "mixed")


@dataclass
class DemoStats:
    episodes: int
    kept_episodes: int
    transitions: int
    success_rate: float  # of all rolled-out episodes, before `only_successes` filtering


def generate_demos(
    task: str,
    episodes: int,
    quality: str = "proficient",
    seed: int = 0,
    only_successes: bool = False,
    max_episode_steps: int | None = None,
) -> tuple[dict[str, np.ndarray], DemoStats]:
    """Roll out `task`'s scripted expert; returns (transition arrays, stats).

    Arrays: observations, actions, rewards, next_observations, terminals, timeouts,
    episode_ids (unique across operators), episode_starts, and `operator` (index into
    `OPERATORS`, per transition). Episode i is reset with seed `seed + i`.
    """
    from .envs import make_expert, make_task
    from .envs.pointmaze import generate_demonstrations

    if quality not in QUALITIES:
        raise ValueError(f"unknown quality {quality!r}; choose one of {list(QUALITIES)}")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    names = list(OPERATORS) if quality == "mixed" else [quality]
    # Split the episodes between operators: the first `episodes % k` get one more.
    counts = [episodes // len(names) + (i < episodes % len(names)) for i in range(len(names))]
    kwargs = {"max_episode_steps": max_episode_steps} if max_episode_steps else {}
    env = make_task(task, **kwargs)
    parts, first, successes = [], 0, 0
    try:
        for name, count in zip(names, counts):
            if count == 0:
                continue
            speed, noise = OPERATORS[name]
            expert = make_expert(task, env, speed=speed, noise_std=noise, seed=seed + first)
            data = generate_demonstrations(env, expert, count, seed=seed + first)
            ends = data["terminals"] | data["timeouts"]
            successes += int(data["terminals"][ends].sum())
            data["episode_ids"] = data["episode_ids"] + first
            data["operator"] = np.full(len(data["actions"]), list(OPERATORS).index(name), np.int64)
            parts.append(data)
            first += count
    finally:
        env.close()
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if only_successes:
        ids = data["episode_ids"]
        good = np.unique(ids[data["terminals"]])
        data = {k: v[np.isin(ids, good)] for k, v in data.items()}
    kept = len(np.unique(data["episode_ids"]))
    return data, DemoStats(episodes, kept, len(data["actions"]), successes / episodes)
