"""LeRobot's DiffusionPolicy as an expo-sdk base policy (state-only observations).

    from expo_sdk.adapters.lerobot import LeRobotDiffusionPolicy, from_lerobot
    base = LeRobotDiffusionPolicy.from_pretrained("path/to/lerobot/checkpoint",
                                                  action_low=env.action_space.low,
                                                  action_high=env.action_space.high)
    # or, for an in-memory policy:  base = from_lerobot(policy, preprocessor, postprocessor, ...)

LeRobot is an optional dependency with pins that pip cannot satisfy beside this project's
CPU torch; install it with `make install-lerobot` (or `scripts/install_lerobot.sh VENV`).
This module imports LeRobot lazily, inside functions: importing it (and
`expo_sdk.adapters`, and `load_policy`'s adapter detection) works without LeRobot.

Observations. Only state observations are supported (no camera features). LeRobot's
Diffusion policy needs `observation.state` plus `observation.environment_state` (or an
image); our flat observation is their concatenation, in that order:
`obs = [observation.state, observation.environment_state]`, obs_shape `(D_state + D_env,)`.
`sample` takes `[B, D]` (the current observation, repeated `n_obs_steps` times, as
LeRobot's `select_action` does at the start of an episode) or `[B, n_obs_steps, D]`
(oldest first). Observations are normalized with LeRobot's own preprocessor statistics
(its `NormalizerProcessorStep`, with the policy's `normalization_mapping`).

Actions. LeRobot's diffusion model works in *its* normalized action space (by default
MIN_MAX over the training dataset's action range); its postprocessor
(`UnnormalizerProcessorStep`) maps that to env units. Our canonical space is the env's
action box `[action_low, action_high]` mapped affinely onto [-1, 1]. The mapping is done
explicitly, through env units:

    lerobot-normalized --(LeRobot's unnormalizer)--> env units --(Normalizer)--> canonical
    canonical --(Normalizer.action_to_env)--> env units --(LeRobot's normalizer)--> lerobot-normalized

and samples are clamped to [-1, 1]. The two spaces coincide only when the dataset's action
min/max equal the env bounds. The env bounds are saved next to the LeRobot files
(`expo_sdk_lerobot.json`); a plain LeRobot checkpoint without them needs
`action_low`/`action_high`, or falls back to the action min/max of its statistics (with a
warning).

Chunks. The model denoises `horizon` steps; like LeRobot's `select_action`, the executed
chunk is `n_action_steps` steps starting at the current observation
(`[n_obs_steps - 1, n_obs_steps - 1 + n_action_steps)`): `spec.horizon = n_action_steps`.

Sampling is stateless (no `select_action` action queue): the B observations are repeated
N times and the N chunks are drawn in one batched pass through LeRobot's
`DiffusionModel.conditional_sample`, with the initial noise drawn from `generator`
(diffusers' `randn_tensor`, so a CPU generator works for a CUDA policy) and the same
`generator` handed to the scheduler's `step`. Reproducibility: with a `generator`, both
DDPM (whose steps add fresh noise) and DDIM (deterministic, eta = 0) samples depend only
on the generator seed, not on the global RNG. Not reproducible: `generator=None` (draws
from the global RNG), and LeRobot's own `generate_actions`/`select_action`, which do not
pass a generator to the DDPM steps. `imitation_loss` (training) uses the global RNG, as
LeRobot's `forward` does.

`imitation_loss(obs, actions)` is LeRobot's own `DiffusionPolicy.forward` loss. Our chunk
covers only the executed steps; when `horizon` is longer, the rest of LeRobot's target
trajectory is padded with copies of the first/last action (what LeRobot's datasets do at
episode edges) and masked out of the loss (`action_is_pad`, `do_mask_loss_for_padding`).

This uses two LeRobot internals besides its public API (checked against lerobot 0.4.4):
`DiffusionModel._prepare_global_conditioning` and the normalizer steps'
`_normalize_observation` / `_normalize_action`.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from expo_sdk.normalization import Normalizer
from expo_sdk.policy import PolicySpec

from ._torchvision import prepare_torchvision as _prepare_torchvision  # LeRobot imports torchvision

logger = logging.getLogger(__name__)

OBS_STATE = "observation.state"
OBS_ENV_STATE = "observation.environment_state"
ACTION = "action"
BOUNDS_FILE = "expo_sdk_lerobot.json"
PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"

_INSTALL_HINT = (
    "LeRobot is not installed (or does not import). It is an optional dependency: run "
    "`make install-lerobot` (or `bash scripts/install_lerobot.sh /path/to/venv`), which installs "
    "lerobot==0.4.4 next to the CPU torch without pulling a CUDA build."
)

def _lerobot():
    """The LeRobot classes this adapter uses (imported on first use)."""
    _prepare_torchvision()
    try:
        from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
        from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
        from lerobot.policies.diffusion.processor_diffusion import make_diffusion_pre_post_processors
        from lerobot.processor import (
            NormalizerProcessorStep,
            PolicyProcessorPipeline,
            UnnormalizerProcessorStep,
        )
        from lerobot.processor.converters import policy_action_to_transition, transition_to_policy_action
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
    return {
        "DiffusionConfig": DiffusionConfig,
        "DiffusionPolicy": DiffusionPolicy,
        "make_processors": make_diffusion_pre_post_processors,
        "NormalizerProcessorStep": NormalizerProcessorStep,
        "UnnormalizerProcessorStep": UnnormalizerProcessorStep,
        "PolicyProcessorPipeline": PolicyProcessorPipeline,
        "policy_action_to_transition": policy_action_to_transition,
        "transition_to_policy_action": transition_to_policy_action,
    }


def from_lerobot(
    policy,
    preprocessor=None,
    postprocessor=None,
    *,
    dataset_stats: dict | None = None,
    action_low: Sequence[float] | None = None,
    action_high: Sequence[float] | None = None,
) -> "LeRobotDiffusionPolicy":
    """Wrap a LeRobot `DiffusionPolicy` (state-only) as an expo-sdk `BasePolicy`.

    Args:
        policy: a `lerobot.policies.diffusion.modeling_diffusion.DiffusionPolicy`.
        preprocessor, postprocessor: its processor pipelines (as saved next to the model
            or returned by `make_pre_post_processors`); omitted, they are built from
            `dataset_stats` with `make_diffusion_pre_post_processors`.
        dataset_stats: LeRobot statistics ({"observation.state": {"min", "max", "mean",
            "std"}, "action": {...}}), used only when the processors are not given.
        action_low, action_high: the env's action bounds (what canonical [-1, 1] maps
            onto); default: the action min/max of the statistics.
    """
    if preprocessor is None or postprocessor is None:
        pre, post = _lerobot()["make_processors"](policy.config, dataset_stats)
        preprocessor = preprocessor if preprocessor is not None else pre
        postprocessor = postprocessor if postprocessor is not None else post
    return LeRobotDiffusionPolicy(policy, preprocessor, postprocessor, action_low=action_low,
                                  action_high=action_high)


class LeRobotDiffusionPolicy(nn.Module):
    """A LeRobot `DiffusionPolicy` + its processors as an expo-sdk `BasePolicy`.

    See the module docstring for the observation layout, the action-space mapping and
    what is reproducible. `self.policy` is the LeRobot policy (its parameters are ours);
    `self.preprocessor` / `self.postprocessor` are LeRobot's pipelines, kept for saving.
    """

    def __init__(
        self,
        policy,
        preprocessor,
        postprocessor,
        *,
        action_low: Sequence[float] | None = None,
        action_high: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        lr = _lerobot()
        if not isinstance(policy, lr["DiffusionPolicy"]):
            raise TypeError(
                f"LeRobotDiffusionPolicy wraps a lerobot DiffusionPolicy, got {type(policy).__name__}")
        cfg = policy.config
        if cfg.image_features:
            raise ValueError(
                f"LeRobotDiffusionPolicy supports state-only policies; this one has camera features "
                f"{sorted(cfg.image_features)}")
        if cfg.robot_state_feature is None or cfg.action_feature is None:
            raise ValueError("the LeRobot config needs an `observation.state` input and an `action` output")
        self.policy = policy
        self.preprocessor, self.postprocessor = preprocessor, postprocessor
        self._obs_norm = _find_step(preprocessor, lr["NormalizerProcessorStep"])
        self._act_unnorm = _find_step(postprocessor, lr["UnnormalizerProcessorStep"])
        if self._obs_norm is None or self._act_unnorm is None:
            raise ValueError(
                "the preprocessor must contain a NormalizerProcessorStep and the postprocessor an "
                "UnnormalizerProcessorStep (as make_pre_post_processors builds them)")

        # Flat observation = concat(observation.state, observation.environment_state).
        self._obs_keys: list[tuple[str, int]] = [(OBS_STATE, int(cfg.robot_state_feature.shape[0]))]
        if cfg.env_state_feature is not None:
            self._obs_keys.append((OBS_ENV_STATE, int(cfg.env_state_feature.shape[0])))
        obs_dim = sum(d for _, d in self._obs_keys)
        action_dim = int(cfg.action_feature.shape[0])

        stats = self._obs_norm.stats or {}
        if action_low is None or action_high is None:
            a_stats = stats.get(ACTION, {})
            if "min" not in a_stats or "max" not in a_stats:
                raise ValueError(
                    "give action_low/action_high (the env's action bounds): the LeRobot statistics "
                    "have no action min/max to fall back on")
            logger.warning("LeRobotDiffusionPolicy: no env action bounds given; using the dataset's "
                           "action min/max from LeRobot's statistics as the canonical box")
            action_low = action_low if action_low is not None else _floats(a_stats["min"])
            action_high = action_high if action_high is not None else _floats(a_stats["max"])
        action_low, action_high = _floats(action_low), _floats(action_high)

        self._spec = PolicySpec(
            obs_shape=(obs_dim,), action_dim=action_dim,
            action_low=tuple(action_low), action_high=tuple(action_high),
            horizon=int(cfg.n_action_steps), n_obs_steps=int(cfg.n_obs_steps),
            extra={"lerobot_horizon": int(cfg.horizon),
                   "obs_layout": [[k, d] for k, d in self._obs_keys]},
        )
        if cfg.n_obs_steps - 1 + cfg.n_action_steps > cfg.horizon:
            raise ValueError(f"n_action_steps ({cfg.n_action_steps}) must be <= horizon - n_obs_steps + 1 "
                             f"({cfg.horizon - cfg.n_obs_steps + 1})")
        mean, std = _obs_stats(stats, self._obs_keys)
        # Shared with the edit head and critic (their observation standardization).
        self.normalizer = Normalizer(action_low, action_high, obs_mean=mean, obs_std=std, obs_dim=obs_dim)

    # ------------------------------------------------------------------ protocol
    @property
    def spec(self) -> PolicySpec:
        return self._spec

    @torch.no_grad()
    def sample(self, obs, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """obs [B, D] or [B, n_obs_steps, D] (env units) -> canonical actions [B, N, H, A]."""
        from diffusers.utils.torch_utils import randn_tensor

        batch = self._obs_batch(obs)
        b = next(iter(batch.values())).shape[0]
        batch = {k: v.repeat_interleave(num_samples, dim=0) for k, v in batch.items()}
        model = self.policy.diffusion
        global_cond = model._prepare_global_conditioning(batch)  # [B * N, cond]
        cfg = self.policy.config
        noise = randn_tensor((b * num_samples, cfg.horizon, self._spec.action_dim), generator=generator,
                             device=global_cond.device, dtype=global_cond.dtype)
        x = model.conditional_sample(b * num_samples, global_cond=global_cond, generator=generator, noise=noise)
        start = cfg.n_obs_steps - 1
        x = x[:, start:start + cfg.n_action_steps]  # LeRobot-normalized [B * N, H, A]
        env = self._act_unnorm._normalize_action(x, inverse=True)
        canonical = self.normalizer.action_to_canonical(env.to(x.dtype))
        return canonical.clamp(-1.0, 1.0).reshape(b, num_samples, self._spec.horizon, self._spec.action_dim)

    def imitation_loss(self, obs, actions: torch.Tensor) -> torch.Tensor:
        """LeRobot's diffusion loss. obs [B, D] or [B, n_obs_steps, D]; actions canonical [B, H, A]."""
        spec, cfg = self._spec, self.policy.config
        actions = actions.reshape(actions.shape[0], spec.horizon, spec.action_dim)
        env = self.normalizer.action_to_env(actions)
        a = self._obs_norm._normalize_action(env, inverse=False).to(actions.dtype)
        start = cfg.n_obs_steps - 1
        after = cfg.horizon - start - spec.horizon
        traj = torch.cat([a[:, :1].expand(-1, start, -1), a, a[:, -1:].expand(-1, after, -1)], dim=1)
        is_pad = torch.ones(a.shape[0], cfg.horizon, dtype=torch.bool, device=a.device)
        is_pad[:, start:start + spec.horizon] = False
        batch = self._obs_batch(obs)
        batch.update({ACTION: traj, "action_is_pad": is_pad})
        with _config_value(cfg, "do_mask_loss_for_padding", bool(is_pad.any()) or cfg.do_mask_loss_for_padding):
            loss, _ = self.policy.forward(batch)
        return loss

    # ------------------------------------------------------------------ helpers
    def _obs_batch(self, obs) -> dict[str, torch.Tensor]:
        """Flat env observations -> LeRobot's normalized {key: [B, n_obs_steps, d]}."""
        if not isinstance(obs, torch.Tensor):
            raise TypeError(f"LeRobotDiffusionPolicy takes flat tensor observations [B, D], got {type(obs).__name__}")
        k, d = self._spec.n_obs_steps, self._spec.flat_obs_dim
        if obs.ndim == 2 and obs.shape[1] == d:
            obs = obs.unsqueeze(1).expand(-1, k, -1)
        elif not (obs.ndim == 3 and obs.shape[1:] == (k, d)):
            raise ValueError(f"observations must be [B, {d}] or [B, n_obs_steps={k}, {d}], got {tuple(obs.shape)}")
        param = next(self.policy.parameters())
        obs = obs.to(device=param.device, dtype=param.dtype)
        out, i = {}, 0
        for key, size in self._obs_keys:
            out[key] = obs[..., i:i + size]
            i += size
        return {key: v.to(obs.dtype) for key, v in self._obs_norm._normalize_observation(out, inverse=False).items()}

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, save_directory: str | Path) -> None:
        """LeRobot's files (config.json, model.safetensors, processor pipelines) + the env bounds."""
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        self.policy.save_pretrained(path)
        self.preprocessor.save_pretrained(path, config_filename=PREPROCESSOR_FILE)
        self.postprocessor.save_pretrained(path, config_filename=POSTPROCESSOR_FILE)
        (path / BOUNDS_FILE).write_text(json.dumps(
            {"action_low": list(self._spec.action_low), "action_high": list(self._spec.action_high)}, indent=2))

    @classmethod
    def from_pretrained(
        cls,
        pretrained_path: str | Path,
        *,
        action_low: Sequence[float] | None = None,
        action_high: Sequence[float] | None = None,
        device: str | None = "cpu",
    ) -> "LeRobotDiffusionPolicy":
        """Load from a local directory written by LeRobot's `save_pretrained` (or ours).

        Reads only local files. Env bounds: the arguments, else `expo_sdk_lerobot.json`,
        else the action min/max of LeRobot's statistics. `device`: where the weights go
        (default CPU, whatever the saved config says); None keeps LeRobot's choice.
        """
        lr = _lerobot()
        path = Path(pretrained_path)
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is not a directory written by save_pretrained")
        from lerobot.configs.policies import PreTrainedConfig

        config = PreTrainedConfig.from_pretrained(path)
        if device is not None:
            config.device = device
        policy = lr["DiffusionPolicy"].from_pretrained(path, config=config, strict=True)  # no silently random weights
        overrides = {"device_processor": {"device": device}} if device is not None else None
        Pipeline = lr["PolicyProcessorPipeline"]
        pre = Pipeline.from_pretrained(path, config_filename=PREPROCESSOR_FILE, overrides=overrides)
        post = Pipeline.from_pretrained(path, config_filename=POSTPROCESSOR_FILE,
                                        to_transition=lr["policy_action_to_transition"],
                                        to_output=lr["transition_to_policy_action"])
        bounds_file = path / BOUNDS_FILE
        if (action_low is None or action_high is None) and bounds_file.is_file():
            bounds = json.loads(bounds_file.read_text())
            action_low = action_low if action_low is not None else bounds["action_low"]
            action_high = action_high if action_high is not None else bounds["action_high"]
        return cls(policy, pre, post, action_low=action_low, action_high=action_high)

    @staticmethod
    def matches_config(config: dict) -> bool:
        """True for a LeRobot Diffusion policy's config.json (adapter detection)."""
        return config.get("type") == "diffusion" and {"n_obs_steps", "noise_scheduler_type"} <= set(config)


def _find_step(pipeline, step_type):
    return next((s for s in getattr(pipeline, "steps", []) if isinstance(s, step_type)), None)


def _floats(x) -> list[float]:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return [float(v) for v in np.asarray(x, dtype=np.float64).reshape(-1)]


def _obs_stats(stats: dict, keys: list[tuple[str, int]]) -> tuple[list[float] | None, list[float] | None]:
    """Observation mean/std for the shared Normalizer, from LeRobot's statistics.

    mean/std when present, else the centre and half-range of min/max, else None
    (identity) when any key has neither.
    """
    means, stds = [], []
    for key, size in keys:
        s = stats.get(key, {})
        if "mean" in s and "std" in s:
            m, sd = _floats(s["mean"]), _floats(s["std"])
        elif "min" in s and "max" in s:
            lo, hi = _floats(s["min"]), _floats(s["max"])
            m = [(a + b) / 2 for a, b in zip(lo, hi)]
            sd = [max((b - a) / 2, 1e-6) for a, b in zip(lo, hi)]
        else:
            return None, None
        if len(m) != size or len(sd) != size:
            return None, None
        means += m
        stds += sd
    return means, stds


@contextmanager
def _config_value(config, name: str, value):
    old = getattr(config, name)
    setattr(config, name, value)
    try:
        yield
    finally:
        setattr(config, name, old)
