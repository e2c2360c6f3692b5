import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from expo_sdk import Normalizer

bounds = st.lists(st.tuples(st.floats(-100, 100), st.floats(0.01, 50)), min_size=1, max_size=6)


@settings(max_examples=50, deadline=None)
@given(bounds=bounds, seed=st.integers(0, 1000))
def test_action_round_trip_inside_the_bounds(bounds, seed):
    low = np.array([b[0] for b in bounds], np.float32)
    high = low + np.array([b[1] for b in bounds], np.float32)
    norm = Normalizer(low, high, obs_dim=1)
    g = torch.Generator().manual_seed(seed)
    env_action = torch.as_tensor(low) + torch.rand(8, len(bounds), generator=g) * torch.as_tensor(high - low)
    canonical = norm.action_to_canonical(env_action)
    assert canonical.abs().max() <= 1.0 + 1e-4
    torch.testing.assert_close(norm.action_to_env(canonical), env_action, atol=1e-3 * float(np.max(high - low)), rtol=1e-4)


def test_canonical_actions_outside_the_box_are_clipped_to_env_bounds():
    norm = Normalizer([0.0, -2.0], [10.0, 2.0], obs_dim=1)
    env = norm.action_to_env(torch.tensor([[1.5, -3.0]]))
    assert torch.equal(env, torch.tensor([[10.0, -2.0]]))


def test_fit_standardizes_and_survives_constant_features():
    obs = np.stack([np.linspace(0, 10, 50), np.full(50, 3.0)], 1)
    norm = Normalizer.fit(obs, [-1.0], [1.0])
    z = norm.normalize_obs(torch.as_tensor(obs, dtype=torch.float32))
    assert abs(float(z[:, 0].mean())) < 1e-5 and abs(float(z[:, 0].std()) - 1) < 1e-3
    assert torch.isfinite(z).all() and float(z[:, 1].abs().max()) == 0.0


def test_json_round_trip():
    norm = Normalizer.fit(np.random.default_rng(0).normal(size=(20, 3)), [-1, -1], [1, 2])
    again = Normalizer.from_dict(norm.to_dict())
    for name in ("obs_mean", "obs_std", "action_low", "action_high"):
        assert torch.equal(getattr(norm, name), getattr(again, name))


@pytest.mark.parametrize("low,high,match", [([0.0], [0.0], "exceed"), ([-np.inf], [1.0], "finite"),
                                            ([0.0, 1.0], [1.0], "equal length")])
def test_bad_bounds_are_rejected(low, high, match):
    with pytest.raises(ValueError, match=match):
        Normalizer(low, high, obs_dim=2)


@settings(max_examples=40, deadline=None)
@given(data=st.lists(st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=3), min_size=2, max_size=30),
       bounds=st.lists(st.tuples(st.floats(-100, 100), st.floats(0.01, 50)), min_size=2, max_size=2))
def test_fitted_normalizer_survives_json_and_standardizes_finitely(data, bounds):
    obs = np.asarray(data, np.float32)
    low = [b[0] for b in bounds]
    high = [b[0] + b[1] for b in bounds]
    norm = Normalizer.fit(obs, low, high)
    again = Normalizer.from_dict(norm.to_dict())
    z = norm.normalize_obs(torch.as_tensor(obs))
    assert torch.isfinite(z).all()
    assert torch.equal(again.normalize_obs(torch.as_tensor(obs)), z)
    torch.testing.assert_close(z * norm.obs_std + norm.obs_mean, torch.as_tensor(obs), atol=1e-2, rtol=1e-4)
