"""Success rate and episode length of the scripted experts.

    python scripts/measure_experts.py                       # every registered task, 50 episodes each
    python scripts/measure_experts.py robosuite-lift pointmaze-umaze --episodes 20 --noise-std 0.1
    python scripts/measure_experts.py antmaze-umaze antmaze-medium antmaze-large  # gait expert, ~2-4 min

Episode i of a task is reset with seed i (and the expert reseeded with i), so the numbers
are reproducible. The time limit is the registered one unless --max-steps is given; a
success on the last allowed step counts. The robosuite tasks need .venv-robosuite
(`make install-robosuite`).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def measure(task: str, episodes: int, max_steps: int | None, speed: float, noise_std: float) -> dict:
    from expo_sdk.envs import make_expert, make_task

    env = make_task(task, **({"max_episode_steps": max_steps} if max_steps else {}))
    expert = make_expert(task, env, speed=speed, noise_std=noise_std, seed=0)
    successes, lengths = [], []
    start = time.perf_counter()
    for i in range(episodes):
        obs, _ = env.reset(seed=i)
        expert.reset(seed=i)
        steps, success = 0, False
        while True:
            obs, _, terminated, truncated, info = env.step(expert.act(obs))
            steps += 1
            if terminated or truncated:
                success = bool(info["is_success"])
                break
        successes.append(success)
        lengths.append(steps)
    wall = time.perf_counter() - start
    env.close()
    ok = [n for n, s in zip(lengths, successes) if s]
    return {
        "task": task,
        "success": float(np.mean(successes)),
        "mean_len": float(np.mean(lengths)),
        "mean_len_success": float(np.mean(ok)) if ok else float("nan"),
        "max_len_success": max(ok) if ok else 0,
        "steps_per_s": sum(lengths) / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tasks", nargs="*", default=None, help="default: every registered task")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--max-steps", type=int, default=None, help="override the registered time limit")
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--noise-std", type=float, default=0.0)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from expo_sdk.envs import TASKS

    print(f"{args.episodes} episodes per task, speed {args.speed}, noise_std {args.noise_std}")
    print(f"{'task':<20} {'success':>8} {'mean len':>9} {'len|succ':>9} {'max|succ':>9} {'steps/s':>8}")
    for task in args.tasks or sorted(TASKS):
        try:
            r = measure(task, args.episodes, args.max_steps, args.speed, args.noise_std)
        except ImportError as exc:  # an optional simulator not installed in this venv
            print(f"{task:<20} skipped: {str(exc).splitlines()[0]}")
            continue
        print(f"{r['task']:<20} {r['success']:>8.2f} {r['mean_len']:>9.1f} {r['mean_len_success']:>9.1f} "
              f"{r['max_len_success']:>9d} {r['steps_per_s']:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
