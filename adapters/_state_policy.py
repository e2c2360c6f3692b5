"""Plumbing shared by the built-in state-based generative policies (DDPM, flow, consistency).

Each of them maps a flat observation to action chunks [H, A] in the canonical space,
owns a `Normalizer` saved with its weights, and conditions one MLP-ResNet on
(normalized obs, noisy chunk, time). Only the generative process differs, so only
`sample` and `imitation_loss` live in the adapters themselves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from expo_sdk.nets import FourierTimeEmbedding, MLPResNet
from expo_sdk.normalization import Normalizer
from expo_sdk.policy import PolicySpec


class TimeConditionedMLP(nn.Module):
    """f(obs_n [M, D], x [M, HA], t [M]) -> [M, HA]: the MLP-ResNet of IDQL / EXPO."""

    def __init__(self, obs_dim: int, chunk_dim: int, hidden_dim: int, num_blocks: int, dropout: float,
                 time_embed_dim: int) -> None:
        super().__init__()
        self.obs_dim, self.chunk_dim = obs_dim, chunk_dim
        self.time_embed = FourierTimeEmbedding(time_embed_dim)
        self.mlp = MLPResNet(obs_dim + chunk_dim + time_embed_dim, chunk_dim, hidden_dim, num_blocks, dropout)

    def forward(self, obs_n: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([obs_n, x, self.time_embed(t.float())], dim=-1))

    # Sampling runs the network T times on the same observations, with one time value per
    # step shared by all rows. The input layer is linear in concat(obs, x, time features),
    # so it splits into an observation term (computed once per sampling call), a time term
    # (one row per step) and the chunk term (the only per-row, per-step part). Together with
    # `MLPResNet.infer_trunk_` this is `forward` to float tolerance, at fewer FLOPs and
    # temporaries.
    @torch.no_grad()
    def condition(self, obs_n: torch.Tensor) -> torch.Tensor:
        """obs_n [M, D] -> the observation's share of the input layer [M, hidden] (bias included)."""
        w = self.mlp.inp.weight
        return torch.addmm(self.mlp.inp.bias, obs_n, w[:, : self.obs_dim].t())

    @torch.no_grad()
    def time_features(self, t: torch.Tensor) -> torch.Tensor:
        """t [K] -> the time's share of the input layer [K, hidden]."""
        w = self.mlp.inp.weight
        return self.time_embed(t.float()) @ w[:, self.obs_dim + self.chunk_dim:].t()

    @torch.no_grad()
    def infer(self, condition: torch.Tensor, x: torch.Tensor, time_feature: torch.Tensor) -> torch.Tensor:
        """`forward` from precomputed parts: condition [M, hidden], x [M, HA], time_feature [hidden]."""
        w_x = self.mlp.inp.weight[:, self.obs_dim: self.obs_dim + self.chunk_dim]
        return self.mlp.infer_trunk_(torch.addmm(condition + time_feature, x, w_x.t()))


class StatePolicy(nn.Module):
    """Base class: spec, normalizer, observation checks, `act` and `for_dataset`."""

    def _init_io(self, obs_dim: int, action_dim: int, horizon: int, normalizer: dict[str, Any]) -> None:
        self.obs_dim, self.action_dim, self.horizon = obs_dim, action_dim, horizon
        self.normalizer = Normalizer.from_dict(normalizer)
        if self.normalizer.obs_dim != obs_dim or self.normalizer.action_dim != action_dim:
            raise ValueError(
                f"normalizer is for obs_dim={self.normalizer.obs_dim}, action_dim="
                f"{self.normalizer.action_dim}; the policy has {obs_dim} and {action_dim}"
            )
        self._spec = PolicySpec(
            obs_shape=(obs_dim,),
            action_dim=action_dim,
            action_low=tuple(self.normalizer.action_low.tolist()),
            action_high=tuple(self.normalizer.action_high.tolist()),
            horizon=horizon,
        )

    @property
    def spec(self) -> PolicySpec:
        return self._spec

    @property
    def chunk_dim(self) -> int:
        return self.horizon * self.action_dim

    def _check_obs(self, obs: torch.Tensor) -> None:
        if obs.ndim != 2 or obs.shape[-1] != self.obs_dim:
            raise ValueError(f"{type(self).__name__} expects obs [B, {self.obs_dim}], got {tuple(obs.shape)}")

    @torch.no_grad()
    def act(self, obs: np.ndarray | torch.Tensor, generator: torch.Generator | None = None) -> np.ndarray:
        """Plain-policy use: one env-unit action (first of the chunk) per observation.

        obs [D] -> [A], or [B, D] -> [B, A].
        """
        obs_t = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=self.normalizer.obs_mean.device)
        single = obs_t.ndim == 1
        chunk = self.sample(obs_t.reshape(-1, self.obs_dim), 1, generator)[:, 0, 0]
        action = self.normalizer.action_to_env(chunk).cpu().numpy()
        return action[0] if single else action

    @classmethod
    def for_dataset(cls, observations: np.ndarray, action_low, action_high, **kwargs):
        """A fresh policy whose normalizer is fitted on the demonstrations."""
        normalizer = Normalizer.fit(observations, action_low, action_high)
        return cls(obs_dim=normalizer.obs_dim, action_dim=normalizer.action_dim,
                   normalizer=normalizer.to_dict(), **kwargs)
