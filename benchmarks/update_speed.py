"""Env-steps/s of EXPO's learning loop at the paper's hyperparameters (one process, one run).

One "env step of training" = one `Finetuner.update()`: UTD 20 critic updates on batches of
256 (each TD target samples N=8 base actions per next state with T=10 DDPM steps through the
MLP-ResNet 256x3, edits them, scores 16 candidates with the 10-member target ensemble), then
one edit-head, temperature and base-imitation step. Observation 23, action 7 (robomimic
Can-like sizes). Random weights and data: the cost does not depend on their values.

    python benchmarks/update_speed.py [--threads 2] [--updates 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from expo_sdk import FinetuneConfig, Finetuner
from expo_sdk.adapters import DDPMPolicy


def make_tuner(cache: bool, obs_dim: int, action_dim: int, seed: int = 0) -> Finetuner:
    rng = np.random.default_rng(seed)
    data = {"observations": rng.normal(size=(5000, obs_dim)).astype(np.float32),
            "actions": rng.uniform(-1, 1, (5000, action_dim)).astype(np.float32),
            "rewards": np.zeros(5000, np.float32),
            "next_observations": rng.normal(size=(5000, obs_dim)).astype(np.float32),
            "terminals": np.zeros(5000, bool)}
    torch.manual_seed(seed)
    base = DDPMPolicy.for_dataset(data["observations"], [-1.0] * action_dim, [1.0] * action_dim)
    # Paper hyperparameters are FinetuneConfig's defaults; the cache needs a frozen base.
    config = FinetuneConfig(base_mode="frozen", cache_base_candidates=True) if cache else FinetuneConfig()
    tuner = Finetuner(base, config)
    tuner._prepare_buffers(10_000, data)
    return tuner


def time_updates(tuner: Finetuner, updates: int) -> float:
    tuner.update()  # warm-up (allocator, first-call overheads)
    start = time.perf_counter()
    for _ in range(updates):
        tuner.update()
    return (time.perf_counter() - start) / updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--obs-dim", type=int, default=23)
    parser.add_argument("--action-dim", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fresh = time_updates(make_tuner(False, args.obs_dim, args.action_dim), args.updates)
    cached = time_updates(make_tuner(True, args.obs_dim, args.action_dim), max(args.updates, 10))
    print(json.dumps({
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
        "threads": args.threads, "settings": "UTD 20, batch 256, N 8, T 10, ensemble 10, MLP-ResNet 256x3, obs 23, act 7",
        "fresh_sampling_s_per_update": round(fresh, 3), "fresh_env_steps_per_s": round(1 / fresh, 4),
        "cached_s_per_update": round(cached, 3), "cached_env_steps_per_s": round(1 / cached, 3),
        "cache_speedup": round(fresh / cached, 1),
    }))


if __name__ == "__main__":
    main()
