"""from_module: a user's Gaussian-mixture nn.Module as a base policy, and its error messages."""

import numpy as np
import pytest
import torch
from test_ddpm import _bimodal_dataset
from torch import nn

from expo_sdk import Normalizer, PolicySpec, check_policy, train_imitation
from expo_sdk.adapters import ModulePolicy, from_module
from expo_sdk.policy import supports_imitation
from expo_sdk.testing import PolicyConformanceTests


class GaussianMixture(nn.Module):
    """A user's model: K Gaussians over canonical actions [A], means linear in the observation."""

    def __init__(self, obs_dim: int, action_dim: int, components: int = 2):
        super().__init__()
        self.k, self.a = components, action_dim
        self.means = nn.Linear(obs_dim, components * action_dim)
        self.logits = nn.Parameter(torch.zeros(components))
        self.log_std = nn.Parameter(torch.full((components, action_dim), -1.0))

    def draw(self, obs, n, generator):
        """obs [B, D] -> [B, n, A]."""
        b, device = obs.shape[0], obs.device
        mu = self.means(obs).view(b, self.k, self.a)
        # Draw on the CPU with the (CPU) generator, then move: works for a model on any device.
        probs = self.logits.softmax(0).cpu().expand(b * n, self.k)
        comp = torch.multinomial(probs, 1, generator=generator).view(b, n).to(device)
        noise = torch.randn(b, n, self.a, generator=generator).to(device)
        rows = torch.arange(b, device=device)[:, None]
        return mu[rows, comp] + self.log_std.exp()[comp] * noise

    def log_prob(self, obs, actions):
        """obs [B, D], actions [B, A] -> [B]."""
        mu = self.means(obs).view(-1, self.k, self.a)
        dist = torch.distributions.Normal(mu, self.log_std.exp())
        per_comp = dist.log_prob(actions[:, None]).sum(-1) + self.logits.log_softmax(0)
        return per_comp.logsumexp(-1)


def gmm_sample(model, obs, num_samples, generator):
    return model.draw(obs, num_samples, generator)  # [B, N, A]: H = 1, reshaped by the wrapper


def gmm_loss(model, obs, actions):
    return -model.log_prob(obs, actions[:, 0]).mean()


SPEC = PolicySpec(obs_shape=(3,), action_dim=2, action_low=(-1.0, 0.0), action_high=(1.0, 2.0))


class TestModulePolicyConformance(PolicyConformanceTests):
    supports_save = False  # the user's module saves itself

    def make_policy(self):
        torch.manual_seed(0)
        return from_module(GaussianMixture(3, 2), gmm_sample, gmm_loss, spec=SPEC)


class TestModulePolicyWithoutLossConformance(PolicyConformanceTests):
    supports_save = False

    def make_policy(self):
        torch.manual_seed(0)
        return from_module(GaussianMixture(3, 2), gmm_sample, spec=SPEC)


def test_imitation_loss_is_exposed_only_with_a_loss_fn():
    with_loss = from_module(GaussianMixture(3, 2), gmm_sample, gmm_loss, spec=SPEC)
    without = from_module(GaussianMixture(3, 2), gmm_sample, spec=SPEC)
    assert isinstance(with_loss, ModulePolicy) and isinstance(without, ModulePolicy)
    assert supports_imitation(with_loss) and not supports_imitation(without)


def test_gaussian_mixture_learns_both_modes_through_the_wrapper():
    torch.manual_seed(0)
    data = _bimodal_dataset()  # obs [M, 2]; actions in env units [0, 10]; modes at canonical +-0.5
    spec = PolicySpec(obs_shape=(2,), action_dim=1, action_low=(0.0,), action_high=(10.0,))
    policy = from_module(GaussianMixture(2, 1), gmm_sample, gmm_loss, spec=spec)
    train_imitation(policy, data, steps=300, batch_size=128, lr=3e-2)  # the default normalizer maps [0, 10] -> [-1, 1]
    samples = policy.sample(torch.zeros(1, 2), 400, torch.Generator().manual_seed(0)).flatten()
    assert ((samples - 0.5).abs() < 0.15).float().mean() > 0.3
    assert ((samples + 0.5).abs() < 0.15).float().mean() > 0.3


def test_a_plain_callable_model_works():
    def model(obs, n, generator):
        return torch.rand(obs.shape[0], n, 1, 2, generator=generator) * 2 - 1

    policy = from_module(model, lambda m, obs, n, g: m(obs, n, g), spec=SPEC)
    assert check_policy(policy) == SPEC
    assert list(policy.parameters()) == []


def test_wrong_sample_shape_names_the_function_and_the_expected_shape():
    def sample_without_n(model, obs, num_samples, generator):
        return torch.zeros(obs.shape[0], 1, 2)  # [B, H, A]: the N axis is missing

    policy = from_module(GaussianMixture(3, 2), sample_without_n, spec=SPEC)
    with pytest.raises(ValueError, match=r"sample_fn 'test_wrong.*sample_without_n' returned shape \(4, 1, 2\).*"
                                         r"expected \[B, N, H, A\] = \(4, 3, 1, 2\)"):
        policy.sample(torch.zeros(4, 3), 3)

    chunked = PolicySpec(obs_shape=(3,), action_dim=2, action_low=(-1.0, 0.0), action_high=(1.0, 2.0), horizon=4)
    policy = from_module(GaussianMixture(3, 2), gmm_sample, spec=chunked)
    with pytest.raises(ValueError, match=r"gmm_sample' returned shape \(2, 3, 2\).*\(2, 3, 4, 2\)"):
        policy.sample(torch.zeros(2, 3), 3)  # [B, N, A] is only accepted when H == 1


def test_other_mistakes_get_actionable_errors():
    model = GaussianMixture(3, 2)
    with pytest.raises(TypeError, match="returned ndarray; return a torch.Tensor"):
        from_module(model, lambda m, o, n, g: np.zeros((1, n, 1, 2)), spec=SPEC).sample(torch.zeros(1, 3), 2)
    with pytest.raises(ValueError, match="outside the canonical"):
        from_module(model, lambda m, o, n, g: torch.full((1, n, 1, 2), 3.0), spec=SPEC, clip=False).sample(
            torch.zeros(1, 3), 2)
    per_row = from_module(model, gmm_sample, lambda m, o, a: -m.log_prob(o, a[:, 0]), spec=SPEC)
    with pytest.raises(ValueError, match=r"loss_fn '.*<lambda>' returned \(5,\); return a scalar"):
        per_row.imitation_loss(torch.zeros(5, 3), torch.zeros(5, 1, 2))
    with pytest.raises(TypeError, match="spec=PolicySpec"):
        from_module(model, gmm_sample, spec={"obs_shape": (3,)})
    with pytest.raises(ValueError, match="normalizer action bounds"):
        from_module(model, gmm_sample, spec=SPEC, normalizer=Normalizer([-1.0, -1.0], [1.0, 1.0], obs_dim=3))
