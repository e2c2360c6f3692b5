"""Success rate of each task's scripted expert: `python scripts/measure_experts.py [TASK ...]`.

Rolls out every named task (default: all registered tasks whose simulator is installed)
for `--episodes` episodes (reset seeds 0..N-1) at default quality and prints one line per
task: success rate, mean and 90th-percentile episode length, steps per second.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from expo_sdk.envs import TASKS, make_expert, make_task


def measure(task: str, episodes: int, seed: int = 0) -> dict:
    env = make_task(task)
    expert = make_expert(task, env, seed=seed)
    wins, lengths, start = 0, [], time.perf_counter()
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        expert.reset(seed=seed + episode)
        steps = 0
        while True:
            obs, _, terminated, truncated, info = env.step(expert.act(obs))
            steps += 1
            if terminated or truncated:
                wins += bool(info.get("is_success", terminated))
                break
        lengths.append(steps)
    env.close()
    return {"task": task, "episodes": episodes, "success": wins / episodes, "mean_len": float(np.mean(lengths)),
            "p90_len": float(np.percentile(lengths, 90)), "steps_per_s": sum(lengths) / (time.perf_counter() - start)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", default=sorted(TASKS))
    parser.add_argument("--episodes", type=int, default=50)
    args = parser.parse_args()
    print("| task | episodes | expert success | mean length | p90 length | env steps/s |")
    print("|---|---|---|---|---|---|")
    for task in args.tasks:
        try:
            r = measure(task, args.episodes)
        except ImportError as exc:  # an optional simulator that is not installed
            print(f"| {task} | - | not installed ({exc}) | | | |")
            continue
        print(f"| {task} | {r['episodes']} | {r['success']:.2f} | {r['mean_len']:.1f} | {r['p90_len']:.0f} | "
              f"{r['steps_per_s']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
