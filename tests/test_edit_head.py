import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import AffineTransform, Normal, TanhTransform, TransformedDistribution

from expo_sdk import EditHead
from expo_sdk.edit_head import squashed_gaussian_log_prob
from expo_sdk.temperature import Temperature, max_edit_entropy, resolve_target_entropy


@settings(max_examples=25, deadline=None)
@given(beta=st.floats(0.01, 1.0), seed=st.integers(0, 10_000), scale=st.floats(0.1, 50.0))
def test_edits_stay_within_beta(beta, seed, scale):
    torch.manual_seed(seed)
    head = EditHead(obs_dim=3, action_dim=4, beta=beta, hidden_dim=16, num_layers=1)
    obs, actions = torch.randn(64, 3) * scale, torch.rand(64, 4) * 2 - 1
    delta, log_prob = head(obs, actions)
    assert delta.abs().max() <= beta + 1e-6
    assert torch.isfinite(log_prob).all()
    edited = head.edit(obs, actions)
    assert edited.abs().max() <= 1.0


def test_log_prob_matches_torch_transformed_distribution():
    torch.manual_seed(0)
    mean, log_std = torch.randn(32, 3), torch.randn(32, 3) * 0.5
    beta = 0.2
    u = mean + log_std.exp() * torch.randn(32, 3)
    ours = squashed_gaussian_log_prob(u, mean, log_std, beta)
    reference = TransformedDistribution(
        Normal(mean, log_std.exp()), [TanhTransform(), AffineTransform(0.0, beta)]
    ).log_prob(beta * torch.tanh(u)).sum(-1)
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)


def test_one_dimensional_density_integrates_to_one():
    """Numerical check of the tanh + beta change of variables: the density on [-beta, beta] sums to 1."""
    beta, mean, log_std = 0.3, torch.tensor([0.4]), torch.tensor([-0.2])
    x = torch.linspace(-beta, beta, 200_001, dtype=torch.float64)[1:-1]
    u = torch.atanh(x / beta)
    density = squashed_gaussian_log_prob(u.unsqueeze(-1), mean.double(), log_std.double(), beta).exp()
    integral = torch.trapezoid(density, x)
    assert abs(float(integral) - 1.0) < 1e-3


def test_head_uses_both_observation_and_action():
    torch.manual_seed(0)
    head = EditHead(obs_dim=2, action_dim=2, beta=0.5, hidden_dim=16)
    obs, act = torch.randn(4, 2), torch.randn(4, 2).clamp(-1, 1)
    base, _ = head(obs, act, deterministic=True)
    moved_obs, _ = head(obs + 1.0, act, deterministic=True)
    moved_act, _ = head(obs, act * -1, deterministic=True)
    assert not torch.allclose(base, moved_obs) and not torch.allclose(base, moved_act)


def test_shape_mismatch_is_a_clear_error():
    head = EditHead(obs_dim=3, action_dim=2)
    with pytest.raises(ValueError, match=r"expects obs \[\.\.\., 3\] and actions \[\.\.\., 2\]"):
        head(torch.zeros(1, 4), torch.zeros(1, 2))


def test_generator_makes_edits_reproducible():
    head = EditHead(obs_dim=2, action_dim=2, beta=0.3, hidden_dim=8)
    obs, act = torch.randn(5, 2), torch.zeros(5, 2)
    a, _ = head(obs, act, generator=torch.Generator().manual_seed(3))
    b, _ = head(obs, act, generator=torch.Generator().manual_seed(3))
    c, _ = head(obs, act, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_save_and_load_round_trip(tmp_path):
    head = EditHead(obs_dim=3, action_dim=2, beta=0.1, hidden_dim=8, base_identity={"path": "x", "sha256": "ab"})
    head.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = EditHead.from_pretrained(tmp_path)
    assert loaded.beta == 0.1 and loaded.base_identity == {"path": "x", "sha256": "ab"}
    obs, act = torch.randn(4, 3), torch.zeros(4, 2)
    torch.testing.assert_close(head(obs, act, deterministic=True)[0], loaded(obs, act, deterministic=True)[0])


def test_default_target_entropy_is_unreachable_for_small_beta_and_warns():
    with pytest.warns(UserWarning, match="unreachable"):
        resolve_target_entropy(action_dim=2, beta=0.05, target_entropy=None, adjust=False)


def test_adjusted_target_entropy_is_reachable():
    for beta in (0.05, 0.1, 0.3, 0.7):
        target = resolve_target_entropy(action_dim=7, beta=beta, target_entropy=None, adjust=True)
        assert target == pytest.approx(-3.5 + 7 * math.log(beta))
        assert target < max_edit_entropy(7, beta)


def test_temperature_moves_toward_target():
    temp = Temperature(initial=1.0, target_entropy=0.0)
    opt = torch.optim.SGD(temp.parameters(), lr=0.1)
    low_entropy_log_prob = torch.full((8,), 2.0)  # entropy -2 < target 0: alpha must grow
    temp.loss(low_entropy_log_prob).backward()
    opt.step()
    assert temp.alpha.item() > 1.0


def test_zero_init_mean_starts_with_no_mean_edit_but_keeps_exploration_noise(tmp_path):
    torch.manual_seed(0)
    head = EditHead(obs_dim=3, action_dim=2, beta=0.1, hidden_dim=8, zero_init_mean=True)
    obs, act = torch.randn(64, 3), torch.rand(64, 2) * 2 - 1
    mean_edit, _ = head(obs, act, deterministic=True)
    assert torch.equal(mean_edit, torch.zeros_like(mean_edit))
    noisy_edit, _ = head(obs, act, generator=torch.Generator().manual_seed(1))
    assert noisy_edit.abs().mean() > 0.01  # the log-std half keeps its init
    # the default init shifts the mean by a state-dependent amount
    default_edit, _ = EditHead(obs_dim=3, action_dim=2, beta=0.1, hidden_dim=8)(obs, act, deterministic=True)
    assert default_edit.abs().mean() > 1e-3
    # the flag is saved with the head, and the trained weights (not zeros) are what loads
    head.net[-1].bias.data.fill_(0.3)
    head.save_pretrained(tmp_path)
    loaded = EditHead.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded(obs, act, deterministic=True)[0], head(obs, act, deterministic=True)[0])
