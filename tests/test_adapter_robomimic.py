"""RobomimicPolicy (robomimic BC / BC-GMM / BC-RNN checkpoints) against the conformance kit.

Skipped unless robomimic is installed (`make install-robomimic`). Every policy is built by
robomimic itself (`config_factory`, `algo_factory`), trained a few steps on a tiny HDF5
dataset written here (robomimic's `SequenceDataset`), saved with robomimic's `save_model`,
then loaded through the adapter. Nothing is downloaded.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from expo_sdk.adapters import robomimic as robomimic_adapter
from expo_sdk.testing import PolicyConformanceTests

pytest.importorskip("h5py")
pytest.importorskip("robomimic")
robomimic_adapter._robomimic()  # torchvision workaround + quiet macros, before robomimic's models import

import h5py  # noqa: E402
import robomimic.utils.file_utils as FileUtils  # noqa: E402
import robomimic.utils.obs_utils as ObsUtils  # noqa: E402
import robomimic.utils.train_utils as TrainUtils  # noqa: E402
from robomimic.algo import algo_factory  # noqa: E402
from robomimic.config import config_factory  # noqa: E402

from expo_sdk import load_policy  # noqa: E402
from expo_sdk.adapters.robomimic import RobomimicPolicy, load_checkpoint  # noqa: E402
from expo_sdk.datasets import read_robomimic_hdf5  # noqa: E402

# Deliberately not in sorted order: robomimic's networks (and the flat layout) sort them.
OBS_KEYS = {"robot0_eef_pos": 3, "object": 2}
ACTION_DIM = 2
SEQ = 4  # BC-RNN window


def write_tiny_dataset(path: Path, num_demos: int = 4, steps: int = 10, seed: int = 0) -> Path:
    """A robomimic-layout HDF5 file whose actions depend on the observation (learnable)."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        total = 0
        for i in range(num_demos):
            obs = {k: rng.normal(size=(steps + 1, d)).astype(np.float32) for k, d in OBS_KEYS.items()}
            demo = data.create_group(f"demo_{i}")
            for k, v in obs.items():
                demo[f"obs/{k}"] = v[:-1]
                demo[f"next_obs/{k}"] = v[1:]
            actions = np.tanh(obs["object"][:-1] + 0.1 * rng.normal(size=(steps, ACTION_DIM)))
            demo["actions"] = actions.astype(np.float32)
            demo["rewards"] = np.eye(steps)[-1].astype(np.float32)
            demo["dones"] = np.eye(steps)[-1].astype(np.int64)
            demo.attrs["num_samples"] = steps
            total += steps
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps({"env_name": "Tiny", "type": 2, "env_kwargs": {}})
    return path


def train_checkpoint(dataset: Path, out: Path, gmm=False, rnn=False, gaussian=False, normalize_obs=False,
                     low_noise_eval=True, steps: int = 6) -> Path:
    """Build a tiny robomimic BC-family algo with its own factories, train a few steps, save it."""
    torch.manual_seed(0)
    config = config_factory("bc")
    with config.values_unlocked():
        config.observation.modalities.obs.low_dim = list(OBS_KEYS)
        config.algo.actor_layer_dims = (16, 16)
        config.algo.gmm.enabled = gmm
        config.algo.gmm.num_modes = 3
        config.algo.gmm.low_noise_eval = low_noise_eval
        config.algo.gaussian.enabled = gaussian
        config.algo.rnn.enabled = rnn
        config.algo.rnn.horizon = SEQ
        config.algo.rnn.hidden_dim = 16
        config.algo.rnn.num_layers = 1
        config.algo.optim_params.policy.learning_rate.initial = 1e-3
        config.train.data = str(dataset)
        config.train.cuda = False
        config.train.seq_length = SEQ if rnn else 1
        config.train.hdf5_normalize_obs = normalize_obs
        config.train.hdf5_cache_mode = "low_dim"
    ObsUtils.initialize_obs_utils_with_config(config)
    shape_meta = FileUtils.get_shape_metadata_from_dataset(str(dataset), all_obs_keys=config.all_obs_keys)
    env_meta = FileUtils.get_env_metadata_from_dataset(str(dataset))
    algo = algo_factory(config.algo_name, config, obs_key_shapes=shape_meta["all_shapes"],
                        ac_dim=shape_meta["ac_dim"], device=torch.device("cpu"))
    data = TrainUtils.dataset_factory(config, obs_keys=shape_meta["all_obs_keys"])
    loader = torch.utils.data.DataLoader(data, batch_size=8, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    algo.set_train()
    batches = iter(loader)
    for _ in range(steps):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        algo.train_on_batch(algo.process_batch_for_training(batch), epoch=0)
    TrainUtils.save_model(algo, config, env_meta, shape_meta, str(out),
                          obs_normalization_stats=data.obs_normalization_stats)
    return out


VARIANTS = {
    "bc": {},
    "bc_gmm": {"gmm": True, "low_noise_eval": False},
    "bc_gmm_low_noise": {"gmm": True},
    "bc_gaussian": {"gaussian": True, "low_noise_eval": False},
    "bc_rnn": {"rnn": True},
    "bc_rnn_gmm": {"rnn": True, "gmm": True, "low_noise_eval": False},
    "bc_normalized": {"normalize_obs": True},
}


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """name -> checkpoint path, for every variant, plus the dataset ("dataset")."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("robomimic")
    dataset = write_tiny_dataset(root / "tiny.hdf5")
    out = {"dataset": dataset}
    for name, kw in VARIANTS.items():
        out[name] = train_checkpoint(dataset, root / f"{name}.pth", **kw)
    return out


class _Kit(PolicyConformanceTests):
    adapter_name = "robomimic"
    variant = ""
    policy_kwargs: dict = {}

    @pytest.fixture(autouse=True)
    def _ckpts(self, ckpts):
        self.ckpts = ckpts

    def make_policy(self):
        return RobomimicPolicy.from_pretrained(self.ckpts[self.variant], **self.policy_kwargs)

    def make_dataset(self):
        data = read_robomimic_hdf5(self.ckpts["dataset"])
        return {"observations": data.observations, "actions": data.actions}


class TestRobomimicBCGMM(_Kit):
    variant = "bc_gmm"
    # Unequal env bounds: robomimic's [-1, 1] outputs land inside them, mapped to canonical.
    policy_kwargs = {"action_low": [-2.0, -1.0], "action_high": [2.0, 3.0]}


class TestRobomimicBC(_Kit):
    variant = "bc"
    stochastic = False


class TestRobomimicBCRNN(_Kit):
    variant = "bc_rnn"
    stochastic = False


class TestRobomimicBCRNNGMM(_Kit):
    variant = "bc_rnn_gmm"


# ---------------------------------------------------------------------- sampling vs robomimic
def _robomimic_dist(policy, obs):
    net = policy.nets["policy"]
    obs_dict = policy._obs_dict(obs)
    with robomimic_adapter._attributes(net, low_noise_eval=False, training=False), torch.no_grad():
        return net.forward_train(obs_dict)


def test_gmm_samples_follow_robomimics_mixture(ckpts):
    """Many generator-drawn samples have the moments of robomimic's own mixture (and its samples)."""
    policy = RobomimicPolicy.from_pretrained(ckpts["bc_gmm"])
    assert not policy.low_noise and policy.spec.extra["robomimic_algo"] == "BC_GMM"
    obs = torch.randn(2, policy.spec.flat_obs_dim, generator=torch.Generator().manual_seed(0))
    n = 40_000
    ours = policy.sample(obs, n, generator=torch.Generator().manual_seed(1))[:, :, 0]  # [B, N, A]
    dist = _robomimic_dist(policy, obs)
    torch.manual_seed(2)
    theirs = dist.sample((n,)).transpose(0, 1).clamp(-1, 1)  # robomimic's sampler, global RNG
    torch.testing.assert_close(ours.mean(1), theirs.mean(1), atol=0.02, rtol=0)
    torch.testing.assert_close(ours.std(1), theirs.std(1), atol=0.02, rtol=0)
    inside = (dist.mean.abs() < 0.9).all()
    if inside:  # little mass clamped: the mean is the mixture's
        torch.testing.assert_close(ours.mean(1), dist.mean, atol=0.03, rtol=0)


def test_low_noise_gmm_picks_mode_means_with_the_mixture_weights(ckpts):
    """robomimic's default eval behaviour: std 1e-4, so samples are the K means, in proportion."""
    policy = RobomimicPolicy.from_pretrained(ckpts["bc_gmm_low_noise"])
    assert policy.low_noise and policy.spec.extra["low_noise"]
    obs = torch.randn(2, policy.spec.flat_obs_dim, generator=torch.Generator().manual_seed(0))
    samples = policy.sample(obs, 20_000, generator=torch.Generator().manual_seed(1))[:, :, 0]
    dist = _robomimic_dist(policy, obs)
    means = dist.component_distribution.base_dist.loc  # [B, K, A]
    weights = dist.mixture_distribution.probs  # [B, K]
    dist_to_modes = (samples[:, :, None] - means[:, None]).abs().amax(-1)  # [B, N, K]
    assert dist_to_modes.amin(-1).max() < 1e-3
    freq = torch.nn.functional.one_hot(dist_to_modes.argmin(-1), means.shape[1]).float().mean(1)
    torch.testing.assert_close(freq, weights, atol=0.02, rtol=0)
    full = RobomimicPolicy.from_pretrained(ckpts["bc_gmm_low_noise"], low_noise=False)
    assert not full.low_noise
    spread = full.sample(obs, 200, generator=torch.Generator().manual_seed(1))[:, :, 0]
    assert (spread[:, :, None] - means[:, None]).abs().amax(-1).amin(-1).max() > 1e-2


def test_gaussian_policy(ckpts):
    """BC-Gaussian: a mixture of one; samples follow robomimic's Normal."""
    policy = RobomimicPolicy(load_checkpoint(ckpts["bc_gaussian"]))
    assert policy.algo_class == "BC_Gaussian"
    obs = torch.randn(2, policy.spec.flat_obs_dim)
    ours = policy.sample(obs, 20_000, generator=torch.Generator().manual_seed(0))[:, :, 0]
    dist = _robomimic_dist(policy, obs)
    torch.testing.assert_close(ours.mean(1), dist.mean.clamp(-1, 1), atol=0.03, rtol=0)


def test_deterministic_bc_is_robomimics_rollout_action(ckpts):
    """BC: N copies of the action robomimic's own RolloutPolicy takes (observation normalization included)."""
    for name in ("bc", "bc_normalized"):
        policy = RobomimicPolicy.from_pretrained(ckpts[name])
        rollout, _ = FileUtils.policy_from_checkpoint(ckpt_dict=load_checkpoint(ckpts[name]), device=torch.device("cpu"))
        rollout.start_episode()
        obs = torch.randn(1, policy.spec.flat_obs_dim)
        ob = {"object": obs[0, :2].numpy(), "robot0_eef_pos": obs[0, 2:].numpy()}
        theirs = torch.as_tensor(rollout(ob))
        ours = policy.sample(obs, 3)[0, :, 0]
        torch.testing.assert_close(ours, theirs.expand(3, -1))
    normalized = RobomimicPolicy.from_pretrained(ckpts["bc_normalized"])
    assert not torch.allclose(normalized.normalizer.obs_std, torch.ones(5))


def test_rnn_is_stateless_and_history_matches_robomimics_rollout(ckpts):
    """[B, D]: robomimic's first action after a reset; [B, T, D]: its T-th action within one window."""
    policy = RobomimicPolicy.from_pretrained(ckpts["bc_rnn"])
    assert policy.is_rnn and policy.spec.n_obs_steps == 1 and policy.spec.extra["rnn_horizon"] == SEQ
    rollout, _ = FileUtils.policy_from_checkpoint(ckpt_dict=load_checkpoint(ckpts["bc_rnn"]), device=torch.device("cpu"))
    rollout.start_episode()
    history = torch.randn(1, 3, policy.spec.flat_obs_dim)
    stepped = []
    for t in range(3):
        ob = {"object": history[0, t, :2].numpy(), "robot0_eef_pos": history[0, t, 2:].numpy()}
        stepped.append(torch.as_tensor(rollout(ob)))
    torch.testing.assert_close(policy.sample(history[:, 0], 1)[0, 0, 0], stepped[0])
    torch.testing.assert_close(policy.sample(history, 1)[0, 0, 0], stepped[-1])
    # stateless: calling again gives the same, whatever came before
    torch.testing.assert_close(policy.sample(history[:, 0], 1)[0, 0, 0], stepped[0])


def test_imitation_loss_is_robomimics_loss(ckpts):
    """GMM: robomimic's negative log-likelihood; BC: its L2 loss (train_on_batch with validate=True)."""
    data = read_robomimic_hdf5(ckpts["dataset"])
    obs, env_actions = torch.as_tensor(data.observations[:8]), torch.as_tensor(data.actions[:8])
    for name in ("bc_gmm", "bc_gmm_low_noise", "bc"):
        policy = RobomimicPolicy.from_pretrained(ckpts[name])
        policy.eval()  # the loss must not depend on the mode (robomimic's low_noise_eval)
        ours = policy.imitation_loss(obs, policy.normalizer.action_to_canonical(env_actions)[:, None])
        policy.train()
        batch = {"obs": policy._obs_dict(obs), "goal_obs": None, "actions": env_actions}
        theirs = policy.algo.train_on_batch(batch, epoch=0, validate=True)["losses"]["action_loss"]
        torch.testing.assert_close(ours.detach(), theirs, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- layout, saving, loading
def test_flat_layout_is_sorted_keys_and_dicts_are_accepted(ckpts):
    policy = RobomimicPolicy.from_pretrained(ckpts["bc_gmm"])
    assert policy.obs_keys == sorted(OBS_KEYS) == ["object", "robot0_eef_pos"]
    assert policy.spec.extra["obs_layout"] == [["object", 2], ["robot0_eef_pos", 3]]
    flat = torch.randn(4, 5)
    as_dict = {"object": flat[:, :2], "robot0_eef_pos": flat[:, 2:]}
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    torch.testing.assert_close(policy.sample(as_dict, 3, generator=g()), policy.sample(flat, 3, generator=g()))
    with pytest.raises(ValueError, match="observations must be"):
        policy.sample(torch.randn(4, 6), 2)
    data = read_robomimic_hdf5(ckpts["dataset"], obs_keys=policy.obs_keys)
    assert data.observations.shape[1] == policy.spec.flat_obs_dim


def test_load_policy_detects_checkpoint_files_and_saved_dirs(ckpts, tmp_path):
    policy = load_policy(ckpts["bc_gmm"])
    assert isinstance(policy, RobomimicPolicy) and policy.identity["adapter"] == "robomimic"
    assert len(policy.identity["sha256"]) == 64
    explicit = load_policy(f"robomimic:{ckpts['bc_gmm']}")
    assert explicit.spec == policy.spec
    policy.save_pretrained(tmp_path / "saved")
    again = load_policy(tmp_path / "saved")
    assert again.identity["adapter"] == "robomimic" and again.identity["sha256"]
    obs = torch.randn(2, 5)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    torch.testing.assert_close(again.sample(obs, 4, generator=g()), policy.sample(obs, 4, generator=g()))


def test_saved_checkpoint_is_robomimics_format_with_updated_weights(ckpts, tmp_path):
    """save_pretrained writes a .pth robomimic itself loads, holding the current (fine-tuned) weights."""
    policy = RobomimicPolicy.from_pretrained(ckpts["bc"])
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.01)
    policy.save_pretrained(tmp_path)
    rollout, _ = FileUtils.policy_from_checkpoint(ckpt_path=str(tmp_path / "model.pth"), device=torch.device("cpu"))
    rollout.start_episode()
    obs = torch.randn(1, 5)
    theirs = torch.as_tensor(rollout({"object": obs[0, :2].numpy(), "robot0_eef_pos": obs[0, 2:].numpy()}))
    torch.testing.assert_close(policy.sample(obs, 1)[0, 0, 0], theirs)


class _Payload:
    """Pickles to a call of os.mkdir: if it runs on load, the marker directory appears."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_malicious_pickle_is_refused_not_executed(ckpts, tmp_path):
    marker = tmp_path / "pwned"
    ckpt = load_checkpoint(ckpts["bc"])
    ckpt["env_metadata"] = _Payload(marker)
    path = tmp_path / "evil.pth"
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="cannot be loaded safely.*weights_only"):
        RobomimicPolicy.from_pretrained(path)
    with pytest.raises(ValueError, match="cannot be loaded safely"):
        load_policy(path)
    assert not marker.exists(), "the checkpoint's pickled code ran"


def test_clear_errors_for_what_is_not_supported(ckpts, tmp_path):
    ckpt = load_checkpoint(ckpts["bc"])
    with pytest.raises(ValueError, match="BC family"):
        RobomimicPolicy({**ckpt, "algo_name": "iql"})
    config = json.loads(ckpt["config"])
    config["observation"]["modalities"]["obs"]["rgb"] = ["agentview_image"]
    with pytest.raises(ValueError, match="low-dimensional.*agentview_image"):
        RobomimicPolicy({**ckpt, "config": json.dumps(config)})
    not_a_ckpt = tmp_path / "weights.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, not_a_ckpt)
    with pytest.raises(ValueError, match="not a robomimic checkpoint"):
        load_policy(not_a_ckpt)


def test_finetuner_runs_on_robomimic_demos(ckpts):
    """Imitation-updated EXPO on a BC-GMM base with the robomimic dataset as offline data."""
    from expo_sdk import FinetuneConfig, Finetuner
    from expo_sdk.testing import SpecMatchedEnv

    policy = RobomimicPolicy.from_pretrained(ckpts["bc_gmm"])
    demos = read_robomimic_hdf5(ckpts["dataset"], obs_keys=policy.obs_keys)
    config = FinetuneConfig(
        batch_size=16, utd_ratio=1, num_samples=2, eval_episodes=2, base_mode="imitation",
        critic={"ensemble_size": 2, "num_min_q": 2, "hidden_dim": 16},
        edit_head={"hidden_dim": 16, "num_layers": 1},
        learning_starts=8, eval_every=10**6, log_every=10, seed=0,
    )
    before = [p.detach().clone() for p in policy.parameters()]
    result = Finetuner(policy, config).run(lambda: SpecMatchedEnv(policy.spec), total_steps=20,
                                           offline_data=demos, progress=False)
    assert result.env_steps >= 20
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, policy.parameters()))
