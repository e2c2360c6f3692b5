"""OTF acting latency at batch 1: eager vs compiled sampling vs compiled sampling + selection, interleaved.

    python benchmarks/act_latency.py [--threads 2] [--rounds 10] [--calls 100]

At the paper's sizes (`expo_sdk.bench.PAPER`: N 8, T 10, random weights), three tuners act
on the same state: eager, `compile_base_sampling`, and `compile_base_sampling` +
`compile_acting`. Each round times `--calls` actions of each tuner in turn (the bench's
`_act_latency`: 3 warm calls, then the median), so a drift in the machine's speed touches
all three alike; prints one JSON object with the per-round medians, their median, and each
compiled variant's per-round gain over the one before it. `expo bench` times the same calls once each, minutes apart.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from expo_sdk.allocator import retain_freed_memory
from expo_sdk.bench import PAPER, _act_latency, make_tuner

VARIANTS = {"eager": {}, "compiled_sampling": {"compile_base_sampling": True},
            "compiled_sampling_and_acting": {"compile_base_sampling": True, "compile_acting": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    retain_freed_memory()  # as training and the bench run
    torch.set_num_threads(args.threads)
    tuners = {name: make_tuner(PAPER, "cpu", **options) for name, options in VARIANTS.items()}
    obs = torch.zeros(1, PAPER.obs_dim)
    first_call_s = {}
    for name, tuner in tuners.items():  # the first call compiles
        start = time.perf_counter()
        tuner.select_action(obs)
        first_call_s[name] = round(time.perf_counter() - start, 2)
    rounds: dict[str, list[float]] = {name: [] for name in tuners}
    for _ in range(args.rounds):  # each timing: 3 warm calls, then the median of --calls
        for name, tuner in tuners.items():
            rounds[name].append(_act_latency(tuner, 1, args.calls) * 1e3)
    names = list(tuners)
    result = {"threads": args.threads, "calls_per_round": args.calls, "first_call_s": first_call_s,
              **{f"{name}_ms": round(statistics.median(v), 3) for name, v in rounds.items()},
              "rounds_ms": {name: [round(x, 3) for x in v] for name, v in rounds.items()}}
    for before, after in zip(names, names[1:]):
        gains = [b - a for b, a in zip(rounds[before], rounds[after])]
        result[f"{after}_gain_ms"] = {"median": round(statistics.median(gains), 3), "min": round(min(gains), 3),
                                      "max": round(max(gains), 3)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
