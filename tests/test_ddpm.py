import copy

import numpy as np
import pytest
import torch

from expo_sdk import check_policy, load_policy, train_imitation
from expo_sdk.adapters import DDPMPolicy


def _bimodal_dataset(m=512, seed=0):
    """One state, two equally likely actions (+0.5 / -0.5 canonical) in env units [0, 10]."""
    rng = np.random.default_rng(seed)
    canonical = np.where(rng.random(m) < 0.5, 0.5, -0.5)[:, None] + rng.normal(0, 0.02, (m, 1))
    actions = (canonical + 1) * 5.0
    obs = rng.normal(0, 1e-3, (m, 2)).astype(np.float32)
    return {"observations": obs, "actions": actions, "rewards": np.zeros(m),
            "next_observations": obs, "terminals": np.zeros(m, bool)}


def _policy(data, **kw):
    kw = {"hidden_dim": 64, "num_blocks": 2, **kw}
    return DDPMPolicy.for_dataset(data["observations"], [0.0], [10.0], **kw)


def test_sample_shape_bounds_and_generator():
    torch.manual_seed(0)
    data = _bimodal_dataset()
    policy = _policy(data, horizon=3)
    spec = check_policy(policy)
    assert (spec.horizon, spec.action_dim) == (3, 1)
    obs = torch.randn(4, 2)
    a = policy.sample(obs, 5, generator=torch.Generator().manual_seed(1))
    b = policy.sample(obs, 5, generator=torch.Generator().manual_seed(1))
    assert a.shape == (4, 5, 3, 1) and a.abs().max() <= 1.0
    assert torch.equal(a, b)


def test_imitation_recovers_both_modes_and_acts_in_env_units():
    torch.manual_seed(0)
    data = _bimodal_dataset()
    policy = _policy(data)
    losses = train_imitation(policy, data, steps=1500, batch_size=128, lr=1e-3)
    assert np.mean(losses[-100:]) < 0.6 * np.mean(losses[:100])
    samples = policy.sample(torch.zeros(1, 2), 400, generator=torch.Generator().manual_seed(0)).flatten()
    near_pos = ((samples - 0.5).abs() < 0.15).float().mean().item()
    near_neg = ((samples + 0.5).abs() < 0.15).float().mean().item()
    assert near_pos > 0.3 and near_neg > 0.3, (near_pos, near_neg)  # N samples differ: both modes
    env_action = policy.act(np.zeros(2, np.float32))
    assert env_action.shape == (1,) and 0.0 <= env_action[0] <= 10.0


def test_save_load_round_trip_and_adapter_detection(tmp_path):
    data = _bimodal_dataset()
    policy = _policy(data)
    policy.save_pretrained(tmp_path)
    loaded = load_policy(tmp_path)
    assert isinstance(loaded, DDPMPolicy)
    assert loaded.identity["adapter"] == "ddpm" and len(loaded.identity["sha256"]) == 64
    obs = torch.randn(3, 2)
    torch.testing.assert_close(policy.sample(obs, 4, torch.Generator().manual_seed(0)),
                               loaded.sample(obs, 4, torch.Generator().manual_seed(0)))
    assert load_policy(f"ddpm:{tmp_path}").spec == policy.spec


def test_load_policy_errors_are_actionable(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_policy(tmp_path / "missing")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="no installed adapter recognises"):
        load_policy(tmp_path)
    with pytest.raises(ValueError, match="module:factory"):
        load_policy("no_such_module_xyz:make")


def test_wrong_observation_shape_is_rejected():
    policy = _policy(_bimodal_dataset())
    with pytest.raises(ValueError, match=r"expects obs \[B, 2\]"):
        policy.sample(torch.zeros(1, 3), 2)


@pytest.mark.parametrize("chunk_rows", [7, 512])
def test_fused_sampler_matches_the_diffusers_scheduler_loop(chunk_rows):
    """Same generator, same noise in the same order: the fused sampler reproduces diffusers'
    DDPMScheduler.step loop to float tolerance, also when rows are denoised in chunks."""
    torch.manual_seed(0)
    policy = _policy(_bimodal_dataset(), horizon=2, num_diffusion_steps=10).eval()
    policy.sample_chunk_rows = chunk_rows
    obs = torch.randn(5, 2)
    policy.fused_sampling = False
    reference = policy.sample(obs, 4, generator=torch.Generator().manual_seed(3))
    policy.fused_sampling = True
    fused = policy.sample(obs, 4, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(fused, reference, rtol=0, atol=2e-5)


def test_fused_ddpm_step_is_bit_identical_to_diffusers():
    torch.manual_seed(0)
    policy = _policy(_bimodal_dataset(), num_diffusion_steps=10)
    x, eps = torch.randn(64, 1) * 2, torch.randn(64, 1)
    for t, step in zip(policy.scheduler.timesteps, policy._denoising_steps()):
        noise = torch.randn(64, 1, generator=torch.Generator().manual_seed(int(t)))
        expected = policy.scheduler.step(eps, t, x, generator=torch.Generator().manual_seed(int(t))).prev_sample
        assert torch.equal(step.apply(eps, x, noise if step.std is not None else None), expected)


def test_compiled_sampler_matches_the_diffusers_scheduler_loop_and_is_not_copied():
    """`compile_sampling` runs the denoising loop through torch.compile: the same samples as
    diffusers' loop to float tolerance, for a full chunk and a smaller last chunk (a second
    row count, compiled again)."""
    torch.manual_seed(0)
    policy = _policy(_bimodal_dataset(), horizon=2, num_diffusion_steps=10).eval()
    policy.sample_chunk_rows = 8
    obs = torch.randn(5, 2)  # 20 rows: chunks of 8, 8 and 4
    policy.fused_sampling = False
    reference = policy.sample(obs, 4, generator=torch.Generator().manual_seed(3))
    policy.fused_sampling, policy.compile_sampling = True, True
    compiled = policy.sample(obs, 4, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(compiled, reference, rtol=0, atol=2e-5)
    assert policy._compiled_denoise is not None
    # An EMA copy keeps the switch but compiles its own function (one traced on this
    # instance would read this instance's weights).
    ema_copy = copy.deepcopy(policy)
    assert ema_copy.compile_sampling and ema_copy._compiled_denoise is None and policy._compiled_denoise is not None
    with torch.no_grad():
        for p in ema_copy.parameters():
            p.mul_(0.5)
    halved = ema_copy.sample(obs, 4, generator=torch.Generator().manual_seed(3))
    policy.compile_sampling = False
    ema_copy.compile_sampling = False
    torch.testing.assert_close(halved, ema_copy.sample(obs, 4, generator=torch.Generator().manual_seed(3)),
                               rtol=0, atol=2e-5)


def test_a_sampler_that_cannot_be_compiled_says_how_to_turn_compiling_off():
    """Where inductor cannot compile (no C++ compiler, an unsupported op), the first sample
    raises with the switch to turn off. The failure is a real dynamo backend failure."""
    def failing_backend(graph_module, example_inputs):
        raise RuntimeError("no C++ compiler found")

    policy = _policy(_bimodal_dataset()).eval()
    policy.compile_sampling = True
    policy._compiled_denoise = torch.compile(policy._denoise, backend=failing_backend)
    expected = (r"could not compile the DDPM sampler \(RuntimeError: no C\+\+ compiler found\)"
                r".*compile_base_sampling: false")
    with pytest.raises(RuntimeError, match=expected):
        policy.sample(torch.zeros(2, 2), 3)
    policy.compile_sampling = False
    assert policy.sample(torch.zeros(2, 2), 3).shape == (2, 3, 1, 1)
