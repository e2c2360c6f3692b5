"""Fine-tune a LeRobot DiffusionPolicy (state-only) on the demo task with EXPO.

    make install-lerobot && .venv/bin/python examples/finetune_lerobot.py --steps 3000

The LeRobot policy is built and pretrained here from a small config (offline), wrapped by
`expo_sdk.adapters.lerobot.from_lerobot`, and fine-tuned with the demo's CPU-sized EXPO
settings; LeRobot's code is not modified. The 6-D PointMaze observation is split into
`observation.state` (position, velocity) and `observation.environment_state` (goal).

Measured on the 2-core dev machine (one other job running; docs/RESULTS.md):
`--steps 5000 --eval-every 2500` took 39 min in all; the base scored 0.18 over 100
episodes and EXPO 0.38 at 2,500 and 0.31 at 5,000 steps on the same episodes.
"""

import argparse
import time

import numpy as np
import torch

from expo_sdk import FinetuneConfig, Finetuner, train_imitation
from expo_sdk.adapters import lerobot as lerobot_adapter
from expo_sdk.envs import make_expert, make_task
from expo_sdk.envs.pointmaze import generate_demonstrations

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=3000)
parser.add_argument("--pretrain-steps", type=int, default=2000)
parser.add_argument("--demo-episodes", type=int, default=30)
parser.add_argument("--eval-episodes", type=int, default=100)
parser.add_argument("--out", default="runs/example-lerobot")
parser.add_argument("--eval-every", type=int, default=2000)
args = parser.parse_args()
torch.set_num_threads(1)
start = time.perf_counter()
lerobot_adapter._prepare_torchvision()
from lerobot.configs.types import FeatureType, PolicyFeature  # noqa: E402
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig  # noqa: E402
from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy  # noqa: E402

recording_env = make_task("pointmaze-umaze", max_episode_steps=300)
expert = make_expert("pointmaze-umaze", recording_env, speed=0.3, noise_std=0.3, seed=0)
demos = generate_demonstrations(recording_env, expert, num_episodes=args.demo_episodes, only_successes=True)
obs, act = demos["observations"], demos["actions"]


def stats(x):
    return {"min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(),
            "std": np.maximum(x.std(0), 1e-3).tolist()}


torch.manual_seed(0)
config = DiffusionConfig(
    input_features={"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(4,)),
                    "observation.environment_state": PolicyFeature(type=FeatureType.ENV, shape=(2,))},
    output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(2,))},
    n_obs_steps=1, horizon=8, n_action_steps=1, down_dims=(64, 128), kernel_size=3, n_groups=8,
    diffusion_step_embed_dim=32, num_train_timesteps=10, noise_scheduler_type="DDPM", device="cpu",
    push_to_hub=False)
space = recording_env.action_space
base = lerobot_adapter.from_lerobot(
    DiffusionPolicy(config), dataset_stats={"observation.state": stats(obs[:, :4]),
                                            "observation.environment_state": stats(obs[:, 4:]),
                                            "action": stats(act)},
    action_low=space.low.tolist(), action_high=space.high.tolist())
train_imitation(base, demos, steps=args.pretrain_steps, lr=1e-3)

finetune = FinetuneConfig(
    beta=0.5, utd_ratio=2, batch_size=128, base_mode="frozen", cache_base_candidates=True,
    learning_starts=500, warmup_steps=1000, eval_every=args.eval_every, eval_episodes=args.eval_episodes,
    edit_head={"init_temperature": 0.01, "temperature_lr": 1e-3},
    critic={"ensemble_size": 4, "hidden_dim": 128, "tau": 0.01})
result = Finetuner(base, finetune).run(lambda: make_task("pointmaze-umaze", max_episode_steps=60),
                                       total_steps=args.steps, offline_data=demos, run_dir=args.out,
                                       task="pointmaze-umaze", progress=False)
print(f"LeRobot DiffusionPolicy: base {result.base_success:.2f} -> EXPO {result.final_success:.2f} "
      f"({result.eval_episodes} episodes, same seeds); fine-tuning {result.wall_s / 60:.1f} min, "
      f"total {(time.perf_counter() - start) / 60:.1f} min")
