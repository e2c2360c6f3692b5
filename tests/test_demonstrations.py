"""`generate_demos` / `expo data generate`: scripted demos of a chosen size and quality."""

import numpy as np
import pytest

from expo_sdk.cli import main
from expo_sdk.demonstrations import OPERATORS, generate_demos
from expo_sdk.replay import OfflineDataset


def test_same_seed_same_demos_and_qualities_differ():
    first, stats = generate_demos("pointmaze-umaze", 6, "proficient", seed=1)
    again, _ = generate_demos("pointmaze-umaze", 6, "proficient", seed=1)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert stats.episodes == stats.kept_episodes == 6 and stats.success_rate == 1.0
    worse, _ = generate_demos("pointmaze-umaze", 6, "worse", seed=1)
    # slow, noisy operators take longer to reach the same goals
    assert len(worse["actions"]) > len(first["actions"])


def test_mixed_quality_splits_episodes_between_the_three_operators():
    demos, stats = generate_demos("pointmaze-umaze", 7, "mixed", seed=0)
    per_operator = {int(o): len(np.unique(demos["episode_ids"][demos["operator"] == o]))
                    for o in np.unique(demos["operator"])}
    assert per_operator == {0: 3, 1: 2, 2: 2} and len(OPERATORS) == 3
    assert sorted(np.unique(demos["episode_ids"])) == list(range(7))  # ids unique across operators


def test_only_successes_keeps_whole_successful_episodes():
    demos, stats = generate_demos("pointmaze-umaze", 6, "worse", seed=0, only_successes=True, max_episode_steps=60)
    assert stats.kept_episodes < stats.episodes  # the slow operator times out sometimes
    ends = demos["terminals"] | demos["timeouts"]
    assert demos["terminals"][ends].all() and not demos["timeouts"].any()


def test_unknown_quality_is_refused():
    with pytest.raises(ValueError, match="unknown quality 'great'"):
        generate_demos("pointmaze-umaze", 2, "great")


def test_cli_writes_npz_to_the_cache_and_robomimic_hdf5_on_request(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EXPO_SDK_CACHE", str(tmp_path / "cache"))
    assert main(["data", "generate", "pointmaze-umaze", "--episodes", "3"]) == 0
    cached = tmp_path / "cache" / "demos" / "pointmaze-umaze-proficient-3ep-seed0.npz"
    data = OfflineDataset.load_npz(cached)
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # no temporary file left
    assert main(["data", "generate", "pointmaze-umaze", "--episodes", "3"]) == 0
    assert "cached:" in capsys.readouterr().out
    pytest.importorskip("h5py")
    from expo_sdk.datasets import read_robomimic_hdf5

    assert main(["data", "generate", "pointmaze-umaze", "--episodes", "3", "--out", str(tmp_path / "d.hdf5")]) == 0
    np.testing.assert_array_equal(read_robomimic_hdf5(tmp_path / "d.hdf5").observations, data.observations)


def test_cli_reports_a_dataset_with_no_episode_kept(tmp_path, capsys):
    args = ["data", "generate", "pointmaze-umaze", "--episodes", "2", "--quality", "worse", "--only-successes",
            "--max-episode-steps", "3", "--out", str(tmp_path / "d.npz")]
    assert main(args) == 2
    assert "offline dataset is empty" in capsys.readouterr().err and not (tmp_path / "d.npz").exists()
