"""Wrap your own model in one call: `from_module(model, sample_fn, loss_fn, spec=...)`.

For a policy that has no adapter yet: any `nn.Module` (or plain callable) plus a function
that draws samples from it becomes an `expo_sdk.BasePolicy`.

    def sample_fn(model, obs, num_samples, generator):   # obs [B, *obs_shape], env units
        return model.draw(obs, num_samples, generator)   # canonical [B, N, H, A] or [B, N, A]

    def loss_fn(model, obs, actions):                     # actions canonical [B, H, A]
        return -model.log_prob(obs, actions).mean()       # scalar

    policy = from_module(model, sample_fn, loss_fn, spec=PolicySpec.from_spaces(
        env.observation_space, env.action_space))

Observations reach `sample_fn` and `loss_fn` unchanged (env units, as the Finetuner and
`train_imitation` pass them); the model does its own observation preprocessing. The
`normalizer` is what the edit head and critic share with the base (and what
`train_imitation` uses to map dataset actions to the canonical space); by default it is
the identity on observations with the spec's action bounds.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from expo_sdk.normalization import Normalizer
from expo_sdk.policy import Obs, PolicySpec, validate_actions

SampleFn = Callable[[Any, Obs, int, "torch.Generator | None"], torch.Tensor]
LossFn = Callable[[Any, Obs, torch.Tensor], torch.Tensor]


def from_module(
    model: nn.Module | Callable,
    sample_fn: SampleFn,
    loss_fn: LossFn | None = None,
    *,
    spec: PolicySpec,
    normalizer: Normalizer | None = None,
    clip: bool = True,
) -> "ModulePolicy":
    """Make `model` a `BasePolicy`.

    Args:
        model: your network (an `nn.Module` moves with `.to()` and exposes its parameters)
            or any callable / object `sample_fn` knows how to use.
        sample_fn: `sample_fn(model, obs, num_samples, generator)` -> canonical actions
            [B, N, H, A] (or [B, N, A] when the spec's horizon is 1). Draw all randomness
            from `generator` so that sampling is reproducible.
        loss_fn: optional `loss_fn(model, obs, actions [B, H, A]) -> scalar`. Given, the
            policy exposes `imitation_loss` and can be imitation-updated while fine-tuning;
            omitted, only `base_mode="frozen"` is possible.
        spec: the policy's `PolicySpec` (observation shape, action dim and bounds, H).
        normalizer: observation statistics and action bounds shared with the edit head
            and critic; default: identity observations, the spec's action bounds.
        clip: clamp samples to the canonical [-1, 1] (the protocol requires it); with
            `clip=False` out-of-range samples are an error instead.
    """
    cls = ModulePolicyWithLoss if loss_fn is not None else ModulePolicy
    return cls(model, sample_fn, loss_fn, spec=spec, normalizer=normalizer, clip=clip)


class ModulePolicy(nn.Module):
    """A user model + `sample_fn` as a `BasePolicy` (no `imitation_loss`; see `from_module`)."""

    def __init__(
        self,
        model: nn.Module | Callable,
        sample_fn: SampleFn,
        loss_fn: LossFn | None = None,
        *,
        spec: PolicySpec,
        normalizer: Normalizer | None = None,
        clip: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(spec, PolicySpec):
            raise TypeError(
                f"from_module needs spec=PolicySpec(...), got {type(spec).__name__}; build one with "
                "PolicySpec(obs_shape=..., action_dim=..., action_low=..., action_high=...) or "
                "PolicySpec.from_spaces(env.observation_space, env.action_space)"
            )
        if not callable(sample_fn):
            raise TypeError(f"sample_fn must be callable, got {type(sample_fn).__name__}")
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable or None, got {type(loss_fn).__name__}")
        # An nn.Module is registered (moves with .to(), its parameters are ours); anything
        # else is kept as a plain attribute.
        self.model = model
        self.sample_fn, self.loss_fn, self.clip = sample_fn, loss_fn, clip
        self._spec = spec
        if normalizer is None and not isinstance(spec.obs_shape, dict):
            normalizer = Normalizer(spec.action_low, spec.action_high, obs_dim=spec.flat_obs_dim)
        if normalizer is not None:
            _check_normalizer(normalizer, spec)
        self.normalizer = normalizer

    @property
    def spec(self) -> PolicySpec:
        return self._spec

    def sample(self, obs: Obs, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """obs [B, *obs_shape] (or a dict of them) -> canonical actions [B, N, H, A]."""
        spec = self._spec
        batch = _batch_size(obs)
        with torch.no_grad():
            actions = self.sample_fn(self.model, obs, num_samples, generator)
        name = _name(self.sample_fn)
        if not isinstance(actions, torch.Tensor):
            raise TypeError(f"sample_fn {name} returned {type(actions).__name__}; return a torch.Tensor "
                            f"of canonical actions [B, N, H, A]")
        full = (batch, num_samples, spec.horizon, spec.action_dim)
        if spec.horizon == 1 and tuple(actions.shape) == (batch, num_samples, spec.action_dim):
            actions = actions.unsqueeze(2)
        also = " (or [B, N, A] since H = 1)" if spec.horizon == 1 else ""
        validate_actions(actions, full, f"sample_fn {name}", check_bounds=not self.clip,
                         hint=f" for a batch of {batch} observations and num_samples={num_samples}{also}. "
                              "Keep the sample dimension N even when num_samples == 1")
        return actions.clamp(-1.0, 1.0) if self.clip else actions
        return actions


class ModulePolicyWithLoss(ModulePolicy):
    """A `ModulePolicy` whose `loss_fn` is exposed as `imitation_loss`."""

    def imitation_loss(self, obs: Obs, actions: torch.Tensor) -> torch.Tensor:
        """obs [B, *obs_shape] env units; actions canonical [B, H, A] (or [B, H * A]) -> scalar."""
        spec = self._spec
        actions = actions.reshape(actions.shape[0], spec.horizon, spec.action_dim)
        loss = self.loss_fn(self.model, obs, actions)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(
                f"loss_fn {_name(self.loss_fn)} returned {shape}; return a scalar tensor (e.g. "
                "take .mean() over the batch) that is differentiable w.r.t. the model's parameters"
            )
        return loss.reshape(())


def _check_normalizer(normalizer: Normalizer, spec: PolicySpec) -> None:
    if not isinstance(normalizer, Normalizer):
        raise TypeError(f"normalizer must be an expo_sdk.Normalizer, got {type(normalizer).__name__}")
    low, high = normalizer.action_low.tolist(), normalizer.action_high.tolist()
    close = all(abs(a - b) <= 1e-5 for a, b in zip(low + high, list(spec.action_low) + list(spec.action_high)))
    if len(low) != spec.action_dim or not close:
        raise ValueError(
            f"normalizer action bounds low={low} high={high} differ from the spec's "
            f"low={list(spec.action_low)} high={list(spec.action_high)}; build both from the same env"
        )
    if not isinstance(spec.obs_shape, dict) and normalizer.obs_dim != spec.flat_obs_dim:
        raise ValueError(
            f"normalizer is for {normalizer.obs_dim}-dim observations, the spec's are "
            f"{spec.flat_obs_dim}-dim"
        )


def _batch_size(obs: Obs) -> int:
    if isinstance(obs, torch.Tensor):
        return int(obs.shape[0])
    return int(next(iter(obs.values())).shape[0])


def _name(fn: Callable) -> str:
    return repr(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or fn)
