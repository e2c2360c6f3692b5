"""read_robomimic_hdf5: robomimic's HDF5 layout -> OfflineDataset (needs h5py only)."""

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from expo_sdk.datasets import read_robomimic_hdf5  # noqa: E402
from expo_sdk.replay import OfflineDataset  # noqa: E402


def _write(path, lengths=(3, 2), next_obs=True, done_last=(True, False), image=False, mask=None):
    """Demos named demo_<i> with obs value = 100 * demo + step, so every row is traceable."""
    with h5py.File(path, "w") as f:
        for i, t in enumerate(lengths):
            name = f"demo_{i * 5}"  # demo_0, demo_5, demo_10: index order differs from string order
            g = f.create_group(f"data/{name}")
            steps = np.arange(t + 1, dtype=np.float32) + 100 * i
            g["obs/zeta"] = np.stack([steps[:-1], -steps[:-1]], 1)
            g["obs/alpha"] = steps[:-1, None] * 10
            if next_obs:
                g["next_obs/zeta"] = np.stack([steps[1:], -steps[1:]], 1)
                g["next_obs/alpha"] = steps[1:, None] * 10
            if image:
                g["obs/agentview_image"] = np.zeros((t, 4, 4, 3), np.uint8)
            g["actions"] = np.full((t, 2), i, np.float32)
            g["rewards"] = np.arange(t, dtype=np.float32)
            dones = np.zeros(t, np.int64)
            dones[-1] = done_last[i]
            g["dones"] = dones
        if mask:
            f["mask/train"] = np.array(mask, dtype="S")
    return path


def test_round_trip_with_next_obs(tmp_path):
    data = read_robomimic_hdf5(_write(tmp_path / "d.hdf5"))
    assert isinstance(data, OfflineDataset) and len(data) == 5
    # sorted keys: alpha (1) then zeta (2); demos in index order
    np.testing.assert_array_equal(data.observations[:, 0], [0, 10, 20, 1000, 1010])
    np.testing.assert_array_equal(data.observations[:, 1:], [[0, 0], [1, -1], [2, -2], [100, -100], [101, -101]])
    np.testing.assert_array_equal(data.arrays["next_observations"][:, 0], [10, 20, 30, 1010, 1020])
    np.testing.assert_array_equal(data.actions[:, 0], [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(data.arrays["rewards"], [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(data.arrays["terminals"], [False, False, True, False, False])
    np.testing.assert_array_equal(data.arrays["timeouts"], [False, False, False, False, True])


def test_obs_keys_order_and_images(tmp_path):
    path = _write(tmp_path / "d.hdf5", image=True)
    data = read_robomimic_hdf5(path, obs_keys=["zeta", "alpha"])
    np.testing.assert_array_equal(data.observations[1], [1, -1, 10])
    assert read_robomimic_hdf5(path).observations.shape[1] == 3  # the image key is left out by default
    with pytest.raises(ValueError, match="images"):
        read_robomimic_hdf5(path, obs_keys=["alpha", "agentview_image"])
    with pytest.raises(ValueError, match="no observation keys \\['nope'\\]"):
        read_robomimic_hdf5(path, obs_keys=["nope"])


def test_without_next_obs_uses_the_next_step_and_drops_unknown_successors(tmp_path):
    data = read_robomimic_hdf5(_write(tmp_path / "d.hdf5", next_obs=False))
    # demo 0 (done at its end) keeps all 3 steps; demo 1 (not done) loses its last step
    np.testing.assert_array_equal(data.observations[:, 0], [0, 10, 20, 1000])
    np.testing.assert_array_equal(data.arrays["next_observations"][:3, 0], [10, 20, 20])
    np.testing.assert_array_equal(data.arrays["next_observations"][3, 0], 1010)
    np.testing.assert_array_equal(data.arrays["terminals"], [False, False, True, False])


def test_filter_key_and_errors(tmp_path):
    path = _write(tmp_path / "d.hdf5", lengths=(3, 2, 2), done_last=(True, True, True), mask=["demo_10", "demo_0"])
    data = read_robomimic_hdf5(path, filter_key="train")
    np.testing.assert_array_equal(data.actions[:, 0], [0, 0, 0, 2, 2])
    with pytest.raises(ValueError, match="no filter key 'valid'"):
        read_robomimic_hdf5(path, filter_key="valid")
    with h5py.File(tmp_path / "empty.hdf5", "w") as f:
        f.create_group("other")
    with pytest.raises(ValueError, match="not a robomimic dataset"):
        read_robomimic_hdf5(tmp_path / "empty.hdf5")


def _demos():
    """Demonstrations from the PointMaze expert: real episodes, some cut by the time limit."""
    from expo_sdk.envs import make_expert, make_task
    from expo_sdk.envs.pointmaze import generate_demonstrations

    env = make_task("pointmaze-umaze", max_episode_steps=40)
    data = generate_demonstrations(env, make_expert("pointmaze-umaze", env, speed=0.5, seed=0), 6, seed=3)
    env.close()
    assert data["timeouts"].any() and data["terminals"].any()  # both kinds of episode ends
    return data


def test_robomimic_hdf5_written_by_us_reads_back_identically(tmp_path):
    from expo_sdk.datasets import write_robomimic_hdf5

    demos = _demos()
    layout = {"position": 2, "velocity": 2, "goal": 2}
    assert sum(layout.values()) == demos["observations"].shape[1]
    path = write_robomimic_hdf5(demos, tmp_path / "demos.hdf5", obs_keys=layout, env_name="pointmaze-umaze")
    back = read_robomimic_hdf5(path, obs_keys=list(layout))
    for key in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts", "episode_ids"):
        np.testing.assert_array_equal(back.arrays[key], demos[key], err_msg=key)
    with h5py.File(path) as f:  # robomimic's own metadata
        assert f["data"].attrs["total"] == len(demos["actions"])
        assert sorted(f["data"], key=lambda n: int(n.split("_")[1])) == [
            f"demo_{i}" for i in np.unique(demos["episode_ids"])]
        assert f["data/demo_0"].attrs["num_samples"] == int((demos["episode_ids"] == 0).sum())
    assert not list(tmp_path.glob(".demos.hdf5.tmp*"))


def test_writer_without_episode_ids_splits_at_episode_ends(tmp_path):
    from expo_sdk.datasets import write_robomimic_hdf5

    demos = {k: v for k, v in _demos().items() if k != "episode_ids"}
    back = read_robomimic_hdf5(write_robomimic_hdf5(demos, tmp_path / "d.hdf5"))
    ends = demos["terminals"] | demos["timeouts"]
    assert back.arrays["episode_ids"].max() == ends.sum() - 1
    np.testing.assert_array_equal(back.arrays["observations"], demos["observations"])


def test_a_minari_dataset_built_here_loads(tmp_path, monkeypatch):
    """Built with Minari's own create_dataset_from_buffers (its DataCollector needs jax)."""
    minari = pytest.importorskip("minari")
    from minari.data_collector import EpisodeBuffer

    from expo_sdk.datasets import read_minari
    from expo_sdk.envs.toy import ReachGoalEnv

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    env, rng, episodes = ReachGoalEnv(), np.random.default_rng(0), []
    for episode in range(4):
        obs, _ = env.reset(seed=episode)
        steps = {"observations": [obs], "actions": [], "rewards": [], "terminations": [], "truncations": []}
        while True:
            action = rng.uniform(-1, 1, 2).astype(np.float32)
            obs, reward, terminated, truncated, _ = env.step(action)
            for key, value in zip(steps, (obs, action, reward, terminated, truncated)):
                steps[key].append(value)
            if terminated or truncated:
                break
        episodes.append(EpisodeBuffer(id=episode, seed=episode, infos={}, **{k: np.asarray(v) for k, v in steps.items()}))
    minari.create_dataset_from_buffers("expo/reach-random-v0", episodes, algorithm_name="uniform random",
                                       description="random actions on the toy reaching task",
                                       observation_space=env.observation_space, action_space=env.action_space)

    data = read_minari("expo/reach-random-v0")
    assert len(data) == sum(len(e.actions) for e in episodes) and data.arrays["episode_ids"].max() == 3
    np.testing.assert_allclose(data.actions, np.concatenate([e.actions for e in episodes]))
    np.testing.assert_allclose(data.observations, np.concatenate([e.observations[:-1] for e in episodes]))
    np.testing.assert_allclose(data.arrays["next_observations"], np.concatenate([e.observations[1:] for e in episodes]))
    assert (data.arrays["timeouts"] | data.arrays["terminals"]).sum() == 4  # every episode ends once
    with pytest.raises(ValueError, match="cannot load Minari dataset 'expo/nonesuch-v0'"):
        read_minari("expo/nonesuch-v0")
