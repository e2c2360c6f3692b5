"""The edit head: a small tanh-Gaussian policy that nudges base actions toward higher value.

    â = beta * tanh(u),  u ~ N(mu(s, a), sigma(s, a)),   edited action ã = clip(a + â, -1, 1)

Everything is in the canonical action space; `a` and `â` are flattened chunks [H*A].
The log-probability includes both change-of-variable terms: the tanh squashing and the
beta scaling (-|A| log beta), which is why the reachable entropy is capped at
|A| log(2 beta); see `temperature.py` for what that means for the target entropy.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .hub import HubMixin
from .nets import mlp

LOG_STD_MIN, LOG_STD_MAX = -10.0, 2.0


class EditHead(
    nn.Module,
    HubMixin,
    library_name="expo-sdk",
    tags=["expo", "robotics", "reinforcement-learning"],
    repo_url="https://github.com/expo-sdk/expo-sdk",
):
    """pi_edit(â | s, a): MLP over concat(normalized obs, canonical action chunk).

    Args:
        obs_dim: D, flattened observation size.
        action_dim: H*A, flattened action-chunk size.
        beta: edits are confined to [-beta, beta] per dimension (canonical units).
        hidden_dim, num_layers: MLP size (paper: 256 x 3).
        dropout: dropout after each hidden layer (paper: 0.1 on Adroit only).
        layer_norm: LayerNorm after each hidden layer.
        base_identity: JSON-able description of the base policy this head belongs to
            (repo id + revision, or path + sha256); saved in config.json.
        normalizer: JSON-able normalizer statistics the head was trained with.
        selector: the OTF selector settings it was trained with (N, mode, score, ...).
        zero_init_mean: start with zero mean edits (the output layer's mean half zeroed),
            so that an untrained head only adds its exploration noise around the base's
            actions instead of a random state-dependent shift (with PyTorch's default init
            that shift is a sizeable fraction of beta). The log-std half keeps its init.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        beta: float = 0.05,
        hidden_dim: int = 256,
        num_layers: int = 3,
        dropout: float = 0.0,
        layer_norm: bool = False,
        base_identity: dict[str, Any] | None = None,
        normalizer: dict[str, Any] | None = None,
        selector: dict[str, Any] | None = None,
        zero_init_mean: bool = False,
    ) -> None:
        super().__init__()
        if beta <= 0:
            raise ValueError(f"EditHead beta must be > 0, got {beta}")
        self.obs_dim, self.action_dim, self.beta = obs_dim, action_dim, float(beta)
        self.base_identity = base_identity
        self.normalizer = normalizer
        self.selector = selector
        self.net = mlp(obs_dim + action_dim, hidden_dim, num_layers, 2 * action_dim,
                       layer_norm=layer_norm, dropout=dropout)
        if zero_init_mean:
            out = self.net[-1]
            with torch.no_grad():
                out.weight[:action_dim].zero_()
                out.bias[:action_dim].zero_()

    def distribution_params(self, obs: torch.Tensor, action: torch.Tensor):
        """obs [..., D], action [..., HA] -> (mean, log_std), each [..., HA]."""
        if obs.shape[-1] != self.obs_dim or action.shape[-1] != self.action_dim:
            raise ValueError(
                f"EditHead expects obs [..., {self.obs_dim}] and actions [..., "
                f"{self.action_dim}], got {tuple(obs.shape)} and {tuple(action.shape)}"
            )
        mean, log_std = self.net(torch.cat([obs, action], dim=-1)).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def forward(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample an edit. Returns (edit [..., HA] in [-beta, beta], log_prob [...]).

        `noise` [..., HA]: the standard normal draws to use instead of drawing them from
        `generator` (reproducible edits; the tests feed two code paths the same noise).
        """
        mean, log_std = self.distribution_params(obs, action)
        if deterministic:
            u = mean
        else:
            if noise is None:
                noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            u = mean + log_std.exp() * noise
        return self.beta * torch.tanh(u), squashed_gaussian_log_prob(u, mean, log_std, self.beta)

    def check_base(self, base: Any, allow_mismatch: bool = False) -> None:
        """Refuse to run on a base policy other than the one this head was trained with.

        Compares the recorded `base_identity` (sha256 of the base weights, Hub repo and
        revision) with `base.identity` (set by `load_policy` / `load_from_hub`).
        """
        expected, actual = self.base_identity, getattr(base, "identity", None)
        if allow_mismatch or not expected:
            return
        if not actual:
            raise ValueError(
                f"this edit head was trained on base {_describe(expected)}, but the given base "
                "has no recorded identity; load it with expo_sdk.load_policy / load_from_hub, "
                "or pass allow_base_mismatch=True if you are sure it is the same policy"
            )
        same_weights = expected.get("sha256") and expected.get("sha256") == actual.get("sha256")
        same_revision = (expected.get("repo_id"), expected.get("revision")) == (
            actual.get("repo_id"), actual.get("revision")) and expected.get("revision")
        if not (same_weights or same_revision):
            raise ValueError(
                f"this edit head belongs to base {_describe(expected)}, not to {_describe(actual)}; "
                "edits learned for one policy are meaningless on another. Load the expected base "
                "or pass allow_base_mismatch=True to override"
            )

    def edit(self, obs: torch.Tensor, action: torch.Tensor, **kwargs) -> torch.Tensor:
        """The edited action a + â, clipped to the canonical bounds."""
        delta, _ = self(obs, action, **kwargs)
        return (action + delta).clamp(-1.0, 1.0)


def squashed_gaussian_log_prob(
    u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor, scale: float
) -> torch.Tensor:
    """log density of x = scale * tanh(u), u ~ N(mean, exp(log_std)), summed over the last dim."""
    gaussian = -0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    # log(1 - tanh(u)^2), written so it stays finite for large |u|.
    log_det_tanh = 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
    return (gaussian - log_det_tanh).sum(-1) - u.shape[-1] * math.log(scale)


def _describe(identity: dict[str, Any]) -> str:
    if identity.get("repo_id"):
        return f"{identity['repo_id']}@{identity.get('revision')}"
    sha = identity.get("sha256") or "?"
    return f"{identity.get('path', '<in-memory policy>')} (sha256 {sha[:12]})"
