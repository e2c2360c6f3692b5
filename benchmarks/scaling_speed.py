"""Env steps/s of training (collection + learning) on the demo task: one process, one
learner fed by Ray collectors, and data-parallel processes, on this machine's cores.

    python benchmarks/scaling_speed.py [--steps 2500] [--threads 1] [--collectors 1] [--processes 2]

Variants, one after another on the demo recipe and its cached pretrained base (UTD 2,
cached base samples, the recipe's CPU-scaled sizes), each printing env steps/s between
the end of the warm-up (learning has started) and the end of the run, evaluations
excluded:
- one process with `--threads` threads (1 and 2);
- one learner process (`--threads`) + `--collectors` Ray actors (one CPU each);
- `--processes` data-parallel processes (torchrun, gloo, 1 thread each): every process
  collects its own env steps, so the total is processes x the shared clock's rate.
Run it on a quiet machine: the ratios are the result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from expo_sdk import Callback, FinetuneConfig, Finetuner
from expo_sdk.distributed import accelerator_from_environment
from expo_sdk.recipe import Recipe, load_or_generate_demos, load_or_pretrain_base, task_factory
from expo_sdk.recipes import recipe_path


class _Clock(Callback):
    """Wall time and env step from the first step past `start_at` to the last one."""

    def __init__(self, start_at: int) -> None:
        self.start_at, self.start, self.end = start_at, None, None

    def on_step(self, tuner, env_step):
        if env_step >= self.start_at:
            self.start = self.start or (time.perf_counter(), env_step)
            self.end = (time.perf_counter(), env_step)
        return False

    def rate(self) -> float:
        (t0, s0), (t1, s1) = self.start, self.end
        return (s1 - s0) / (t1 - t0)


def _train(steps: int, threads: int, collectors=None, accelerator=None) -> float:
    """Env steps/s of one process's clock after the warm-up."""
    recipe = Recipe.load(recipe_path("demo_pointmaze"))
    demos = load_or_generate_demos(recipe)
    base = load_or_pretrain_base(recipe, demos, progress=False)
    config = recipe.finetune.model_copy(update={
        "eval_episodes": 2, "eval_num_envs": 2, "eval_every": 10**9, "checkpoint_every": 0, "num_threads": threads})
    tuner = Finetuner(base, FinetuneConfig.model_validate(config.model_dump()), accelerator=accelerator)
    clock = _Clock(start_at=max(config.warmup_steps, config.learning_starts) + 50)
    tuner.run(task_factory(recipe.task), steps, offline_data=demos, callbacks=[clock], progress=False,
              collectors=collectors)
    return clock.rate()


def _data_parallel(steps: int, processes: int) -> float:
    """Launch this script as `processes` torchrun workers; total env steps/s."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rate.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                   "--master_addr", "127.0.0.1", "--master_port", "29561", __file__,
                   "--worker", str(out), "--steps", str(steps)]
        subprocess.run(command, check=True, capture_output=True, text=True)
        return json.loads(out.read_text())["rate"] * processes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--collectors", type=int, default=1)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # one data-parallel process
    args = parser.parse_args()
    if args.worker is not None:
        accelerator = accelerator_from_environment()
        rate = _train(args.steps, 1, accelerator=accelerator)
        if accelerator.is_main_process:
            args.worker.write_text(json.dumps({"rate": rate}))
        accelerator.end_training()
        return

    from expo_sdk.ray_collection import RayCollectors

    results = {f"one process, {t} thread(s)": _train(args.steps, t) for t in sorted({1, args.threads, 2})}
    results[f"learner ({args.threads} thread) + {args.collectors} Ray collector(s)"] = _train(
        args.steps, args.threads, collectors=RayCollectors(num_collectors=args.collectors))
    results[f"{args.processes} data-parallel processes (total)"] = _data_parallel(args.steps, args.processes)
    one = results["one process, 1 thread(s)"]
    for name, rate in results.items():
        print(f"{name:<48} {rate:8.1f} env steps/s  {rate / one:5.2f}x")
    print(json.dumps({"steps": args.steps, "cpus": os.cpu_count(),
                      **{k: round(v, 1) for k, v in results.items()}}))


if __name__ == "__main__":
    main()
