import functools
import json
import warnings

import numpy as np
import pytest
import torch
from toy_policy import BiasedMixturePolicy

from expo_sdk import FinetuneConfig, Finetuner, PolicySpec
from expo_sdk.adapters import DDPMPolicy
from expo_sdk.envs.toy import ReachGoalEnv
from expo_sdk.finetuner import cpu_has_bf16_units
from expo_sdk.replay import Batch

SMALL = dict(batch_size=32, utd_ratio=3, critic={"ensemble_size": 3, "hidden_dim": 32},
             edit_head={"hidden_dim": 32, "num_layers": 2}, num_samples=4, eval_episodes=4,
             eval_every=10**6, log_every=10)


def _tuner(**overrides):
    return Finetuner(BiasedMixturePolicy(), FinetuneConfig(**{**SMALL, "base_mode": "frozen", **overrides}))


def test_one_update_is_G_critic_steps_then_one_edit_and_temperature_step():
    tuner = _tuner()
    tuner._prepare_buffers(100, None)
    tuner.online.add(torch.zeros(4), torch.zeros(2), 0.0, torch.zeros(4), False, 0.99)
    tuner.update()

    def steps(opt):
        return {int(s["step"]) for s in opt.state.values()}

    assert steps(tuner.critic_optimizer) == {3}
    assert steps(tuner.edit_optimizer) == {1}
    assert steps(tuner.temperature_optimizer) == {1}


def test_td_target_masks_terminal_states_and_bootstraps_truncations():
    tuner = _tuner()
    b = 6
    batch = Batch(obs=torch.zeros(b, 4), action=torch.zeros(b, 2), reward=torch.ones(b),
                  next_obs=torch.rand(b, 4), terminated=torch.tensor([True, False] * 3),
                  discount=torch.full((b,), 0.9))
    y = tuner.td_target(batch)
    assert torch.equal(y[0::2], torch.ones(3))  # terminated: y = r
    assert not torch.allclose(y[1::2], torch.ones(3))  # otherwise r + gamma V(s')


def test_reward_scale_and_bias_shape_the_td_target_per_env_step():
    # Chunks of 1, 2 and 3 executed steps (discount gamma^h), the last one terminated.
    gamma, b = 0.9, 3
    batch = Batch(obs=torch.zeros(b, 4), action=torch.zeros(b, 2), reward=torch.tensor([0.0, 1.0, 1.9]),
                  next_obs=torch.rand(b, 4), terminated=torch.tensor([False, False, True]),
                  discount=torch.tensor([gamma, gamma ** 2, gamma ** 3]))
    torch.manual_seed(0)
    raw = _tuner(gamma=gamma)
    torch.manual_seed(0)  # the same networks and draws: the two differ in their reward settings only
    shaped = _tuner(gamma=gamma, reward_scale=2.0, reward_bias=-1.0)
    # -1 per executed step, discounted inside the chunk: -1, -(1 + 0.9), -(1 + 0.9 + 0.81)
    expected_shift = torch.tensor([-1.0, -1.9, -2.71]) + torch.tensor([0.0, 1.0, 1.9])  # + (scale - 1) * r
    assert torch.allclose(shaped.td_target(batch) - raw.td_target(batch), expected_shift, atol=1e-5)
    assert torch.allclose(shaped.td_reward(batch)[2], torch.tensor(2 * 1.9 - 2.71))  # terminated: y = r only
    with pytest.raises(ValueError, match="reward_bias needs gamma < 1"):
        FinetuneConfig(gamma=1.0, reward_bias=-1.0)


def test_td_target_uses_the_target_critic_not_the_online_one():
    tuner = _tuner()
    batch = Batch(obs=torch.zeros(4, 4), action=torch.zeros(4, 2), reward=torch.zeros(4),
                  next_obs=torch.rand(4, 4), terminated=torch.zeros(4, dtype=torch.bool),
                  discount=torch.ones(4))
    tuner.generator.manual_seed(0)
    before = tuner.td_target(batch)
    with torch.no_grad():
        for p in tuner.critic.parameters():
            p.mul_(3.0)
    tuner.generator.manual_seed(0)
    assert torch.equal(tuner.td_target(batch), before)


def test_collection_stores_terminations_but_not_truncations_as_done():
    tuner = _tuner(warmup_steps=400, learning_starts=400)
    tuner.run(ReachGoalEnv, total_steps=400, progress=False)
    buf = tuner.online
    n = len(buf)
    assert n == 400
    terminated, reward = buf.terminated[:n], buf.reward[:n]
    assert torch.equal(terminated, reward > 0)  # success is the only termination
    # 15-step episodes without success end by truncation, which must stay bootstrappable
    assert int(terminated.sum()) < 400 / 15


def test_env_that_does_not_match_the_policy_is_rejected():
    class WrongPolicy(BiasedMixturePolicy):
        @property
        def spec(self):
            return PolicySpec(obs_shape=(4,), action_dim=2, action_low=(-2.0, -2.0), action_high=(2.0, 2.0))

        def sample(self, obs, num_samples, generator=None):
            return super().sample(obs, num_samples, generator)

    tuner = Finetuner(WrongPolicy(), FinetuneConfig(**SMALL, base_mode="frozen"))
    with pytest.raises(ValueError, match="action bounds"):
        tuner.run(ReachGoalEnv, total_steps=2, progress=False)

    class ThreeDimObs(BiasedMixturePolicy):
        @property
        def spec(self):
            return PolicySpec(obs_shape=(3,), action_dim=2, action_low=(-1.0, -1.0), action_high=(1.0, 1.0))

        def sample(self, obs, num_samples, generator=None):
            return torch.zeros(obs.shape[0], num_samples, 1, 2)

    with pytest.raises(ValueError, match=r"env observations have shape \(4,\) but the base policy expects \(3,\)"):
        Finetuner(ThreeDimObs(), FinetuneConfig(**SMALL, base_mode="frozen")).run(
            ReachGoalEnv, total_steps=2, progress=False)


def test_imitation_mode_needs_an_imitation_loss():
    with pytest.raises(ValueError, match="imitation_loss"):
        Finetuner(BiasedMixturePolicy(), FinetuneConfig(**SMALL, base_mode="imitation"))


def test_imitation_mode_trains_the_base_and_samples_from_its_ema_copy():
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (64, 4)).astype(np.float32)
    base = DDPMPolicy.for_dataset(obs, [-1, -1], [1, 1], hidden_dim=32, num_blocks=1)
    tuner = Finetuner(base, FinetuneConfig(**SMALL, base_mode="imitation", base_ema_decay=0.9))
    assert tuner.sampling_base is not tuner.base
    ema_before = [p.clone() for p in tuner.sampling_base.parameters()]
    base_before = [p.clone() for p in tuner.base.parameters()]
    data = {"observations": obs, "actions": rng.uniform(-1, 1, (64, 2)), "rewards": np.zeros(64),
            "next_observations": obs, "terminals": np.zeros(64, bool)}
    tuner._prepare_buffers(10, data)
    stats = tuner.update()
    assert "base_loss" in stats
    for eb, bb, e, b in zip(ema_before, base_before, tuner.sampling_base.parameters(), tuner.base.parameters()):
        torch.testing.assert_close(e, 0.9 * eb + 0.1 * b)  # EMA moved by (1 - decay) toward the base


def test_bf16_base_sampling_is_mixed_precision_and_close_to_float32():
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (64, 4)).astype(np.float32)
    torch.manual_seed(0)
    base = DDPMPolicy.for_dataset(obs, [-1, -1], [1, 1], hidden_dim=64, num_blocks=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tuner = Finetuner(base, FinetuneConfig(**SMALL, base_sampling_dtype="bfloat16"))
    # warned exactly when this CPU has no bf16 units (bf16 would be far slower than float32)
    assert any("without bf16 units" in str(w.message) for w in caught) == (not cpu_has_bf16_units())
    states = torch.as_tensor(obs[:16])

    def draw(dtype):
        tuner.sampling_dtype = dtype
        tuner.generator.manual_seed(0)  # the same noise for both precisions
        return tuner.base_samples(states, 4)

    full, mixed = draw(None), draw(torch.bfloat16)
    assert mixed.dtype == torch.float32 and mixed.shape == full.shape == (16, 4, 2)
    difference = (mixed - full).abs()
    assert 0 < difference.max() < 0.1 and difference.mean() < 0.01  # bf16 matmuls: close, not equal
    data = {"observations": obs, "actions": rng.uniform(-1, 1, (64, 2)), "rewards": np.zeros(64),
            "next_observations": obs, "terminals": np.zeros(64, bool)}
    tuner._prepare_buffers(10, data)
    tuner.sampling_dtype = torch.bfloat16
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in tuner.update().values())


def _filled(tuner, n=40):
    """Collect n transitions from the toy env into the tuner's replay (real collection)."""
    tuner._prepare_buffers(n, None)
    env = tuner._training_env(ReachGoalEnv)
    loop = __import__("expo_sdk.finetuner", fromlist=["_LoopState"])._LoopState(
        obs_t=None, base_at_obs=None, base_success=0.0, chose_edited=__import__("collections").deque(),
        next_log=0, next_eval=0, next_checkpoint=0)
    loop.obs_t, loop.base_at_obs = tuner._start_collection(env)
    while len(tuner.online) < n:
        tuner._collect(env, loop)
    return loop


def test_a_cache_of_k_samples_gives_each_td_target_n_distinct_ones_at_random():
    tuner = _tuner(cache_base_candidates=True, cache_samples=12)  # N = 4
    loop = _filled(tuner)
    n = len(tuner.online)
    assert tuner.online.next_base_actions.shape[1] == 12 and loop.base_at_obs.shape[1] == 12  # K per state
    # Label every cached sample (state i, sample j) with distinct values, to see which ones a target uses.
    label = torch.arange(n * 12, dtype=torch.float32).reshape(n, 12, 1) / (n * 12)
    tuner.online.next_base_actions[:n] = torch.cat([label, -label], -1)
    batch = tuner.sampler.sample(16, tuner.generator)
    picks = []
    for _ in range(3):
        base_part = tuner.next_candidates([batch])[0][:, :4]  # [B, N, A]: the raw base samples
        for row in range(16):
            # each of the N is one of that state's K cached samples, and no two are the same one
            match = (base_part[row][:, None] - batch.next_base_actions[row][None]).abs().sum(-1) < 1e-6
            assert match.any(1).all() and len(set(match.float().argmax(1).tolist())) == 4
        picks.append(base_part)
    assert not torch.equal(picks[0], picks[1])  # another subset on the next update
    assert tuner.select_action(batch.obs[:2], loop.base_at_obs[:1].expand(2, -1, -1), return_index=True)[1].max() < 8


def test_refresh_redraws_the_oldest_cached_samples_from_the_current_base():
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (64, 4)).astype(np.float32)
    base = DDPMPolicy.for_dataset(obs, [-1, -1], [1, 1], hidden_dim=32, num_blocks=1)
    tuner = Finetuner(base, FinetuneConfig(**SMALL, base_mode="imitation", cache_base_candidates=True,
                                           cache_refresh_per_step=10))
    data = {"observations": obs, "actions": rng.uniform(-1, 1, (64, 2)), "rewards": np.zeros(64),
            "next_observations": obs, "terminals": np.zeros(64, bool)}
    tuner._prepare_buffers(30, data)
    tuner.online.add(torch.as_tensor(obs[:30]), torch.zeros(30, 2), torch.zeros(30), torch.as_tensor(obs[:30]),
                     torch.zeros(30, dtype=torch.bool), torch.ones(30), torch.zeros(30, 4, 2))
    online_before, offline_before = tuner.online.next_base_actions.clone(), tuner.offline.next_base_actions.clone()
    for sweep in range(3):  # 10 entries per update, oldest first: rows 0-9, then 10-19, 20-29
        tuner.update()
        changed = (tuner.online.next_base_actions != online_before).any(-1).any(-1)
        assert changed.tolist() == [True] * (10 * (sweep + 1)) + [False] * (30 - 10 * (sweep + 1))
    assert tuner.online.refresh_cursor == 0  # wrapped around the 30 entries
    assert (tuner.offline.next_base_actions != offline_before).any(-1).any(-1).sum() == 30  # the demos too
    # the refreshed samples come from the sampling base (the EMA copy) as it is now
    tuner.generator.manual_seed(5)
    tuner.refresh_cached_samples(4)
    tuner.generator.manual_seed(5)
    again = tuner.base_samples(tuner.online.next_obs[:4], 4)
    torch.testing.assert_close(tuner.online.next_base_actions[:4], again)


def test_run_writes_the_run_directory(tmp_path):
    tuner = _tuner(learning_starts=20)
    result = tuner.run(ReachGoalEnv, total_steps=40, run_dir=tmp_path, task="reach-goal", progress=False)
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "learning_curve.png",
                 "edit_head/model.safetensors", "edit_head/config.json", "critic/model.safetensors",
                 "normalizer.json"):
        assert (tmp_path / name).is_file(), name
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("base_success", "final_success", "env_steps", "wall_s", "seed", "task", "method", "eval_episodes"):
        assert key in summary
    assert summary["env_steps"] == 40 == result.env_steps
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("train/critic_loss" in r for r in records) and records[-1]["final"] is True


def test_same_seed_gives_identical_metrics():
    def run():
        tuner = _tuner(learning_starts=10, seed=3)
        history = tuner.run(ReachGoalEnv, total_steps=40, progress=False).history
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in history]  # wall clock differs

    first = run()
    assert any("train/critic_loss" in r for r in first)
    assert first == run()


@pytest.mark.slow
def test_expo_lifts_a_biased_multimodal_base():
    """Learning test: the base retreats from the goal half the time and otherwise parks
    beside it (success ~0.1); EXPO must select the good mode and edit the bias away.

    Neither half suffices (seed 0, 1500 steps): acting on a random candidate instead of
    the critic's argmax reaches ~0.3, zero edits ~0.2; EXPO reaches ~1.0 on seeds 0-2.
    Tuned to run in well under 90 s on one CPU thread: a short-horizon task (10 steps of
    0.3, gamma 0.9), a small critic with a fast target (tau 0.02), N=4 samples, and an
    initial temperature matched to 0/1 rewards (alpha=1 would keep edits uniform noise
    for thousands of steps).
    """
    env_fn = functools.partial(ReachGoalEnv, max_episode_steps=10, tolerance=0.15, step_size=0.3)
    cfg = FinetuneConfig(beta=0.3, num_samples=4, gamma=0.9, utd_ratio=4, batch_size=64,
                         base_mode="frozen", cache_base_candidates=True, warmup_steps=200, learning_starts=200,
                         critic={"ensemble_size": 4, "hidden_dim": 64, "lr": 1e-3, "tau": 0.02},
                         edit_head={"hidden_dim": 64, "num_layers": 2, "lr": 1e-3, "init_temperature": 0.01},
                         eval_every=10**6, eval_episodes=100, seed=0)
    result = Finetuner(BiasedMixturePolicy(), cfg).run(env_fn, total_steps=1500, progress=False)
    assert result.base_success < 0.3, result.summary()
    assert result.final_success >= max(result.base_success + 0.3, 0.8), result.summary()


def test_soft_selection_warns_when_its_entropy_bonus_outweighs_success():
    # 0.01 * log(8 candidates) = 0.021 >= 1 - 0.99: never succeeding would be worth more
    with pytest.warns(UserWarning, match="entropy_coef"):
        _tuner(selector={"num_samples": 4, "mode": "soft", "temperature": 0.01})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _tuner(selector={"num_samples": 4, "mode": "soft", "temperature": 0.01, "entropy_coef": 0.0})
        _tuner(selector={"num_samples": 4, "mode": "soft", "temperature": 0.01, "entropy_coef": 0.004})


def test_a_compiled_critic_scoring_computes_the_same_update():
    tuners = [_tuner(compile_critic=compiled, cache_base_candidates=True) for compiled in (False, True)]
    for tuner in tuners:
        _filled(tuner)
    # The compiled tuner scores its 32 states in blocks of 8 (the plain one in one call), all
    # through the one compiled block function the Finetuner made.
    scored = tuners[1].target.target
    scored.score_block_elements = 12 * scored.ensemble_size * 8 * scored.hidden_dim  # 12 -> 8 states
    compiled_block, blocks = tuners[1]._target_score.keywords["score_block"], []
    tuners[1]._target_score = functools.partial(
        scored.score, score_block=lambda o, c: blocks.append(len(o)) or compiled_block(o, c))
    for step in range(2):
        plain, compiled = (_seeded(step, tuner.update) for tuner in tuners)
        for key in plain:
            torch.testing.assert_close(compiled[key], plain[key], rtol=1e-5, atol=1e-5, msg=key)
    assert blocks == [8] * 4 * 3 * 2  # 4 blocks per TD target, 3 targets per update, 2 updates
    for (name, p), q in zip(tuners[1].critic.named_parameters(), tuners[0].critic.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-5, msg=name)


def test_compiled_base_sampling_computes_the_same_update_with_an_imitation_base():
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (64, 4)).astype(np.float32)
    data = {"observations": obs, "actions": rng.uniform(-1, 1, (64, 2)), "rewards": rng.uniform(0, 1, 64),
            "next_observations": obs[::-1].copy(), "terminals": np.zeros(64, bool)}
    tuners = []
    for compiled in (False, True):
        torch.manual_seed(0)
        base = DDPMPolicy.for_dataset(obs, [-1, -1], [1, 1], hidden_dim=32, num_blocks=1)
        tuners.append(Finetuner(base, FinetuneConfig(**SMALL, base_mode="imitation",
                                                     compile_base_sampling=compiled)))
        tuners[-1]._prepare_buffers(10, data)
    # only the sampling copy (the EMA) is switched; the user's base object trains as before
    assert tuners[1].sampling_base.compile_sampling and not tuners[1].base.compile_sampling
    for step in range(2):  # the second update samples from EMA weights the first one moved
        plain, compiled = (_seeded(step, tuner.update) for tuner in tuners)
        for key in plain:
            torch.testing.assert_close(compiled[key], plain[key], rtol=1e-4, atol=1e-5, msg=key)
    assert tuners[1].sampling_base._compiled_denoise is not None  # it did run compiled
    states = torch.as_tensor(obs[:3])
    plain, compiled = (_seeded(7, lambda: tuner.select_action(states, deterministic=True)) for tuner in tuners)
    torch.testing.assert_close(compiled, plain, rtol=1e-4, atol=1e-5)


def test_compiled_acting_selects_the_same_actions_from_the_same_draws():
    states = torch.rand(3, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1
    for selector in ({"mode": "argmax"}, {"mode": "soft", "temperature": 0.5, "entropy_coef": 0.0},
                     {"include_base": False, "score": "min"}):
        tuners = []
        for compiled in (False, True):
            torch.manual_seed(0)  # the same edit-head and critic weights
            tuners.append(_tuner(compile_acting=compiled, selector=selector))
        compiled_scorer, calls = tuners[1]._acting_scorer, []
        tuners[1]._acting_scorer = lambda *args: calls.append(args[-1] is None) or compiled_scorer(*args)
        for deterministic in (False, True):  # sampled edits (collection), mean edits (evaluation)
            for tuner in tuners:
                tuner.generator.manual_seed(5)
            (plain, plain_index), (fused, fused_index) = (
                tuner.select_action(states, deterministic=deterministic, return_index=True) for tuner in tuners)
            torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)
            assert torch.equal(fused_index, plain_index)
        assert calls == [False, True]  # both ran through the compiled graph: with noise, then without
    with pytest.raises(ValueError, match="compile_acting and cuda_graphs"):
        FinetuneConfig(compile_acting=True, cuda_graphs=True)


def test_compiled_base_sampling_is_refused_where_it_cannot_apply():
    with pytest.raises(ValueError, match="BiasedMixturePolicy has none"):
        _tuner(compile_base_sampling=True)
    with pytest.raises(ValueError, match="compile_base_sampling and cuda_graphs"):
        FinetuneConfig(compile_base_sampling=True, cuda_graphs=True)


def _seeded(seed, fn):
    torch.manual_seed(seed)
    return fn()
