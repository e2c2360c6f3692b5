"""LeRobotDiffusionPolicy (LeRobot's DiffusionPolicy, state-only) against the conformance kit.

Skipped unless LeRobot is installed (`make install-lerobot`). The policies are tiny and
built offline from a config (no Hub, no dataset).
"""

import json

import pytest
import torch

from expo_sdk.adapters import lerobot as lerobot_adapter
from expo_sdk.testing import PolicyConformanceTests

lerobot_adapter._prepare_torchvision()
pytest.importorskip("lerobot")
pytest.importorskip("lerobot.policies.diffusion.modeling_diffusion")

from lerobot.configs.types import FeatureType, PolicyFeature  # noqa: E402
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig  # noqa: E402
from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy  # noqa: E402

from expo_sdk.adapters.lerobot import LeRobotDiffusionPolicy, from_lerobot  # noqa: E402
from expo_sdk.loading import load_policy  # noqa: E402

ACTION_LOW, ACTION_HIGH = [-1.0, 0.0], [1.0, 2.0]
# The dataset's action range is narrower than the env box: canonical != LeRobot-normalized.
STATS = {
    "observation.state": {"min": [-1.0, -1.0], "max": [1.0, 1.0], "mean": [0.0, 0.0], "std": [0.5, 0.5]},
    "observation.environment_state": {"min": [-2.0], "max": [2.0], "mean": [0.0], "std": [1.0]},
    "action": {"min": [-0.5, 0.5], "max": [0.5, 1.5], "mean": [0.0, 1.0], "std": [0.3, 0.3]},
}


def tiny_lerobot(n_obs_steps=1, scheduler="DDPM", horizon=8, n_action_steps=4):
    torch.manual_seed(0)
    config = DiffusionConfig(
        input_features={
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(2,)),
            "observation.environment_state": PolicyFeature(type=FeatureType.ENV, shape=(1,)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(2,))},
        n_obs_steps=n_obs_steps, horizon=horizon, n_action_steps=n_action_steps,
        down_dims=(16, 32), kernel_size=3, n_groups=4, diffusion_step_embed_dim=16,
        num_train_timesteps=5, noise_scheduler_type=scheduler, device="cpu", push_to_hub=False,
    )
    return DiffusionPolicy(config)


def tiny_policy(**kw):
    return from_lerobot(tiny_lerobot(**kw), dataset_stats=STATS, action_low=ACTION_LOW, action_high=ACTION_HIGH)


class TestLeRobotDiffusionConformance(PolicyConformanceTests):
    adapter_name = "lerobot_diffusion"

    def make_policy(self):
        return tiny_policy()


class TestLeRobotDiffusionTwoObsStepsDDIM(PolicyConformanceTests):
    """n_obs_steps = 2 (observations repeated, or given as [B, 2, D]) and a DDIM scheduler."""

    adapter_name = "lerobot_diffusion"

    def make_policy(self):
        return tiny_policy(n_obs_steps=2, scheduler="DDIM")


def test_spec_and_history_input():
    policy = tiny_policy(n_obs_steps=2)
    spec = policy.spec
    assert spec.obs_shape == (3,) and spec.action_dim == 2 and spec.horizon == 4 and spec.n_obs_steps == 2
    obs = torch.randn(3, 3)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    repeated = policy.sample(obs, 2, generator=g())
    history = policy.sample(obs.unsqueeze(1).expand(-1, 2, -1), 2, generator=g())
    torch.testing.assert_close(history, repeated)
    with pytest.raises(ValueError, match="observations must be"):
        policy.sample(torch.randn(3, 4), 2)


def test_action_mapping_goes_through_env_units():
    """LeRobot's normalized [-1, 1] is the dataset's action range; canonical is the env box."""
    policy = tiny_policy()
    lerobot_normalized = torch.tensor([[-1.0, -1.0], [1.0, 1.0]])
    env = policy._act_unnorm._normalize_action(lerobot_normalized, inverse=True)
    torch.testing.assert_close(env, torch.tensor([[-0.5, 0.5], [0.5, 1.5]]))
    torch.testing.assert_close(policy.normalizer.action_to_canonical(env), torch.tensor([[-0.5, -0.5], [0.5, 0.5]]))


def test_imitation_loss_matches_lerobot_forward_for_full_chunks():
    """With horizon == n_action_steps and one obs step, the loss is exactly LeRobot's forward."""
    policy = tiny_policy(horizon=4, n_action_steps=4)
    policy.train()
    obs = torch.randn(5, 3)
    actions = torch.rand(5, 4, 2) * 2 - 1
    torch.manual_seed(3)
    ours = policy.imitation_loss(obs, actions)
    batch = policy._obs_batch(obs)
    batch["action"] = policy._obs_norm._normalize_action(policy.normalizer.action_to_env(actions), inverse=False)
    batch["action_is_pad"] = torch.zeros(5, 4, dtype=torch.bool)
    torch.manual_seed(3)
    theirs, _ = policy.policy.forward(batch)
    torch.testing.assert_close(ours, theirs)


def test_save_load_round_trip_and_detection(tmp_path):
    policy = tiny_policy()
    policy.eval()
    policy.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["type"] == "diffusion" and LeRobotDiffusionPolicy.matches_config(config)
    loaded = load_policy(tmp_path)
    assert loaded.identity["adapter"] == "lerobot_diffusion" and loaded.identity["sha256"]
    loaded.eval()
    obs = torch.randn(2, 3)
    torch.testing.assert_close(loaded.sample(obs, 3, generator=torch.Generator().manual_seed(1)),
                               policy.sample(obs, 3, generator=torch.Generator().manual_seed(1)))
    assert loaded.spec == policy.spec


def test_plain_lerobot_checkpoint_falls_back_to_stats_bounds(tmp_path):
    """A directory LeRobot saved itself (no expo_sdk_lerobot.json) loads; bounds from stats or args."""
    inner = tiny_lerobot()
    wrapped = from_lerobot(inner, dataset_stats=STATS, action_low=ACTION_LOW, action_high=ACTION_HIGH)
    inner.save_pretrained(tmp_path)
    wrapped.preprocessor.save_pretrained(tmp_path, config_filename="policy_preprocessor.json")
    wrapped.postprocessor.save_pretrained(tmp_path, config_filename="policy_postprocessor.json")
    from_stats = LeRobotDiffusionPolicy.from_pretrained(tmp_path)
    assert from_stats.spec.action_low == (-0.5, 0.5) and from_stats.spec.action_high == (0.5, 1.5)
    given = LeRobotDiffusionPolicy.from_pretrained(tmp_path, action_low=ACTION_LOW, action_high=ACTION_HIGH)
    assert given.spec.action_low == tuple(ACTION_LOW)


def test_rejects_policies_with_cameras():
    config = DiffusionConfig(
        input_features={
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(2,)),
            "observation.image": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 32, 32)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(2,))},
        horizon=8, down_dims=(16, 32), n_groups=4, kernel_size=3, diffusion_step_embed_dim=16,
        vision_backbone="resnet18", spatial_softmax_num_keypoints=4, device="cpu", push_to_hub=False,
    )
    with pytest.raises(ValueError, match="state-only"):
        from_lerobot(DiffusionPolicy(config), dataset_stats=STATS, action_low=ACTION_LOW, action_high=ACTION_HIGH)
