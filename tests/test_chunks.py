"""Action chunks from episodes: windows, padding, chunk-level rewards and discounts."""

import numpy as np
import pytest
import torch

from expo_sdk import FinetuneConfig, Finetuner
from expo_sdk.adapters import DDPMPolicy
from expo_sdk.chunks import chunk_transitions, chunk_windows, episode_ends
from expo_sdk.envs.toy import ReachGoalEnv
from expo_sdk.pretrain import train_imitation
from expo_sdk.rollout import execute_chunk


def _two_episodes():
    """Episode A: 3 steps ending in termination (reward 1 last); episode B: 2 steps, timeout."""
    obs = np.arange(7, dtype=np.float32)[:, None]  # s0 s1 s2 s3 | s4 s5 s6
    return {
        "observations": obs[[0, 1, 2, 4, 5]],
        "actions": np.array([[0.1], [0.2], [0.3], [0.4], [0.5]], np.float32),
        "rewards": np.array([0, 0, 1, 0, 0], np.float32),
        "next_observations": obs[[1, 2, 3, 5, 6]],
        "terminals": np.array([0, 0, 1, 0, 0], bool),
        "timeouts": np.array([0, 0, 0, 0, 1], bool),
    }


def test_episode_ends_from_markers_ids_and_discontinuities():
    data = _two_episodes()
    assert episode_ends(data).tolist() == [False, False, True, False, True]
    # without terminal/timeout markers the jump from s3 to s4 still splits the episodes
    unmarked = {**data, "terminals": np.zeros(5, bool), "timeouts": np.zeros(5, bool)}
    assert episode_ends(unmarked).tolist() == [False, False, True, False, True]
    ids = {**unmarked, "next_observations": data["observations"][[1, 2, 3, 4, 4]], "episode_ids": np.array([0, 0, 0, 1, 1])}
    assert episode_ends(ids).tolist() == [False, False, True, False, True]


def test_windows_pad_with_the_episodes_last_action():
    index, steps = chunk_windows(_two_episodes(), horizon=3)
    assert index.tolist() == [[0, 1, 2], [1, 2, 2], [2, 2, 2], [3, 4, 4], [4, 4, 4]]
    assert steps.tolist() == [3, 2, 1, 2, 1]
    index, steps = chunk_windows(_two_episodes(), horizon=1)
    assert index.tolist() == [[0], [1], [2], [3], [4]] and steps.tolist() == [1] * 5


def test_chunk_transitions_discount_the_rewards_inside_the_chunk():
    gamma = 0.9
    t = chunk_transitions(_two_episodes(), horizon=3, gamma=gamma)
    np.testing.assert_allclose(t["rewards"], [gamma**2, gamma, 1.0, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(t["discounts"], [gamma**3, gamma**2, gamma, gamma**2, gamma], rtol=1e-6)
    assert t["next_observations"][:, 0].tolist() == [3, 3, 3, 6, 6]
    assert t["terminals"].tolist() == [True, True, True, False, False]  # the timeout bootstraps
    assert t["actions"].shape == (5, 3, 1) and t["actions"][1, :, 0].tolist() == pytest.approx([0.2, 0.3, 0.3])


KEYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")


def _record_episode(env, seed, choose_action):
    """One episode's step-level arrays, acting with choose_action(obs, t)."""
    steps = {k: [] for k in KEYS}
    obs, _ = env.reset(seed=seed)
    for t in range(10**4):
        action = choose_action(obs, t)
        next_obs, r, term, trunc, _ = env.step(action)
        for k, v in zip(KEYS, (obs, action, r, next_obs, term, trunc and not term)):
            steps[k].append(v)
        obs = next_obs
        if term or trunc:
            break
    return {k: np.asarray(v) for k, v in steps.items()}


def test_offline_chunks_match_what_the_env_records_online():
    """The same actions run through `execute_chunk` give the reward, discount and s' that
    `chunk_transitions` computes from the step-level record of that episode."""
    env, gamma, horizon = ReachGoalEnv(max_episode_steps=7), 0.95, 3
    actions = np.random.default_rng(0).uniform(-1, 1, (7, 2)).astype(np.float32)
    data = _record_episode(env, 3, lambda obs, t: actions[t])
    chunks = chunk_transitions(data, horizon, gamma)
    for t in range(0, len(data["actions"]), horizon):
        env.reset(seed=3)
        for a in data["actions"][:t]:
            env.step(a)
        online = execute_chunk(env, data["actions"][t:t + horizon], gamma)
        assert online.reward == pytest.approx(chunks["rewards"][t], rel=1e-5)
        assert online.discount == pytest.approx(chunks["discounts"][t], rel=1e-5)
        np.testing.assert_allclose(online.next_obs, chunks["next_observations"][t], rtol=1e-6)
        assert online.terminated == chunks["terminals"][t]


def _demos(episodes=6):
    """Noisy steps toward the goal: successful episodes of a few steps each."""
    env, rng = ReachGoalEnv(), np.random.default_rng(0)

    def toward_goal(obs, t):
        return np.clip((obs[2:] - obs[:2]) / 0.2 + rng.normal(0, 0.05, 2), -1, 1).astype(np.float32)

    parts = [_record_episode(env, e, toward_goal) for e in range(episodes)]
    return {k: np.concatenate([p[k] for p in parts]) for k in KEYS}


def test_chunked_policy_pretrains_and_fine_tunes_with_offline_chunks():
    demos = _demos()
    env = ReachGoalEnv()
    policy = DDPMPolicy.for_dataset(demos["observations"], env.action_space.low, env.action_space.high,
                                    horizon=4, hidden_dim=32, num_blocks=1, num_diffusion_steps=4)
    losses = train_imitation(policy, demos, steps=60, batch_size=32)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    config = FinetuneConfig(batch_size=16, utd_ratio=1, num_samples=2, learning_starts=4, eval_every=10**6,
                            log_every=10**6, critic={"ensemble_size": 2, "hidden_dim": 16},
                            edit_head={"hidden_dim": 16, "num_layers": 1})
    tuner = Finetuner(policy, config)
    tuner.run(ReachGoalEnv, total_steps=24, offline_data=demos)
    offline = tuner.offline
    assert offline.action.shape == (len(demos["actions"]), 4 * 2)
    expected = chunk_transitions(demos, 4, config.gamma)
    torch.testing.assert_close(offline.discount, torch.as_tensor(expected["discounts"]))
    torch.testing.assert_close(offline.reward, torch.as_tensor(expected["rewards"]))
    assert tuner.env_step >= 24
