"""`Finetuner.update` (candidates for all G TD targets generated in one batched call) computes
the same update as the faithful minibatch-by-minibatch reference, when both are fed the
same random draws."""

import numpy as np
import pytest
import torch

from expo_sdk import FinetuneConfig, Finetuner
from expo_sdk.adapters import DDPMPolicy
from expo_sdk.reference import reference_update

G, B = 3, 8
SMALL = dict(batch_size=B, utd_ratio=G, num_samples=4, critic={"ensemble_size": 4, "hidden_dim": 32},
             edit_head={"hidden_dim": 32, "num_layers": 2})


def _tuner(base_mode, cache, selector_mode):
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(64, 3)).astype(np.float32)
    data = {"observations": obs, "actions": rng.uniform(-1, 1, (64, 2)), "rewards": rng.uniform(0, 1, 64),
            "next_observations": rng.normal(size=(64, 3)).astype(np.float32), "terminals": rng.random(64) < 0.2}
    torch.manual_seed(0)
    base = DDPMPolicy.for_dataset(obs, [-1, -1], [1, 1], hidden_dim=32, num_blocks=1, num_diffusion_steps=3)
    config = FinetuneConfig(**SMALL, base_mode=base_mode, cache_base_candidates=cache,
                            selector={"num_samples": 4, "mode": selector_mode})
    tuner = Finetuner(base, config)
    tuner._prepare_buffers(100, data)
    return tuner


def _feed_same_draws(tuner, batches):
    """Make every random draw of an update depend on its inputs only, not on the order in
    which the two implementations consume the generator."""
    queue = iter(batches)
    tuner.sampler.sample = lambda batch_size, generator=None: next(queue)

    def base_samples(obs, n):  # the real base, each state with its own seed
        seeds = [int(o.abs().sum() * 1e4) for o in obs]
        rows = [tuner.sampling_base.sample(o[None], n, torch.Generator().manual_seed(s)) for o, s in zip(obs, seeds)]
        return torch.cat(rows).reshape(obs.shape[0], n, -1)

    tuner.base_samples = base_samples
    forward = tuner.edit_head.forward
    tuner.edit_head.forward = lambda obs, action, deterministic=False, generator=None, noise=None: forward(
        obs, action, deterministic, noise=torch.sin(37.0 * action + obs.sum(-1, keepdim=True)))
    members = torch.tensor([0, 2])
    tuner.target.min_over_subset = lambda q, generator=None: q[members].min(0).values


@pytest.mark.parametrize("base_mode,cache,selector_mode", [
    ("imitation", False, "argmax"), ("frozen", True, "argmax"), ("frozen", False, "soft")])
def test_update_matches_the_faithful_reference(base_mode, cache, selector_mode):
    reference, optimized = _tuner(base_mode, cache, selector_mode), _tuner(base_mode, cache, selector_mode)
    batches = [reference.sampler.sample(B, reference.generator) for _ in range(G)]
    for tuner in (reference, optimized):
        _feed_same_draws(tuner, batches)
    torch.manual_seed(1)  # the base's imitation loss draws from the global RNG
    expected = reference_update(reference)
    torch.manual_seed(1)
    stats = optimized.update()

    assert expected.keys() == stats.keys()
    for key in expected:
        torch.testing.assert_close(stats[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)
    for name, module in optimized._modules().items():
        for (pname, p), q in zip(module.named_parameters(), reference._modules()[name].parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=f"{name}.{pname}")
    torch.testing.assert_close(optimized.target.target.out.weight, reference.target.target.out.weight)


def test_the_reference_draws_candidates_per_minibatch():
    """Guard against the reference silently turning into the optimized path."""
    tuner = _tuner("frozen", False, "argmax")
    calls = []
    sample = tuner.base_samples
    tuner.base_samples = lambda obs, n: calls.append(obs.shape[0]) or sample(obs, n)
    reference_update(tuner)
    assert calls == [B] * G + [B]  # G TD targets, then the edit head's training pairs
    calls.clear()
    tuner.update()
    assert calls == [G * B, B]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_update_makes_no_host_device_syncs():
    tuner = _tuner("imitation", False, "argmax")
    tuner = Finetuner(tuner.base, tuner.config.model_copy(update={"device": "cuda"}))
    rng = np.random.default_rng(0)
    data = {"observations": rng.normal(size=(64, 3)).astype(np.float32), "actions": rng.uniform(-1, 1, (64, 2)),
            "rewards": np.zeros(64), "next_observations": rng.normal(size=(64, 3)).astype(np.float32),
            "terminals": np.zeros(64, bool)}
    tuner._prepare_buffers(100, data)
    tuner.update()  # first call: lazy initialisation may sync
    torch.cuda.set_sync_debug_mode("error")
    try:
        tuner.update()
    finally:
        torch.cuda.set_sync_debug_mode("default")
