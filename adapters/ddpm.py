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
        self._steps: list[_DDPMStep] | None = None
        self._times: torch.Tensor | None = None
        # Runtime switches, not saved: `fused_sampling=False` samples through diffusers'
        # DDPMScheduler.step (the reference); `sample_chunk_rows` trades cache reuse
        # against matmul size on CPU (a GPU denoises all rows at once); `compile_sampling`
        # runs the fused sampler's denoising loop through torch.compile (see `_denoise`).
        self.fused_sampling = True
        self.sample_chunk_rows = 2048
        self.compile_sampling = False
        self._compiled_denoise = None
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
        """obs [B, D] (env units) -> canonical actions [B, N, H, A].

        Draws the same noise from `generator`, in the same order, as a loop over
        diffusers' `DDPMScheduler.step` (`fused_sampling=False`, kept as the reference),
        and returns the same samples to float tolerance (tested), faster: the scheduler's
        coefficients are precomputed, the observation and time parts of the input layer
        are computed once per chunk of rows instead of once per step
        (`TimeConditionedMLP.condition` / `time_features`), and rows are denoised through
        all T steps in chunks of `sample_chunk_rows`, which keeps the activations in cache.
        """
        self._check_obs(obs)
        if not self.fused_sampling:
            return self._sample_with_scheduler(obs, num_samples, generator)
        b, m = obs.shape[0], obs.shape[0] * num_samples
        obs_n = self.normalizer.normalize_obs(obs).repeat_interleave(num_samples, dim=0)
        steps = self._denoising_steps()
        # randn_tensor draws on the generator's device and moves: a CPU generator works for a CUDA policy.
        def noise() -> torch.Tensor:
            return randn_tensor((m, self.chunk_dim), generator=generator, device=obs.device, dtype=obs_n.dtype)

        x_all = noise()
        step_noise = [noise() if step.std is not None else None for step in steps]
        times = self._step_times(obs.device)
        out = torch.empty_like(x_all)
        chunk_rows = self.sample_chunk_rows if obs.device.type == "cpu" else m  # GPU: no cache to keep warm
        denoise = self._denoise_compiled() if self.compile_sampling else self._denoise
        for start in range(0, m, chunk_rows):
            rows = slice(start, start + chunk_rows)
            try:
                out[rows] = denoise(obs_n[rows], x_all[rows], [None if z is None else z[rows] for z in step_noise],
                                    times)
            except torch._dynamo.exc.BackendCompilerFailed as error:  # e.g. no C++ compiler for inductor
                cause = getattr(error, "inner_exception", error)
                raise RuntimeError(
                    f"torch.compile could not compile the DDPM sampler ({type(cause).__name__}: {cause}); "
                    "sample eagerly instead: compile_base_sampling: false (or policy.compile_sampling = False)"
                ) from error
        return out.clamp_(-1.0, 1.0).reshape(b, num_samples, self.horizon, self.action_dim)

    @torch.no_grad()
    def _denoise(self, obs_n: torch.Tensor, x: torch.Tensor, step_noise: list[torch.Tensor | None],
                 times: torch.Tensor) -> torch.Tensor:
        """The T reverse steps for rows obs_n [M, D], starting from x [M, HA], with the
        steps' noise drawn beforehand (the generator stays outside, where torch.compile can
        trace this function as one graph). The time features (a small MLP on the T timesteps)
        are made here, once per chunk, so that the compiled graph fuses them too: about 0.3 ms
        of eager ops per call, a twentieth of acting at batch 1 on CPU."""
        time_features = self.denoiser.time_features(times)
        condition = self.denoiser.condition(obs_n)
        for step, z, time_feature in zip(self._denoising_steps(), step_noise, time_features):
            x = step.apply(self.denoiser.infer(condition, x, time_feature), x, z)
        return x

    def _denoise_compiled(self):
        """`_denoise` through torch.compile (inductor), made on first use. Inductor fuses each
        step's elementwise work (LayerNorm, Mish, the DDPM update) into a few loops around the
        matmuls: the same function to float rounding, faster where per-op overhead or memory
        passes cost (acting at batch 1 on a CPU). Static shapes: each new row count compiles
        once (seconds; inductor caches the result on disk), and a run sees few (the sampler's
        row chunk and its remainders, the edit head's batch, acting's and evaluation's batches
        times N). Dynamic shapes were not used: inductor 2.11 failed on them on CUDA (its
        matmul-padding pass), and static kernels are the faster ones."""
        if self._compiled_denoise is None:
            self._compiled_denoise = torch.compile(self._denoise, dynamic=False)
        return self._compiled_denoise

    def __getstate__(self) -> dict:
        # copy.deepcopy (the EMA sampling copy) and pickling carry the switch, not the
        # compiled function: it belongs to this instance and is rebuilt on first use.
        return {**super().__getstate__(), "_compiled_denoise": None}

    @torch.no_grad()
    def _sample_with_scheduler(
        self, obs: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The reference sampler: the plain loop over diffusers' `DDPMScheduler.step`."""
        b = obs.shape[0]
        obs_n = self.normalizer.normalize_obs(obs).repeat_interleave(num_samples, dim=0)
        x = randn_tensor((b * num_samples, self.chunk_dim), generator=generator, device=obs.device, dtype=obs_n.dtype)
        for t in self.scheduler.timesteps:
            t_batch = torch.full((x.shape[0],), int(t), device=obs.device)
            eps = self.predict_noise(obs_n, x, t_batch)
            x = self.scheduler.step(eps, t, x, generator=generator).prev_sample
        return x.clamp(-1.0, 1.0).reshape(b, num_samples, self.horizon, self.action_dim)

    def _step_times(self, device: torch.device) -> torch.Tensor:
        """The T timesteps as a tensor on `device`, made once: copying them from the host on
        every call would synchronise with a GPU (and cannot be captured in a CUDA graph)."""
        if self._times is None or self._times.device != device:
            self._times = torch.tensor([s.t for s in self._denoising_steps()], device=device)
        return self._times

    def _denoising_steps(self) -> list["_DDPMStep"]:
        if self._steps is None:
            self._steps = [_DDPMStep.from_scheduler(self.scheduler, int(t)) for t in self.scheduler.timesteps]
        return self._steps

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


class _DDPMStep:
    """One reverse step of diffusers' `DDPMScheduler.step` (epsilon prediction, clipped x0,
    "fixed_small" variance), with its coefficients computed once, by the same float32
    expressions diffusers evaluates on every call, so the results are bit-identical."""

    def __init__(self, t: int, sqrt_beta_prod: torch.Tensor, sqrt_alpha_prod: torch.Tensor,
                 x0_coeff: torch.Tensor, xt_coeff: torch.Tensor, clip: float | None,
                 std: torch.Tensor | None) -> None:
        self.t, self.sqrt_beta_prod, self.sqrt_alpha_prod = t, sqrt_beta_prod, sqrt_alpha_prod
        self.x0_coeff, self.xt_coeff, self.clip, self.std = x0_coeff, xt_coeff, clip, std

    @classmethod
    def from_scheduler(cls, scheduler: DDPMScheduler, t: int) -> "_DDPMStep":
        config = scheduler.config
        if (config.prediction_type != "epsilon" or config.thresholding
                or getattr(scheduler, "variance_type", config.variance_type) != "fixed_small"):
            raise NotImplementedError(
                "the fused DDPM sampler covers epsilon prediction, clipping and fixed_small "
                "variance; set policy.fused_sampling = False for other scheduler settings"
            )
        prev_t = scheduler.previous_timestep(t)
        alpha_prod_t = scheduler.alphas_cumprod[t]
        alpha_prod_t_prev = scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else scheduler.one
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_t_prev = 1 - alpha_prod_t_prev
        current_alpha_t = alpha_prod_t / alpha_prod_t_prev
        current_beta_t = 1 - current_alpha_t
        return cls(
            t=t, sqrt_beta_prod=beta_prod_t ** (0.5), sqrt_alpha_prod=alpha_prod_t ** (0.5),
            x0_coeff=(alpha_prod_t_prev ** (0.5) * current_beta_t) / beta_prod_t,
            xt_coeff=current_alpha_t ** (0.5) * beta_prod_t_prev / beta_prod_t,
            clip=config.clip_sample_range if config.clip_sample else None,
            std=scheduler._get_variance(t) ** 0.5 if t > 0 else None,
        )

    def apply(self, eps: torch.Tensor, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """x_t [M, HA], predicted noise [M, HA], standard normal noise (t > 0) -> x_{t-1}."""
        x0 = (x - self.sqrt_beta_prod * eps) / self.sqrt_alpha_prod
        if self.clip is not None:
            x0 = x0.clamp(-self.clip, self.clip)
        prev = self.x0_coeff * x0 + self.xt_coeff * x
        return prev if noise is None else prev + self.std * noise
