"""FlowMatchingPolicy: the conformance kit, and imitation on a bimodal dataset."""

import numpy as np
import torch
from test_ddpm import _bimodal_dataset

from expo_sdk import Normalizer, train_imitation
from expo_sdk.adapters import FlowMatchingPolicy
from expo_sdk.testing import PolicyConformanceTests


class TestFlowMatchingConformance(PolicyConformanceTests):
    adapter_name = "flow_matching"

    def make_policy(self):
        normalizer = Normalizer([-1.0, 0.0], [1.0, 2.0], obs_dim=3).to_dict()
        return FlowMatchingPolicy(3, 2, normalizer, horizon=2, num_inference_steps=4, hidden_dim=16,
                                  num_blocks=1, time_embed_dim=8)


def test_imitation_recovers_both_modes_and_acts_in_env_units():
    torch.manual_seed(0)
    data = _bimodal_dataset()
    policy = FlowMatchingPolicy.for_dataset(data["observations"], [0.0], [10.0], hidden_dim=32, num_blocks=1)
    losses = train_imitation(policy, data, steps=800, batch_size=128, lr=1e-3)
    assert np.mean(losses[-100:]) < 0.8 * np.mean(losses[:100])
    samples = policy.sample(torch.zeros(1, 2), 400, generator=torch.Generator().manual_seed(0)).flatten()
    near_pos = ((samples - 0.5).abs() < 0.15).float().mean().item()
    near_neg = ((samples + 0.5).abs() < 0.15).float().mean().item()
    assert near_pos > 0.3 and near_neg > 0.3, (near_pos, near_neg)  # both modes, not their mean
    env_action = policy.act(np.zeros(2, np.float32))
    assert env_action.shape == (1,) and 0.0 <= env_action[0] <= 10.0


def test_number_of_euler_steps_is_the_number_of_velocity_calls():
    """K uniform Euler steps 1 -> 0 (not diffusers' default grid, whose last step is 0.001 -> 0)."""
    normalizer = Normalizer([-1.0], [1.0], obs_dim=2).to_dict()
    policy = FlowMatchingPolicy(2, 1, normalizer, num_inference_steps=4, hidden_dim=16, num_blocks=1)
    sigmas = []
    policy.velocity = lambda obs_n, x, sigma: sigmas.append(sigma[0].item()) or torch.zeros_like(x)
    policy.sample(torch.zeros(1, 2), 1)
    np.testing.assert_allclose(sigmas, [1.0, 0.75, 0.5, 0.25], atol=1e-6)
