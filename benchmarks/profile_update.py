"""Where one EXPO update spends its time: torch.profiler over one update at the paper's sizes.

    python benchmarks/profile_update.py [--path optimized|faithful|cached|act] [--threads 2] [--rows 25]
        [--compile-sampling] [--compile-critic]
    python benchmarks/profile_update.py --device cuda --path cached

Prints the top operators by self CPU time (on CUDA: by self GPU time, which is the same
whether or not the update is replayed from a CUDA graph), then the time per named region
(base sampling, edits, target scoring, critic step, edit-head step, base step). `--path act`
profiles 50 OTF actions at batch 1 instead (regions: base samples, then the selector).
`--compile-sampling` / `--compile-critic` set `compile_base_sampling` / `compile_critic`
(the warm-up call compiles).
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from expo_sdk.allocator import retain_freed_memory
from expo_sdk.bench import PAPER, make_tuner
from expo_sdk.finetuner import Finetuner
from expo_sdk.reference import reference_update


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", choices=["optimized", "faithful", "cached", "act"], default="optimized")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--default-allocator", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile-sampling", action="store_true")
    parser.add_argument("--compile-critic", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    if not args.default_allocator and not cuda:
        retain_freed_memory()
    tuner = make_tuner(PAPER, args.device, cache=args.path == "cached", compile_critic=args.compile_critic,
                       compile_base_sampling=args.compile_sampling)
    if args.path == "faithful":
        tuner.sampling_base.fused_sampling = False
    update = reference_update if args.path == "faithful" else Finetuner.update
    if args.path == "act":
        obs = torch.randn(1, PAPER.obs_dim, device=args.device)

        def update(tuner):  # noqa: F811 - 50 OTF actions at batch 1, split into their two parts
            for _ in range(50):
                base_actions = tuner.base_samples(obs, PAPER.num_samples)
                with record_function("## selector"):
                    tuner.select_action(obs, base_actions)
    # Name the regions without touching the library: wrap the methods on this instance.
    for name in ("base_samples", "next_candidates", "td_target", "update_critic", "update_edit_head",
                 "update_base"):
        method = getattr(tuner, name)

        def wrapped(*a, _method=method, _name=name, **k):
            with record_function(f"## {_name}"):
                return _method(*a, **k)
        setattr(tuner, name, wrapped)
    update(tuner)  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        update(tuner)
        if cuda:
            torch.cuda.synchronize()
    table = prof.key_averages()
    print(table.table(sort_by="self_device_time_total" if cuda else "self_cpu_time_total", row_limit=args.rows))
    print("regions (inclusive CPU time, and GPU time on CUDA; nested regions overlap):")
    for e in sorted((e for e in table if e.key.startswith("## ")), key=lambda e: -e.cpu_time_total):
        gpu = f", GPU {getattr(e, 'device_time_total', 0) / 1e3:8.2f} ms" if cuda else ""
        print(f"  {e.key[3:]:<20} CPU {e.cpu_time_total / 1e6:8.3f} s{gpu}  ({e.count} calls)")


if __name__ == "__main__":
    main()
