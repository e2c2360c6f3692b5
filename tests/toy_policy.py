"""A deliberately flawed base policy for learning tests: multimodal and biased.

With probability `p_wrong` a sample comes from the "wrong mode", a controller that backs
away from the goal; otherwise it is a proportional controller toward the goal with a
constant bias, which parks the point `bias / gain` away from the goal: outside the success
tolerance. EXPO must pick the good mode (selector) and cancel the bias (edit head) to
succeed. Neither suffices alone: the wrong mode only ever moves away from the goal, so
no choice among raw samples removes the bias (a uniform-noise wrong mode would: a
critic could then pick lucky noise samples and never need the edit head), and edits
within beta of a wrong-mode sample still retreat.
"""

from __future__ import annotations

import torch
from torch import nn

from expo_sdk import Normalizer, PolicySpec


class BiasedMixturePolicy(nn.Module):
    def __init__(self, bias=(0.35, -0.35), gain: float = 2.0, p_wrong: float = 0.5, noise: float = 0.05):
        super().__init__()
        self.register_buffer("bias", torch.tensor(bias, dtype=torch.float32))
        self.gain, self.p_wrong, self.noise = gain, p_wrong, noise
        self.normalizer = Normalizer([-1.0, -1.0], [1.0, 1.0], obs_dim=4)
        self._spec = PolicySpec(obs_shape=(4,), action_dim=2, action_low=(-1.0, -1.0),
                                action_high=(1.0, 1.0))

    @property
    def spec(self) -> PolicySpec:
        return self._spec

    @torch.no_grad()
    def sample(self, obs, num_samples, generator=None):
        b = obs.shape[0]
        pos, goal = obs[:, None, :2], obs[:, None, 2:]
        toward = self.gain * (goal - pos)
        noise = torch.randn(b, num_samples, 2, generator=generator, device=obs.device) * self.noise
        pick = torch.rand(b, num_samples, 1, generator=generator, device=obs.device) < self.p_wrong
        actions = torch.where(pick, -toward, toward + self.bias) + noise
        return actions.clamp(-1, 1).unsqueeze(2)  # [B, N, 1, 2]
