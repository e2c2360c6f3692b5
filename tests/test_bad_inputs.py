"""The bad-input sweep: every way a user can hand the SDK wrong input gets a clear error.

Each case builds the bad input for real (a misspelled key, an env with other bounds, a
truncated file, a policy returning NaN, ...) and asserts the error type and a fragment of
the message that names the problem or the fix. Cases that must also keep earlier data
(training that diverges, a resume with another config) have their own tests below.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from toy_policy import BiasedMixturePolicy

from expo_sdk import (
    EditHead, FinetuneConfig, FinetunedPolicy, Finetuner, OfflineDataset, check_env,
    check_policy, load_policy,
)
from expo_sdk.checkpoint import find_checkpoint, load_checkpoint
from expo_sdk.config import apply_overrides, load_yaml
from expo_sdk.critic import CriticEnsemble
from expo_sdk.envs.toy import ReachGoalEnv
from expo_sdk.recipe import Recipe

TINY = dict(batch_size=8, utd_ratio=1, base_mode="frozen", num_samples=2, eval_episodes=2,
            eval_every=10**6, log_every=10, critic={"ensemble_size": 2, "hidden_dim": 8},
            edit_head={"hidden_dim": 8, "num_layers": 1})


def _run(env_cls, steps=20, **overrides):
    tuner = Finetuner(BiasedMixturePolicy(), FinetuneConfig(**{**TINY, **overrides}))
    return tuner.run(env_cls, total_steps=steps, env_fn=ReachGoalEnv, progress=False)


def _demos(n=20, **changes):
    rng = np.random.default_rng(0)
    arrays = {"observations": rng.uniform(-1, 1, (n, 4)).astype(np.float32),
              "actions": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
              "rewards": np.zeros(n, np.float32),
              "next_observations": rng.uniform(-1, 1, (n, 4)).astype(np.float32),
              "terminals": np.zeros(n, bool)}
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


class _Returns(BiasedMixturePolicy):
    """A policy whose samples are replaced by `out(obs, n)`."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def sample(self, obs, num_samples, generator=None):
        return self.out(obs, num_samples)


class _EnvWith(ReachGoalEnv):
    """ReachGoalEnv with one attribute changed (spaces) or one step output replaced."""

    def __init__(self, observation_space=None, action_space=None, obs_value=None, reward=None):
        super().__init__()
        self.observation_space = observation_space or self.observation_space
        self.action_space = action_space or self.action_space
        self.obs_value, self.reward_value = obs_value, reward

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if self.obs_value is not None:
            obs = np.full_like(obs, self.obs_value)
        if self.reward_value is not None:
            reward = self.reward_value
        return obs, reward, terminated, truncated, info


def _saved_ddpm(tmp_path: Path) -> Path:
    from expo_sdk.adapters import DDPMPolicy

    policy = DDPMPolicy.for_dataset(np.zeros((4, 4), np.float32), [-1.0, -1.0], [1.0, 1.0],
                                    hidden_dim=8, num_blocks=1)
    policy.save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def _drop_a_tensor(weights: Path) -> None:
    tensors = load_file(str(weights))
    tensors.pop(sorted(tensors)[0])
    save_file(tensors, str(weights))


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _edit_head_for_other_base(tmp_path: Path):
    base = load_policy(_saved_ddpm(tmp_path))
    other = dict(base.identity, sha256="0" * 64, path="/elsewhere/base")
    head = EditHead(4, 2, base_identity=other, normalizer=base.normalizer.to_dict())
    return FinetunedPolicy(base, head, CriticEnsemble(4, 2, 2, 8))


def _npz_truncated(tmp_path: Path):
    path = tmp_path / "demos.npz"
    OfflineDataset(_demos()).save_npz(str(path))
    _truncate(path)
    return OfflineDataset.load_npz(str(path))


def _npz_with_objects(tmp_path: Path):
    path = tmp_path / "objects.npz"
    np.savez(path, observations=np.array([{"a": 1}], dtype=object))
    return OfflineDataset.load_npz(str(path))


def _finetune_with_demos(demos):
    tuner = Finetuner(BiasedMixturePolicy(), FinetuneConfig(**TINY))
    return tuner.run(ReachGoalEnv, total_steps=5, offline_data=demos, progress=False)


def _corrupt_checkpoint(tmp_path: Path):
    tuner = Finetuner(BiasedMixturePolicy(), FinetuneConfig(**TINY, checkpoint_every=5))
    tuner.run(ReachGoalEnv, total_steps=20, run_dir=tmp_path / "run", progress=False)
    checkpoint = find_checkpoint(tmp_path / "run")
    _truncate(checkpoint / "tensors.safetensors", 0.3)
    return load_checkpoint(checkpoint)


def _strict_base(tmp_path: Path):
    directory = _saved_ddpm(tmp_path)
    _drop_a_tensor(directory / "model.safetensors")
    return load_policy(directory)


def _mismatched_edit_head(tmp_path: Path):
    base = load_policy(_saved_ddpm(tmp_path))
    head = EditHead(5, 2, base_identity=base.identity, normalizer=base.normalizer.to_dict())
    return FinetunedPolicy(base, head, CriticEnsemble(4, 2, 2, 8))


def _truncated_edit_head(tmp_path: Path):
    EditHead(4, 2).save_pretrained(tmp_path / "head")
    _truncate(tmp_path / "head" / "model.safetensors")
    from expo_sdk.finetuned import _load_part

    return _load_part(EditHead, tmp_path / "head")


Box = gym.spaces.Box
# (id, function of tmp_path that must raise, error type, literal message fragment)
CASES = [
    # --- configuration -----------------------------------------------------------------
    ("misspelled key", lambda t: FinetuneConfig(utd_raito=20), ValueError, "did you mean 'utd_ratio'"),
    ("misspelled nested key", lambda t: FinetuneConfig(critic={"ensemble_sise": 5}), ValueError,
     "did you mean 'ensemble_size'"),
    ("beta <= 0", lambda t: FinetuneConfig(beta=0.0), ValueError, "edit_head.beta"),
    ("N < 1", lambda t: FinetuneConfig(num_samples=0), ValueError, "selector.num_samples"),
    ("UTD < 1", lambda t: FinetuneConfig(utd_ratio=0), ValueError, "utd_ratio"),
    ("batch > buffer", lambda t: FinetuneConfig(batch_size=512, replay={"capacity": 100}), ValueError,
     "batch_size=512 exceeds replay.capacity=100"),
    ("wrong type", lambda t: FinetuneConfig(batch_size="big"), ValueError, "batch_size"),
    ("gamma > 1", lambda t: FinetuneConfig(gamma=1.5), ValueError, "gamma"),
    ("REDQ subset > ensemble", lambda t: FinetuneConfig(critic={"ensemble_size": 2, "num_min_q": 3}),
     ValueError, "exceeds critic.ensemble_size"),
    ("unknown selector mode", lambda t: FinetuneConfig(selector={"mode": "best"}), ValueError, "'argmax' or 'soft'"),
    ("shortcut conflicts with section", lambda t: FinetuneConfig(beta=0.1, edit_head={"beta": 0.2}),
     ValueError, "conflicts with edit_head.beta"),
    ("cache with an imitation-updated base", lambda t: FinetuneConfig(cache_base_candidates=True,
                                                                     base_mode="imitation"),
     ValueError, "base_mode='imitation' needs cache_refresh_per_step > 0"),
    ("cache of fewer samples than N", lambda t: FinetuneConfig(cache_base_candidates=True, num_samples=8,
                                                               base_mode="frozen", cache_samples=4),
     ValueError, "cache_samples=4 must be >= num_samples=8"),
    ("cache settings without the cache", lambda t: FinetuneConfig(cache_refresh_per_step=64),
     ValueError, "need cache_base_candidates: true"),
    ("recipe: misspelled section", lambda t: Recipe.model_validate({"task": {"name": "pointmaze-umaze"},
                                                                    "finetun": {}}),
     ValueError, "did you mean 'finetune'"),
    ("recipe: not YAML", lambda t: load_yaml(_write(t, "r.yaml", "task: [unclosed")), ValueError, "not valid YAML"),
    ("recipe: not a mapping", lambda t: load_yaml(_write(t, "r.yaml", "- a\n- b\n")), ValueError,
     "must hold a YAML mapping"),
    ("override without '='", lambda t: apply_overrides({}, ["finetune.beta"]), ValueError,
     "must look like key.subkey=value"),
    # --- env / policy boundary -----------------------------------------------------------
    ("env observation shape", lambda t: check_env(_EnvWith(observation_space=Box(-1, 1, (5,))),
                                                  BiasedMixturePolicy().spec),
     ValueError, "env observations have shape (5,) but the base policy expects (4,)"),
    ("env action dimensions", lambda t: check_env(_EnvWith(action_space=Box(-1, 1, (3,))),
                                                  BiasedMixturePolicy().spec),
     ValueError, "env actions have 3 dimensions but the base policy produces 2"),
    ("env action bounds", lambda t: check_env(_EnvWith(action_space=Box(-2, 2, (2,))),
                                              BiasedMixturePolicy().spec),
     ValueError, "differ from the base policy's"),
    ("dict observations", lambda t: check_env(_EnvWith(observation_space=gym.spaces.Dict(
        {"state": Box(-1, 1, (4,))})), BiasedMixturePolicy().spec), TypeError, "FlattenObservation"),
    ("policy sample shape", lambda t: check_policy(_Returns(lambda o, n: torch.zeros(o.shape[0], n, 2))),
     ValueError, "expected [B, N, H, A]"),
    ("policy NaN samples", lambda t: check_policy(_Returns(lambda o, n: torch.full((o.shape[0], n, 1, 2), np.nan))),
     ValueError, "NaN or inf"),
    ("policy integer samples", lambda t: check_policy(_Returns(lambda o, n: torch.zeros(o.shape[0], n, 1, 2,
                                                                                           dtype=torch.long))),
     TypeError, "floating point"),
    ("not a policy", lambda t: check_policy(torch.nn.Linear(2, 2)), TypeError, "is not a BasePolicy"),
    # --- datasets ------------------------------------------------------------------------
    ("dataset missing a field", lambda t: OfflineDataset(_demos(rewards=None)), ValueError, "missing ['rewards']"),
    ("empty dataset", lambda t: OfflineDataset(_demos(n=0)), ValueError, "empty"),
    ("dataset lengths disagree", lambda t: OfflineDataset(_demos(rewards=np.zeros(3, np.float32))), ValueError,
     "disagree in length"),
    ("NaN in dataset", lambda t: OfflineDataset(_demos(rewards=np.full(20, np.nan, np.float32))), ValueError,
     "'rewards' contains NaN"),
    ("truncated dataset file", _npz_truncated, ValueError, "not a complete .npz"),
    ("dataset file needing pickle", _npz_with_objects, ValueError, "not a complete .npz of plain arrays"),
    ("dataset observations vs policy", lambda t: _finetune_with_demos(_demos(
        observations=np.zeros((20, 6), np.float32))), ValueError, "offline observations have shape (6,)"),
    ("dataset actions outside env bounds", lambda t: _finetune_with_demos(_demos(
        actions=np.full((20, 2), 3.0, np.float32))), ValueError, "outside the env's action bounds"),
    # --- values during training -----------------------------------------------------------
    ("NaN observation from env", lambda t: _run(lambda: _EnvWith(obs_value=np.nan)), FloatingPointError,
     "non-finite observation at env step 0"),
    ("NaN reward from env", lambda t: _run(lambda: _EnvWith(reward=float("nan"))), FloatingPointError,
     "non-finite reward (nan) at env step 0"),
    # --- artifacts ------------------------------------------------------------------------
    ("corrupt checkpoint", _corrupt_checkpoint, ValueError, "unreadable"),
    ("weights missing a tensor", _strict_base, RuntimeError, "Missing key"),
    ("edit head of another base", _edit_head_for_other_base, ValueError, "edits learned for one policy"),
    ("edit head of another shape", _mismatched_edit_head, ValueError,
     "edit head takes observations of size 5"),
    ("truncated edit head", _truncated_edit_head, ValueError, "missing, truncated or corrupt"),
    ("unknown adapter", lambda t: load_policy(t, adapter="nonesuch"), ValueError,
     "unknown adapter 'nonesuch'; installed adapters"),
    ("policy spec that is no path or module", lambda t: load_policy("nonesuch:factory"), ValueError,
     "nor an importable `module:factory`"),
    ("unrecognised policy directory", lambda t: load_policy(_write(t, "config.json", "{}").parent), ValueError,
     "no installed adapter recognises"),
]


@pytest.mark.parametrize("make_bad, error, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_error(tmp_path, make_bad, error, fragment):
    with pytest.raises(error) as info:
        make_bad(tmp_path)
    assert fragment in str(info.value)


def test_the_sweep_covers_at_least_25_distinct_inputs():
    assert len({c[0] for c in CASES}) == len(CASES) >= 25


def test_diverging_training_stops_naming_where_and_keeps_earlier_data(tmp_path):
    """A reward near float32's max makes the squared TD error overflow mid-run."""

    class BlowsUpLater(ReachGoalEnv):
        steps = 0

        def step(self, action):
            obs, reward, terminated, truncated, info = super().step(action)
            BlowsUpLater.steps += 1
            return obs, (3e38 if BlowsUpLater.steps > 60 else reward), terminated, truncated, info

    run_dir = tmp_path / "run"
    tuner = Finetuner(BiasedMixturePolicy(), FinetuneConfig(**TINY, checkpoint_every=20))
    with pytest.raises(FloatingPointError, match=r"at env step 6[12], first in 'critic_loss'.*keeps the last checkpoint "
                                                 r"\(checkpoint/\)"):
        tuner.run(BlowsUpLater, total_steps=200, run_dir=run_dir, env_fn=ReachGoalEnv, progress=False)
    tensors, state = load_checkpoint(find_checkpoint(run_dir))  # still usable, from before the blow-up
    assert 20 <= state["env_step"] <= 61
    assert all(torch.isfinite(v).all() for k, v in tensors.items() if v.is_floating_point())
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["env_step"] for r in logged if "train/critic_loss" in r][:2] == [10, 20]


def test_resume_with_another_config_is_refused_and_changes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    Finetuner(BiasedMixturePolicy(), FinetuneConfig(**TINY, checkpoint_every=10)).run(
        ReachGoalEnv, total_steps=30, run_dir=run_dir, progress=False)
    before = {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    other = Finetuner(BiasedMixturePolicy(), FinetuneConfig(**{**TINY, "utd_ratio": 2}, checkpoint_every=10))
    with pytest.raises(ValueError, match="different config"):
        other.run(ReachGoalEnv, total_steps=60, run_dir=run_dir, resume=True, progress=False)
    assert {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_a_float64_policy_is_used_in_float32_rather_than_failing_deep_inside():
    class Float64Policy(BiasedMixturePolicy):
        def sample(self, obs, num_samples, generator=None):
            return super().sample(obs, num_samples, generator).double()

    for cache in (False, True):
        tuner = Finetuner(Float64Policy(), FinetuneConfig(**TINY, cache_base_candidates=cache))
        result = tuner.run(ReachGoalEnv, total_steps=30, progress=False)
        assert result.env_steps == 30 and tuner.online.next_base_actions is not None or not cache


def test_diverging_training_without_checkpoints_says_so(tmp_path):
    class HugeReward(ReachGoalEnv):
        def step(self, action):
            obs, _, terminated, truncated, info = super().step(action)
            return obs, 3e38, terminated, truncated, info

    tuner = Finetuner(BiasedMixturePolicy(), FinetuneConfig(**TINY))
    with pytest.raises(FloatingPointError, match="keeps the metrics logged so far \\(no checkpoint was written"):
        tuner.run(HugeReward, total_steps=50, run_dir=tmp_path / "run", env_fn=ReachGoalEnv, progress=False)
