"""A Q-ensemble evaluated as one batched module, with a Polyak-averaged target copy.

E members are stored as stacked weights [E, in, out] and evaluated with one batched
matmul per layer, so the cost of an ensemble of 10 is one kernel launch per layer, not a
Python loop over members. Each hidden layer is Linear -> LayerNorm -> ReLU (RLPD style),
every member with its own parameters, LayerNorm's included.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .hub import HubMixin


class EnsembleLinear(nn.Module):
    """E independent linear layers applied in one batched matmul: [E, M, in] -> [E, M, out]."""

    def __init__(self, ensemble_size: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_dim))
        # Same init as nn.Linear, member by member.
        bound = 1.0 / math.sqrt(in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm with each member's own scale and shift: [E, M, dim] -> [E, M, dim].

    The members of the paper's ensemble (RLPD's vmapped MLPs) are independent networks,
    LayerNorm parameters included. Checkpoints written before this class existed hold one
    LayerNorm shared by all members ([dim] weight and bias); they load as E equal copies,
    which is the same function.
    """

    def __init__(self, ensemble_size: int, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.ones(ensemble_size, 1, dim))
        self.bias = nn.Parameter(torch.zeros(ensemble_size, 1, dim))
        # aten's CPU LayerNorm is ~2x faster with an explicit unit affine than without one
        # (measured on [10, 512, 256]: 0.36 vs 0.82 ms); the members' own affine follows.
        self.register_buffer("_unit", torch.ones(dim), persistent=False)
        self.register_buffer("_zero", torch.zeros(dim), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.layer_norm(x, (self.dim,), self._unit, self._zero, self.eps)
        if torch.is_grad_enabled():
            return torch.addcmul(self.bias, normed, self.weight)
        return normed.mul_(self.weight).add_(self.bias)  # scoring: in place, on a fresh tensor

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for name in ("weight", "bias"):
            shared = state_dict.get(prefix + name)
            if shared is not None and shared.shape == (self.dim,):  # the pre-ensemble format
                state_dict[prefix + name] = shared.expand_as(getattr(self, name)).clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class CriticEnsemble(nn.Module, HubMixin, library_name="expo-sdk", tags=["expo"]):
    """Q_phi(s, a) for E members at once.

    Args:
        obs_dim: D (normalized, flattened observation).
        action_dim: H*A (canonical, flattened action chunk).
        ensemble_size: E (paper: 10).
        hidden_dim, num_layers: per-member MLP (paper: 256 x 2).
    """

    def __init__(
        self, obs_dim: int, action_dim: int, ensemble_size: int = 10, hidden_dim: int = 256,
        num_layers: int = 2,
    ) -> None:
        super().__init__()
        self.obs_dim, self.action_dim, self.ensemble_size = obs_dim, action_dim, ensemble_size
        dims = [obs_dim + action_dim] + [hidden_dim] * num_layers
        self.hidden = nn.ModuleList(
            EnsembleLinear(ensemble_size, i, o) for i, o in zip(dims[:-1], dims[1:])
        )
        self.hidden_dim = hidden_dim
        self.norms = nn.ModuleList(EnsembleLayerNorm(ensemble_size, hidden_dim) for _ in range(num_layers))
        self.out = EnsembleLinear(ensemble_size, hidden_dim, 1)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """obs [..., D], action [..., HA] (same leading dims) -> Q [E, ...]."""
        if obs.shape[-1] != self.obs_dim or action.shape[-1] != self.action_dim:
            raise ValueError(
                f"CriticEnsemble expects obs [..., {self.obs_dim}] and actions [..., "
                f"{self.action_dim}], got {tuple(obs.shape)} and {tuple(action.shape)}"
            )
        lead = action.shape[:-1]
        x = torch.cat([obs.expand(*lead, -1), action], dim=-1).reshape(1, -1, self.obs_dim + self.action_dim)
        x = x.expand(self.ensemble_size, -1, -1)
        return self._trunk(self.hidden[0](x)).reshape(self.ensemble_size, *lead)

    # On CPU, `score` runs states in blocks whose [E, rows*C, hidden] activations stay in a
    # core's L2 cache: the LayerNorm/ReLU passes over one full TD target's activations (E=10,
    # B*2N=4096 rows: 42 MB) otherwise stream from L3 or memory. Rows per block are a power
    # of two (blocks divide the usual batch sizes evenly: one compiled shape). On a Xeon with
    # 2 MB of L2 per core, 2**19-2**21 elements (8-32 states of 16 candidates at E=10, hidden
    # 256) scored alike, eager and compiled, and one unblocked call ~25% slower
    # (benchmarks/cpu_blocking.py); 2**20 sits in the middle. On CUDA one call is better.
    score_block_elements: int = 1 << 20

    def score(self, obs: torch.Tensor, candidates: torch.Tensor,
              score_block: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Q of C candidate actions per state: obs [B, D], candidates [B, C, HA] -> [E, B, C].

        Same as `self(obs.unsqueeze(1), candidates)`, cheaper: the observation's share of
        the first layer is computed once per state instead of once per candidate, and on
        CPU the states are scored in cache-sized blocks (same values: rows are independent).
        `score_block` replaces `_score_block` (the Finetuner passes its torch.compile'd
        version with `compile_critic`: one block shape compiles once, however many blocks).
        """
        score_block = score_block or self._score_block
        b, c = candidates.shape[:2]
        rows = self.score_block_elements // (self.ensemble_size * c * self.hidden_dim)
        rows = 1 << max(0, rows.bit_length() - 1)  # a power of two, at least one state
        if candidates.device.type != "cpu" or b <= rows:
            return score_block(obs, candidates)
        return torch.cat([score_block(obs[s:s + rows], candidates[s:s + rows]) for s in range(0, b, rows)], 1)

    def _score_block(self, obs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        (b, c, a), e, d = candidates.shape, self.ensemble_size, self.obs_dim
        first = self.hidden[0]
        h_obs = torch.baddbmm(first.bias, obs.unsqueeze(0).expand(e, -1, -1), first.weight[:, :d])  # [E, B, H]
        x = torch.bmm(candidates.reshape(1, b * c, a).expand(e, -1, -1), first.weight[:, d:])  # [E, B*C, H]
        x = x.view(e, b, c, -1).add_(h_obs.unsqueeze(2)).view(e, b * c, -1)
        return self._trunk(x).view(e, b, c)

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        """First layer's output [E, M, hidden] -> Q [E, M]."""
        for i, norm in enumerate(self.norms):
            if i > 0:
                # bmm, then the bias: baddbmm first copies the broadcast bias into its output
                # and accumulates onto it, which measured slower on CPU; inductor
                # (compile_critic) fuses this add into the LayerNorm's loop.
                layer = self.hidden[i]
                x = torch.bmm(x, layer.weight).add_(layer.bias)
            # In place: LayerNorm's backward does not need its output, and scoring 2N
            # candidates makes these [E, B*2N, hidden] activations the largest tensors.
            x = torch.relu_(norm(x))
        if torch.compiler.is_compiling():
            # The one-unit output layer as a dot product, which inductor fuses into the last
            # LayerNorm/ReLU loop (no [E, M, hidden] round trip through memory). Eager, the
            # same product would allocate that temporary: a matmul is the better kernel there.
            return (x * self.out.weight.transpose(1, 2)).sum(-1) + self.out.bias.squeeze(-1)
        return self.out(x).squeeze(-1)


class TargetCritic:
    """Holds `critic` and its slowly-moving copy; owns Polyak averaging and the REDQ min."""

    def __init__(self, critic: CriticEnsemble, num_min_q: int = 2) -> None:
        if not 1 <= num_min_q <= critic.ensemble_size:
            raise ValueError(
                f"num_min_q must be in [1, ensemble_size={critic.ensemble_size}], got {num_min_q}"
            )
        self.online = critic
        self.target = copy.deepcopy(critic).requires_grad_(False)
        self.num_min_q = num_min_q

    @torch.no_grad()
    def polyak_update(self, tau: float) -> None:
        """target <- (1 - tau) target + tau online."""
        online = list(self.online.parameters())
        target = list(self.target.parameters())
        torch._foreach_lerp_(target, online, tau)

    def min_over_subset(self, q: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """REDQ: min over a random subset of `num_min_q` members. q [E, ...] -> [...]."""
        device = generator.device if generator is not None else q.device
        members = torch.randperm(q.shape[0], generator=generator, device=device)[: self.num_min_q]
        return q[members.to(q.device)].min(dim=0).values
