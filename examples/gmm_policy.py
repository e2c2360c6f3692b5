"""A Gaussian-mixture MLP policy as an expo-sdk base policy: the adapter guide's full example.

K Gaussians over the action chunk [H * A] in the canonical space [-1, 1]; an MLP maps the
normalized observation to mixture logits, means and log-stds. Only public imports.
"""

from __future__ import annotations

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from expo_sdk.normalization import Normalizer
from expo_sdk.policy import PolicySpec


def _draw(fn, shape, generator, device):
    # Draw on the generator's device, then move: a CPU generator works for a CUDA policy.
    return fn(shape, generator=generator, device=generator.device if generator is not None else device).to(device)


class GMMPolicy(nn.Module, PyTorchModelHubMixin, library_name="gmm-policy", tags=["expo", "robotics"]):
    """pi(a | s) = sum_k w_k(s) N(a; mu_k(s), sigma_k(s)^2), clamped to [-1, 1].

    Every `__init__` argument is JSON, so `save_pretrained` writes it to config.json; the
    normalizer's statistics are buffers and go to model.safetensors with the weights.
    """

    def __init__(self, obs_dim: int, action_dim: int, normalizer: dict, horizon: int = 1,
                 num_components: int = 5, hidden_dim: int = 256, num_layers: int = 2) -> None:
        super().__init__()
        self.normalizer = Normalizer.from_dict(normalizer)
        self.k, self.horizon, self.action_dim = num_components, horizon, action_dim
        self.chunk = horizon * action_dim  # the mixture is over whole chunks, not per step
        layers, width = [], obs_dim
        for _ in range(num_layers):
            layers, width = layers + [nn.Linear(width, hidden_dim), nn.Mish()], hidden_dim
        self.net = nn.Sequential(*layers, nn.Linear(width, num_components * (1 + 2 * self.chunk)))
        low, high = self.normalizer.action_low.tolist(), self.normalizer.action_high.tolist()
        self.spec = PolicySpec(obs_shape=(obs_dim,), action_dim=action_dim, action_low=tuple(low),
                               action_high=tuple(high), horizon=horizon)

    @classmethod
    def for_dataset(cls, observations, low, high, **kw) -> GMMPolicy:
        """A fresh policy whose normalizer is fitted on demonstration observations [M, D]."""
        norm = Normalizer.fit(observations, low, high)
        return cls(norm.obs_dim, norm.action_dim, norm.to_dict(), **kw)

    def mixture(self, obs: torch.Tensor):
        """obs [B, D] env units -> logits [B, K], means [B, K, H*A], stds [B, K, H*A]."""
        out = self.net(self.normalizer.normalize_obs(obs))
        logits, mu, log_std = out.split([self.k, self.k * self.chunk, self.k * self.chunk], dim=-1)
        shape = (obs.shape[0], self.k, self.chunk)
        return logits, torch.tanh(mu).view(shape), log_std.clamp(-5.0, 1.0).exp().view(shape)

    @torch.no_grad()
    def sample(self, obs: torch.Tensor, num_samples: int, generator: torch.Generator | None = None):
        """obs [B, D] env units -> canonical actions [B, N, H, A]; all noise from `generator`."""
        b, n = obs.shape[0], num_samples
        logits, mu, std = self.mixture(obs)
        u = _draw(torch.rand, (b, n, 1), generator, obs.device)  # inverse-CDF pick of the component
        comp = (logits.softmax(-1).cumsum(-1)[:, None] < u).sum(-1).clamp_max(self.k - 1)  # [B, N]
        idx = comp[..., None].expand(b, n, self.chunk)
        eps = _draw(torch.randn, (b, n, self.chunk), generator, obs.device)
        actions = mu.gather(1, idx) + std.gather(1, idx) * eps
        return actions.clamp(-1.0, 1.0).view(b, n, self.horizon, self.action_dim)

    def imitation_loss(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood. obs [B, D] env units; actions canonical [B, H, A] -> scalar."""
        logits, mu, std = self.mixture(obs)
        log_p = torch.distributions.Normal(mu, std).log_prob(actions.reshape(obs.shape[0], 1, -1)).sum(-1)
        return -(log_p + logits.log_softmax(-1)).logsumexp(-1).mean()

    @staticmethod
    def matches_config(config: dict) -> bool:
        """True for a config.json this class wrote (how `load_policy` picks the adapter)."""
        return {"num_components", "normalizer"} <= set(config)
