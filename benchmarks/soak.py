"""Soak test: a recipe run for `--factor` times its usual steps, recording memory and speed.

Every `--every` env steps one JSON line goes to `OUT/soak.jsonl`: env step, wall and
process CPU seconds, seconds spent in evaluation so far, resident memory (VmRSS) and
replay size. At the end it prints a summary comparing the first and last quarters after
warm-up (the replay buffer filling up), and plots `OUT/soak.png`. Not a CI test: the demo
at 10x is about 100k env steps (hours on 2 cores).

    python benchmarks/soak.py [--recipe recipes/demo_pointmaze.yaml] [--factor 10] \\
        [--set finetune.replay.capacity=20000] [--out runs/soak] [--resume]

A killed soak continues with `--resume` (same arguments) from the run's last checkpoint.
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
    """Appends one record per `every` env steps; a resumed run continues the file.

    Each process is one `segment`: rates are computed only within a segment, and a resumed
    run first drops the records logged after the checkpoint it restarts from.
    """

    def __init__(self, path: Path, every: int, resume: bool = False) -> None:
        self.path, self.every, self.resume = path, every, resume

    def on_train_start(self, tuner, total_steps):
        kept = [r for r in _read(self.path) if r["env_step"] <= tuner.env_step] if self.resume else []
        last = kept[-1] if kept else {}
        self.segment = last.get("segment", 0) + 1 if kept else 0
        self.offset = {k: last.get(k, 0.0) for k in ("wall_s", "cpu_s", "eval_s", "eval_cpu_s")}
        self.eval_s, self.eval_cpu_s = self.offset["eval_s"], self.offset["eval_cpu_s"]
        self.file = self.path.open("w")
        self.file.writelines(json.dumps(r) + "\n" for r in kept)
        evaluate = tuner.evaluate

        def timed_evaluate(*args, **kwargs):  # evaluation time is kept out of the step time
            start, start_cpu = time.perf_counter(), time.process_time()
            try:
                return evaluate(*args, **kwargs)
            finally:
                self.eval_s += time.perf_counter() - start
                self.eval_cpu_s += time.process_time() - start_cpu

        tuner.evaluate = timed_evaluate
        self.next = (tuner.env_step // self.every + 1) * self.every
        self.start_wall, self.start_cpu = time.perf_counter(), time.process_time()

    def on_step(self, tuner, env_step):
        if env_step >= self.next:
            self.next += self.every
            record = {"env_step": env_step, "segment": self.segment,
                      "wall_s": self.offset["wall_s"] + time.perf_counter() - self.start_wall,
                      "cpu_s": self.offset["cpu_s"] + time.process_time() - self.start_cpu,
                      "eval_s": self.eval_s, "eval_cpu_s": self.eval_cpu_s,
                      "rss_mb": rss_mb(), "replay": len(tuner.online)}
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def on_train_end(self, tuner):
        self.file.close()


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def summarize(records: list[dict], capacity: int) -> dict:
    """Per-window training time per env step (evaluation excluded) and RSS, after warm-up
    (the replay buffer full, or 20% of the run). Windows spanning a resume are skipped."""
    steps = np.array([r["env_step"] for r in records], float)
    segment = np.array([r.get("segment", 0) for r in records])
    train_wall = np.array([r["wall_s"] - r["eval_s"] for r in records])
    # Process CPU time is what the run itself used: less sensitive to other jobs on the cores.
    train_cpu = np.array([r["cpu_s"] - r["eval_cpu_s"] for r in records])
    rss = np.array([r["rss_mb"] for r in records])
    same = segment[1:] == segment[:-1]
    warm = steps[1:] > max(capacity, 0.2 * steps[-1])
    use = same & warm
    ms = (np.diff(train_wall) / np.diff(steps) * 1e3)[use]
    cpu_ms = (np.diff(train_cpu) / np.diff(steps) * 1e3)[use]
    q = max(1, len(ms) // 4)
    first, last = float(np.median(ms[:q])), float(np.median(ms[-q:]))
    first_cpu, last_cpu = float(np.median(cpu_ms[:q])), float(np.median(cpu_ms[-q:]))
    growth = []  # per process: max RSS after warm-up over the RSS when warm-up ended
    for seg in np.unique(segment):
        seg_rss = rss[(segment == seg) & (steps > max(capacity, 0.2 * steps[-1]))]
        if len(seg_rss) > 1:
            growth.append((float(seg_rss[0]), float(seg_rss.max())))
    return {
        "env_steps": int(steps[-1]), "processes": int(segment.max() + 1),
        "warmup_ends_after": int(max(capacity, 0.2 * steps[-1])), "windows": int(use.sum()),
        "rss_mb_at_warmup_end": [round(a, 1) for a, _ in growth],
        "rss_mb_max_after": [round(b, 1) for _, b in growth],
        "rss_growth_after_warmup": round(max((b / a - 1 for a, b in growth), default=float("nan")), 4),
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
    # (a window spanning a resume shows as one outlier point)
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
    parser.add_argument("--resume", action="store_true", help="continue a killed soak in --out (same arguments)")
    parser.add_argument("--summarize-only", action="store_true", help="summarize and plot --out as it stands")
    args = parser.parse_args()
    recipe = Recipe.load(args.recipe, args.set)
    recipe = recipe.model_copy(update={"total_steps": int(recipe.total_steps * args.factor)})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.summarize_only:
        recorder = SoakRecorder(out / "soak.jsonl", args.every, resume=args.resume)
        run_recipe(recipe, out / "run", progress=False, resume=args.resume, callbacks=[recorder])
    records = _read(out / "soak.jsonl")
    summary = summarize(records, min(recipe.finetune.replay.capacity, recipe.total_steps))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot(records, out / "soak.png")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
