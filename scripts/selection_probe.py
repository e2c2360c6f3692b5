"""Does on-the-fly selection by an untrained critic hurt a recipe's base? A check before fine-tuning.

    python scripts/selection_probe.py recipes/pusht.yaml --episodes 30 [--set KEY=VALUE ...]

Evaluates, on the same episode seeds and before any learning (critic and edit head at
their initialization): the base alone (one sample), a uniformly random pick among its N
samples, the argmax of the critic among the N base samples, and the OTF policy as the
recipe configures it (deterministic edits, as in evaluation). If the argmax rows fall far
below the random pick, the critic's arbitrary initial slope is choosing tail samples:
use soft selection (`finetune.selector.mode: soft`) and a beta at the scale of the base's
own spread (printed), as the PushT and Can recipes do (docs/RESULTS.md).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from expo_sdk.evaluation import evaluate
from expo_sdk.finetuner import Finetuner
from expo_sdk.recipe import (
    Recipe,
    load_or_generate_demos,
    load_or_pretrain_base,
    task_factory,
)
from expo_sdk.selector import OnTheFlySelector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1000, help="first episode seed")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = Recipe.load(args.recipe, args.overrides)
    demos = load_or_generate_demos(recipe)
    base = load_or_pretrain_base(recipe, demos, progress=False)
    tuner = Finetuner(base, recipe.finetune)
    env_fn = task_factory(recipe.task)
    n = tuner.selector.num_samples

    def obs_tensor(obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(obs, dtype=torch.float32, device=tuner.device)

    def random_pick(obs: np.ndarray) -> np.ndarray:
        samples = tuner.base_samples(obs_tensor(obs), n)
        index = torch.randint(0, n, (samples.shape[0],), generator=tuner.generator, device=samples.device)
        return tuner.to_env_chunk(samples[torch.arange(samples.shape[0]), index])

    # The recipe's scoring rule (ensemble mean or min), always with argmax choice.
    argmax = OnTheFlySelector(n, mode="argmax", score=recipe.finetune.selector.score)

    def critic_argmax(obs: np.ndarray) -> np.ndarray:
        obs_t = obs_tensor(obs)
        samples = tuner.base_samples(obs_t, n)
        action, _ = argmax.select(tuner.normalizer.normalize_obs(obs_t), samples, tuner.target.target)
        return tuner.to_env_chunk(action)

    probe_obs = obs_tensor(demos["observations"][:: max(1, len(demos["observations"]) // 256)][:256])
    spread = tuner.base_samples(probe_obs, n).std(1).mean().item()
    print(f"{recipe.task.name}: base samples' spread (std over N={n}, canonical [-1, 1] units): "
          f"{spread:.4f}; beta = {recipe.finetune.edit_head.beta}")
    for name, act in [("base alone (one sample)", tuner.act_base), (f"random pick of {n} base samples", random_pick),
                      (f"untrained critic's argmax of {n} base samples", critic_argmax),
                      (f"untrained OTF policy ({recipe.finetune.selector.mode})", tuner.act)]:
        tuner.generator.manual_seed(0)
        result = evaluate(act, env_fn, args.episodes, args.seed, num_envs=recipe.finetune.eval_num_envs)
        print(f"  {name:48s} success {result.success_rate:.2f}  mean length {np.mean(result.lengths):.0f}",
              flush=True)


if __name__ == "__main__":
    main()
