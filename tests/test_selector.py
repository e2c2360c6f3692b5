import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from expo_sdk import EditHead, OnTheFlySelector
from expo_sdk.critic import CriticEnsemble, TargetCritic


class DistanceCritic(nn.Module):
    """A known Q for testing selection: Q_e(s, a) = -|a - target|^2 + e (member offset)."""

    def __init__(self, target, ensemble_size=3):
        super().__init__()
        self.target, self.ensemble_size = torch.as_tensor(target), ensemble_size

    def forward(self, obs, action):
        q = -((action - self.target) ** 2).sum(-1)
        return torch.stack([q + e for e in range(self.ensemble_size)])


def test_candidates_are_raw_then_edited():
    head = EditHead(obs_dim=2, action_dim=3, beta=0.2, hidden_dim=8)
    sel = OnTheFlySelector(num_samples=4)
    base = torch.rand(5, 4, 3) * 2 - 1
    cands = sel.candidates(torch.randn(5, 2), base, head)
    assert cands.shape == (5, 8, 3)
    assert torch.equal(cands[:, :4], base)
    assert (cands[:, 4:] - base).abs().max() <= 0.2 + 1e-6


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 9))
def test_argmax_selects_the_best_scored_candidate(seed, n):
    g = torch.Generator().manual_seed(seed)
    cands = torch.rand(6, n, 2, generator=g) * 2 - 1
    critic = DistanceCritic(target=[0.3, -0.2])
    action, index = OnTheFlySelector(num_samples=n).select(torch.zeros(6, 1), cands, critic)
    dist = ((cands - torch.tensor([0.3, -0.2])) ** 2).sum(-1)
    assert torch.equal(index, dist.argmin(1))
    assert torch.equal(action, cands[torch.arange(6), dist.argmin(1)])


def test_soft_selection_prefers_high_q_but_is_stochastic():
    cands = torch.tensor([[[0.3, -0.2], [1.0, 1.0]]]).repeat(2000, 1, 1)
    sel = OnTheFlySelector(num_samples=1, mode="soft", temperature=0.5)
    _, index = sel.select(torch.zeros(2000, 1), cands, DistanceCritic([0.3, -0.2]),
                          generator=torch.Generator().manual_seed(0))
    # Q gap = 0.7^2 + 1.2^2 = 1.93, p(best) = 1 / (1 + exp(-1.93 / 0.5)) ~ 0.979
    frac = index.eq(0).float().mean().item()
    assert 0.96 < frac < 0.995


def test_backup_value_uses_the_target_ensemble_subset_at_the_argmax():
    torch.manual_seed(0)
    critic = CriticEnsemble(2, 2, ensemble_size=4, hidden_dim=8)
    holder = TargetCritic(critic, num_min_q=2)
    with torch.no_grad():  # make online and target differ: the backup must use the target
        for p in critic.parameters():
            p.add_(torch.randn_like(p))
    sel = OnTheFlySelector(num_samples=3)
    obs, cands = torch.randn(5, 2), torch.rand(5, 6, 2) * 2 - 1
    value = sel.backup_value(obs, cands, holder, generator=torch.Generator().manual_seed(1))
    q = holder.target(obs.unsqueeze(1), cands)
    members = torch.randperm(4, generator=torch.Generator().manual_seed(1))[:2]
    best = q.mean(0).argmax(1)
    expected = q[members].min(0).values[torch.arange(5), best]
    torch.testing.assert_close(value, expected)


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="num_samples"):
        OnTheFlySelector(num_samples=0)
    with pytest.raises(ValueError, match="mode"):
        OnTheFlySelector(mode="best")


def test_soft_backup_is_expected_value_plus_entropy_bonus():
    torch.manual_seed(0)
    critic = CriticEnsemble(2, 2, ensemble_size=3, hidden_dim=8)
    holder = TargetCritic(critic, num_min_q=2)
    sel = OnTheFlySelector(num_samples=2, mode="soft", temperature=0.3)
    obs, cands = torch.randn(4, 2), torch.rand(4, 4, 2) * 2 - 1
    value = sel.backup_value(obs, cands, holder, generator=torch.Generator().manual_seed(5))
    q = holder.target(obs.unsqueeze(1), cands)
    members = torch.randperm(3, generator=torch.Generator().manual_seed(5))[:2]
    p = torch.softmax(q.mean(0) / 0.3, dim=1)
    expected = (p * q[members].min(0).values).sum(1) - 0.3 * (p * p.log()).sum(1)
    torch.testing.assert_close(value, expected)
    # the entropy bonus makes the soft value exceed the plain expectation
    assert (value > (p * q[members].min(0).values).sum(1)).all()


def test_entropy_coef_weights_the_soft_backup_bonus_and_zero_backs_up_the_expectation():
    torch.manual_seed(0)
    holder = TargetCritic(CriticEnsemble(2, 2, ensemble_size=3, hidden_dim=8), num_min_q=2)
    obs, cands = torch.randn(4, 2), torch.rand(4, 4, 2) * 2 - 1
    q = holder.target(obs.unsqueeze(1), cands)
    members = torch.randperm(3, generator=torch.Generator().manual_seed(5))[:2]
    p = torch.softmax(q.mean(0) / 0.3, dim=1)
    expectation = (p * q[members].min(0).values).sum(1)
    entropy = -(p * p.log()).sum(1)
    for coef, expected in [(0.0, expectation), (0.05, expectation + 0.05 * entropy)]:
        sel = OnTheFlySelector(num_samples=2, mode="soft", temperature=0.3, entropy_coef=coef)
        value = sel.backup_value(obs, cands, holder, generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(value, expected)
    with pytest.raises(ValueError, match="entropy_coef"):
        OnTheFlySelector(mode="soft", entropy_coef=-0.1)


def test_max_entropy_bonus_is_the_uniform_choice_entropy():
    assert OnTheFlySelector(num_samples=8, mode="soft", temperature=0.01).max_entropy_bonus() == pytest.approx(
        0.01 * math.log(16))
    assert OnTheFlySelector(num_samples=8, mode="soft", entropy_coef=0.0).max_entropy_bonus() == 0.0
    assert OnTheFlySelector(num_samples=8, mode="argmax").max_entropy_bonus() == 0.0
    # the bound is reached: uniform scores give exactly entropy_coef * log(2N) over the mean Q
    sel = OnTheFlySelector(num_samples=2, mode="soft", temperature=0.5)
    holder = TargetCritic(DistanceCritic([0.0, 0.0], ensemble_size=1), num_min_q=1)
    cands = torch.tensor([[[0.5, 0.0], [-0.5, 0.0], [0.0, 0.5], [0.0, -0.5]]])
    value = sel.backup_value(torch.zeros(1, 2), cands, holder)
    torch.testing.assert_close(value, torch.tensor([-0.25 + sel.max_entropy_bonus()]))
