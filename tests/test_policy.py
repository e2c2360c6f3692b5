import numpy as np
import pytest
import torch
from toy_policy import BiasedMixturePolicy

from expo_sdk import BasePolicy, FinetuneConfig, Finetuner, PolicySpec, check_policy
from expo_sdk.envs.toy import ReachGoalEnv


def test_toy_policy_satisfies_the_protocol():
    policy = BiasedMixturePolicy()
    assert isinstance(policy, BasePolicy)
    assert check_policy(policy).chunk_dim == 2


def test_spec_validates_itself_and_round_trips():
    spec = PolicySpec(obs_shape=(4,), action_dim=2, action_low=(-1, -1), action_high=(1, 1), horizon=3)
    assert PolicySpec.from_dict(spec.to_dict()) == spec and spec.chunk_dim == 6
    with pytest.raises(ValueError, match="one bound per action dimension"):
        PolicySpec(obs_shape=(4,), action_dim=2, action_low=(-1,), action_high=(1, 1))
    with pytest.raises(ValueError, match="strictly below"):
        PolicySpec(obs_shape=(4,), action_dim=1, action_low=(1,), action_high=(1,))


class _Broken(BiasedMixturePolicy):
    def __init__(self, out):
        super().__init__()
        self.out = out

    def sample(self, obs, num_samples, generator=None):
        return self.out(obs.shape[0], num_samples)


@pytest.mark.parametrize("out,error,match", [
    (lambda b, n: torch.zeros(b, 1, 2), ValueError, r"expected \[B, N, H, A\]"),
    (lambda b, n: torch.full((b, n, 1, 2), 3.0), ValueError, r"outside the canonical range"),
    (lambda b, n: torch.full((b, n, 1, 2), float("nan")), ValueError, "NaN"),
    (lambda b, n: torch.zeros(b, n, 1, 2, dtype=torch.long), TypeError, "floating point"),
])
def test_check_policy_names_what_is_wrong(out, error, match):
    with pytest.raises(error, match=match):
        check_policy(_Broken(out))


def test_object_without_sample_is_not_a_policy():
    with pytest.raises(TypeError, match="Linear is not a BasePolicy: it has no `spec`"):
        check_policy(torch.nn.Linear(2, 2))


def test_nan_observation_from_the_env_stops_training_with_the_step():
    class NaNAfter(ReachGoalEnv):
        def step(self, action):
            obs, *rest = super().step(action)
            return np.full_like(obs, np.nan), *rest

    cfg = FinetuneConfig(batch_size=8, utd_ratio=1, base_mode="frozen", num_samples=2, eval_episodes=1,
                         critic={"ensemble_size": 2, "hidden_dim": 8})
    tuner = Finetuner(BiasedMixturePolicy(), cfg)
    with pytest.raises(FloatingPointError, match="non-finite observation at env step 0"):
        tuner.run(NaNAfter, total_steps=10, env_fn=ReachGoalEnv, progress=False)


def test_the_policy_device_is_found_from_buffers_when_there_are_no_parameters():
    from expo_sdk.policy import policy_device

    class BuffersOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("bias", torch.zeros(2))

    assert policy_device(BuffersOnly().to("meta")).type == "meta"
    assert policy_device(torch.nn.Linear(2, 2).to("meta")).type == "meta"
    assert policy_device(object()).type == "cpu"
