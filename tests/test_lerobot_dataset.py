"""Reading a LeRobotDataset written by LeRobot itself (needs `make install-lerobot`)."""

import numpy as np
import pytest

pytest.importorskip("lerobot")
from expo_sdk.datasets import read_lerobot_dataset  # noqa: E402

LENGTHS = (4, 6, 3)
SUCCEEDED = (True, True, False)  # the third episode ends by time limit


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Three state-only episodes written with LeRobot's own writer; returns (root, frames)."""
    from expo_sdk.adapters.lerobot import _prepare_torchvision

    _prepare_torchvision()
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = tmp_path_factory.mktemp("lerobot") / "reach"
    features = {"observation.state": {"dtype": "float32", "shape": (4,), "names": None},
                "observation.environment_state": {"dtype": "float32", "shape": (2,), "names": None},
                "action": {"dtype": "float32", "shape": (2,), "names": None},
                "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
                "next.done": {"dtype": "bool", "shape": (1,), "names": None}}
    dataset = LeRobotDataset.create("local/reach", fps=10, features=features, root=root, use_videos=False)
    rng = np.random.default_rng(0)
    frames = []
    for length, succeeded in zip(LENGTHS, SUCCEEDED):
        for t in range(length):
            end = succeeded and t == length - 1
            frame = {"observation.state": rng.random(4, dtype=np.float32),
                     "observation.environment_state": rng.random(2, dtype=np.float32),
                     "action": rng.uniform(-1, 1, 2).astype(np.float32),
                     "next.reward": np.array([float(end)], np.float32), "next.done": np.array([end])}
            frames.append(frame)
            dataset.add_frame({**frame, "task": "reach the goal"})
        dataset.save_episode()
    dataset.finalize()
    return root, frames


def test_frames_read_back_as_transitions(written):
    root, frames = written
    data = read_lerobot_dataset("local/reach", root=root)
    obs = np.stack([np.concatenate([f["observation.state"], f["observation.environment_state"]]) for f in frames])
    np.testing.assert_array_equal(data.observations, obs)
    np.testing.assert_array_equal(data.actions, np.stack([f["action"] for f in frames]))
    ends = np.cumsum(LENGTHS) - 1
    np.testing.assert_array_equal(data.arrays["rewards"], [float(f["next.done"][0]) for f in frames])
    np.testing.assert_array_equal(np.flatnonzero(data.arrays["terminals"]), ends[:2])
    np.testing.assert_array_equal(np.flatnonzero(data.arrays["timeouts"]), ends[2:])
    np.testing.assert_array_equal(data.arrays["episode_ids"], np.repeat([0, 1, 2], LENGTHS))
    # s' is the next frame of the same episode; an episode's last frame keeps its own
    inside = np.setdiff1d(np.arange(len(frames)), ends)
    np.testing.assert_array_equal(data.arrays["next_observations"][inside], obs[inside + 1])
    np.testing.assert_array_equal(data.arrays["next_observations"][ends], obs[ends])


def test_observation_keys_choose_and_order_the_features(written):
    root, frames = written
    data = read_lerobot_dataset("local/reach", root=root, obs_keys=["observation.environment_state"])
    np.testing.assert_array_equal(data.observations, np.stack([f["observation.environment_state"] for f in frames]))
    with pytest.raises(ValueError, match=r"has no feature\(s\) \['observation.image'\]"):
        read_lerobot_dataset("local/reach", root=root, obs_keys=["observation.image"])


def test_a_missing_dataset_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never reach for the Hub here
    with pytest.raises(ValueError, match="cannot open LeRobot dataset 'local/missing'"):
        read_lerobot_dataset("local/missing", root=tmp_path / "nothing")
