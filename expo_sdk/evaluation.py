"""Evaluation: success rate of a policy over a fixed set of seeded episodes.

Base and fine-tuned policies are evaluated on the *same* episode seeds (episode i resets
with `seed + i`), so the printed lift is a paired comparison. Episodes run in lockstep
across `num_envs` env copies so that the policy sees batches, not single states.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from .rollout import execute_chunk

# act_fn: observations [b, D] (env units) -> env-unit action chunks [b, H, A]
ActFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class EvalResult:
    successes: list[bool]
    returns: list[float]
    lengths: list[int]
    seeds: list[int] = field(default_factory=list)

    @property
    def episodes(self) -> int:
        return len(self.successes)

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.successes)) if self.successes else float("nan")

    @property
    def stderr(self) -> float:
        """Standard error of the success rate (binomial)."""
        p, n = self.success_rate, self.episodes
        return math.sqrt(max(p * (1 - p), 0.0) / n) if n else float("nan")

    def confidence_interval(self, z: float = 1.96) -> tuple[float, float]:
        """Wilson score interval of the success rate (95% by default); sound near 0 and 1."""
        n, p = self.episodes, self.success_rate
        if n == 0:
            return float("nan"), float("nan")
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return max(0.0, centre - half), min(1.0, centre + half)

    def summary(self) -> dict:
        return {"success_rate": self.success_rate, "stderr": self.stderr,
                "episodes": self.episodes, "mean_return": float(np.mean(self.returns)),
                "mean_length": float(np.mean(self.lengths))}

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate(
    act_fn: ActFn,
    env_fn: Callable[[], object],
    episodes: int,
    seed: int,
    num_envs: int = 10,
) -> EvalResult:
    """Run `episodes` episodes (episode i reset with seed + i) and count successes.

    A step counts as success when `info["is_success"]` is true; an episode succeeds if
    any of its steps does.
    """
    num_envs = max(1, min(num_envs, episodes))
    envs = [env_fn() for _ in range(num_envs)]
    successes, returns, lengths, seeds = [], [], [], []
    try:
        for wave_start in range(0, episodes, num_envs):
            wave = range(wave_start, min(wave_start + num_envs, episodes))
            obs = [envs[j].reset(seed=seed + i)[0] for j, i in enumerate(wave)]
            done = [False] * len(wave)
            ret, length, success = [0.0] * len(wave), [0] * len(wave), [False] * len(wave)
            while not all(done):
                live = [j for j in range(len(wave)) if not done[j]]
                chunks = act_fn(np.stack([obs[j] for j in live]).astype(np.float32))
                for j, chunk in zip(live, chunks):
                    step = execute_chunk(envs[j], chunk, gamma=1.0)
                    obs[j] = step.next_obs
                    ret[j] += step.reward
                    length[j] += step.env_steps
                    success[j] = success[j] or step.success
                    done[j] = step.terminated or step.truncated
            successes += success
            returns += ret
            lengths += length
            seeds += [seed + i for i in wave]
    finally:
        for env in envs:
            env.close()
    return EvalResult(successes, returns, lengths, seeds)
