"""The on-the-fly (OTF) policy: N base samples, N edits of them, pick by a critic.

    candidates = {a_1..a_N} U {a_1 + â_1 .. a_N + â_N}        ([B, 2N, HA], raw first)
    argmax:  a* = candidates[argmax_i score_i]
    soft:    a* ~ softmax(score / temperature)                  (paper section 4.3)

The same selector acts in the env (scored by the target critic) and builds the TD
target at s'. For the target, `backup_value` returns the value of the selected action
under the REDQ min, or for soft selection the expected value plus the closed-form entropy
of the categorical over candidates (the "entropy backup").
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch

from .critic import CriticEnsemble, TargetCritic
from .edit_head import EditHead


class OnTheFlySelector:
    """Builds the 2N candidates and selects among them.

    Args:
        num_samples: N base samples per state (paper: 8).
        mode: "argmax" (EXPO) or "soft" (EXPO with entropy backup).
        score: how the ensemble scores a candidate: "mean" over members or "min".
        temperature: softmax temperature for "soft" mode.
        include_base: keep the N unedited samples among the candidates (ablation switch).
        entropy_coef: weight of the selection entropy in the soft backup; None uses
            `temperature` (the soft-Q form, paper section 4.3); 0 backs up the expected
            value only. See the module docstring for when a bonus turns against success.
    """

    def __init__(
        self,
        num_samples: int = 8,
        mode: Literal["argmax", "soft"] = "argmax",
        score: Literal["mean", "min"] = "mean",
        temperature: float = 1.0,
        include_base: bool = True,
        entropy_coef: float | None = None,
    ) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if mode not in ("argmax", "soft"):
            raise ValueError(f"selector mode must be 'argmax' or 'soft', got {mode!r}")
        if score not in ("mean", "min"):
            raise ValueError(f"selector score must be 'mean' or 'min', got {score!r}")
        if mode == "soft" and temperature <= 0:
            raise ValueError(f"soft selection needs temperature > 0, got {temperature}")
        if entropy_coef is not None and entropy_coef < 0:
            raise ValueError(f"entropy_coef must be >= 0 (or None for the temperature), got {entropy_coef}")
        self.num_samples, self.mode, self.score = num_samples, mode, score
        self.temperature, self.include_base = temperature, include_base
        self.entropy_coef = temperature if entropy_coef is None else entropy_coef

    @property
    def num_candidates(self) -> int:
        return 2 * self.num_samples if self.include_base else self.num_samples

    def max_entropy_bonus(self) -> float:
        """The largest per-step bonus the backup can add: entropy_coef * log(candidates).
        Zero for argmax selection, which backs up no entropy."""
        if self.mode != "soft":
            return 0.0
        return self.entropy_coef * math.log(self.num_candidates)

    def candidates(
        self,
        obs: torch.Tensor,
        base_actions: torch.Tensor,
        edit_head: EditHead | None,
        generator: torch.Generator | None = None,
        deterministic: bool = False,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """obs [B, D] normalized, base_actions [B, N, HA] -> candidates [B, 2N, HA].

        `deterministic` uses the mean edit (evaluation). With no edit head (base-only
        ablation) the candidates are the N base samples. `noise` [B, N, HA]: the edit's
        standard normal draws, instead of drawing them from `generator`.
        """
        if edit_head is None:
            return base_actions
        obs_n = obs.unsqueeze(1).expand(-1, base_actions.shape[1], -1)
        edited = edit_head.edit(obs_n, base_actions, generator=generator, deterministic=deterministic, noise=noise)
        if not self.include_base:
            return edited
        return torch.cat([base_actions, edited], dim=1)

    def scores(self, q: torch.Tensor) -> torch.Tensor:
        """Ensemble Q [E, B, C] -> one score per candidate [B, C]."""
        return q.mean(0) if self.score == "mean" else q.min(0).values

    def choose(self, scores: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """scores [B, C] -> index [B] of the chosen candidate."""
        if self.mode == "argmax":
            return scores.argmax(dim=1)
        probs = torch.softmax(scores / self.temperature, dim=1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    @torch.no_grad()
    def select(
        self,
        obs: torch.Tensor,
        candidates: torch.Tensor,
        critic: CriticEnsemble,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pick one action per state. Returns (action [B, HA], index [B])."""
        q = _score(critic, obs, candidates)  # [E, B, C]
        index = self.choose(self.scores(q), generator)
        return gather_candidates(candidates, index), index

    @torch.no_grad()
    def act(
        self,
        obs: torch.Tensor,
        base_actions: torch.Tensor,
        edit_head: EditHead | None,
        critic: CriticEnsemble,
        generator: torch.Generator | None = None,
        deterministic: bool = False,
        scorer: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The OTF policy in one call: edit the N base samples, score, choose.

        obs [B, D] normalized, base_actions [B, N, HA] -> (action [B, HA], index [B]).
        `deterministic` uses the mean edit (evaluation and deployment). `scorer` replaces
        `candidates_and_scores` (the Finetuner passes its torch.compile'd version with
        `compile_acting`); the random draws stay here, in the same order either way.
        """
        if edit_head is not None:
            edit_head.eval()
        noise = None
        if edit_head is not None and not deterministic:  # drawn in the edit head's dtype, as it would
            dtype = next(edit_head.parameters()).dtype
            noise = torch.randn(base_actions.shape, generator=generator, device=base_actions.device, dtype=dtype)
        candidates, scores = (scorer or self.candidates_and_scores)(obs, base_actions, edit_head, critic, noise)
        index = self.choose(scores, generator)
        return gather_candidates(candidates, index), index

    @torch.no_grad()
    def candidates_and_scores(
        self,
        obs: torch.Tensor,
        base_actions: torch.Tensor,
        edit_head: EditHead | None,
        critic: CriticEnsemble,
        noise: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The deterministic middle of `act`, a function of tensors only (what torch.compile
        traces): candidates [B, C, HA] with the given edit noise (None: the mean edit) and
        their scores [B, C]."""
        candidates = self.candidates(obs, base_actions, edit_head, deterministic=noise is None, noise=noise)
        return candidates, self.scores(_score(critic, obs, candidates))

    @torch.no_grad()
    def backup_value(
        self,
        next_obs: torch.Tensor,
        candidates: torch.Tensor,
        target: TargetCritic,
        generator: torch.Generator | None = None,
        score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """V(s') for the TD target from the *target* ensemble. Returns [B].

        `score`: the target ensemble's scoring to use (obs, candidates) -> [E, B, C] (a
        compiled `CriticEnsemble.score`); by default the target's own."""
        q = score(next_obs, candidates) if score is not None else _score(target.target, next_obs, candidates)
        q_min = target.min_over_subset(q, generator)  # [B, C]
        scores = self.scores(q)
        if self.mode == "argmax":
            return q_min.gather(1, scores.argmax(dim=1, keepdim=True)).squeeze(1)
        log_probs = torch.log_softmax(scores / self.temperature, dim=1)
        probs = log_probs.exp()
        entropy = -(probs * log_probs).sum(1)
        return (probs * q_min).sum(1) + self.entropy_coef * entropy


def _score(critic, obs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Ensemble Q of candidates: obs [B, D], candidates [B, C, HA] -> [E, B, C].

    `CriticEnsemble.score` shares the observation's first-layer work across candidates;
    any other critic module is called on the broadcast observation."""
    if isinstance(critic, CriticEnsemble):
        return critic.score(obs, candidates)
    return critic(obs.unsqueeze(1), candidates)


def gather_candidates(candidates: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """candidates [B, C, HA], index [B] -> [B, HA]."""
    return candidates[torch.arange(candidates.shape[0], device=candidates.device), index]
