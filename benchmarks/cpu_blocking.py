"""How big should the CPU blocks be? Sampler row chunks, critic scoring blocks, acting at batch 1.

    python benchmarks/cpu_blocking.py [--threads 2] [--repeats 3] [--compile-sampling] [--compile-critic]

At the paper's sizes (`expo_sdk.bench.PAPER`, random weights; freed memory retained as in
training), prints one JSON line of median wall milliseconds:
- `sample4096_chunk{R}_ms`: the fused DDPM sampler on 512 states x 8 samples (4096 rows,
  10 steps) with `DDPMPolicy.sample_chunk_rows = R`;
- `score_block{E}_ms`: `CriticEnsemble.score` of one TD target (256 states x 16 candidates,
  ensemble 10) with `score_block_elements = E` (2**30: one block, i.e. unblocked; rows per
  block are rounded down to a power of two), and `compiled_score_block{E}_ms` the same through
  the compiled block function that `compile_critic` uses (with `--compile-critic`);
- `act_b1_ms`: `Finetuner.select_action` at batch 1 (N 8, T 10), three medians of 200 calls.
The variants of each sweep are timed round-robin, so a drift in the machine's speed touches
all of them alike. Run it on a quiet machine: the differences between block sizes are
10-30%, less than what other processes' cache pressure does to them.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable

import torch

from expo_sdk.allocator import retain_freed_memory
from expo_sdk.bench import PAPER, _act_latency, _timed, make_tuner

CPU = torch.device("cpu")


def _interleaved_ms(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median wall ms of each variant, timed round-robin (one call of each per round) after
    one untimed call each (warm-up, and the compile of a new shape): a drift in the
    machine's speed then touches all variants alike instead of the ones timed last."""
    for fn in variants.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            times[name].append(_timed(fn, CPU))
    return {name: round(statistics.median(t) * 1e3, 1) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of the sampler (10x that for scoring)")
    parser.add_argument("--compile-sampling", action="store_true",
                        help="sampler and acting with `compile_base_sampling` (each chunk size compiles once)")
    parser.add_argument("--compile-critic", action="store_true",
                        help="also time scoring through the compiled block (each block size compiles once)")
    args = parser.parse_args()
    retain_freed_memory()
    torch.set_num_threads(args.threads)
    tuner = make_tuner(PAPER, "cpu", compile_base_sampling=args.compile_sampling)
    base, critic = tuner.sampling_base, tuner.target.target
    result: dict[str, float] = {"threads": args.threads, "compile_sampling": args.compile_sampling,
                                "compile_critic": args.compile_critic}

    states = torch.randn(512, PAPER.obs_dim)
    default_rows = base.sample_chunk_rows
    sampling = {}
    for rows in (2048, 1024, 512, 256, 128):
        def sample(rows=rows):
            base.sample_chunk_rows = rows
            base.sample(states, PAPER.num_samples, tuner.generator)
        sampling[f"sample4096_chunk{rows}_ms"] = sample
    result.update(_interleaved_ms(sampling, args.repeats))
    base.sample_chunk_rows = default_rows

    obs, candidates = torch.randn(256, PAPER.obs_dim), torch.randn(256, 2 * PAPER.num_samples, PAPER.action_dim)
    default_block = critic.score_block_elements
    compiled_block = torch.compile(critic._score_block, dynamic=False) if args.compile_critic else None
    blocks = {"score_block": None, **({"compiled_score_block": compiled_block} if compiled_block else {})}
    scoring = {}
    for elements in (1 << 30, 1 << 22, 1 << 21, 1 << 20, 1 << 19, 1 << 18):
        for name, block in blocks.items():
            def score(elements=elements, block=block):
                critic.score_block_elements = elements
                critic.score(obs, candidates, score_block=block)
            scoring[f"{name}{elements}_ms"] = score
    result.update(_interleaved_ms(scoring, 10 * args.repeats))
    critic.score_block_elements = default_block

    tuner.select_action(torch.zeros(1, PAPER.obs_dim))  # compiles acting's shape, if compiling
    result["act_b1_ms"] = [round(_act_latency(tuner, 1, 200) * 1e3, 2) for _ in range(3)]  # as `expo bench` does
    print(json.dumps(result))


if __name__ == "__main__":
    main()
