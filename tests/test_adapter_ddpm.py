"""DDPMPolicy against the adapter conformance kit."""

from expo_sdk import Normalizer
from expo_sdk.adapters import DDPMPolicy
from expo_sdk.testing import PolicyConformanceTests


class TestDDPMConformance(PolicyConformanceTests):
    adapter_name = "ddpm"

    def make_policy(self):
        normalizer = Normalizer([-1.0, 0.0], [1.0, 2.0], obs_dim=3).to_dict()
        return DDPMPolicy(3, 2, normalizer, horizon=2, num_diffusion_steps=5, hidden_dim=16, num_blocks=1,
                          time_embed_dim=8)
