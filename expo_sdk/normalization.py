"""One normalizer shared by the base policy, the edit head and the critic.

Actions: the env's box [low, high] maps affinely onto the canonical [-1, 1]. Observations:
standardized with mean/std fitted once on the demonstrations. The statistics are saved
next to every artifact (JSON) and never re-derived silently: a loaded edit head uses the
exact numbers its critic was trained with.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

# Standard deviations below this are treated as constant features (std := 1) so that
# a dimension that never moves in the demos is not blown up by 1/std.
_MIN_STD = 1e-6


class Normalizer(nn.Module):
    """Maps env actions to canonical [-1, 1] and back; standardizes flat observations.

    Buffers (saved with the module's state dict):
        obs_mean, obs_std: [D]
        action_low, action_high: [A]
    """

    def __init__(
        self,
        action_low: Sequence[float],
        action_high: Sequence[float],
        obs_mean: Sequence[float] | None = None,
        obs_std: Sequence[float] | None = None,
        obs_dim: int | None = None,
    ) -> None:
        super().__init__()
        low = torch.as_tensor(np.asarray(action_low, dtype=np.float32))
        high = torch.as_tensor(np.asarray(action_high, dtype=np.float32))
        if low.shape != high.shape or low.ndim != 1:
            raise ValueError(
                f"action_low and action_high must be 1-D and of equal length, got "
                f"{tuple(low.shape)} and {tuple(high.shape)}"
            )
        if not torch.isfinite(low).all() or not torch.isfinite(high).all():
            raise ValueError(
                "action bounds must be finite to define the canonical [-1, 1] space; "
                "wrap the env with gymnasium.wrappers.ClipAction or RescaleAction first"
            )
        if (high <= low).any():
            raise ValueError(f"action_high must exceed action_low, got {low} / {high}")
        if obs_mean is None:
            if obs_dim is None:
                raise ValueError("give obs_mean/obs_std or obs_dim for an identity normalizer")
            mean, std = torch.zeros(obs_dim), torch.ones(obs_dim)
        else:
            mean = torch.as_tensor(np.asarray(obs_mean, dtype=np.float32))
            std = torch.as_tensor(np.asarray(obs_std, dtype=np.float32)).clamp_min(_MIN_STD)
            if mean.shape != std.shape:
                raise ValueError("obs_mean and obs_std must have the same shape")
        self.register_buffer("action_low", low)
        self.register_buffer("action_high", high)
        self.register_buffer("obs_mean", mean)
        self.register_buffer("obs_std", std)

    # -- construction -----------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        observations: np.ndarray | torch.Tensor,
        action_low: Sequence[float],
        action_high: Sequence[float],
    ) -> "Normalizer":
        """Fit observation statistics on demonstrations `observations` [M, D]."""
        obs = torch.as_tensor(np.asarray(observations, dtype=np.float32))
        if obs.ndim != 2 or obs.shape[0] < 2:
            raise ValueError(
                f"Normalizer.fit needs observations of shape [M >= 2, D], got {tuple(obs.shape)}"
            )
        std = obs.std(0)
        std = torch.where(std < _MIN_STD, torch.ones_like(std), std)
        return cls(action_low, action_high, obs.mean(0).tolist(), std.tolist())

    def to_dict(self) -> dict[str, Any]:
        return {
            "action_low": self.action_low.tolist(),
            "action_high": self.action_high.tolist(),
            "obs_mean": self.obs_mean.tolist(),
            "obs_std": self.obs_std.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Normalizer":
        missing = {"action_low", "action_high", "obs_mean", "obs_std"} - set(d)
        if missing:
            raise ValueError(f"normalizer config is missing {sorted(missing)}")
        return cls(d["action_low"], d["action_high"], d["obs_mean"], d["obs_std"])

    # -- use ----------------------------------------------------------------------------
    @property
    def obs_dim(self) -> int:
        return int(self.obs_mean.shape[0])

    @property
    def action_dim(self) -> int:
        return int(self.action_low.shape[0])

    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """[..., D] env observation -> standardized [..., D]."""
        return (obs - self.obs_mean) / self.obs_std

    def action_to_canonical(self, action: torch.Tensor) -> torch.Tensor:
        """[..., A] env action -> [..., A] in [-1, 1] (not clipped)."""
        return 2.0 * (action - self.action_low) / (self.action_high - self.action_low) - 1.0

    def action_to_env(self, action: torch.Tensor) -> torch.Tensor:
        """[..., A] canonical action -> env units, clipped to the env's bounds."""
        env = self.action_low + (action.clamp(-1.0, 1.0) + 1.0) * 0.5 * (
            self.action_high - self.action_low
        )
        return env
