"""Base sampling in bf16 (`base_sampling_dtype: bfloat16`) vs float32, at the paper's sizes.

    python benchmarks/bf16_sampling.py [--threads 2] [--repeats 3] [--device cpu|cuda]

`Finetuner.base_samples` of the bench's paper-size DDPM base (`expo_sdk.bench.PAPER`, random
weights) on 256 states x 8 samples (2048 rows, 10 steps), the two precisions alternating
round by round; prints one JSON line: median seconds per call for each, their ratio, and
the largest and mean absolute difference between the two on the same noise.
Pays only where bf16 has hardware (a GPU, a CPU with AMX / AVX512-BF16).
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from expo_sdk.allocator import retain_freed_memory
from expo_sdk.bench import PAPER, _timed, make_tuner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cpu":
        retain_freed_memory()  # as in training
    tuner = make_tuner(PAPER, str(device))
    obs = torch.randn(256, PAPER.obs_dim, generator=torch.Generator().manual_seed(0)).to(device)
    precisions = {"float32": None, "bfloat16": torch.bfloat16}

    def draw(dtype, seed=None):
        tuner.sampling_dtype = dtype
        if seed is not None:
            tuner.generator.manual_seed(seed)
        return tuner.base_samples(obs, PAPER.num_samples)

    difference = (draw(torch.bfloat16, 0) - draw(None, 0)).abs()  # also the warm-up
    times: dict[str, list[float]] = {name: [] for name in precisions}
    for _ in range(args.repeats):
        for name, dtype in precisions.items():
            times[name].append(_timed(lambda: draw(dtype), device))
    f32, bf16 = (statistics.median(times[n]) for n in precisions)
    print(json.dumps({"device": str(device), "threads": torch.get_num_threads(),
                      "float32_s": round(f32, 4), "bfloat16_s": round(bf16, 4),
                      "bfloat16_speedup": round(f32 / bf16, 2),
                      "max_abs_difference": round(float(difference.max()), 5),
                      "mean_abs_difference": round(float(difference.mean()), 6),
                      "runs_s": {n: [round(t, 4) for t in v] for n, v in times.items()}}))


if __name__ == "__main__":
    main()
