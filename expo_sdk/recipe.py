"""Recipes: one YAML file = task + demonstrations + base policy + fine-tuning config.

`run_recipe` is what `expo finetune RECIPE.yaml` and `expo demo` execute:

    demos  = generate (or load from the cache) scripted-expert demonstrations
    base   = pretrain the DDPM base by imitation on them (cached too)
    result = Finetuner(base, recipe.finetune).run(task, total_steps, offline_data=demos)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import Field, model_validator

from .config import FinetuneConfig, StrictConfig, apply_overrides, load_yaml
from .distributed import accelerator_from_environment, is_main_process
from .finetuner import Finetuner, FinetuneResult
from .replay import OfflineDataset


class TaskConfig(StrictConfig):
    name: str = Field(description="a registered task, see expo_sdk.envs.TASKS")
    max_episode_steps: int | None = Field(None, ge=1)


class DemoSource(StrictConfig):
    """One demonstrator quality within a mixed-quality demo set."""

    episodes: int = Field(ge=1)
    speed: float = Field(1.0, gt=0, le=1, description="expert action scale (< 1: slow demonstrator)")
    noise_std: float = Field(0.0, ge=0, description="Gaussian action noise of the expert")


class DemoConfig(StrictConfig):
    """Scripted-expert demonstrations (the expert's quality knobs make them imperfect)."""

    episodes: int = Field(20, ge=1)
    quality: Literal["proficient", "okay", "worse", "mixed"] | None = Field(
        None, description="a preset operator (expo_sdk.demonstrations); None: use speed and noise_std")
    speed: float = Field(1.0, gt=0, le=1, description="expert action scale (< 1: slow demonstrator)")
    noise_std: float = Field(0.0, ge=0, description="Gaussian action noise of the expert")
    mixture: list[DemoSource] | None = Field(
        None, description="several demonstrator qualities in one set (like robomimic's multi-human "
                          "data); replaces episodes/speed/noise_std")
    max_episode_steps: int | None = Field(None, ge=1, description="time limit while recording demos")
    only_successes: bool = True
    seed: int = 0

    @model_validator(mode="after")
    def _one_way_to_say_quality(self) -> "DemoConfig":
        if self.mixture and self.quality is not None:
            raise ValueError("demos.mixture and demos.quality both say who demonstrates; give one")
        return self

    def sources(self) -> list[DemoSource]:
        """The demonstrator qualities to record, in order."""
        if self.mixture:
            return list(self.mixture)
        if self.quality is not None:
            from .demonstrations import quality_sources

            return [DemoSource(episodes=n, speed=speed, noise_std=noise)
                    for n, speed, noise in quality_sources(self.quality, self.episodes)]
        return [DemoSource(episodes=self.episodes, speed=self.speed, noise_std=self.noise_std)]


class BaseConfig(StrictConfig):
    """The base policy: a built-in generative policy pretrained by imitation on the demos."""

    adapter: Literal["ddpm", "flow_matching", "consistency"] = "ddpm"
    hidden_dim: int = Field(256, ge=1)
    num_blocks: int = Field(3, ge=1)
    num_diffusion_steps: int = Field(10, ge=1, description="DDPM's T (ddpm only)")
    horizon: int = Field(1, ge=1, description="action chunk length H: the env runs H actions per decision")
    adapter_kwargs: dict = Field(default_factory=dict, description="extra constructor arguments of the adapter")
    pretrain_steps: int = Field(20_000, ge=0)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(3e-4, gt=0)
    seed: int = 0


class CollectorsConfig(StrictConfig):
    """Collect on Ray actors instead of in the learner's process (`RayCollectors`; needs the
    `distributed` extra). Under torchrun, every learner process gets its own actors."""

    num_collectors: int = Field(2, ge=1, description="actors per learner process, one CPU each")
    transitions_per_call: int = Field(64, ge=1, description="transitions an actor gathers before sending them")
    sync_every: int = Field(256, ge=1, description="env steps between weight broadcasts to the actors")
    address: str | None = Field(
        None, description="the Ray cluster to join (ray.init's address); None: $RAY_ADDRESS, else the "
                          "cluster `ray start` started on this machine, else a new local one")


class Recipe(StrictConfig):
    description: str = ""
    method: str = "expo"
    task: TaskConfig
    demos: DemoConfig = DemoConfig()
    base: BaseConfig = BaseConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    collectors: CollectorsConfig | None = Field(None, description="remote collection on Ray actors; none: local envs")
    total_steps: int = Field(100_000, ge=1)

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None) -> "Recipe":
        data = apply_overrides(load_yaml(path), overrides or [])
        try:
            return cls.model_validate(data)
        except ValueError as exc:
            raise ValueError(f"invalid recipe {path}:\n{exc}") from exc


def cache_dir() -> Path:
    """Where generated demos and pretrained bases are cached ($EXPO_SDK_CACHE or XDG)."""
    root = os.environ.get("EXPO_SDK_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "expo_sdk"
    return Path(root)


def _key(*parts: StrictConfig | dict) -> str:
    blob = json.dumps([p.model_dump() if isinstance(p, StrictConfig) else p for p in parts], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def task_factory(task: TaskConfig, max_episode_steps: int | None = None):
    """A zero-argument env factory for the recipe's task."""
    from .envs import make_task

    steps = max_episode_steps or task.max_episode_steps
    kwargs = {"max_episode_steps": steps} if steps else {}
    return partial(make_task, task.name, **kwargs)


def load_or_generate_demos(recipe: Recipe) -> dict[str, np.ndarray]:
    """Scripted-expert demonstrations, generated once per (task, demo settings) and cached."""
    from .demonstrations import record_demos

    path = cache_dir() / "demos" / f"{recipe.task.name}-{_key(recipe.task, recipe.demos)}.npz"
    if path.is_file():
        return OfflineDataset.load_npz(path).arrays  # a corrupt cache file is a clear error
    demos = recipe.demos
    sources = [(source.episodes, source.speed, source.noise_std) for source in demos.sources()]
    data, _ = record_demos(recipe.task.name, sources, demos.seed, demos.only_successes,
                           demos.max_episode_steps or recipe.task.max_episode_steps)
    if len(data["observations"]) == 0:
        raise RuntimeError(f"the scripted expert produced no successful demos for {recipe.task.name}")
    OfflineDataset(data).save_npz(path)
    return data


def load_or_pretrain_base(recipe: Recipe, demos: dict[str, np.ndarray], progress: bool = True):
    """The DDPM base pretrained by imitation on `demos` (cached by settings)."""
    import torch

    from .loading import available_adapters, load_policy
    from .pretrain import train_imitation

    path = cache_dir() / "bases" / f"{recipe.task.name}-{_key(recipe.task, recipe.demos, recipe.base)}"
    if (path / "model.safetensors").is_file():
        # Loaded through load_policy so the base carries its identity (path + sha256),
        # which the edit head records.
        return load_policy(path, adapter=recipe.base.adapter)
    b = recipe.base
    env = task_factory(recipe.task)()
    low, high = env.action_space.low, env.action_space.high
    env.close()
    torch.manual_seed(b.seed)
    kwargs = {"hidden_dim": b.hidden_dim, "num_blocks": b.num_blocks, "horizon": b.horizon, **b.adapter_kwargs}
    if b.adapter == "ddpm":
        kwargs["num_diffusion_steps"] = b.num_diffusion_steps
    policy_cls = available_adapters()[b.adapter].load()
    policy = policy_cls.for_dataset(demos["observations"], low, high, **kwargs)
    train_imitation(policy, demos, steps=b.pretrain_steps, batch_size=b.batch_size, lr=b.lr,
                    seed=b.seed, progress=progress)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    policy.save_pretrained(str(tmp))
    if path.exists():  # another process finished first; keep theirs
        shutil.rmtree(tmp)
    else:
        tmp.rename(path)
    return load_policy(path, adapter=recipe.base.adapter)


def run_recipe(recipe: Recipe, out_dir: str | Path, progress: bool = True, resume: bool = False,
               callbacks: list | None = None) -> FinetuneResult:
    """Demos -> pretrained base -> EXPO fine-tuning; writes the run directory.

    With `resume`, continues from the run directory's last checkpoint (if any).
    `callbacks` go to `Finetuner.run`.
    """
    out_dir = Path(out_dir)
    collectors = _collectors(recipe.collectors)  # before demos and pretraining: Ray may be missing
    # Under `torchrun` / `accelerate launch` with several processes: learn data-parallel.
    accelerator = accelerator_from_environment()
    if is_main_process(accelerator):
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe.model_dump(), sort_keys=False))
    if recipe.finetune.num_threads:
        import torch

        torch.set_num_threads(recipe.finetune.num_threads)
    # The main process generates and pretrains into the cache; the others then read it.
    with accelerator.main_process_first() if accelerator is not None else contextlib.nullcontext():
        demos = load_or_generate_demos(recipe)
        base = load_or_pretrain_base(recipe, demos, progress=progress and is_main_process(accelerator))
    tuner = Finetuner(base, recipe.finetune, accelerator=accelerator)
    env_fn = task_factory(recipe.task)
    try:
        return tuner.run(env_fn, recipe.total_steps, offline_data=demos, run_dir=out_dir,
                         task=recipe.task.name, progress=progress, resume=resume, callbacks=callbacks,
                         collectors=collectors)
    finally:
        if accelerator is not None:
            # Tear the process group down before exiting: a process that exits with gloo's
            # connections open can abort ("terminate called without an active exception").
            accelerator.end_training()


def _collectors(config: CollectorsConfig | None):
    if config is None:
        return None
    from .ray_collection import RayCollectors

    try:
        return RayCollectors(config.num_collectors, config.transitions_per_call, config.sync_every,
                             ray_init={"address": config.address} if config.address else None)
    except ImportError as exc:  # no Ray: say how to install it, or how to go without
        raise ImportError("the recipe's `collectors` need Ray: pip install 'expo-sdk[distributed]' "
                          "(or drop them: --set collectors=null)") from exc


def describe(result: FinetuneResult) -> str:
    """The two-line report printed at the end of a run."""
    n = result.eval_episodes
    return (f"base policy alone : {result.base_success:.2f} success over {n} episodes\n"
            f"EXPO fine-tuned   : {result.final_success:.2f} success over {n} episodes "
            f"(same seeds; {result.env_steps} env steps, {result.wall_s / 60:.1f} min)")

