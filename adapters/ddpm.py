"""A DDPM diffusion policy (the paper's base policy), on diffusers' `DDPMScheduler`.

The denoiser is the IDQL / EXPO MLP-ResNet: concat(normalized obs, noisy action chunk,
Fourier time embedding) -> 3 residual blocks of width 256 -> predicted noise. Actions are
canonical ([-1, 1], chunk [H, A]); observations are standardized by the policy's own
`Normalizer`, which is saved with the weights.

Usable on its own: `train_imitation(policy, dataset)`, `policy.save_pretrained(dir)`,
`DDPMPolicy.from_pretrained(dir)`, `policy.act(obs)` -> env action.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import DDPMScheduler
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from expo_sdk.hub import HubMixin

from ._state_policy import StatePolicy, TimeConditionedMLP


class DDPMPolicy(
    StatePolicy,
    HubMixin,
    library_name="expo-sdk",
    tags=["expo", "diffusion-policy", "robotics"],
):
    """pi_base(a | s) as a T-step DDPM over action chunks.

    Args:
        obs_dim: D, flat observation size.
        action_dim: A.
        normalizer: `Normalizer.to_dict()` output (action bounds and obs statistics).
        horizon: H, action chunk length.
        num_diffusion_steps: T (paper: 10).
        beta_schedule: diffusers schedule name; "squaredcos_cap_v2" is the cosine /
            variance-preserving schedule of the paper.
        hidden_dim, num_blocks, dropout: MLP-ResNet size (paper: 256, 3, 0).
        time_embed_dim: size of the Fourier time embedding.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        normalizer: dict[str, Any],
        horizon: int = 1,
        num_diffusion_steps: int = 10,
        beta_schedule: str = "squaredcos_cap_v2",
        hidden_dim: int = 256,
        num_blocks: int = 3,
        dropout: float = 0.0,
        time_embed_dim: int = 64,
    ) -> None:
        super().__init__()
        self._init_io(obs_dim, action_dim, horizon, normalizer)
        self.scheduler = DDPMScheduler(
            num_train_timesteps=num_diffusion_steps,
            beta_schedule=beta_schedule,
            clip_sample=True,
            clip_sample_range=1.0,
            prediction_type="epsilon",
        )
        self.scheduler.set_timesteps(num_diffusion_steps)
        self.denoiser = TimeConditionedMLP(obs_dim, horizon * action_dim, hidden_dim, num_blocks, dropout,
                                           time_embed_dim)

    @property
    def num_diffusion_steps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    def predict_noise(self, obs_n: torch.Tensor, noisy: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """obs_n [M, D] normalized, noisy [M, HA], t [M] -> predicted noise [M, HA]."""
        return self.denoiser(obs_n, noisy, t)

    @torch.no_grad()
    def sample(
        self, obs: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """obs [B, D] (env units) -> canonical actions [B, N, H, A]."""
        self._check_obs(obs)
        b = obs.shape[0]
        obs_n = self.normalizer.normalize_obs(obs).repeat_interleave(num_samples, dim=0)
        # randn_tensor draws on the generator's device and moves: a CPU generator works for a CUDA policy.
        x = randn_tensor((b * num_samples, self.chunk_dim), generator=generator, device=obs.device, dtype=obs_n.dtype)
        for t in self.scheduler.timesteps:
            t_batch = torch.full((x.shape[0],), int(t), device=obs.device)
            eps = self.predict_noise(obs_n, x, t_batch)
            x = self.scheduler.step(eps, t, x, generator=generator).prev_sample
        return x.clamp(-1.0, 1.0).reshape(b, num_samples, self.horizon, self.action_dim)

    def imitation_loss(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Denoising loss. obs [B, D] env units; actions [B, H, A] or [B, HA] canonical."""
        x0 = actions.reshape(actions.shape[0], -1)
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.num_diffusion_steps, (x0.shape[0],), device=x0.device)
        noisy = self.scheduler.add_noise(x0, noise, t)
        pred = self.predict_noise(self.normalizer.normalize_obs(obs), noisy, t)
        return nn.functional.mse_loss(pred, noise)

    @staticmethod
    def matches_config(config: dict) -> bool:
        """True for a config.json written by `DDPMPolicy.save_pretrained` (adapter detection)."""
        return {"num_diffusion_steps", "normalizer", "beta_schedule"} <= set(config)
