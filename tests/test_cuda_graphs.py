"""`cuda_graphs`: the update captured in a CUDA graph computes what the eager update computes.

The CUDA tests run where a GPU is (`pytest tests/test_cuda_graphs.py` on a CUDA machine);
on CPU only the refusal is checked.
"""

import json

import numpy as np
import pytest
import torch
from toy_policy import BiasedMixturePolicy

from expo_sdk import Callback, FinetuneConfig, FinetunedPolicy, Finetuner
from expo_sdk.adapters import DDPMPolicy, FlowMatchingPolicy
from expo_sdk.envs.toy import ReachGoalEnv

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
SMALL = dict(batch_size=16, utd_ratio=3, num_samples=4, critic={"ensemble_size": 4, "hidden_dim": 32},
             edit_head={"hidden_dim": 32, "num_layers": 2})


def test_cuda_graphs_without_a_cuda_device_is_refused():
    base = DDPMPolicy.for_dataset(np.zeros((4, 3), np.float32), [-1, -1], [1, 1], hidden_dim=16, num_blocks=1)
    with pytest.raises(ValueError, match="cuda_graphs=True needs one process on a CUDA device.*cuda_graphs: false"):
        Finetuner(base, FinetuneConfig(**SMALL, device="cpu", cuda_graphs=True))


def _pair(**config):
    """Two identical tuners on CUDA: one graphed, one running the same update eagerly."""
    tuners = []
    for _ in range(2):
        torch.manual_seed(0)
        obs = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
        base = DDPMPolicy.for_dataset(obs, [-1, -1], [1, 1], hidden_dim=32, num_blocks=1, num_diffusion_steps=3)
        tuner = Finetuner(base, FinetuneConfig(**SMALL, device="cuda", cuda_graphs=True, **config))
        tuner._prepare_buffers(200, None)
        tuners.append(tuner)
    graphed, eager = tuners
    _no_graphs(eager)
    return graphed, eager


def _no_graphs(tuner):
    """The same tuner (capturable optimizers, device-side buffer sizes) without any graph."""
    tuner._graphed_update = tuner._graphed_acting = tuner._graphed_base_samples = None


def _add(tuner, rng_seed: int, m: int = 7) -> None:
    rng = np.random.default_rng(rng_seed)
    obs, next_obs = (torch.as_tensor(rng.normal(size=(m, 3)), dtype=torch.float32, device="cuda") for _ in range(2))
    cached = None
    if tuner.online.next_base_actions is not None:
        cached = tuner.base_samples(next_obs, tuner.config.cached_samples_per_state)
    tuner.online.add(obs, torch.as_tensor(rng.uniform(-1, 1, (m, 2)), dtype=torch.float32), rng.uniform(0, 1, m),
                     next_obs, rng.random(m) < 0.2, 0.99, next_base_actions=cached)


@needs_cuda
@pytest.mark.parametrize("config", [
    dict(base_mode="imitation"),
    dict(base_mode="frozen", cache_base_candidates=True, cache_samples=6, selector={"num_samples": 4, "mode": "soft"}),
    dict(base_mode="imitation", cache_base_candidates=True, cache_refresh_per_step=5),
    dict(base_mode="frozen", base_sampling_dtype="bfloat16"),
    dict(base_mode="frozen", cache_base_candidates=True, compile_critic=True),
], ids=["imitation", "frozen-cache-soft", "imitation-refreshed-cache", "bf16-sampling", "cache-compiled-critic"])
def test_graphed_updates_match_eager_updates_as_the_buffer_grows(config):
    graphed, eager = _pair(**config)
    probe = torch.randn(5, 3, device="cuda")
    for step in range(8):  # 3 eager warm-ups, the capture, then replays
        for tuner in (graphed, eager):
            _add(tuner, step)  # the buffer grows after the capture: the graph must sample the new entries
            tuner.select_action(probe)  # eager use of the generator between replays
        got = _with_global_seed(step, graphed.update)  # the base's imitation loss draws from the
        expected = _with_global_seed(step, eager.update)  # global generator, which both tuners share
        assert got.keys() == expected.keys()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-5, msg=f"update {step}: {key}")
    assert graphed._graphed_update.captured(), "the update was never captured"
    for name, module in graphed._modules().items():
        for (pname, p), q in zip(module.named_parameters(), eager._modules()[name].parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-5, msg=f"{name}.{pname}")
    torch.testing.assert_close(graphed.generator.get_state(), eager.generator.get_state())


def _with_global_seed(seed, fn):
    torch.manual_seed(seed)
    return fn()


@needs_cuda
def test_a_graphed_run_matches_an_eager_run_and_evaluates_between_replays():
    def run(cuda_graphs):
        torch.manual_seed(0)
        config = FinetuneConfig(**SMALL, device="cuda", cuda_graphs=True, base_mode="frozen",
                                learning_starts=10, eval_every=20, eval_episodes=2, log_every=10)
        tuner = Finetuner(BiasedMixturePolicy(), config)
        if not cuda_graphs:
            _no_graphs(tuner)
        history = tuner.run(ReachGoalEnv, total_steps=60, progress=False).history
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in history]

    graphed, eager = run(True), run(False)
    assert any("train/critic_loss" in r for r in graphed) and any("eval/success" in r for r in graphed)
    _approx_equal_histories(graphed, eager)


def _approx_equal_histories(got_history, expected_history):
    assert len(got_history) == len(expected_history)
    for got, expected in zip(got_history, expected_history):
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
            else:
                assert got[key] == value, key


@needs_cuda
def test_a_graphed_run_stopped_and_resumed_matches_one_uninterrupted_run(tmp_path):
    """Resuming rebuilds the graphs (3 eager updates, then a capture) on restored weights,
    optimizer states, buffers and generator: the metrics continue as if never stopped."""
    config = FinetuneConfig(**SMALL, device="cuda", cuda_graphs=True, base_mode="frozen", cache_base_candidates=True,
                            learning_starts=10, eval_every=30, eval_episodes=2, log_every=10, checkpoint_every=20)

    class StopAt(Callback):
        def on_step(self, t, env_step):
            return env_step >= 40

    def history(run_dir):
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")}
                for line in lines]

    torch.manual_seed(0)
    Finetuner(BiasedMixturePolicy(), config).run(ReachGoalEnv, 90, run_dir=tmp_path / "full", progress=False)
    torch.manual_seed(0)
    Finetuner(BiasedMixturePolicy(), config).run(ReachGoalEnv, 90, run_dir=tmp_path / "part", callbacks=[StopAt()],
                                                 progress=False)
    resumed = Finetuner.resume(tmp_path / "part", BiasedMixturePolicy(), ReachGoalEnv, 90, progress=False)
    assert resumed.env_steps == 90
    _approx_equal_histories(history(tmp_path / "part"), history(tmp_path / "full"))


@needs_cuda
def test_compiled_base_sampling_on_cuda_computes_the_same_update():
    tuners = []
    for compiled in (False, True):
        torch.manual_seed(0)
        obs = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
        base = DDPMPolicy.for_dataset(obs, [-1, -1], [1, 1], hidden_dim=32, num_blocks=1, num_diffusion_steps=3)
        tuner = Finetuner(base, FinetuneConfig(**SMALL, device="cuda", compile_base_sampling=compiled))
        tuner._prepare_buffers(200, None)
        _add(tuner, 0)
        tuners.append(tuner)
    for step in range(2):
        plain, compiled = (_with_global_seed(step, tuner.update) for tuner in tuners)
        for key in plain:
            torch.testing.assert_close(compiled[key], plain[key], rtol=1e-4, atol=1e-5, msg=key)
    assert tuners[1].sampling_base._compiled_denoise is not None


@needs_cuda
def test_a_base_whose_sampling_synchronises_is_refused_before_the_capture():
    """The flow-matching adapter steps a diffusers scheduler, which copies from the host."""
    base = FlowMatchingPolicy.for_dataset(np.zeros((4, 3), np.float32), [-1, -1], [1, 1], hidden_dim=16,
                                          num_blocks=1, num_inference_steps=2)
    tuner = Finetuner(base, FinetuneConfig(**SMALL, device="cuda", cuda_graphs=True, base_mode="frozen"))
    tuner._prepare_buffers(100, None)
    _add(tuner, 0)
    tuner.update(), tuner.update()
    with pytest.raises(RuntimeError, match="synchronises the host with the GPU.*cuda_graphs: false"):
        tuner.update()
    assert not tuner._graphed_update.captured()


@needs_cuda
def test_graphed_acting_matches_eager_acting_as_the_weights_change():
    graphed, eager = _pair(base_mode="imitation")
    for tuner in (graphed, eager):
        _add(tuner, 0, m=40)
    for step in range(3):
        for batch in (1, 5):
            obs = torch.randn(batch, 3, device="cuda")
            for _ in range(3):  # warm-up, capture, replay
                for deterministic in (False, True):
                    got = graphed.select_action(obs, deterministic=deterministic, return_index=True)
                    expected = eager.select_action(obs, deterministic=deterministic, return_index=True)
                    for g, e in zip(got, expected):
                        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)
                got, expected = graphed._acting_base_samples(obs), eager._acting_base_samples(obs)
                torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
                given = got.clone()
                torch.testing.assert_close(graphed.select_action(obs, given), eager.select_action(obs, given),
                                           rtol=1e-5, atol=1e-5)
        for tuner in (graphed, eager):  # new weights: the graphs read them in place
            _with_global_seed(step, tuner.update)
    assert graphed._graphed_acting[False].captured(torch.zeros(5, 3, device="cuda"))


@needs_cuda
def test_a_deployed_policy_acts_from_cuda_graphs_like_it_acts_eagerly():
    graphed, _ = _pair(base_mode="frozen")
    policy = graphed.finetuned_policy()
    fast = FinetunedPolicy(policy.base, policy.edit_head, policy.critic, cuda_graphs=True)
    for batch in (1, 4):
        obs = np.random.default_rng(batch).normal(size=(batch, 3)).astype(np.float32)
        for _ in range(3):  # warm-up, capture, replay
            expected = _with_global_seed(7, lambda: policy.act(obs))
            np.testing.assert_allclose(_with_global_seed(7, lambda: fast.act(obs)), expected, rtol=1e-5, atol=1e-5)
    assert fast._graphed_act.captured(torch.zeros(4, 3, device="cuda"))
