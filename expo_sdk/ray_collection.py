"""Collection on Ray actors: K collectors act and step envs while the learner learns.

    from expo_sdk.ray_collection import RayCollectors
    tuner.run(make_env, total_steps, collectors=RayCollectors(num_collectors=4))

Each collector is a Ray actor holding a copy of the acting networks (the sampling base,
the edit head, the target critic) and `config.num_envs` envs (a gymnasium vector env
when > 1). It runs the same collection code as `Finetuner.run` (OTF acting, warm-up,
env-error recovery, cached base samples at s') and returns batches of transitions; the
learner adds each batch to its replay as it arrives and gives it `utd_ratio` critic
updates per transition, as with local envs. Every `sync_every` env steps the learner
puts its acting weights in Ray's object store once and every collector loads them
before its next batch (its current batch finishes with the weights it started with).
How old the acting weights were is logged as `collect/weights_lag` (learner env steps).

Checkpoints (`checkpoint_every`) hold the learner's state; a resumed run starts new
actors, from the restored weights, playing new episodes. Transitions still in flight when
the learner stopped were never stored, so nothing stored is lost.

With a data-parallel learner (torchrun), every process passes its own `RayCollectors` and
gets its own K actors; start the Ray cluster first (`ray start --head`), so that every
process joins it (docs/scaling.md).

Needs the `distributed` extra (`pip install expo-sdk[distributed]`, Ray). `ray.init()`
is called with Ray's defaults (a local cluster) unless Ray is already initialized (for
a cluster: `ray.init(address=...)` before `run`).
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch


@dataclass
class TransitionBatch:
    """What a collector returns: numpy arrays with a leading transition dim, plus the
    outcomes of episodes that ended while collecting them."""

    arrays: dict[str, np.ndarray]
    env_steps: int
    episode_successes: list[bool]
    chose_edited: list[bool]
    env_errors: int
    weights_step: int  # the learner's env step when the weights that acted were sent

    def __len__(self) -> int:
        return len(self.arrays["reward"])


class _Collector:
    """The actor's body (wrapped with `ray.remote` by `RayCollectors.start`)."""

    def __init__(self, base, config: dict, make_env: Callable, seed: int, transitions_per_call: int) -> None:
        from .config import FinetuneConfig
        from .finetuner import Finetuner, _LoopState

        torch.set_num_threads(1)  # one core per actor; Ray schedules actors on cores
        config = FinetuneConfig.model_validate({**config, "seed": seed, "device": "cpu", "num_threads": 1,
                                                "cuda_graphs": False})  # the learner's concern
        self.tuner = tuner = Finetuner(base, config)
        # room for one call's transitions (a vector step may overshoot by num_envs - 1)
        tuner._prepare_buffers(transitions_per_call, None, overshoot=config.num_envs)
        self.env = tuner._training_env(make_env)
        self.loop = _LoopState(obs_t=None, base_at_obs=None, base_success=float("nan"),
                               chose_edited=deque(), next_log=0, next_eval=0, next_checkpoint=0,
                               recent_success=deque(), episode_success=[False] * config.num_envs)
        self.loop.obs_t, self.loop.base_at_obs = tuner._start_collection(self.env)
        self.transitions_per_call, self.weights_step = transitions_per_call, 0

    def set_weights(self, weights: dict[str, dict[str, torch.Tensor]], env_step: int) -> None:
        for name, module in self.tuner._acting_modules().items():
            module.load_state_dict(weights[name])
        self.tuner.env_step = env_step  # the learner's clock decides warm-up vs OTF acting
        self.weights_step = env_step

    def collect(self) -> TransitionBatch:
        tuner, buffer = self.tuner, self.tuner.online
        buffer.clear()
        start_step = tuner.env_step
        while len(buffer) < self.transitions_per_call:
            tuner._collect(self.env, self.loop)
        arrays = {k: v.numpy().copy() for k, v in buffer.state_tensors().items()}
        batch = TransitionBatch(arrays, tuner.env_step - start_step, list(self.loop.recent_success),
                                list(self.loop.chose_edited), self.env.errors, self.weights_step)
        self.loop.recent_success.clear()
        self.loop.chose_edited.clear()
        return batch

    def close(self) -> None:
        self.env.close()


class RayCollectors:
    """K Ray actors collecting for one learner (pass to `Finetuner.run(collectors=...)`).

    Args:
        num_collectors: actors, each with `config.num_envs` envs and one CPU.
        transitions_per_call: transitions an actor gathers before sending them.
        sync_every: env steps between weight broadcasts to the actors.
        ray_init: keyword arguments for `ray.init` when Ray is not initialized yet.
    """

    def __init__(self, num_collectors: int = 2, transitions_per_call: int = 64, sync_every: int = 256,
                 ray_init: dict[str, Any] | None = None) -> None:
        if num_collectors < 1 or transitions_per_call < 1 or sync_every < 1:
            raise ValueError("num_collectors, transitions_per_call and sync_every must be >= 1")
        try:  # here, not in `start`: a run without Ray fails before its evaluations and restores
            import ray  # noqa: F401
        except ImportError as exc:
            raise ImportError("RayCollectors needs Ray: pip install 'expo-sdk[distributed]'") from exc
        self.num_collectors, self.transitions_per_call = num_collectors, transitions_per_call
        self.sync_every, self.ray_init = sync_every, ray_init or {}
        self.actors: list = []
        self._pending: dict = {}
        self._errors_by_actor: dict[int, int] = {}
        self.errors = 0  # env errors over all actors (and, after a resume, before it)
        self._errors_before_start = 0
        self.next_sync = 0

    def start(self, tuner, make_env: Callable) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(**{"include_dashboard": False, "log_to_driver": False, **self.ray_init})
        actor_cls = ray.remote(num_cpus=1)(_Collector)
        config = tuner.config.model_dump()
        base = copy.deepcopy(tuner.sampling_base).cpu()  # actors act on CPU whatever the learner uses
        # Seeds from (run seed, learner step[, learner process], actor): a resumed run's actors
        # play new episodes, and each data-parallel process's actors their own.
        entropy = [tuner.config.seed, tuner.env_step] + ([tuner.rank] if tuner.world_size > 1 else [])
        seeds = np.random.SeedSequence(entropy).generate_state(self.num_collectors)
        self._errors_before_start = self.errors  # a resumed run counts on from its checkpoint
        self.actors = [actor_cls.remote(base, config, make_env, int(seed), self.transitions_per_call)
                       for seed in seeds]
        self.push_weights(tuner)
        self._pending = {actor.collect.remote(): actor for actor in self.actors}

    def push_weights(self, tuner) -> None:
        """Put the learner's acting weights in the object store once; every actor loads them."""
        import ray

        weights = ray.put({name: {k: v.detach().cpu() for k, v in module.state_dict().items()}
                           for name, module in tuner._acting_modules().items()})
        for actor in self.actors:
            actor.set_weights.remote(weights, tuner.env_step)
        self.next_sync = tuner.env_step + self.sync_every

    def next_batch(self) -> TransitionBatch:
        """The first batch any actor finishes; that actor starts its next one at once."""
        import ray

        ready, _ = ray.wait(list(self._pending), num_returns=1)
        actor = self._pending.pop(ready[0])
        batch: TransitionBatch = ray.get(ready[0])
        self._pending[actor.collect.remote()] = actor
        self._errors_by_actor[id(actor)] = batch.env_errors
        self.errors = self._errors_before_start + sum(self._errors_by_actor.values())
        return batch

    def close(self) -> None:
        import ray

        # Close the actors' envs first: async vector envs have subprocesses a kill would orphan.
        ray.get([actor.close.remote() for actor in self.actors], timeout=60)
        for actor in self.actors:
            ray.kill(actor)
        self.actors, self._pending = [], {}
