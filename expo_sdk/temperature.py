"""Automatic entropy temperature (alpha) for the edit head, SAC style.

Pitfall this module guards against: the edit head's entropy can never exceed
|A| log(2 beta) (a uniform density on [-beta, beta]^|A|). SAC's usual target of -|A|/2
is above that cap whenever beta < e^-0.5 / 2 ~ 0.30, and then alpha grows without bound
and edits become uniform noise. `adjust_target_entropy` shifts the target by |A| log beta
(the log-volume of the scaled box), which keeps it reachable for every beta.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn


def max_edit_entropy(action_dim: int, beta: float) -> float:
    """The largest entropy any distribution on [-beta, beta]^A can have: A log(2 beta)."""
    return action_dim * math.log(2.0 * beta)


def resolve_target_entropy(
    action_dim: int, beta: float, target_entropy: float | None, adjust: bool
) -> float:
    """The target entropy to use; warns when it cannot be reached."""
    if target_entropy is None:
        target_entropy = -action_dim / 2.0
        if adjust:
            target_entropy += action_dim * math.log(beta)
    cap = max_edit_entropy(action_dim, beta)
    if target_entropy >= cap:
        warnings.warn(
            f"target entropy {target_entropy:.2f} is unreachable for beta={beta} "
            f"(max entropy of edits is {cap:.2f}); the temperature will grow without bound. "
            "Set adjust_target_entropy=True or a lower target_entropy.",
            stacklevel=2,
        )
    return float(target_entropy)


class Temperature(nn.Module):
    """alpha = exp(log_alpha), trained so the edit head's entropy tracks `target_entropy`."""

    def __init__(self, initial: float = 1.0, target_entropy: float = 0.0) -> None:
        super().__init__()
        if initial <= 0:
            raise ValueError(f"initial temperature must be > 0, got {initial}")
        self.log_alpha = nn.Parameter(torch.tensor(math.log(initial)))
        self.target_entropy = target_entropy

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()

    def loss(self, log_prob: torch.Tensor) -> torch.Tensor:
        """Raise alpha when entropy (-log_prob) is below target, lower it when above."""
        entropy = -log_prob.detach().mean()
        return self.alpha * (entropy - self.target_entropy)
