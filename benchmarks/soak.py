"""Soak test: a recipe run for `--factor` times its usual steps, recording memory and speed.

Every `--every` env steps one JSON line goes to `OUT/soak.jsonl`: env step, wall and
process CPU seconds, seconds spent in evaluation so far, resident memory (VmRSS) and
replay size. At the end it prints a summary comparing the first and last quarters after
warm-up (the replay buffer filling up), and plots `OUT/soak.png`. Not a CI test: the demo
at 10x is about 100k env steps (hours on 2 cores).

    python benchmarks/soak.py [--recipe recipes/demo_pointmaze.yaml] [--factor 10] \\
        [--set finetune.replay.capacity=20000] [--out runs/soak]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from expo_sdk import Callback
from expo_sdk.recipe import Recipe, run_recipe


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class SoakRecorder(Callback):
    def __init__(self, path: Path, every: int) -> None:
        self.path, self.every, self.eval_s, self.eval_cpu_s = path, every, 0.0, 0.0
        self.file = path.open("w")

    def on_train_start(self, tuner, total_steps):
        evaluate = tuner.evaluate

        def timed_evaluate(*args, **kwargs):  # evaluation time is kept out of the step time
            start, start_cpu = time.perf_counter(), time.process_time()
            try:
                return evaluate(*args, **kwargs)
            finally:
                self.eval_s += time.perf_counter() - start
                self.eval_cpu_s += time.process_time() - start_cpu

        tuner.evaluate = timed_evaluate
        self.next = self.every
        self.start_wall, self.start_cpu = time.perf_counter(), time.process_time()

    def on_step(self, tuner, env_step):
        if env_step >= self.next:
            self.next += self.every
            record = {"env_step": env_step, "wall_s": time.perf_counter() - self.start_wall,
                      "cpu_s": time.process_time() - self.start_cpu, "eval_s": self.eval_s,
                      "eval_cpu_s": self.eval_cpu_s,
                      "rss_mb": rss_mb(), "replay": len(tuner.online)}
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def on_train_end(self, tuner):
        self.file.close()


def summarize(records: list[dict], capacity: int) -> dict:
    """Per-window training time per env step (evaluation excluded) and RSS, after warm-up."""
    steps = np.array([r["env_step"] for r in records], float)
    train_wall = np.array([r["wall_s"] - r["eval_s"] for r in records])
    # Process CPU time is what the run itself used: less sensitive to other jobs on the cores.
    train_cpu = np.array([r["cpu_s"] - r["eval_cpu_s"] for r in records])
    rss = np.array([r["rss_mb"] for r in records])
    ms_per_step = np.diff(train_wall) / np.diff(steps) * 1e3
    cpu_ms_per_step = np.diff(train_cpu) / np.diff(steps) * 1e3
    warm = np.searchsorted(steps, max(capacity, 0.2 * steps[-1]))  # replay full, or 20% of the run
    after = slice(warm, None)
    w_ms, w_cpu, w_rss = ms_per_step[warm:], cpu_ms_per_step[warm:], rss[after]
    q = max(1, len(w_ms) // 4)
    first, last = float(np.median(w_ms[:q])), float(np.median(w_ms[-q:]))
    first_cpu, last_cpu = float(np.median(w_cpu[:q])), float(np.median(w_cpu[-q:]))
    return {
        "env_steps": int(steps[-1]), "warmup_ends_at": int(steps[warm]),
        "rss_mb_at_warmup_end": round(float(w_rss[0]), 1), "rss_mb_max_after": round(float(w_rss.max()), 1),
        "rss_growth_after_warmup": round(float(w_rss.max() / w_rss[0] - 1), 4),
        "train_ms_per_step_first_quarter": round(first, 2), "train_ms_per_step_last_quarter": round(last, 2),
        "step_time_change": round(last / first - 1, 4),
        "train_cpu_ms_per_step_first_quarter": round(first_cpu, 2),
        "train_cpu_ms_per_step_last_quarter": round(last_cpu, 2),
        "cpu_step_time_change": round(last_cpu / first_cpu - 1, 4),
        "wall_s_total": round(records[-1]["wall_s"], 1), "eval_s_total": round(records[-1]["eval_s"], 1),
    }


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["env_step"] for r in records])
    train_wall = np.array([r["wall_s"] - r["eval_s"] for r in records])
    fig, (a, b) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    a.plot(steps, [r["rss_mb"] for r in records])
    a.set_ylabel("RSS (MB)")
    train_cpu = np.array([r["cpu_s"] - r["eval_cpu_s"] for r in records])
    b.plot(steps[1:], np.diff(train_wall) / np.diff(steps) * 1e3, label="wall")
    b.plot(steps[1:], np.diff(train_cpu) / np.diff(steps) * 1e3, label="process CPU")
    b.set_ylabel("train ms / env step")
    b.legend()
    b.set_xlabel("env step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(Path(__file__).parents[1] / "recipes" / "demo_pointmaze.yaml"))
    parser.add_argument("--factor", type=float, default=10.0)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="runs/soak")
    args = parser.parse_args()
    recipe = Recipe.load(args.recipe, args.set)
    recipe = recipe.model_copy(update={"total_steps": int(recipe.total_steps * args.factor)})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recorder = SoakRecorder(out / "soak.jsonl", args.every)
    run_recipe(recipe, out / "run", progress=False, callbacks=[recorder])
    records = [json.loads(line) for line in (out / "soak.jsonl").read_text().splitlines()]
    summary = summarize(records, min(recipe.finetune.replay.capacity, recipe.total_steps))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot(records, out / "soak.png")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
