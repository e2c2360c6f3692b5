"""Env steps/s of whole training runs (`Finetuner.run`: acting, collection, learning) at the
paper's learner settings, eager vs `cuda_graphs`, fresh vs cached base samples, and cached
with graphs and `compile_critic` (the fastest exact GPU configuration).

    python benchmarks/loop_speed.py --device cuda [--steps 150]
    python benchmarks/loop_speed.py --device cpu --steps 8 --utd 2     (a smoke test here)

The env is the toy ReachGoal task (obs 4, action 2): its simulator costs microseconds, so
what is measured is the library. The learner has the paper's sizes (UTD 20, batch 256, N 8,
T 10, ensemble 10, MLP-ResNet 256x3 base, 256-wide critic and edit head); the base is a
random DDPM policy (cost does not depend on the weights). Each variant prints env steps/s
from the 10th update on (compilation and CUDA-graph capture excluded) to the end of the
run (the final evaluation excluded).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from expo_sdk import Callback, FinetuneConfig, Finetuner
from expo_sdk.adapters import DDPMPolicy
from expo_sdk.envs.toy import ReachGoalEnv


class _Clock(Callback):
    """Wall time from the first learning step to the last env step."""

    def __init__(self, start_at: int) -> None:
        self.start_at, self.start, self.end, self.steps = start_at, None, None, 0

    def on_step(self, tuner, env_step: int) -> None:
        if env_step >= self.start_at and self.start is None:
            self.start, self.first_step = time.perf_counter(), env_step
        self.end, self.steps = time.perf_counter(), env_step


def run(device: str, steps: int, utd: int, cache: bool, cuda_graphs: bool, learning_starts: int,
        compile_critic: bool = False) -> dict:
    torch.manual_seed(0)
    base = DDPMPolicy.for_dataset(np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32),
                                  [-1.0, -1.0], [1.0, 1.0], num_diffusion_steps=10, hidden_dim=256, num_blocks=3)
    config = FinetuneConfig(device=device, utd_ratio=utd, batch_size=256, num_samples=8, base_mode="frozen",
                            critic={"ensemble_size": 10, "hidden_dim": 256}, edit_head={"hidden_dim": 256},
                            cache_base_candidates=cache, cuda_graphs=cuda_graphs, compile_critic=compile_critic,
                            learning_starts=learning_starts,
                            eval_every=10**9, eval_episodes=1, eval_num_envs=1, log_every=10**9)
    clock = _Clock(learning_starts + 10)  # past compilation, graph warm-up and capture
    Finetuner(base, config).run(ReachGoalEnv, total_steps=steps, progress=False, callbacks=[clock])
    measured = clock.steps - clock.first_step
    return {"device": device, "cache": cache, "cuda_graphs": cuda_graphs, "compile_critic": compile_critic,
            "env_steps": measured,
            "env_steps_per_s": round(measured / (clock.end - clock.start), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--utd", type=int, default=20)
    parser.add_argument("--learning-starts", type=int, default=20)
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    variants = [(cache, graphs, False) for cache in (False, True) for graphs in ([False, True] if cuda else [False])]
    variants.append((True, cuda, True))
    results = []
    for cache, cuda_graphs, compile_critic in variants:
        results.append(run(args.device, args.steps, args.utd, cache, cuda_graphs, args.learning_starts, compile_critic))
        print(json.dumps(results[-1]), flush=True)
    slowest = results[0]["env_steps_per_s"]
    for r in results:
        print(f"cache {r['cache']!s:5} cuda_graphs {r['cuda_graphs']!s:5} compile_critic {r['compile_critic']!s:5}: "
              f"{r['env_steps_per_s']:8.2f} env steps/s "
              f"({r['env_steps_per_s'] / slowest:.1f}x eager fresh samples)")


if __name__ == "__main__":
    main()
