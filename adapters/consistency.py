"""A consistency policy: one-step (or few-step) sampling of action chunks.

A consistency model f(x, sigma) maps any point of the noising path x = x0 + sigma * z
straight back to its clean start x0. It is parameterised so that f(x, sigma_min) = x
(Song et al. 2023, Appendix C):

    f(x, sigma) = c_skip(sigma) * x + c_out(sigma) * F(c_in(sigma) * x, c_noise(sigma)),

with F the MLP-ResNet, c_in = 1 / sqrt(sigma^2 + sigma_data^2) and c_noise = ln(sigma) / 4.

Training is *consistency training* (no teacher): for adjacent noise levels
sigma_lo < sigma_hi on the Karras grid and the same noise z, pull f(x0 + sigma_hi z, sigma_hi)
towards the stop-gradient target f(x0 + sigma_lo z, sigma_lo), with the pseudo-Huber
distance, the 1 / (sigma_hi - sigma_lo) weighting and the log-normal choice of the pair
(ln sigma ~ N(-1.1, 2.0^2)) of "Improved Techniques for Training Consistency Models"
(Song & Dhariwal 2023, iCT). The target is the same network under `torch.no_grad` (their
finding: no EMA teacher needed), so the policy holds no extra copy and the Finetuner's
imitation mode works as for any other base. Unlike iCT the grid size N is fixed (no
curriculum): `imitation_loss` is stateless and does not know the training step. Measured
on a 1-D bimodal task (tests/test_adapter_consistency.py): learning rates around 1e-3
recover both modes; 3e-3 collapsed one-step samples onto the mean.

Sampling uses diffusers' `CMStochasticIterativeScheduler`: start from sigma_max noise,
`scale_model_input` (the c_in above), call F with c_noise, `step` applies c_skip / c_out,
clips to [-1, 1] and, for multistep sampling, re-noises to the next sigma. Conventions:
- its timesteps are 1000 * ln(sigma) / 4 in float64; the network gets them / 1000 in
  float32 (= c_noise, the same value the training loss computes from sigma directly);
- `scale_model_input` and `step` look sigma up by the scheduler's step index, so they
  cannot take a per-row sigma: training computes the same scalings itself
  (`get_scalings_for_boundary_condition` is reused; it is elementwise);
- `step` keeps a step index, so `sample` calls `set_timesteps` first (stateless calls).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from diffusers import CMStochasticIterativeScheduler
from diffusers.utils.torch_utils import randn_tensor

from expo_sdk.hub import HubMixin

from ._state_policy import StatePolicy, TimeConditionedMLP

# iCT's log-normal proposal over training noise levels: ln sigma ~ N(-1.1, 2.0^2).
_LOG_SIGMA_MEAN, _LOG_SIGMA_STD = -1.1, 2.0


class ConsistencyPolicy(
    StatePolicy,
    HubMixin,
    library_name="expo-sdk",
    tags=["expo", "consistency-policy", "robotics"],
):
    """pi_base(a | s) as a consistency model over action chunks.

    Args:
        obs_dim: D, flat observation size.
        action_dim: A.
        normalizer: `Normalizer.to_dict()` output (action bounds and obs statistics).
        horizon: H, action chunk length.
        num_inference_steps: 1 for one-step sampling; more for multistep sampling
            (at most `num_train_timesteps`; can be changed after training).
        num_train_timesteps: size of the Karras sigma grid used by training and sampling.
        sigma_min, sigma_max, sigma_data, rho: the EDM / Karras noise schedule.
        hidden_dim, num_blocks, dropout: MLP-ResNet size.
        time_embed_dim: size of the Fourier time embedding.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        normalizer: dict[str, Any],
        horizon: int = 1,
        num_inference_steps: int = 1,
        num_train_timesteps: int = 40,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        sigma_data: float = 0.5,
        rho: float = 7.0,
        hidden_dim: int = 256,
        num_blocks: int = 3,
        dropout: float = 0.0,
        time_embed_dim: int = 64,
    ) -> None:
        super().__init__()
        if not 1 <= num_inference_steps <= num_train_timesteps:
            raise ValueError(
                f"num_inference_steps must be in [1, num_train_timesteps={num_train_timesteps}], "
                f"got {num_inference_steps}"
            )
        self._init_io(obs_dim, action_dim, horizon, normalizer)
        self.num_inference_steps = num_inference_steps
        self.scheduler = CMStochasticIterativeScheduler(
            num_train_timesteps=num_train_timesteps, sigma_min=sigma_min, sigma_max=sigma_max,
            sigma_data=sigma_data, rho=rho, clip_denoised=True,
        )
        # The training grid, descending from sigma_max to sigma_min: the scheduler's own
        # Karras sigmas before `set_timesteps` replaces them with the inference grid.
        # Derived from the config, so not saved with the weights.
        sigmas = self.scheduler.sigmas.double()
        self.register_buffer("train_sigmas", sigmas.float().clone(), persistent=False)
        # P(pair n) = mass of the log-normal between sigma_{n+1} and sigma_n (iCT's proposal).
        cdf = torch.erf((sigmas.log() - _LOG_SIGMA_MEAN) / (math.sqrt(2.0) * _LOG_SIGMA_STD))
        self.register_buffer("train_pair_probs", (cdf[:-1] - cdf[1:]).float(), persistent=False)
        self.net = TimeConditionedMLP(obs_dim, horizon * action_dim, hidden_dim, num_blocks, dropout,
                                        time_embed_dim)

    def raw_output(self, obs_n: torch.Tensor, x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        """F: obs_n [M, D], scaled input x_in [M, HA], c_noise = ln(sigma)/4 [M] -> [M, HA]."""
        return self.net(obs_n, x_in, c_noise)

    def consistency_fn(self, obs_n: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """f(x, sigma): x [M, HA] at noise level sigma [M] -> estimate of the clean chunk [M, HA].

        Not clipped (training needs the gradient everywhere); sampling clips.
        """
        sigma_col = sigma[:, None]
        c_in = (sigma_col**2 + self.scheduler.config.sigma_data**2).rsqrt()
        c_skip, c_out = self.scheduler.get_scalings_for_boundary_condition(sigma_col)
        return c_skip * x + c_out * self.raw_output(obs_n, c_in * x, sigma.log() / 4)

    @torch.no_grad()
    def sample(
        self, obs: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """obs [B, D] (env units) -> canonical actions [B, N, H, A], clipped to [-1, 1].

        Noise is drawn from `generator`: one [B * N, H * A] tensor to start, and one per
        extra step for multistep sampling (a CPU generator works on any device).
        """
        self._check_obs(obs)
        b, chunk = obs.shape[0], self.horizon * self.action_dim
        obs_n = self.normalizer.normalize_obs(obs).repeat_interleave(num_samples, dim=0)
        scheduler = self.scheduler
        scheduler.set_timesteps(self.num_inference_steps, device=obs.device)
        x = randn_tensor((b * num_samples, chunk), generator=generator, device=obs.device, dtype=obs_n.dtype)
        x = x * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            x_in = scheduler.scale_model_input(x, t)
            # CM timesteps are 1000 * ln(sigma) / 4 (float64); the net takes ln(sigma) / 4.
            c_noise = (t / 1000.0).float().expand(x.shape[0])
            x = scheduler.step(self.raw_output(obs_n, x_in, c_noise), t, x, generator=generator).prev_sample
        return x.clamp(-1.0, 1.0).reshape(b, num_samples, self.horizon, self.action_dim)

    def imitation_loss(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Consistency-training loss. obs [B, D] env units; actions [B, H, A] or [B, HA] canonical."""
        x0 = actions.reshape(actions.shape[0], -1)
        if x0.shape[1] != self.horizon * self.action_dim:
            raise ValueError(
                f"imitation_loss got action chunks of {x0.shape[1]} values per row; this "
                f"policy's chunks are H * A = {self.horizon} * {self.action_dim}"
            )
        obs_n = self.normalizer.normalize_obs(obs)
        n = torch.multinomial(self.train_pair_probs, x0.shape[0], replacement=True)
        sigma_hi, sigma_lo = self.train_sigmas[n], self.train_sigmas[n + 1]
        z = torch.randn_like(x0)
        student = self.consistency_fn(obs_n, x0 + sigma_hi[:, None] * z, sigma_hi)
        with torch.no_grad():
            target = self.consistency_fn(obs_n, x0 + sigma_lo[:, None] * z, sigma_lo)
        # Pseudo-Huber distance, c = 0.00054 sqrt(d) (iCT), weighted by 1 / (sigma_hi - sigma_lo).
        c = 0.00054 * math.sqrt(x0.shape[1])
        distance = ((student - target).pow(2).sum(-1) + c**2).sqrt() - c
        return (distance / (sigma_hi - sigma_lo)).mean()

    @staticmethod
    def matches_config(config: dict) -> bool:
        """True for a config.json written by `ConsistencyPolicy.save_pretrained` (adapter detection)."""
        return {"num_train_timesteps", "normalizer", "sigma_max", "sigma_data"} <= set(config)
