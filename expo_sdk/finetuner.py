"""`Finetuner`: EXPO (Algorithm 1 of the paper), one env step at a time.

    for each env step:
        a* = OTF(s)            N base samples + N edits, argmax of the target critic
        s', r = env.step(a*)   store (s, a*, r, s', terminated)
        G times:               minibatch -> TD target with OTF(s') -> critic step -> Polyak
        on the last minibatch: edit-head step, temperature step, base imitation step

The base policy is never optimized for value: it is frozen, or trained with its own
imitation loss on the same mixed batches (and sampled through an EMA copy).
"""

from __future__ import annotations

import copy
import functools
import json
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import yaml

from . import distributed
from .allocator import retain_freed_memory
from .callbacks import Callback, CallbackList, MetricsLogger, ProgressBar
from .checkpoint import (find_checkpoint, load_checkpoint_shard, optimizer_from_flat, optimizer_to_flat,
                         save_checkpoint, save_sharded_checkpoint)
from .chunks import chunk_transitions
from .config import FinetuneConfig
from .critic import CriticEnsemble, TargetCritic
from .cuda_graphs import GraphedFunction
from .edit_head import EditHead
from .evaluation import EvalResult, evaluate
from .finetuned import FinetunedPolicy
from .normalization import Normalizer
from .plotting import plot_learning_curve
from .policy import check_policy, supports_imitation
from .replay import Batch, MixedSampler, OfflineDataset, TransitionBuffer
from .rollout import TrainingEnv, VectorStep, VectorTrainingEnv, check_env
from .selector import OnTheFlySelector
from .temperature import Temperature, resolve_target_entropy

# Eval episodes are seeded from here on, far from training seeds, identically for the
# base and the fine-tuned policy.
EVAL_SEED_OFFSET = 1_000_000
# Data-parallel process r collects with seed + r * stride (envs and sampling noise).
DATA_PARALLEL_SEED_STRIDE = 10_007


@dataclass
class FinetuneResult:
    """What `Finetuner.run` returns (also written to `<run_dir>/summary.json`)."""

    base_success: float
    final_success: float
    final_base_success: float
    eval_episodes: int
    env_steps: int
    wall_s: float
    seed: int
    run_dir: str | None
    task: str = ""
    method: str = "expo"
    history: list[dict] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.pop("history")
        return d


class Finetuner:
    """Fine-tune `base` with EXPO.

    Args:
        base: a `BasePolicy` (see `expo_sdk.policy`).
        config: `FinetuneConfig`; defaults are the paper's hyperparameters.
        normalizer: observation statistics and action bounds shared by edit head and
            critic. Defaults to `base.normalizer` when the base has one, else identity
            observations with the spec's action bounds.
        accelerator: an `accelerate.Accelerator` to learn data-parallel across its
            processes (see `expo_sdk.distributed`); its device replaces `config.device`.
    """

    def __init__(
        self,
        base,
        config: FinetuneConfig | dict | None = None,
        normalizer: Normalizer | None = None,
        accelerator=None,
    ) -> None:
        self.config = cfg = FinetuneConfig.model_validate(config or {}) if not isinstance(
            config, FinetuneConfig) else config
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.accelerator = accelerator
        self.rank, self.world_size = distributed.world(accelerator)
        self.device = accelerator.device if accelerator is not None else _resolve_device(cfg.device)
        if cfg.retain_freed_memory and self.device.type == "cpu":
            retain_freed_memory()
        if cfg.cuda_graphs and (self.device.type != "cuda" or self.world_size > 1):
            raise ValueError(
                f"cuda_graphs=True needs one process on a CUDA device; this run has device "
                f"{self.device} and {self.world_size} process(es): set cuda_graphs: false")
        self.sampling_dtype = torch.bfloat16 if cfg.base_sampling_dtype == "bfloat16" else None
        if self.sampling_dtype is not None and self.device.type == "cpu" and not cpu_has_bf16_units():
            warnings.warn(
                "base_sampling_dtype='bfloat16' on a CPU without bf16 units (no AMX or AVX512-BF16): "
                "bf16 sampling was 0.15x float32 on AMD Zen 3 (benchmarks/bf16_sampling.py); use 'float32'",
                stacklevel=2)
        torch.manual_seed(cfg.seed)  # the same initial networks in every process
        # One generator on the compute device drives every random draw of the algorithm
        # (base noise, edit noise, minibatch indices, REDQ subsets): reproducible runs.
        # Data-parallel processes draw differently (and collect from differently seeded envs).
        self.collection_seed = cfg.seed + DATA_PARALLEL_SEED_STRIDE * self.rank
        self.generator = torch.Generator(device=self.device).manual_seed(self.collection_seed)
        self.base = base.to(self.device)
        self.spec = spec = check_policy(self.base)
        if isinstance(spec.obs_shape, dict) or spec.n_obs_steps != 1:
            raise NotImplementedError(
                "Finetuner currently supports flat observations with n_obs_steps=1; "
                "flatten dict observations (gymnasium.wrappers.FlattenObservation)"
            )
        self.normalizer = (normalizer or getattr(base, "normalizer", None) or Normalizer(
            spec.action_low, spec.action_high, obs_dim=spec.flat_obs_dim)).to(self.device)
        obs_dim, act_dim = spec.flat_obs_dim, spec.chunk_dim

        # Base: frozen, or imitation-updated and sampled through an EMA copy.
        if cfg.base_mode == "imitation":
            if not supports_imitation(base):
                raise ValueError(
                    f"base_mode='imitation' needs {type(base).__name__}.imitation_loss(obs, "
                    "actions); set base_mode='frozen' or implement the loss"
                )
            self.base_optimizer = self._adam(self.base.parameters(), cfg.base_lr)
            self.sampling_base = copy.deepcopy(self.base).requires_grad_(False).eval()
        else:
            self.base_optimizer = None
            self.sampling_base = self.base.requires_grad_(False).eval()
        if cfg.compile_base_sampling:
            if not hasattr(self.sampling_base, "compile_sampling"):
                raise ValueError(
                    f"compile_base_sampling needs a base with a compilable sampler (a `compile_sampling` "
                    f"switch, as DDPMPolicy has); {type(base).__name__} has none: set compile_base_sampling: false")
            self.sampling_base.compile_sampling = True

        eh = cfg.edit_head
        self.edit_head = EditHead(
            obs_dim, act_dim, beta=eh.beta, hidden_dim=eh.hidden_dim, num_layers=eh.num_layers,
            dropout=eh.dropout, layer_norm=eh.layer_norm, zero_init_mean=eh.zero_init_mean,
            normalizer=self.normalizer.to_dict(), base_identity=getattr(base, "identity", None),
            selector=cfg.selector.model_dump(),
        ).to(self.device)
        self.critic = CriticEnsemble(
            obs_dim, act_dim, cfg.critic.ensemble_size, cfg.critic.hidden_dim, cfg.critic.num_layers
        ).to(self.device)
        self.target = TargetCritic(self.critic, cfg.critic.num_min_q)
        # compile_critic compiles the TD targets' scoring: one static block shape per run (on
        # CPU the states are scored in fixed blocks, on CUDA [B, 2N] at once). Acting scores
        # other batch sizes, each of which compiles again: that is compile_acting's choice.
        self._target_score = None
        if cfg.compile_critic:
            self._target_score = functools.partial(
                self.target.target.score, score_block=torch.compile(self.target.target._score_block, dynamic=False))
        target_entropy = resolve_target_entropy(act_dim, eh.beta, eh.target_entropy,
                                                eh.adjust_target_entropy)
        self.temperature = Temperature(eh.init_temperature, target_entropy).to(self.device)
        self.selector = OnTheFlySelector(**cfg.selector.model_dump())
        # Acting's edits and scores as one graph: at batch 1 these are ~40 small ops whose
        # per-op overhead is most of their time on CPU (one compile per acting batch size).
        self._acting_scorer = torch.compile(self.selector.candidates_and_scores, dynamic=False) \
            if cfg.compile_acting else None
        entropy_bonus = self.selector.max_entropy_bonus()
        if entropy_bonus >= 1.0 - cfg.gamma:
            warnings.warn(
                f"soft selection backs up an entropy bonus of up to {entropy_bonus:.3g} "
                f"per step (selector.entropy_coef x log {self.selector.num_candidates}), at least 1 - gamma = "
                f"{1.0 - cfg.gamma:.3g}: on a task whose 0/1 reward ends the episode on success, never "
                "succeeding is then worth more than succeeding. Lower selector.entropy_coef (0 backs up "
                "the expected value only) unless your reward makes this harmless", stacklevel=2)

        self.critic_optimizer = self._adam(self.critic.parameters(), cfg.critic.lr)
        self.edit_optimizer = self._adam(self.edit_head.parameters(), eh.lr)
        self.temperature_optimizer = self._adam(self.temperature.parameters(), eh.temperature_lr)
        self._graphed_update = self._graphed_acting = self._graphed_base_samples = None
        if cfg.cuda_graphs:  # see expo_sdk.cuda_graphs
            self._graphed_update = GraphedFunction(self._update_step, [self.generator], warmup_calls=3)
            self._graphed_acting = {deterministic: GraphedFunction(
                functools.partial(self._select_action, deterministic=deterministic), [self.generator])
                for deterministic in (False, True)}
            self._graphed_base_samples = GraphedFunction(
                lambda obs: self.base_samples(obs, self._samples_per_state()), [self.generator])

        if self.world_size > 1:  # identical starting weights, whatever each process built
            distributed.broadcast_modules([self.edit_head, self.critic, self.target.target, self.temperature,
                                           *([self.base, self.sampling_base] if self.base_optimizer else [])])

        self.online: TransitionBuffer | None = None
        self.offline: TransitionBuffer | None = None
        self.sampler: MixedSampler | None = None
        self.env_step = 0
        self.history: list[dict] = []

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def base_samples(self, obs: torch.Tensor, num_samples: int) -> torch.Tensor:
        """obs [B, D] env units -> canonical base samples [B, N, H*A] (from the EMA copy)."""
        if self.sampling_dtype is None:
            samples = self.sampling_base.sample(obs, num_samples, generator=self.generator)
        else:  # mixed precision: matmuls in bf16, reductions and the sampler's arithmetic in fp32
            # (no cast cache inside a CUDA graph: it would hold tensors from the capture)
            with torch.autocast(self.device.type, dtype=self.sampling_dtype, cache_enabled=not self.config.cuda_graphs):
                samples = self.sampling_base.sample(obs, num_samples, generator=self.generator)
        # float32 whatever the base computes in (a float64 or half-precision policy works too)
        return samples.reshape(obs.shape[0], num_samples, -1).float()

    def _base_samples_in_calls(self, obs: torch.Tensor, num_samples: int, states_per_call: int = 1024) -> torch.Tensor:
        """`base_samples` for many states, in calls of at most `states_per_call`: bounds any
        adapter's activation memory (TD targets, cache insertion and refresh)."""
        return torch.cat([self.base_samples(chunk, num_samples) for chunk in obs.split(states_per_call)])

    @torch.no_grad()
    def select_action(
        self, obs: torch.Tensor, base_actions: torch.Tensor | None = None, deterministic: bool = False,
        return_index: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The OTF policy: obs [B, D] -> canonical action chunk [B, H*A].

        Candidates are scored by the target critic, as in Algorithm 1. With
        `return_index`, also the chosen candidate's index [B] (>= N: an edited sample).
        """
        if self._graphed_acting is not None:
            graphed = self._graphed_acting[deterministic]
            action, index = graphed(obs) if base_actions is None else graphed(obs, base_actions)
        else:
            action, index = self._select_action(obs, base_actions, deterministic)
        return (action, index) if return_index else action

    @torch.no_grad()
    def _select_action(self, obs: torch.Tensor, base_actions: torch.Tensor | None = None,
                       deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if base_actions is None:
            base_actions = self.base_samples(obs, self.selector.num_samples)
        base_actions = base_actions[:, :self.selector.num_samples]  # K >= N drawn for the cache: N act
        return self.selector.act(self.normalizer.normalize_obs(obs), base_actions, self.edit_head,
                                 self.target.target, self.generator, deterministic, scorer=self._acting_scorer)

    def _acting_base_samples(self, obs: torch.Tensor) -> torch.Tensor:
        """Base samples at collected states, for acting there and for the cache [B, K, HA]."""
        if self._graphed_base_samples is not None:
            return self._graphed_base_samples(obs)
        return self.base_samples(obs, self._samples_per_state())

    def to_env_chunk(self, canonical: torch.Tensor) -> np.ndarray:
        """Canonical [B, H*A] -> env-unit chunks [B, H, A] (numpy)."""
        chunk = canonical.reshape(canonical.shape[0], self.spec.horizon, self.spec.action_dim)
        return self.normalizer.action_to_env(chunk).cpu().numpy()

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Evaluation policy (base + edit head + selector): obs [B, D] -> env chunks [B, H, A]."""
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        return self.to_env_chunk(self.select_action(obs_t, deterministic=True))

    def act_base(self, obs: np.ndarray) -> np.ndarray:
        """The base policy alone (one sample): obs [B, D] -> env chunks [B, H, A]."""
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        return self.to_env_chunk(self.base_samples(obs_t, 1)[:, 0])

    # ------------------------------------------------------------------ learning
    def update(self) -> dict[str, float]:
        """One env step's worth of learning: G critic updates, then edit/temperature/base.

        The G TD targets' candidates are generated up front in one batched call: the base
        (frozen, or the EMA copy moved only in `update_base`) and the edit head are updated
        after the critic loop, so they are the same networks in all G targets and this is
        the same computation as generating them minibatch by minibatch (the faithful
        structure, `expo_sdk.reference`), with the random draws taken in another order.
        Scoring stays per minibatch: the target critic moves by Polyak after every step.
        """
        if self.config.cache_refresh_per_step:  # eager: its cursor is Python state
            self.refresh_cached_samples(self.config.cache_refresh_per_step)
        return self._graphed_update() if self._graphed_update is not None else self._update_step()

    def _update_step(self) -> dict[str, torch.Tensor]:
        """`update` after the cache refresh: what a CUDA graph captures (`expo_sdk.cuda_graphs`)."""
        cfg = self.config
        batches = [self.sampler.sample(cfg.batch_size, self.generator) for _ in range(cfg.utd_ratio)]
        next_candidates = self.next_candidates(batches)
        for batch, candidates in zip(batches, next_candidates):
            critic_stats = self.update_critic(batch, candidates)
        edit_stats = self.update_edit_head(batch)
        stats = {**critic_stats, **edit_stats}
        if self.base_optimizer is not None:
            stats.update(self.update_base(batch))
        return stats

    @torch.no_grad()
    def refresh_cached_samples(self, rows: int) -> None:
        """Re-draw the cached base samples of `rows` entries of each buffer, oldest first (a
        cursor sweeps each buffer), from the sampling base as it is now."""
        k = self.config.cached_samples_per_state
        for buffer in (self.online, self.offline):
            if buffer is None or len(buffer) == 0:
                continue
            index = (torch.arange(min(rows, len(buffer)), device=self.device) + buffer.refresh_cursor) % len(buffer)
            buffer.next_base_actions[index] = self._base_samples_in_calls(buffer.next_obs[index], k)
            buffer.refresh_cursor = int((buffer.refresh_cursor + len(index)) % len(buffer))

    @torch.no_grad()
    def next_candidates(self, batches: list[Batch]) -> torch.Tensor:
        """The OTF candidates at s' for the TD targets of `batches` (G of B each): [G, B, C, HA].

        N base samples per next state (cached at insertion, or drawn now for all G * B
        states in one call) and their N edits, in one edit-head call.
        """
        g, b, n = len(batches), batches[0].next_obs.shape[0], self.selector.num_samples
        next_obs = torch.cat([batch.next_obs for batch in batches])
        if batches[0].next_base_actions is not None:
            base_next = torch.cat([batch.next_base_actions for batch in batches])
            if base_next.shape[1] > n:  # K > N cached: N of them at random, per state
                pick = torch.rand(base_next.shape[:2], generator=self.generator, device=self.device)
                base_next = base_next.gather(1, pick.argsort(1)[:, :n, None].expand(-1, -1, base_next.shape[2]))
        else:
            base_next = self._base_samples_in_calls(next_obs, n)
        self.edit_head.eval()
        candidates = self.selector.candidates(self.normalizer.normalize_obs(next_obs), base_next,
                                              self.edit_head, self.generator)
        return candidates.reshape(g, b, *candidates.shape[1:])

    def td_target(self, batch: Batch, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """y = r + discount * (1 - terminated) * V(s'), V from the OTF policy at s'. [B]

        `candidates` [B, C, HA] at s' (from `next_candidates`); drawn here when omitted.
        """
        if candidates is None:
            candidates = self.next_candidates([batch])[0]
        with torch.no_grad():
            value = self.selector.backup_value(self.normalizer.normalize_obs(batch.next_obs), candidates,
                                               self.target, self.generator, score=self._target_score)
        return self.td_reward(batch) + batch.discount * (~batch.terminated).float() * value

    def td_reward(self, batch: Batch) -> torch.Tensor:
        """The reward the TD target uses: `reward_scale` * r + `reward_bias` per env step.

        A stored chunk reward is sum_i gamma^i r_i over its h executed steps and its discount
        is gamma^h, so the bias over those steps is bias * (1 - gamma^h) / (1 - gamma)."""
        cfg = self.config
        reward = batch.reward if cfg.reward_scale == 1 else batch.reward * cfg.reward_scale
        if cfg.reward_bias:
            reward = reward + cfg.reward_bias * (1 - batch.discount) / (1 - cfg.gamma)
        return reward

    def update_critic(self, batch: Batch, candidates: torch.Tensor | None = None) -> dict[str, float]:
        target = self.td_target(batch, candidates)
        q = self.critic(self.normalizer.normalize_obs(batch.obs), batch.action)  # [E, B]
        loss = ((q - target) ** 2).mean()
        self._optimizer_step(self.critic_optimizer, loss)
        self.target.polyak_update(self.config.critic.tau)
        return {"critic_loss": loss.detach(), "q_mean": q.detach().mean(),
                "td_target_mean": target.mean()}

    def update_edit_head(self, batch: Batch) -> dict[str, float]:
        """SAC-style step: maximize mean-ensemble Q(s, a + â) - alpha log pi_edit(â|s, a)."""
        obs, actions = self._edit_training_pairs(batch)
        obs_n = self.normalizer.normalize_obs(obs)
        self.edit_head.train()
        delta, log_prob = self.edit_head(obs_n, actions, generator=self.generator)
        q = self.critic(obs_n, (actions + delta).clamp(-1.0, 1.0)).mean(0)
        alpha = self.temperature.alpha.detach()
        loss = (alpha * log_prob - q).mean()
        self._optimizer_step(self.edit_optimizer, loss)
        self._optimizer_step(self.temperature_optimizer, self.temperature.loss(log_prob))
        return {"edit_loss": loss.detach(), "alpha": alpha, "edit_entropy": -log_prob.detach().mean(),
                "edit_abs_mean": delta.detach().abs().mean()}

    def _edit_training_pairs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(states, actions to edit) for the edit-head step.

        Fresh base samples at s by default. With cached base candidates we train on the
        stored s' and its cached samples instead: states from the same replay
        distribution, without paying for a fresh base sample.
        """
        if self.config.edit_input == "data":
            return batch.obs, batch.action
        if batch.next_base_actions is not None:
            return batch.next_obs, batch.next_base_actions[:, 0]
        return batch.obs, self.base_samples(batch.obs, 1)[:, 0]

    def update_base(self, batch: Batch) -> dict[str, float]:
        """Imitation step on the mixed batch, then move the EMA sampling copy."""
        self.base.train()
        actions = batch.action.reshape(-1, self.spec.horizon, self.spec.action_dim)
        loss = self.base.imitation_loss(batch.obs, actions)
        self._optimizer_step(self.base_optimizer, loss)
        with torch.no_grad():
            ema = list(self.sampling_base.parameters())
            torch._foreach_lerp_(ema, list(self.base.parameters()), 1.0 - self.config.base_ema_decay)
        return {"base_loss": loss.detach()}

    def _clock(self) -> int:
        """Env steps taken, for the loop's schedule. Data-parallel: the fewest of any process
        (chunks and env errors make them differ), so all processes update, evaluate and stop
        at the same iterations."""
        if self.world_size == 1:
            return self.env_step
        steps = torch.tensor([self.env_step], device=self.device)
        return int(self.accelerator.gather(steps).min().item())

    def _adam(self, params, lr: float) -> torch.optim.Adam:
        """Adam: fused kernels on CUDA; step counters on the device when the update is graphed."""
        return torch.optim.Adam(params, lr=lr, fused=self.device.type == "cuda" or None,
                                capturable=self.config.cuda_graphs)

    def _optimizer_step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        """Backward and step; data-parallel processes first average their gradients."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.world_size > 1:
            distributed.average_gradients(
                self.accelerator, [p for group in optimizer.param_groups for p in group["params"]])
        optimizer.step()

    # ------------------------------------------------------------------ data
    def _prepare_buffers(self, total_steps: int, offline_data: OfflineDataset | dict | None,
                         overshoot: int = 0) -> None:
        """Replay for the run: `total_steps` transitions (plus `overshoot`, what the last
        collection may add past the end: vector envs, collectors' batches), at most
        `replay.capacity`."""
        cfg, dim = self.config, (self.spec.flat_obs_dim, self.spec.chunk_dim)
        k = cfg.cached_samples_per_state
        capacity = min(cfg.replay.capacity, max(total_steps, 1) + overshoot)
        self.online = TransitionBuffer(capacity, *dim, num_cached_samples=k, device=self.device)
        self.offline = self._offline_buffer(offline_data, k) if offline_data is not None else None
        self.sampler = MixedSampler(self.online, self.offline, cfg.replay.offline_ratio)
        if self._graphed_update is not None:  # a graph captured over the old buffers is void
            self._graphed_update.reset()

    def _offline_buffer(self, offline_data: OfflineDataset | dict, k: int) -> TransitionBuffer:
        """Demonstrations as a full buffer: canonical actions, optional cached base samples."""
        cfg, dim = self.config, (self.spec.flat_obs_dim, self.spec.chunk_dim)
        if not isinstance(offline_data, OfflineDataset):
            offline_data = OfflineDataset(offline_data)
        obs = torch.as_tensor(offline_data.observations, device=self.device)
        if obs.shape[1:] != (self.spec.flat_obs_dim,):
            raise ValueError(
                f"offline observations have shape {tuple(obs.shape[1:])}, the base policy "
                f"expects ({self.spec.flat_obs_dim},)"
            )
        # Chunk-level transitions (the identity for horizon 1): H actions, their discounted
        # reward, s' after them and discount gamma^h, as the env records them online.
        chunked = chunk_transitions(offline_data.arrays, self.spec.horizon, cfg.gamma)
        actions = torch.as_tensor(chunked["actions"], device=self.device)  # [M, H, A]
        if actions.shape[2:] != (self.spec.action_dim,):
            raise ValueError(
                f"offline actions have shape {tuple(actions.shape[2:])}, the base policy "
                f"acts in {self.spec.action_dim} dimensions"
            )
        canonical = self.normalizer.action_to_canonical(actions)
        if canonical.abs().max() > 1.0 + 1e-3:
            raise ValueError(
                "offline actions fall outside the env's action bounds "
                f"{self.normalizer.action_low.tolist()}..{self.normalizer.action_high.tolist()}; "
                "the dataset was recorded with different bounds or units"
            )
        canonical = canonical.flatten(1)  # [M, H*A]
        next_obs = torch.as_tensor(chunked["next_observations"], device=self.device)
        cached = None
        if k:
            cached = self._base_samples_in_calls(next_obs, k)
        offline = TransitionBuffer(len(offline_data), *dim, num_cached_samples=k, device=self.device)
        offline.add(obs, canonical.clamp(-1, 1), chunked["rewards"], next_obs, chunked["terminals"],
                    chunked["discounts"], cached)
        return offline

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, env_fn: Callable, episodes: int | None = None, base_only: bool = False,
                 seed: int | None = None) -> EvalResult:
        """Success rate over seeded episodes; the base and OTF policy share seeds."""
        episodes = episodes or self.config.eval_episodes
        seed = (self.config.seed if seed is None else seed) + EVAL_SEED_OFFSET
        # Data-parallel: process r plays its share of the episodes (seeds seed + i as always)
        first, count = _share(episodes, self.rank, self.world_size)
        generator_state = self.generator.get_state()
        self.generator.manual_seed(seed + first)  # same sampling noise for every evaluation
        try:
            result = evaluate(self.act_base if base_only else self.act, env_fn, count, seed + first,
                              num_envs=self.config.eval_num_envs) if count else EvalResult([], [], [], [])
        finally:
            self.generator.set_state(generator_state)
        if self.world_size == 1:
            return result
        gather = functools.partial(distributed.gather_lists, self.accelerator)
        return EvalResult(gather(result.successes), gather(result.returns), gather(result.lengths),
                          gather(result.seeds))

    # ------------------------------------------------------------------ the loop
    def run(
        self,
        env,
        total_steps: int,
        offline_data: OfflineDataset | dict | None = None,
        run_dir: str | Path | None = None,
        callbacks: list[Callback] | None = None,
        env_fn: Callable | None = None,
        task: str = "",
        progress: bool = True,
        resume: bool = False,
        collectors=None,
    ) -> FinetuneResult:
        """Fine-tune online for `total_steps` env steps.

        Args:
            env: a gymnasium env, or a zero-argument callable that makes one.
            offline_data: demonstrations mixed into every batch (`replay.offline_ratio`).
            run_dir: where metrics, summary, weights, checkpoints and the curve go.
            callbacks: extra `Callback`s.
            env_fn: makes evaluation envs; defaults to `env` if callable, else
                `gymnasium.make(env.spec)`.
            resume: continue from `run_dir/checkpoint` if there is one (written every
                `checkpoint_every` env steps: at episode boundaries with one local env, which
                a resume replays exactly; at any step with vector envs, remote collectors or
                data-parallel processes, where the resumed run starts new episodes).
            collectors: collect on remote actors instead of in this process
                (`expo_sdk.ray_collection.RayCollectors`); `env` then only makes their envs.
                Data-parallel: each process passes its own (docs/scaling.md).
        """
        cfg, start = self.config, time.perf_counter()
        run_dir = Path(run_dir) if run_dir is not None else None
        checkpoint_dir = run_dir  # data-parallel: every process checkpoints its own shard...
        if self.world_size > 1 and not distributed.is_main_process(self.accelerator):
            run_dir, progress = None, False  # ...and the main process alone writes the run's files
        env_fn = env_fn or _env_factory(env)
        owns_env = not _is_env_instance(env)
        # A failing env is recreated from its factory (a callable `env`, or the instance's
        # gymnasium spec), up to `max_env_errors` times.
        make_env = env if owns_env else _env_factory(env, required=False)
        if collectors is not None:
            if make_env is None:
                raise ValueError("remote collectors make their own envs: pass an env factory")
            env = collectors
        else:
            env = self._training_env(make_env, instance=None if owns_env else env)
        self._prepare_buffers(total_steps, offline_data, overshoot=cfg.num_envs - 1 + (
            collectors.transitions_per_call if collectors is not None else 0))
        checkpoint = find_checkpoint(checkpoint_dir) if resume and checkpoint_dir is not None else None
        if resume and checkpoint is None:
            warnings.warn(f"no checkpoint in {checkpoint_dir}: starting the run from scratch", stacklevel=2)
        cb = self._callbacks(callbacks, run_dir, progress)
        if checkpoint is not None:
            loop = self._restore(checkpoint, env, run_dir)  # refuses another config or process count
            cb.on_train_start(self, total_steps)
        else:
            if run_dir is not None:
                run_dir.mkdir(parents=True, exist_ok=True)
                (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
                (run_dir / "metrics.jsonl").unlink(missing_ok=True)  # a fresh run starts a fresh log
            cb.on_train_start(self, total_steps)
            loop = self._begin(env, env_fn, cb)
        if collectors is not None:  # after a restore, so the actors start from the run's weights
            collectors.start(self, make_env)

        clock = self._clock()
        while clock < total_steps:
            # One local env checkpoints at episode boundaries (a resume replays that reset
            # exactly); otherwise at any step (a resume starts new episodes). `clock` is the
            # same in every data-parallel process, so all of them write their shards together.
            if (checkpoint_dir is not None and cfg.checkpoint_every and clock >= loop.next_checkpoint
                    and (loop.episode_start or not self._replays_episodes(env))):
                loop.next_checkpoint = clock + cfg.checkpoint_every
                self._checkpoint(checkpoint_dir, loop, self._replays_episodes(env))
            # 1-3. Act (OTF policy, or the warm-up policy), step the env(s), store.
            transitions = self._collect(env, loop) if collectors is None else self._receive(collectors, loop)
            clock = self._clock()
            # 4. Learn: `utd_ratio` critic updates per stored transition (data-parallel
            # processes: per transition they nominally store, an env's or a collector's
            # batch, so that all of them step their optimizers together).
            if clock > cfg.learning_starts:
                for _ in range(transitions if self.world_size == 1 else self._nominal_transitions(collectors)):
                    loop.stats = self.update()
                _raise_on_nonfinite(loop.stats, self.env_step, run_dir)
            # 5. Report.
            if clock >= loop.next_log:
                loop.next_log += cfg.log_every
                self._log(cb, self._training_record(loop, start))
            if clock >= loop.next_eval and clock < total_steps:  # the end has its own
                loop.next_eval += cfg.eval_every
                result = self.evaluate(env_fn)
                self._log(cb, {"eval/success": result.success_rate, "eval/stderr": result.stderr})
            if cb.on_step(self, self.env_step):
                break

        final = self.evaluate(env_fn)
        final_base = self.evaluate(env_fn, base_only=True)
        self._log(cb, {"eval/success": final.success_rate, "eval/stderr": final.stderr,
                       "eval/final_base_success": final_base.success_rate, "final": True})
        result = FinetuneResult(
            base_success=loop.base_success, final_success=final.success_rate,
            final_base_success=final_base.success_rate, eval_episodes=final.episodes,
            env_steps=self.env_step, wall_s=time.perf_counter() - start, seed=cfg.seed,
            run_dir=str(run_dir) if run_dir else None, task=task, history=self.history)
        cb.on_train_end(self)
        if isinstance(env, VectorTrainingEnv) or collectors is not None:
            env.close()
        elif owns_env or env.errors:  # ours: made from the factory, or recreated after an error
            env.env.close()
        if run_dir is not None:
            self.save(run_dir, result)
        if self.world_size > 1:  # every process returns once the run directory is complete
            self.accelerator.wait_for_everyone()
        return result

    @classmethod
    def resume(cls, run_dir: str | Path, base, env, total_steps: int, accelerator=None,
               **run_kwargs) -> FinetuneResult:
        """Continue the run in `run_dir` from its last checkpoint, with the run's own config.

        `base` must be the same base policy (a frozen base is not stored in checkpoints);
        `accelerator`: for a data-parallel run, in each of its processes; `run_kwargs` go to
        `run` (offline_data, env_fn, callbacks, collectors, ...).
        """
        config_file = Path(run_dir) / "config.yaml"
        if not config_file.is_file():
            raise FileNotFoundError(f"{run_dir} has no config.yaml; is it a run directory?")
        tuner = cls(base, FinetuneConfig.model_validate(yaml.safe_load(config_file.read_text())),
                    accelerator=accelerator)
        return tuner.run(env, total_steps, run_dir=run_dir, resume=True, **run_kwargs)

    def _callbacks(self, callbacks, run_dir: Path | None, progress: bool) -> CallbackList:
        cbs = list(callbacks or [])
        if progress:
            cbs.append(ProgressBar())
        if run_dir is not None:
            cbs.append(MetricsLogger(run_dir / "metrics.jsonl"))
        return CallbackList(cbs)

    def _training_env(self, make_env: Callable | None, instance=None) -> TrainingEnv | VectorTrainingEnv:
        """The env(s) to collect from: a vector env of `num_envs` made by `make_env`, or
        one env (`instance`, else made by `make_env`) that `make_env` rebuilds after an error."""
        cfg = self.config
        if cfg.num_envs > 1:
            if make_env is None:
                raise ValueError(
                    f"num_envs={cfg.num_envs} needs a way to make envs: pass a factory "
                    "(Finetuner.run(lambda: make_env(), ...)) instead of an env instance without a spec")
            return VectorTrainingEnv(make_env, cfg.num_envs, cfg.vector_env, self.spec.horizon, cfg.gamma,
                                     cfg.max_env_errors, self.spec)
        env = TrainingEnv(instance if instance is not None else make_env(), make_env, cfg.max_env_errors, self.spec)
        check_env(env.env, self.spec)
        return env

    def _samples_per_state(self) -> int:
        """Base samples drawn per visited state: N to act, or the cache's K >= N (the first N act)."""
        return max(self.selector.num_samples, self.config.cached_samples_per_state)

    def _start_collection(self, env: TrainingEnv | VectorTrainingEnv) -> tuple[torch.Tensor, torch.Tensor]:
        """Reset the env(s): the first observations and their N base samples."""
        obs_t = self._obs_tensor(env.reset(seed=self.collection_seed))
        return obs_t, self._acting_base_samples(obs_t)

    def _acting_modules(self) -> dict[str, torch.nn.Module]:
        """What acting needs beyond the config: the networks remote collectors are sent."""
        modules = {"edit_head": self.edit_head, "target_critic": self.target.target}
        if self.base_optimizer is not None:  # a frozen base never changes
            modules["sampling_base"] = self.sampling_base
        return modules

    def _nominal_transitions(self, collectors) -> int:
        """Transitions one loop iteration stores when nothing goes wrong: one per env, or a
        remote collector's batch. Data-parallel processes learn from this many, whatever
        they stored (an env error stores none, a vector step can overshoot a collector's
        batch), because each of their optimizer steps is a collective all must join."""
        return self.config.num_envs if collectors is None else collectors.transitions_per_call

    def _receive(self, collectors, loop: "_LoopState") -> int:
        """Store the next batch a remote collector sends; returns its number of transitions."""
        batch = collectors.next_batch()
        arrays = {k: torch.tensor(v, device=self.device) for k, v in batch.arrays.items()}  # Ray's are read-only
        self.online.add(arrays["obs"], arrays["action"], arrays["reward"], arrays["next_obs"],
                        arrays["terminated"], arrays["discount"], arrays.get("next_base_actions"))
        self.env_step += batch.env_steps
        loop.recent_success.extend(batch.episode_successes)
        loop.chose_edited.extend(batch.chose_edited)
        loop.env_errors = collectors.errors
        loop.weights_lag = self.env_step - batch.weights_step
        if self.env_step >= collectors.next_sync:
            collectors.push_weights(self)
        return len(batch)

    def _collect(self, env: TrainingEnv | VectorTrainingEnv, loop: "_LoopState") -> int:
        """Act in the env(s), store the transitions, start new episodes where they ended.

        Returns the number of stored transitions (0 when the env raised and was recreated).
        """
        cfg = self.config
        if self.env_step < cfg.warmup_steps:
            action = self._warmup_action(loop.base_at_obs)
        else:
            action, index = self.select_action(loop.obs_t, loop.base_at_obs, return_index=True)
            loop.chose_edited.extend((index >= cfg.selector.num_samples).tolist())
        chunks = self.to_env_chunk(action)
        step = env.step(chunks) if isinstance(env, VectorTrainingEnv) else env.step_chunk(chunks[0], cfg.gamma)
        if step is None:  # the env raised and was recreated: the episodes in progress end unrecorded
            loop.env_errors = env.errors
            self._new_episode(env, loop)
            return 0
        if isinstance(step, VectorStep):
            reward, discount, terminated, done = step.reward, step.discount, step.terminated, step.done
            next_obs, success = step.next_obs, step.success
        else:
            reward, discount, terminated = [step.reward], [step.discount], [step.terminated]
            done, next_obs, success = [step.terminated or step.truncated], step.next_obs[None], [step.success]
        if not np.isfinite(reward).all():
            bad = np.asarray(reward)[~np.isfinite(reward)][0]
            raise FloatingPointError(
                f"the env returned a non-finite reward ({bad}) at env step {self.env_step}; "
                "check its reward function")
        next_obs_t = self._obs_tensor(next_obs)
        # N base samples at s': the next action's candidates and, if cached, the TD target's.
        base_at_next = self._acting_base_samples(next_obs_t)
        # `terminated` only on true termination: truncation bootstraps.
        self.online.add(loop.obs_t, action, reward, next_obs_t, terminated, discount,
                        base_at_next if self.online.next_base_actions is not None else None)
        self.env_step += step.env_steps
        loop.episode_success = [a or bool(b) for a, b in zip(loop.episode_success, success)]
        loop.obs_t, loop.base_at_obs = next_obs_t, base_at_next
        loop.episode_start = bool(np.any(done))
        if isinstance(step, VectorStep):  # the envs reset themselves: act from their new states
            for i in np.flatnonzero(done):
                loop.recent_success.append(loop.episode_success[i])
                loop.episode_success[i] = False
            if loop.episode_start:
                loop.obs_t = self._obs_tensor(step.reset_obs)
                ended = torch.as_tensor(np.flatnonzero(done), device=self.device)
                loop.base_at_obs = base_at_next.clone()
                loop.base_at_obs[ended] = self._acting_base_samples(loop.obs_t[ended])
        elif loop.episode_start:
            loop.recent_success.append(loop.episode_success[0])
            self._new_episode(env, loop)
        return len(done)

    def _new_episode(self, env: TrainingEnv | VectorTrainingEnv, loop: "_LoopState", seed: int | None = None) -> None:
        """Start new episodes in every env (after an env error, one env's episode end, or a
        resume from mid-episode; `seed` reseeds one env, vector envs always get a fresh seed)."""
        loop.episode_success = [False] * self.config.num_envs
        loop.episode_start = True
        if isinstance(env, VectorTrainingEnv):
            # fresh seeds: a rebuilt vector env must not replay the episodes it just played
            obs = env.reset(seed=self.collection_seed + self.env_step + 7919 * env.errors)
        else:
            loop.env_rng = _env_rng_state(env.env)  # lets a resumed run replay this reset
            obs = env.reset(seed=seed)
        loop.obs_t = self._obs_tensor(obs)
        loop.base_at_obs = self._acting_base_samples(loop.obs_t)

    def _begin(self, env: TrainingEnv, env_fn: Callable, cb: CallbackList) -> "_LoopState":
        """Evaluate base and untrained OTF policy on the same seeds, then reset the env."""
        cfg = self.config
        base_eval = self.evaluate(env_fn, base_only=True)
        self._log(cb, {"eval/success": self.evaluate(env_fn).success_rate,
                         "eval/base_success": base_eval.success_rate, "eval/stderr": base_eval.stderr})
        obs_t, base_at_obs = (None, None) if hasattr(env, "next_batch") else self._start_collection(env)
        return _LoopState(
            obs_t=obs_t, base_at_obs=base_at_obs,
            base_success=base_eval.success_rate, chose_edited=deque(maxlen=cfg.log_every),
            next_log=cfg.log_every, next_eval=cfg.eval_every, next_checkpoint=cfg.checkpoint_every,
            episode_success=[False] * cfg.num_envs)

    # ------------------------------------------------------------------ checkpoints
    def _modules(self) -> dict[str, torch.nn.Module]:
        modules = {"edit_head": self.edit_head, "critic": self.critic, "target_critic": self.target.target,
                   "temperature": self.temperature}
        if self.base_optimizer is not None:  # a frozen base never changes: nothing to save
            modules.update(base=self.base, sampling_base=self.sampling_base)
        return modules

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        optimizers = {"critic_opt": self.critic_optimizer, "edit_opt": self.edit_optimizer,
                      "temperature_opt": self.temperature_optimizer}
        if self.base_optimizer is not None:
            optimizers["base_opt"] = self.base_optimizer
        return optimizers

    def _replays_episodes(self, env) -> bool:
        """Whether a resume can put the env back where the checkpoint left it: one local env
        in one process, checkpointed at an episode start (its reset is replayed)."""
        return isinstance(env, TrainingEnv) and self.world_size == 1

    def _checkpoint(self, run_dir: Path, loop: "_LoopState", at_episode_start: bool) -> None:
        """Everything needed to continue: weights, optimizers, replay, RNGs, counters (and,
        `at_episode_start`, the episode's first observation, to continue exactly)."""
        tensors: dict[str, torch.Tensor] = {}
        for name, module in self._modules().items():
            tensors.update({f"{name}/{k}": v for k, v in module.state_dict().items()})
        optimizer_meta = {}
        for name, optimizer in self._optimizers().items():
            flat, optimizer_meta[name] = optimizer_to_flat(name, optimizer)
            tensors.update(flat)
        tensors.update({f"replay/{k}": v for k, v in self.online.state_tensors().items()})
        refreshed_offline = self.offline is not None and self.config.cache_refresh_per_step > 0
        if refreshed_offline:  # the demos' cached samples change too: keep them for an exact resume
            tensors["offline/next_base_actions"] = self.offline.next_base_actions
        tensors.update({"rng/generator": self.generator.get_state(), "rng/torch": torch.get_rng_state()})
        if at_episode_start:
            tensors.update({"loop/obs": loop.obs_t, "loop/base_at_obs": loop.base_at_obs})
        state = {
            "config": self.config.model_dump(), "env_step": self.env_step, "history": self.history,
            "optimizers": optimizer_meta, "replay": self.online.state_meta(), "loop": loop.to_json(),
            "offline_refresh_cursor": self.offline.refresh_cursor if refreshed_offline else None,
        }
        if self.world_size == 1:
            save_checkpoint(run_dir, tensors, state)
        else:
            save_sharded_checkpoint(run_dir, tensors, state, self.rank, self.world_size,
                                    functools.partial(distributed.all_succeeded, self.accelerator))

    def _restore(self, checkpoint: Path, env, run_dir: Path | None) -> "_LoopState":
        """Load this process's shard; `run_dir` None: not the process that writes the run's files."""
        tensors, state = load_checkpoint_shard(checkpoint, self.rank, self.world_size)
        if state["config"] != self.config.model_dump():
            raise ValueError(
                f"the checkpoint in {checkpoint} was written with a different config; resume with "
                "the run's own config.yaml, or start a new run directory"
            )
        for name, module in self._modules().items():
            prefix = f"{name}/"
            module.load_state_dict({k[len(prefix):]: v.to(self.device) for k, v in tensors.items()
                                    if k.startswith(prefix)})
        for name, optimizer in self._optimizers().items():
            optimizer_from_flat(name, optimizer, tensors, state["optimizers"][name])
        self.online.load_state({k[len("replay/"):]: v for k, v in tensors.items() if k.startswith("replay/")},
                               state["replay"])
        if "offline/next_base_actions" in tensors and self.offline is not None:
            self.offline.load_cached_samples(tensors["offline/next_base_actions"], state["offline_refresh_cursor"])
        self.env_step, self.history = state["env_step"], state["history"]
        # The metrics file may hold lines logged after the checkpoint: rewrite it from the
        # history the checkpoint knows, the resumed run logs those steps again.
        if run_dir is not None:
            _atomic_write(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))
        loop = _LoopState.from_json(state["loop"], self.config.log_every)
        self.generator.set_state(tensors["rng/generator"])  # RNG states are CPU byte tensors on every device
        torch.set_rng_state(tensors["rng/torch"])
        env.errors = loop.env_errors
        if hasattr(env, "next_batch"):  # remote collectors: the actors start their own episodes
            return loop
        if not (self._replays_episodes(env) and "loop/obs" in tensors):
            # Checkpointed mid-episode (vector envs, data-parallel processes, collectors): env
            # states cannot be restored, so the resumed run starts new episodes, seeded by the
            # step (the stored transitions are all kept).
            self._new_episode(env, loop, seed=self.collection_seed + self.env_step)
            return loop
        # Replay the reset that started this episode, so the env is where the run left it.
        _set_env_rng_state(env.env, loop.env_rng)
        env.reset()
        loop.obs_t = tensors["loop/obs"].to(self.device)
        loop.base_at_obs = tensors["loop/base_at_obs"].to(self.device)
        return loop

    def _training_record(self, loop: "_LoopState", start: float) -> dict[str, float]:
        record = {f"train/{k}": float(v) for k, v in loop.stats.items()}
        if loop.recent_success:
            record["train/episode_success"] = float(np.mean(loop.recent_success))
        if loop.chose_edited and self.selector.include_base:
            record["train/selected_edited_fraction"] = float(np.mean(loop.chose_edited))
        record["faults/env_errors"] = loop.env_errors
        if loop.weights_lag is not None:
            record["collect/weights_lag"] = loop.weights_lag
        record["time/steps_per_s"] = self.env_step / (time.perf_counter() - start)
        return record

    def _log(self, cb: CallbackList, record: dict[str, Any]) -> None:
        record = {"env_step": self.env_step, **record}
        self.history.append(record)
        cb.on_log(self, record)

    def _obs_tensor(self, obs: np.ndarray) -> torch.Tensor:
        obs = np.asarray(obs, dtype=np.float32)
        obs_t = torch.as_tensor(obs, device=self.device).reshape(obs.shape[0] if obs.ndim > 1 else 1, -1)
        if not torch.isfinite(obs_t).all():
            raise FloatingPointError(f"the env returned a non-finite observation at env step {self.env_step}")
        return obs_t

    def _warmup_action(self, base_at_obs: torch.Tensor) -> torch.Tensor:
        if self.config.warmup_policy == "random":
            return torch.rand(base_at_obs.shape[0], self.spec.chunk_dim, generator=self.generator,
                              device=self.device) * 2 - 1
        return base_at_obs[:, 0]

    # ------------------------------------------------------------------ saving
    def finetuned_policy(self) -> FinetunedPolicy:
        """The deployable OTF policy: the sampling base, the edit head, the target critic
        (the critic that scored candidates while acting and evaluating)."""
        return FinetunedPolicy(self.sampling_base, self.edit_head, self.target.target)

    def save(self, run_dir: str | Path, result: FinetuneResult | None = None) -> None:
        """Write the learning curve, summary and the deployable policy into `run_dir`.

        The run directory itself is then loadable with `FinetunedPolicy.from_pretrained`.
        """
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        if (run_dir / "metrics.jsonl").exists():
            plot_learning_curve(run_dir / "metrics.jsonl", run_dir / "learning_curve.png",
                                title=result.task if result else "")
        if result is not None:
            _atomic_write(run_dir / "summary.json", json.dumps(result.summary(), indent=2))
        (run_dir / "normalizer.json").write_text(json.dumps(self.normalizer.to_dict(), indent=2))
        self.finetuned_policy().save_pretrained(run_dir, card=result.summary() if result else None,
                                                learning_curve=run_dir / "learning_curve.png")


@dataclass
class _LoopState:
    """What the collection loop carries from one env step to the next (and checkpoints)."""

    obs_t: torch.Tensor
    base_at_obs: torch.Tensor
    base_success: float
    chose_edited: deque
    next_log: int
    next_eval: int
    next_checkpoint: int
    recent_success: deque = field(default_factory=lambda: deque(maxlen=20))
    episode_success: list[bool] = field(default_factory=lambda: [False])  # per env
    episode_start: bool = True
    stats: dict = field(default_factory=dict)
    env_rng: dict | None = None
    env_errors: int = 0
    weights_lag: int | None = None  # remote collectors: env steps their weights are behind

    def to_json(self) -> dict[str, Any]:
        return {"base_success": self.base_success, "chose_edited": list(self.chose_edited),
                "next_log": self.next_log, "next_eval": self.next_eval, "next_checkpoint": self.next_checkpoint,
                "recent_success": list(self.recent_success), "episode_success": self.episode_success,
                "stats": {k: float(v) for k, v in self.stats.items()}, "env_rng": self.env_rng,
                "env_errors": self.env_errors}

    @classmethod
    def from_json(cls, d: dict[str, Any], log_every: int) -> "_LoopState":
        return cls(obs_t=None, base_at_obs=None, base_success=d["base_success"],
                   chose_edited=deque(d["chose_edited"], maxlen=log_every), next_log=d["next_log"],
                   next_eval=d["next_eval"], next_checkpoint=d["next_checkpoint"],
                   recent_success=deque(d["recent_success"], maxlen=20), episode_success=_as_list(d["episode_success"]),
                   stats={k: torch.tensor(v) for k, v in d["stats"].items()}, env_rng=d["env_rng"],
                   env_errors=d.get("env_errors", 0))


def _as_list(value) -> list:
    return list(value) if isinstance(value, list) else [value]


def _env_rng_state(env) -> dict | None:
    """The env's numpy RNG state (JSON-able), taken just before a reset."""
    rng = getattr(env.unwrapped, "np_random", None)
    return rng.bit_generator.state if rng is not None else None


def _set_env_rng_state(env, state: dict | None) -> None:
    if state is not None:
        env.unwrapped.np_random.bit_generator.state = state


# Where a non-finite value can first appear, in the order one update computes them.
_PIPELINE = ("td_target_mean", "q_mean", "critic_loss", "edit_abs_mean", "edit_entropy", "edit_loss",
             "alpha", "base_loss")


def _raise_on_nonfinite(stats: dict[str, torch.Tensor], env_step: int, run_dir: Path | None) -> None:
    """Stop on the first update that produced NaN/inf, naming where it started."""
    finite = torch.stack([torch.isfinite(torch.as_tensor(v)).all() for v in stats.values()])
    if bool(finite.all()):  # one host sync per env step
        return
    bad = [k for k, ok in zip(stats, finite.tolist()) if not ok]
    bad.sort(key=lambda k: _PIPELINE.index(k) if k in _PIPELINE else len(_PIPELINE))
    kept = ""
    if run_dir is not None:
        checkpoint = find_checkpoint(run_dir)
        kept = (f"; {run_dir} keeps the last checkpoint ({checkpoint.name}/) and the metrics logged so far"
                if checkpoint is not None else f"; {run_dir} keeps the metrics logged so far (no checkpoint "
                                                "was written: set checkpoint_every)")
    raise FloatingPointError(
        f"training produced non-finite values at env step {env_step}, first in {bad[0]!r} "
        f"(all: {bad}){kept}. Lower the learning rates or check rewards and observations"
    )


def _share(total: int, rank: int, world_size: int) -> tuple[int, int]:
    """(first index, count) of process `rank`'s contiguous share of `total` items."""
    base, extra = divmod(total, world_size)
    first = rank * base + min(rank, extra)
    return first, base + (rank < extra)


def _is_env_instance(env) -> bool:
    return hasattr(env, "step") and hasattr(env, "reset") and not isinstance(env, type)


def _env_factory(env, required: bool = True) -> Callable | None:
    if not _is_env_instance(env):
        return env
    spec = getattr(env, "spec", None)
    if spec is None:
        if not required:
            return None
        raise ValueError(
            "cannot create evaluation envs from this env instance (it has no gymnasium "
            "spec); pass env_fn=lambda: make_my_env() to Finetuner.run"
        )
    import gymnasium as gym

    return lambda: gym.make(spec)


def cpu_has_bf16_units() -> bool:
    """Whether this CPU computes bf16 matmuls natively (AMX tiles or AVX512-BF16)."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private torch.cpu helpers
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
