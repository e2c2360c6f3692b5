"""Fine-tune your own pretrained policy with EXPO, from Python (the `expo demo` flow, spelled out).

    python examples/finetune_pointmaze.py --steps 10000

1. record demonstrations with a slow, noisy scripted expert;
2. pretrain a DDPM policy on them by imitation (stand-in for *your* pretrained policy);
3. fine-tune it with EXPO and compare base vs fine-tuned success on the same episodes.
"""

import argparse

import torch

from expo_sdk import FinetuneConfig, Finetuner, train_imitation
from expo_sdk.adapters import DDPMPolicy
from expo_sdk.envs import make_expert, make_task
from expo_sdk.envs.pointmaze import generate_demonstrations

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=10_000)
parser.add_argument("--pretrain-steps", type=int, default=3000)
parser.add_argument("--demo-episodes", type=int, default=30)
parser.add_argument("--eval-episodes", type=int, default=100)
parser.add_argument("--out", default="runs/example-pointmaze")
args = parser.parse_args()
torch.set_num_threads(1)  # small networks: one thread is fastest on a CPU

# 1. Demonstrations (env units), recorded with a generous time limit.
recording_env = make_task("pointmaze-umaze", max_episode_steps=300)
expert = make_expert("pointmaze-umaze", recording_env, speed=0.3, noise_std=0.3, seed=0)
demos = generate_demonstrations(recording_env, expert, num_episodes=args.demo_episodes, only_successes=True)

# 2. A base policy. Any object with `spec` and `sample(obs, num_samples, generator)` works.
space = recording_env.action_space
base = DDPMPolicy.for_dataset(demos["observations"], space.low, space.high, hidden_dim=128, num_blocks=2)
train_imitation(base, demos, steps=args.pretrain_steps, lr=1e-3, progress=True)

# 3. EXPO, CPU-sized (see recipes/demo_pointmaze.yaml for what differs from the paper).
config = FinetuneConfig(
    beta=0.5, utd_ratio=2, batch_size=128, base_mode="frozen", cache_base_candidates=True,
    learning_starts=500, warmup_steps=1000, eval_every=2000, eval_episodes=args.eval_episodes,
    edit_head={"init_temperature": 0.01, "temperature_lr": 1e-3},
    critic={"ensemble_size": 4, "hidden_dim": 128, "tau": 0.01},
)
tuner = Finetuner(base, config)
result = tuner.run(lambda: make_task("pointmaze-umaze", max_episode_steps=60), total_steps=args.steps,
                   offline_data=demos, run_dir=args.out, task="pointmaze-umaze")
print(f"base {result.base_success:.2f} -> EXPO {result.final_success:.2f} "
      f"({result.eval_episodes} episodes, same seeds); run directory: {args.out}")
