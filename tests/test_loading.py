"""Loading from the Hub's local cache with HF_HUB_OFFLINE=1 (set in conftest.py): no network."""

import shutil

import numpy as np
import pytest

from expo_sdk import load_from_hub
from expo_sdk.adapters import DDPMPolicy

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache_with_policy(tmp_path, obs_dim=3, action_dim=1):
    """Lay out a saved policy the way huggingface_hub's cache stores a downloaded repo."""
    policy = DDPMPolicy.for_dataset(np.random.default_rng(0).uniform(-1, 1, size=(16, obs_dim)), [-1.0] * action_dim,
                                    [1.0] * action_dim, hidden_dim=16, num_blocks=1)
    saved = tmp_path / "saved"
    policy.save_pretrained(saved)
    repo = tmp_path / "cache" / "models--org--ddpm-policy"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for f in saved.iterdir():
        shutil.copy(f, snapshot / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return policy, tmp_path / "cache"


def test_load_from_hub_cache_offline_records_the_revision(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    policy, cache = _hub_cache_with_policy(tmp_path)
    loaded = load_from_hub("org/ddpm-policy", cache_dir=cache)
    assert isinstance(loaded, DDPMPolicy) and loaded.spec == policy.spec
    assert loaded.identity["repo_id"] == "org/ddpm-policy"
    assert loaded.identity["revision"] == COMMIT
    assert loaded.identity["adapter"] == "ddpm" and len(loaded.identity["sha256"]) == 64


def test_missing_repo_offline_is_a_clear_error(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(Exception, match="(?i)offline|cannot find|not found|local"):
        load_from_hub("org/not-cached", cache_dir=tmp_path)


def test_finetuned_policy_pulls_its_base_from_the_hub_cache_by_revision(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants
    from toy_policy import BiasedMixturePolicy  # noqa: F401  (conftest puts tests/ on the path)

    from expo_sdk import FinetuneConfig, Finetuner, FinetunedPolicy
    from expo_sdk.envs.toy import ReachGoalEnv

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    _, cache = _hub_cache_with_policy(tmp_path, obs_dim=4, action_dim=2)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    base = load_from_hub("org/ddpm-policy")
    cfg = FinetuneConfig(batch_size=16, utd_ratio=1, critic={"ensemble_size": 2, "hidden_dim": 16}, num_samples=2,
                         eval_episodes=2, learning_starts=10, base_mode="frozen")
    Finetuner(base, cfg).run(ReachGoalEnv, 20, run_dir=tmp_path / "run", progress=False)
    loaded = FinetunedPolicy.from_pretrained(tmp_path / "run")  # base resolved via repo_id + revision
    assert loaded.base.identity["revision"] == COMMIT and loaded.base.identity["repo_id"] == "org/ddpm-policy"



def test_checkpoint_file_no_adapter_claims_is_a_clear_error(tmp_path, monkeypatch):
    """A .pth file without robomimic installed: the error lists the adapters and the install step."""
    from expo_sdk import load_policy
    from expo_sdk.adapters import robomimic as robomimic_adapter

    monkeypatch.setattr(robomimic_adapter, "robomimic_available", lambda: False)
    checkpoint = tmp_path / "model_epoch_100.pth"
    checkpoint.write_bytes(b"not read")
    with pytest.raises(ValueError, match=r"no installed adapter recognises the file.*'robomimic'.*install-robomimic"):
        load_policy(checkpoint)
