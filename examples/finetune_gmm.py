"""Fine-tune the guide's Gaussian-mixture base (examples/gmm_policy.py) on the demo task with EXPO.

    python examples/finetune_gmm.py --steps 3000

Same demonstrations, task and CPU-sized EXPO config as examples/finetune_pointmaze.py;
only the base differs. Prints base vs fine-tuned success over the same `--eval-episodes` (100).
"""

import argparse
import time

import torch
from gmm_policy import GMMPolicy  # examples/gmm_policy.py, next to this file

from expo_sdk import FinetuneConfig, Finetuner, train_imitation
from expo_sdk.envs import make_expert, make_task
from expo_sdk.envs.pointmaze import generate_demonstrations

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=3000)
parser.add_argument("--pretrain-steps", type=int, default=3000)
parser.add_argument("--demo-episodes", type=int, default=30)
parser.add_argument("--eval-episodes", type=int, default=100)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", default="runs/example-gmm")
args = parser.parse_args()
torch.set_num_threads(1)  # small networks: one thread is fastest on a CPU
start = time.perf_counter()

# 1. Demonstrations (env units) from the slow, noisy scripted expert.
recording_env = make_task("pointmaze-umaze", max_episode_steps=300)
expert = make_expert("pointmaze-umaze", recording_env, speed=0.3, noise_std=0.3, seed=0)
demos = generate_demonstrations(recording_env, expert, num_episodes=args.demo_episodes, only_successes=True)

# 2. The Gaussian-mixture base, pretrained by imitation (its own NLL).
space = recording_env.action_space
torch.manual_seed(0)
base = GMMPolicy.for_dataset(demos["observations"], space.low, space.high, num_components=5)
train_imitation(base, demos, steps=args.pretrain_steps, lr=1e-3)

# 3. EXPO with the demo's CPU-sized settings (recipes/demo_pointmaze.yaml).
config = FinetuneConfig(
    seed=args.seed, beta=0.5, utd_ratio=2, batch_size=128, base_mode="frozen", cache_base_candidates=True,
    learning_starts=500, warmup_steps=1000, eval_every=2000, eval_episodes=args.eval_episodes,
    edit_head={"init_temperature": 0.01, "temperature_lr": 1e-3},
    critic={"ensemble_size": 4, "hidden_dim": 128, "tau": 0.01},
)
result = Finetuner(base, config).run(lambda: make_task("pointmaze-umaze", max_episode_steps=60),
                                     total_steps=args.steps, offline_data=demos, run_dir=args.out,
                                     task="pointmaze-umaze", progress=False)
print(f"base {result.base_success:.2f} -> EXPO {result.final_success:.2f} ({result.eval_episodes} episodes, "
      f"same seeds); fine-tuning {result.wall_s / 60:.1f} min, total {(time.perf_counter() - start) / 60:.1f} min")
