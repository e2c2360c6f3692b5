"""The adapter guide's example (examples/gmm_policy.py, loaded from its path) against the kit."""

import importlib.util
from pathlib import Path

import torch
from test_ddpm import _bimodal_dataset

from expo_sdk import Normalizer, train_imitation
from expo_sdk.testing import PolicyConformanceTests

_PATH = Path(__file__).resolve().parents[1] / "examples" / "gmm_policy.py"
_spec = importlib.util.spec_from_file_location("gmm_policy", _PATH)
gmm_policy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gmm_policy)
GMMPolicy = gmm_policy.GMMPolicy


class TestGMMPolicyConformance(PolicyConformanceTests):
    # adapter_name stays None: the example is not installed under "expo_sdk.adapters".

    def make_policy(self):
        torch.manual_seed(0)
        normalizer = Normalizer([-1.0, 0.0], [1.0, 2.0], obs_dim=3).to_dict()
        return GMMPolicy(3, 2, normalizer, horizon=2, num_components=3, hidden_dim=16, num_layers=1)


def test_gmm_imitation_recovers_both_modes():
    torch.manual_seed(0)
    data = _bimodal_dataset()  # one state; canonical actions +0.5 / -0.5, env units [0, 10]
    policy = GMMPolicy.for_dataset(data["observations"], [0.0], [10.0], num_components=4, hidden_dim=64)
    losses = train_imitation(policy, data, steps=500, batch_size=128, lr=3e-3)
    assert sum(losses[-50:]) < sum(losses[:50])
    samples = policy.sample(torch.zeros(1, 2), 400, generator=torch.Generator().manual_seed(0)).flatten()
    near_pos = ((samples - 0.5).abs() < 0.15).float().mean().item()
    near_neg = ((samples + 0.5).abs() < 0.15).float().mean().item()
    assert near_pos > 0.3 and near_neg > 0.3, (near_pos, near_neg)


def test_the_guide_shows_this_very_file():
    guide = (_PATH.parents[1] / "docs" / "adapters.md").read_text()
    assert _PATH.read_text() in guide, "docs/adapters.md embeds an outdated copy of examples/gmm_policy.py"
