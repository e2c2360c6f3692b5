"""The conformance kit catches broken adapters: each bug fails the kit test meant for it."""

import numpy as np
import pytest
import torch
from torch import nn

from expo_sdk import Normalizer, PolicySpec
from expo_sdk.testing import PolicyConformanceTests, SpecMatchedEnv


class ToyPolicy(nn.Module):
    """A correct minimal adapter: a tanh-linear mean plus generator noise, chunks [H=2, A=2]."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.mean = nn.Linear(3, 4)
        self.normalizer = Normalizer([-1.0, -1.0], [1.0, 1.0], obs_dim=3)
        self.spec = PolicySpec(obs_shape=(3,), action_dim=2, action_low=(-1.0, -1.0),
                               action_high=(1.0, 1.0), horizon=2)

    def noise(self, b, n, generator):
        return torch.randn(b, n, 4, generator=generator).to(self.mean.weight.device)

    def features(self, obs):
        return obs

    def sample(self, obs, num_samples, generator=None):
        b = obs.shape[0]
        mean = torch.tanh(self.mean(self.features(obs)))[:, None]
        actions = (mean + 0.1 * self.noise(b, num_samples, generator)).clamp(-1, 1)
        return actions.reshape(b, num_samples, 2, 2)

    def imitation_loss(self, obs, actions):
        return ((torch.tanh(self.mean(obs)) - actions.reshape(obs.shape[0], -1)) ** 2).mean()


class WithoutNAxis(ToyPolicy):
    def sample(self, obs, num_samples, generator=None):
        return super().sample(obs, num_samples, generator)[:, 0]  # [B, H, A]


class IgnoresGenerator(ToyPolicy):
    def noise(self, b, n, generator):
        return torch.randn(b, n, 4).to(self.mean.weight.device)  # the global RNG


class LeaksAcrossTheBatch(ToyPolicy):
    def features(self, obs):
        return obs - obs.mean(0)  # a batch statistic


class OneDrawForAllN(ToyPolicy):
    def noise(self, b, n, generator):
        return torch.randn(b, 1, 4, generator=generator).to(self.mean.weight.device).expand(b, n, 4)


class NotClipped(ToyPolicy):
    def sample(self, obs, num_samples, generator=None):
        return 3.0 * super().sample(obs, num_samples, generator)


class DetachedLoss(ToyPolicy):
    def imitation_loss(self, obs, actions):
        return super().imitation_loss(obs, actions).detach().requires_grad_()


class ForgetsAConfigValue(ToyPolicy):
    """Saves its weights but not the noise scale it was built with."""

    def __init__(self, noise_scale: float = 0.1):
        super().__init__()
        self.noise_scale = noise_scale

    def noise(self, b, n, generator):
        return super().noise(b, n, generator) * self.noise_scale * 10

    def save_pretrained(self, path):
        torch.save(self.state_dict(), path / "weights.pt")

    @classmethod
    def from_pretrained(cls, path):
        policy = cls()  # noise_scale lost
        policy.load_state_dict(torch.load(path / "weights.pt"))
        return policy


def kit(policy_cls, **attrs):
    """A kit instance for `policy_cls` (named so that pytest does not collect it)."""
    return type("Kit", (PolicyConformanceTests,), {"make_policy": lambda self: policy_cls(), **attrs})()


KIT_TESTS = [name for name in dir(PolicyConformanceTests) if name.startswith("test_")]


def _chunk_demos(self):
    rng = np.random.default_rng(0)
    return {"observations": rng.normal(size=(16, 3)), "actions": rng.uniform(-1, 1, (16, 2, 2))}


def test_a_correct_policy_passes_every_kit_test(tmp_path):
    toy = kit(ToyPolicy, supports_save=False, make_dataset=_chunk_demos)
    for name in KIT_TESTS:
        try:
            getattr(toy, name)(tmp_path) if name == "test_save_load_round_trip" else getattr(toy, name)()
        except pytest.skip.Exception:
            assert name in ("test_device_move_cuda", "test_save_load_round_trip"), name


@pytest.mark.parametrize("broken, kit_test, message", [
    (WithoutNAxis, "test_sample_shape_and_dtype", r"expected \[B, N, H, A\]"),
    (IgnoresGenerator, "test_generator_reproducibility", "same generator seed, different samples"),
    (LeaksAcrossTheBatch, "test_batch_independence", "states leak across the batch"),
    (OneDrawForAllN, "test_samples_differ_across_n", "samples are identical"),
    (NotClipped, "test_samples_are_canonical", "clamp canonical actions"),
    (DetachedLoss, "test_imitation_loss_gradients", "did not reach any parameter"),
])
def test_each_bug_fails_its_kit_test(broken, kit_test, message):
    with pytest.raises(AssertionError, match=message):
        getattr(kit(broken), kit_test)()


def test_a_lossy_save_fails_the_round_trip(tmp_path):
    policy_kit = kit(lambda: ForgetsAConfigValue(noise_scale=0.01))
    with pytest.raises(AssertionError, match="not close"):
        policy_kit.test_save_load_round_trip(tmp_path)


def test_spec_matched_env_rewards_the_goal_coordinate():
    spec = PolicySpec(obs_shape=(2, 3), action_dim=2, action_low=(0.0, -5.0), action_high=(10.0, 5.0))
    env = SpecMatchedEnv(spec, max_episode_steps=3)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 3) and env.action_space.contains(env.action_space.sample())
    goal = (obs.flat[0] + 1) * 5.0  # the first obs coordinate as an env-unit first action
    _, reward, terminated, truncated, info = env.step([goal, 0.0])
    assert reward == 1.0 and terminated and not truncated and info["is_success"]
    env.reset(seed=1)
    steps = [env.step([0.0 if env._obs.flat[0] > 0 else 10.0, 0.0]) for _ in range(3)]  # always wrong
    assert [s[1] for s in steps] == [0.0] * 3 and steps[-1][3] and not steps[-1][2]
