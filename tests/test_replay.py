import numpy as np
import pytest
import torch

from expo_sdk.replay import MixedSampler, OfflineDataset, TransitionBuffer


def _fill(buf, values, k=0):
    for v in values:
        buf.add(torch.full((2,), float(v)), torch.zeros(1), 0.0, torch.full((2,), float(v)), False, 0.99,
                torch.zeros(k, 1) if k else None)


def test_ring_buffer_overwrites_oldest():
    buf = TransitionBuffer(capacity=3, obs_dim=2, action_dim=1)
    _fill(buf, [1, 2, 3, 4])
    assert len(buf) == 3
    assert sorted(buf.obs[:, 0].tolist()) == [2.0, 3.0, 4.0]


def test_batched_add_wraps_around():
    buf = TransitionBuffer(capacity=4, obs_dim=1, action_dim=1)
    buf.add(torch.arange(3.0)[:, None], torch.zeros(3, 1), torch.zeros(3), torch.zeros(3, 1),
            torch.zeros(3, dtype=torch.bool), torch.full((3,), 0.99))
    buf.add(torch.arange(3.0, 6.0)[:, None], torch.zeros(3, 1), torch.zeros(3), torch.zeros(3, 1),
            torch.zeros(3, dtype=torch.bool), torch.full((3,), 0.99))
    assert sorted(buf.obs[:, 0].tolist()) == [2.0, 3.0, 4.0, 5.0]


def test_cached_base_samples_are_required_when_enabled():
    buf = TransitionBuffer(capacity=3, obs_dim=2, action_dim=1, num_cached_samples=4)
    with pytest.raises(ValueError, match="next_base_actions"):
        _fill(buf, [1])
    _fill(buf, [1], k=4)
    assert buf.sample(2).next_base_actions.shape == (2, 4, 1)


@pytest.mark.parametrize("ratio,expected", [(0.5, 64), (0.25, 32), (0.0, 0), (1.0, 128)])
def test_mixed_sampler_draws_the_configured_fraction_offline(ratio, expected):
    online = TransitionBuffer(100, 2, 1)
    offline = TransitionBuffer(100, 2, 1)
    _fill(online, [1.0] * 50)
    _fill(offline, [-1.0] * 50)
    batch = MixedSampler(online, offline, ratio).sample(128, torch.Generator().manual_seed(0))
    assert batch.obs.shape == (128, 2)
    assert int((batch.obs[:, 0] < 0).sum()) == expected


def test_mixed_sampler_falls_back_to_whichever_buffer_has_data():
    online, offline = TransitionBuffer(10, 2, 1), TransitionBuffer(10, 2, 1)
    _fill(offline, [-1.0] * 5)
    assert (MixedSampler(online, offline, 0.5).sample(16).obs < 0).all()
    with pytest.raises(RuntimeError, match="empty"):
        MixedSampler(online, None).sample(4)


def _arrays(m=10, **override):
    arrays = {"observations": np.zeros((m, 3)), "actions": np.zeros((m, 2)), "rewards": np.zeros(m),
              "next_observations": np.zeros((m, 3)), "terminals": np.zeros(m, bool)}
    arrays.update(override)
    return arrays


def test_offline_dataset_validates_its_arrays(tmp_path):
    with pytest.raises(ValueError, match="missing"):
        OfflineDataset({"observations": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="empty"):
        OfflineDataset(_arrays(0))
    with pytest.raises(ValueError, match="disagree in length"):
        OfflineDataset(_arrays(rewards=np.zeros(4)))
    with pytest.raises(ValueError, match="NaN"):
        OfflineDataset(_arrays(rewards=np.full(10, np.nan)))
    ds = OfflineDataset(_arrays())
    ds.save_npz(tmp_path / "d.npz")
    assert len(OfflineDataset.load_npz(tmp_path / "d.npz")) == 10


def test_checkpointed_ring_loads_oldest_first_into_a_larger_buffer_and_refuses_a_smaller_one():
    ring = TransitionBuffer(capacity=3, obs_dim=2, action_dim=1)
    _fill(ring, [1, 2, 3, 4])  # wrapped: slots hold 4, 2, 3
    larger = TransitionBuffer(capacity=5, obs_dim=2, action_dim=1)
    larger.load_state(ring.state_tensors(), ring.state_meta())
    assert len(larger) == 3 and larger.obs[:3, 0].tolist() == [2.0, 3.0, 4.0]
    _fill(larger, [5, 6, 7])  # the next ones go after the newest, then overwrite the oldest
    assert larger.obs[:, 0].tolist() == [7.0, 3.0, 4.0, 5.0, 6.0]
    same = TransitionBuffer(capacity=3, obs_dim=2, action_dim=1)
    same.load_state(ring.state_tensors(), ring.state_meta())
    _fill(same, [5])
    assert sorted(same.obs[:, 0].tolist()) == [3.0, 4.0, 5.0]
    with pytest.raises(ValueError, match="holds 3 transitions.*total_steps >= 3"):
        TransitionBuffer(capacity=2, obs_dim=2, action_dim=1).load_state(ring.state_tensors(), ring.state_meta())


def test_a_rebuilt_buffer_takes_back_its_cached_samples_and_refuses_other_ones():
    buf = TransitionBuffer(capacity=3, obs_dim=2, action_dim=1, num_cached_samples=4)
    _fill(buf, [1, 2], k=4)
    cached = torch.arange(12.0).reshape(3, 4, 1)
    buf.load_cached_samples(cached, refresh_cursor=2)
    assert torch.equal(buf.next_base_actions, cached) and buf.refresh_cursor == 2
    with pytest.raises(ValueError, match=r"cached samples \(3, 8, 1\), this run's \(3, 4, 1\): resume with the same"):
        buf.load_cached_samples(torch.zeros(3, 8, 1), refresh_cursor=0)
    with pytest.raises(ValueError, match="this run's None"):
        TransitionBuffer(capacity=3, obs_dim=2, action_dim=1).load_cached_samples(cached, 0)
