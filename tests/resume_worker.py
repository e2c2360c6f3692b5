"""A toy fine-tuning run for the resume tests: `python resume_worker.py RUN_DIR [--resume]`."""

import sys

import torch
from toy_policy import BiasedMixturePolicy

from expo_sdk import FinetuneConfig, Finetuner
from expo_sdk.envs.toy import ReachGoalEnv

CONFIG = dict(batch_size=32, utd_ratio=2, critic={"ensemble_size": 3, "hidden_dim": 32},
              edit_head={"hidden_dim": 32, "num_layers": 2}, num_samples=4, eval_episodes=5, eval_every=200,
              log_every=50, learning_starts=50, base_mode="frozen", cache_base_candidates=True,
              checkpoint_every=100, seed=7)
TOTAL_STEPS = 800

if __name__ == "__main__":
    torch.set_num_threads(1)
    tuner = Finetuner(BiasedMixturePolicy(), FinetuneConfig(**CONFIG))
    tuner.run(ReachGoalEnv, TOTAL_STEPS, run_dir=sys.argv[1], resume="--resume" in sys.argv, progress=False)
