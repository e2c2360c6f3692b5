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


def quality_sources(quality: str, episodes: int) -> list[tuple[int, float, float]]:
    """(episodes, speed, noise_std) per operator for a preset `quality`."""
    if quality not in QUALITIES:
        raise ValueError(f"unknown quality {quality!r}; choose one of {list(QUALITIES)}")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    names = list(OPERATORS) if quality == "mixed" else [quality]
    # Split the episodes between operators: the first `episodes % k` get one more.
    counts = [episodes // len(names) + (i < episodes % len(names)) for i in range(len(names))]
    return [(count, *OPERATORS[name]) for name, count in zip(names, counts) if count]


def record_demos(
    task: str,
    sources: list[tuple[int, float, float]],
    seed: int = 0,
    only_successes: bool = False,
    max_episode_steps: int | None = None,
) -> tuple[dict[str, np.ndarray], DemoStats]:
    """Roll out `task`'s expert as each (episodes, speed, noise_std) operator in turn.

    Episodes are numbered across operators and episode i is reset with seed `seed + i`
    (no start state is recorded twice); each operator's noise is seeded with `seed` plus the
    number of its first episode. Arrays: observations, actions, rewards, next_observations,
    terminals, timeouts, episode_ids, episode_starts, and `operator` (the source index,
    per transition). `only_successes` drops whole unsuccessful episodes afterwards.
    """
    from .envs import make_expert, make_task
    from .envs.demos import concatenate_demonstrations, generate_demonstrations

    kwargs = {"max_episode_steps": max_episode_steps} if max_episode_steps else {}
    env = make_task(task, **kwargs)
    parts, offsets = [], [0]
    try:
        for k, (count, speed, noise) in enumerate(sources):
            expert = make_expert(task, env, speed=speed, noise_std=noise, seed=seed + offsets[-1])
            part = generate_demonstrations(env, expert, count, seed=seed + offsets[-1])
            part["operator"] = np.full(len(part["actions"]), k, np.int64)
            parts.append(part)
            offsets.append(offsets[-1] + count)
    finally:
        env.close()
    data = concatenate_demonstrations(parts, offsets[:-1])
    episodes = offsets[-1]
    successes = len(np.unique(data["episode_ids"][data["terminals"]]))
    if only_successes:
        keep = np.isin(data["episode_ids"], np.unique(data["episode_ids"][data["terminals"]]))
        data = {k: v[keep] for k, v in data.items()}
    kept = len(np.unique(data["episode_ids"]))
    return data, DemoStats(episodes, kept, len(data["actions"]), successes / episodes)


def generate_demos(
    task: str,
    episodes: int,
    quality: str = "proficient",
    seed: int = 0,
    only_successes: bool = False,
    max_episode_steps: int | None = None,
) -> tuple[dict[str, np.ndarray], DemoStats]:
    """`episodes` scripted demos of a preset `quality` (see the module docstring)."""
    return record_demos(task, quality_sources(quality, episodes), seed, only_successes, max_episode_steps)
