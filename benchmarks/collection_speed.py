"""Env steps/s of collection alone (OTF acting + env stepping + storing, no learning) with
1 env and with E envs in a sync / async gymnasium vector env, on the demo task and base.

    python benchmarks/collection_speed.py [--steps 3000] [--num-envs 8] [--threads 1]

All variants run in this process one after another, on the same pretrained base (the
demo recipe's, cached); each prints env steps/s and its ratio to the single env. Run it
on a quiet machine: the ratios are the result.
"""

import argparse
import json
import time

import torch

from expo_sdk import Callback, FinetuneConfig, Finetuner
from expo_sdk.recipe import Recipe, load_or_generate_demos, load_or_pretrain_base, task_factory
from expo_sdk.recipes import recipe_path

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=3000)
parser.add_argument("--num-envs", type=int, default=8)
parser.add_argument("--threads", type=int, default=1)
args = parser.parse_args()
torch.set_num_threads(args.threads)

recipe = Recipe.load(recipe_path("demo_pointmaze"))
base = load_or_pretrain_base(recipe, load_or_generate_demos(recipe), progress=False)
make_env = task_factory(recipe.task)


def env_steps_per_s(num_envs: int, mode: str) -> float:
    # No learning (learning_starts past the end), OTF acting from the first step, one
    # evaluation episode at each end (not timed).
    config = recipe.finetune.model_copy(update={
        "num_envs": num_envs, "vector_env": mode, "learning_starts": 10**9, "warmup_steps": 0,
        "eval_episodes": 1, "eval_every": 10**9, "checkpoint_every": 0, "num_threads": args.threads})
    tuner = Finetuner(base, FinetuneConfig.model_validate(config.model_dump()))
    timer = {}

    class Clock(Callback):
        def on_step(self, tuner, env_step):
            timer.setdefault("start", (time.perf_counter(), env_step))
            timer["end"] = (time.perf_counter(), env_step)
            return False

    tuner.run(make_env, args.steps, callbacks=[Clock()], progress=False)
    (t0, s0), (t1, s1) = timer["start"], timer["end"]
    return (s1 - s0) / (t1 - t0)


results = {"single env": env_steps_per_s(1, "sync")}
for mode in ("sync", "async"):
    results[f"{args.num_envs} envs, {mode}"] = env_steps_per_s(args.num_envs, mode)
single = results["single env"]
for name, rate in results.items():
    print(f"{name:<16} {rate:8.1f} env steps/s  {rate / single:5.2f}x")
print(json.dumps({"threads": args.threads, "steps": args.steps, **{k: round(v, 1) for k, v in results.items()}}))
