"""The contract between expo-sdk and a user's pretrained policy.

A base policy is anything that can draw N action samples per observation, batched and
without hidden state. It speaks a *canonical* action space: every action dimension is
scaled to [-1, 1] by the policy's own normalizer (see `normalization.py`). The edit
head, the critic and the replay buffer all live in that space too, so the only place
where env units appear is the boundary with the environment.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Protocol, runtime_checkable

import torch

Obs = torch.Tensor | Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class PolicySpec:
    """What a base policy consumes and produces.

    Attributes:
        obs_shape: shape of one observation (without batch), or a dict of shapes for
            dict observations.
        action_dim: A, the size of one action.
        horizon: H, the length of the action chunk `sample` returns (1 if no chunking).
        n_obs_steps: how many past observations the policy looks at (1 = current only).
        action_low / action_high: the env's action bounds, length A. Canonical actions
            in [-1, 1] map affinely onto them.
    """

    obs_shape: tuple[int, ...] | dict[str, tuple[int, ...]]
    action_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    horizon: int = 1
    n_obs_steps: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action_dim < 1:
            raise ValueError(f"PolicySpec.action_dim must be >= 1, got {self.action_dim}")
        if self.horizon < 1 or self.n_obs_steps < 1:
            raise ValueError(
                f"PolicySpec.horizon and n_obs_steps must be >= 1, got {self.horizon} "
                f"and {self.n_obs_steps}"
            )
        for name in ("action_low", "action_high"):
            bounds = getattr(self, name)
            if len(bounds) != self.action_dim:
                raise ValueError(
                    f"PolicySpec.{name} has {len(bounds)} entries but action_dim is "
                    f"{self.action_dim}; give one bound per action dimension"
                )
        if any(lo >= hi for lo, hi in zip(self.action_low, self.action_high)):
            raise ValueError(
                "PolicySpec.action_low must be strictly below action_high in every "
                f"dimension, got low={self.action_low} high={self.action_high}"
            )

    @property
    def flat_obs_dim(self) -> int:
        """Size of one flattened observation (sum over keys for dict observations)."""
        if isinstance(self.obs_shape, dict):
            return sum(_numel(s) for s in self.obs_shape.values())
        return _numel(self.obs_shape)

    @property
    def chunk_dim(self) -> int:
        """H * A: the size of one flattened action chunk, what the critic scores."""
        return self.horizon * self.action_dim

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["obs_shape"] = (
            {k: list(v) for k, v in self.obs_shape.items()}
            if isinstance(self.obs_shape, dict)
            else list(self.obs_shape)
        )
        d["action_low"] = list(self.action_low)
        d["action_high"] = list(self.action_high)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PolicySpec":
        d = dict(d)
        shape = d["obs_shape"]
        d["obs_shape"] = (
            {k: tuple(v) for k, v in shape.items()} if isinstance(shape, dict) else tuple(shape)
        )
        d["action_low"] = tuple(float(x) for x in d["action_low"])
        d["action_high"] = tuple(float(x) for x in d["action_high"])
        return cls(**d)

    @classmethod
    def from_spaces(cls, observation_space, action_space, horizon: int = 1) -> "PolicySpec":
        """Build a spec from gymnasium `Box` spaces (flat observations)."""
        return cls(
            obs_shape=tuple(observation_space.shape),
            action_dim=int(action_space.shape[0]),
            action_low=tuple(float(x) for x in action_space.low),
            action_high=tuple(float(x) for x in action_space.high),
            horizon=horizon,
        )


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


@runtime_checkable
class BasePolicy(Protocol):
    """A pretrained expressive policy, as expo-sdk sees it.

    Implementations must be stateless between calls (no internal action queue): the
    fine-tuner calls `sample` on batches of unrelated states.
    """

    @property
    def spec(self) -> PolicySpec: ...

    def sample(
        self, obs: Obs, num_samples: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw actions. `obs`: [B, *obs_shape] (or a dict of such tensors).

        Returns canonical actions in [-1, 1] of shape [B, N, H, A], N = num_samples.
        """
        ...

    def parameters(self): ...

    def to(self, *args, **kwargs): ...


def supports_imitation(policy: Any) -> bool:
    """True when the policy exposes `imitation_loss(obs, actions) -> scalar`."""
    return callable(getattr(policy, "imitation_loss", None))


def check_policy(policy: Any, batch_size: int = 2, num_samples: int = 3) -> PolicySpec:
    """Check that `policy` follows the `BasePolicy` protocol; raise with a fix if not.

    Draws one small batch of samples from zero observations and checks shape, dtype,
    finiteness and bounds. Returns the spec.
    """
    for attr in ("spec", "sample"):
        if not hasattr(policy, attr):
            raise TypeError(
                f"{type(policy).__name__} is not a BasePolicy: it has no `{attr}`. "
                "Implement `spec` and `sample(obs, num_samples, generator=None)` or wrap "
                "your model with an adapter from `expo_sdk.adapters`."
            )
    spec = policy.spec
    if not isinstance(spec, PolicySpec):
        raise TypeError(f"policy.spec must be a PolicySpec, got {type(spec).__name__}")
    obs = zeros_obs(spec, batch_size, policy_device(policy))
    with torch.no_grad():
        actions = policy.sample(obs, num_samples)
    validate_actions(actions, (batch_size, num_samples, spec.horizon, spec.action_dim),
                     f"{type(policy).__name__}.sample")
    return spec


def validate_actions(actions: torch.Tensor, expected: tuple[int, ...], who: str, hint: str = "",
                     check_bounds: bool = True) -> None:
    """Raise a clear error unless `actions` are finite float canonical actions of shape `expected`.

    `who` names the function that produced them (e.g. "MyPolicy.sample"); `hint` is appended
    to the shape error.
    """
    if tuple(actions.shape) != tuple(expected):
        raise ValueError(f"{who} returned shape {tuple(actions.shape)}; expected [B, N, H, A] = "
                         f"{tuple(expected)}{hint}")
    if not actions.is_floating_point():
        raise TypeError(f"{who} returned {actions.dtype} actions; return floating point")
    if not torch.isfinite(actions).all():
        raise ValueError(f"{who} returned NaN or inf actions")
    if check_bounds and actions.abs().max() > 1.0 + 1e-5:
        raise ValueError(
            f"{who} returned actions outside the canonical range [-1, 1] (max |a| = "
            f"{actions.abs().max():.3f}); normalize them (Normalizer.action_to_canonical) and clip"
        )


def policy_device(policy: Any) -> torch.device:
    """Where a policy's tensors live: its first parameter's device, else its first buffer's
    (a policy of buffers only), else the CPU (not a module)."""
    for tensors in ("parameters", "buffers"):
        try:
            return next(iter(getattr(policy, tensors)())).device
        except (StopIteration, AttributeError, TypeError):
            continue
    return torch.device("cpu")


def zeros_obs(spec: PolicySpec, batch_size: int, device: torch.device | str = "cpu") -> Obs:
    """A batch of all-zero observations matching `spec` (for shape checks)."""
    if isinstance(spec.obs_shape, dict):
        return {k: torch.zeros(batch_size, *s, device=device) for k, s in spec.obs_shape.items()}
    return torch.zeros(batch_size, *spec.obs_shape, device=device)
