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
