"""A flow-matching policy (rectified flow) over action chunks, on diffusers' Euler scheduler.

Training (conditional flow matching, linear path): for a canonical chunk x0, noise eps and a
time sigma ~ U(0, 1), the point on the straight line from data to noise is

    x_sigma = (1 - sigma) * x0 + sigma * eps,

and the network regresses the constant velocity along it, v = eps - x0. Sampling integrates
dx/dsigma = v(x, sigma) from sigma = 1 (pure noise) to 0 with `num_inference_steps` Euler
steps of `FlowMatchEulerDiscreteScheduler` (its `step` is exactly x + (sigma_next - sigma) v).

How diffusers' conventions are used, and why:
- `set_timesteps(K)` alone gives sigmas linspace(1, 1/1000, K) plus a final 0, so the
  last of the K network calls only moves from sigma 0.001 to 0 (K - 1 useful steps). We
  pass `sigmas=[1, 1 - 1/K, ..., 1/K]` instead: K equal Euler steps, the final 0 appended
  by the scheduler.
- Its timesteps are sigma * 1000 (float32). The network gets sigma * `_TIME_SCALE`
  instead, the same value in training and sampling, so that the Fourier time features
  (initialised at low frequency) span a few periods over [0, 1].
- The scheduler's forward process `scale_noise` only accepts timesteps that lie on its
  inference grid; training draws continuous sigmas, so the loss computes the same
  interpolation, (1 - sigma) x0 + sigma eps, directly.
- `step` keeps a step index; `sample` calls `set_timesteps` first, so every call starts
  from sigma = 1 (the policy stays stateless between calls).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from expo_sdk.hub import HubMixin

from ._state_policy import StatePolicy, TimeConditionedMLP

# sigma in [0, 1] is fed to the time embedding as sigma * _TIME_SCALE (see module docstring).
_TIME_SCALE = 10.0


class FlowMatchingPolicy(
    StatePolicy,
    HubMixin,
    library_name="expo-sdk",
    tags=["expo", "flow-matching", "robotics"],
):
    """pi_base(a | s) as a rectified flow from Gaussian noise to action chunks.

    Args:
        obs_dim: D, flat observation size.
        action_dim: A.
        normalizer: `Normalizer.to_dict()` output (action bounds and obs statistics).
        horizon: H, action chunk length.
        num_inference_steps: K Euler steps per sample (can be changed after training).
        flow_shift: the scheduler's timestep shift; > 1 spends more of the K steps at high
            noise (1.0 = uniform steps).
        hidden_dim, num_blocks, dropout: MLP-ResNet size of the velocity network.
        time_embed_dim: size of the Fourier time embedding.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        normalizer: dict[str, Any],
        horizon: int = 1,
        num_inference_steps: int = 10,
        flow_shift: float = 1.0,
        hidden_dim: int = 256,
        num_blocks: int = 3,
        dropout: float = 0.0,
        time_embed_dim: int = 64,
    ) -> None:
        super().__init__()
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        self._init_io(obs_dim, action_dim, horizon, normalizer)
        self.num_inference_steps = num_inference_steps
        self.scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=flow_shift)
        self.velocity_net = TimeConditionedMLP(obs_dim, horizon * action_dim, hidden_dim, num_blocks, dropout,
                                                 time_embed_dim)

    def velocity(self, obs_n: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """obs_n [M, D] normalized, x [M, HA] at noise level sigma [M] -> dx/dsigma [M, HA]."""
        return self.velocity_net(obs_n, x, sigma.float() * _TIME_SCALE)

    @torch.no_grad()
    def sample(
        self, obs: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """obs [B, D] (env units) -> canonical actions [B, N, H, A], clipped to [-1, 1].

        Noise is drawn from `generator` as one [B * N, H * A] tensor (a CPU generator
        works for a policy on any device).
        """
        self._check_obs(obs)
        b, chunk = obs.shape[0], self.horizon * self.action_dim
        obs_n = self.normalizer.normalize_obs(obs).repeat_interleave(num_samples, dim=0)
        x = randn_tensor((b * num_samples, chunk), generator=generator, device=obs.device, dtype=obs_n.dtype)
        k = self.num_inference_steps
        self.scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, k, endpoint=False), device=obs.device)
        for t in self.scheduler.timesteps:
            sigma = (t / self.scheduler.config.num_train_timesteps).expand(x.shape[0])
            x = self.scheduler.step(self.velocity(obs_n, x, sigma), t, x).prev_sample
        return x.clamp(-1.0, 1.0).reshape(b, num_samples, self.horizon, self.action_dim)

    def imitation_loss(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Flow-matching loss. obs [B, D] env units; actions [B, H, A] or [B, HA] canonical."""
        x0 = actions.reshape(actions.shape[0], -1)
        if x0.shape[1] != self.horizon * self.action_dim:
            raise ValueError(
                f"imitation_loss got action chunks of {x0.shape[1]} values per row; this "
                f"policy's chunks are H * A = {self.horizon} * {self.action_dim}"
            )
        noise = torch.randn_like(x0)
        sigma = torch.rand(x0.shape[0], device=x0.device)
        x_sigma = (1.0 - sigma[:, None]) * x0 + sigma[:, None] * noise
        pred = self.velocity(self.normalizer.normalize_obs(obs), x_sigma, sigma)
        return nn.functional.mse_loss(pred, noise - x0)

    @staticmethod
    def matches_config(config: dict) -> bool:
        """True for a config.json written by `FlowMatchingPolicy.save_pretrained` (adapter detection)."""
        return {"num_inference_steps", "normalizer", "flow_shift"} <= set(config)
