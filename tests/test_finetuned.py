import numpy as np
import pytest
from toy_policy import BiasedMixturePolicy

from expo_sdk import FinetuneConfig, Finetuner, FinetunedPolicy, evaluate, load_policy, train_imitation
from expo_sdk.adapters import DDPMPolicy
from expo_sdk.envs.toy import ReachGoalEnv
from expo_sdk.finetuner import EVAL_SEED_OFFSET

SMALL = dict(batch_size=32, utd_ratio=2, critic={"ensemble_size": 3, "hidden_dim": 32},
             edit_head={"hidden_dim": 32, "num_layers": 2}, num_samples=4, eval_episodes=20,
             eval_every=10**6, log_every=50, learning_starts=50, base_mode="frozen", seed=4)


def test_saved_run_reloads_into_a_policy_that_reproduces_the_final_evaluation(tmp_path):
    import torch

    tuner = Finetuner(BiasedMixturePolicy(), FinetuneConfig(**SMALL))
    result = tuner.run(ReachGoalEnv, total_steps=150, run_dir=tmp_path, task="reach-goal", progress=False)
    for name in ("edit_head/model.safetensors", "critic/model.safetensors", "expo_policy.json", "README.md"):
        assert (tmp_path / name).is_file(), name
    policy = FinetunedPolicy.from_pretrained(tmp_path, base=BiasedMixturePolicy())
    seed = SMALL["seed"] + EVAL_SEED_OFFSET
    generator = torch.Generator().manual_seed(seed)  # the same stream the run's evaluation used
    again = evaluate(lambda obs: policy.act(obs, generator), ReachGoalEnv, 20, seed)
    assert again.success_rate == result.final_success
    card = (tmp_path / "README.md").read_text()
    assert f"{result.final_success:.2f}" in card and "reach-goal" in card and "learning_curve.png" in card
    assert policy.act(np.zeros(4, np.float32)).shape == (1, 2)
    assert policy.act_base(np.zeros((3, 4), np.float32)).shape == (3, 1, 2)


def _saved_ddpm(path, seed):
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1, 1, (64, 4)).astype(np.float32)
    policy = DDPMPolicy.for_dataset(obs, [-1, -1], [1, 1], hidden_dim=16, num_blocks=1)
    train_imitation(policy, {"observations": obs, "actions": rng.uniform(-1, 1, (64, 2)), "rewards": np.zeros(64),
                             "next_observations": obs, "terminals": np.zeros(64, bool)}, steps=5, seed=seed)
    policy.save_pretrained(path)
    return load_policy(path)


def test_edit_head_is_pinned_to_its_base(tmp_path):
    base = _saved_ddpm(tmp_path / "base", seed=0)
    other = _saved_ddpm(tmp_path / "other", seed=1)
    tuner = Finetuner(base, FinetuneConfig(**SMALL))
    tuner.run(ReachGoalEnv, total_steps=60, run_dir=tmp_path / "run", progress=False)
    assert tuner.edit_head.base_identity["sha256"] == base.identity["sha256"]

    loaded = FinetunedPolicy.from_pretrained(tmp_path / "run")  # finds the base by its recorded path
    assert loaded.base.identity["sha256"] == base.identity["sha256"]
    with pytest.raises(ValueError, match=r"belongs to base .*base.*allow_base_mismatch=True"):
        FinetunedPolicy.from_pretrained(tmp_path / "run", base=other)
    FinetunedPolicy.from_pretrained(tmp_path / "run", base=other, allow_base_mismatch=True)


def test_truncated_weights_give_a_clear_error(tmp_path):
    Finetuner(BiasedMixturePolicy(), FinetuneConfig(**SMALL)).run(ReachGoalEnv, total_steps=60, run_dir=tmp_path,
                                                                  progress=False)
    weights = tmp_path / "edit_head" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"cannot load EditHead from .*edit_head: the files are missing, truncated or corrupt"):
        FinetunedPolicy.from_pretrained(tmp_path, base=BiasedMixturePolicy())


def test_not_a_saved_policy(tmp_path):
    with pytest.raises(FileNotFoundError, match="expo_policy.json"):
        FinetunedPolicy.from_pretrained(tmp_path, base=BiasedMixturePolicy())


def test_cuda_graphs_for_a_policy_off_cuda_are_refused_with_the_fix():
    policy = Finetuner(BiasedMixturePolicy(), FinetuneConfig(**SMALL)).finetuned_policy()
    with pytest.raises(ValueError, match="cuda_graphs=True needs the policy on a CUDA device.*device='cuda'"):
        FinetunedPolicy(policy.base, policy.edit_head, policy.critic, cuda_graphs=True)
    assert policy.to("cpu").device.type == "cpu" and policy.act(np.zeros(4, np.float32)).shape == (1, 2)


def test_compiled_acting_of_a_deployed_policy_picks_the_same_actions(tmp_path):
    import torch

    base = _saved_ddpm(tmp_path / "base", seed=0)
    tuner = Finetuner(base, FinetuneConfig(**SMALL))
    tuner.run(ReachGoalEnv, total_steps=60, run_dir=tmp_path / "run", progress=False)
    plain = FinetunedPolicy.from_pretrained(tmp_path / "run")
    fused = FinetunedPolicy.from_pretrained(tmp_path / "run", compile_acting=True)
    assert fused.base.compile_sampling and not plain.base.compile_sampling
    compiled_scorer, scored = fused._scorer, []
    fused._scorer = lambda *args: scored.append(args[0].shape[0]) or compiled_scorer(*args)
    obs = np.random.default_rng(3).uniform(-1, 1, (5, 4)).astype(np.float32)
    for states in (obs, obs[0]):  # a batch, and one state (batch 1: its own compiled shapes)
        expected, got = (p.act(states, torch.Generator().manual_seed(9)) for p in (plain, fused))
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert fused.base._compiled_denoise is not None and scored == [5, 1]
    with pytest.warns(UserWarning, match="BiasedMixturePolicy has no `compile_sampling` switch"):
        FinetunedPolicy(BiasedMixturePolicy(), tuner.edit_head, tuner.target.target, allow_base_mismatch=True,
                        compile_acting=True)
