import torch

from expo_sdk import CriticEnsemble
from expo_sdk.critic import TargetCritic


def test_ensemble_matches_members_evaluated_one_by_one():
    torch.manual_seed(0)
    critic = CriticEnsemble(obs_dim=3, action_dim=2, ensemble_size=5, hidden_dim=16, num_layers=2)
    with torch.no_grad():  # every member's LayerNorm its own (not the identity init)
        for norm in critic.norms:
            norm.weight.normal_(1.0, 0.3), norm.bias.normal_(0.0, 0.3)
    obs, act = torch.randn(7, 3), torch.randn(7, 2)
    q = critic(obs, act)
    assert q.shape == (5, 7)
    x = torch.cat([obs, act], -1)
    for e in range(5):
        h = x
        for layer, norm in zip(critic.hidden, critic.norms):
            h = torch.relu(torch.nn.functional.layer_norm(h @ layer.weight[e] + layer.bias[e], (16,))
                           * norm.weight[e] + norm.bias[e])
        expected = (h @ critic.out.weight[e] + critic.out.bias[e]).squeeze(-1)
        torch.testing.assert_close(q[e], expected)


def test_members_are_initialized_differently():
    critic = CriticEnsemble(3, 2, ensemble_size=4, hidden_dim=8)
    q = critic(torch.randn(10, 3), torch.randn(10, 2))
    assert q.std(0).mean() > 1e-3


def test_broadcasts_observation_over_candidates():
    critic = CriticEnsemble(3, 2, ensemble_size=3, hidden_dim=8)
    obs, cands = torch.randn(4, 3), torch.randn(4, 6, 2)
    q = critic(obs.unsqueeze(1), cands)
    assert q.shape == (3, 4, 6)
    torch.testing.assert_close(q[:, :, 2], critic(obs, cands[:, 2]))


def test_polyak_update_moves_target_by_tau():
    critic = CriticEnsemble(3, 2, ensemble_size=2, hidden_dim=8)
    holder = TargetCritic(critic, num_min_q=2)
    before = [p.clone() for p in holder.target.parameters()]
    with torch.no_grad():
        for p in critic.parameters():
            p.add_(1.0)
    holder.polyak_update(0.1)
    for b, t, o in zip(before, holder.target.parameters(), critic.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * o)
    assert not any(p.requires_grad for p in holder.target.parameters())


def test_min_over_subset_takes_min_of_num_min_q_members():
    critic = CriticEnsemble(1, 1, ensemble_size=10, hidden_dim=4)
    holder = TargetCritic(critic, num_min_q=2)
    q = torch.arange(10.0).reshape(10, 1) * torch.ones(10, 3)
    seen = set()
    for seed in range(30):
        v = holder.min_over_subset(q, torch.Generator().manual_seed(seed))
        assert v.shape == (3,)
        seen.add(float(v[0]))
    # min of two distinct members of 0..9 is at most 8 and varies with the subset
    assert max(seen) <= 8 and len(seen) > 3


def test_num_min_q_must_fit_the_ensemble():
    import pytest

    with pytest.raises(ValueError, match="num_min_q"):
        TargetCritic(CriticEnsemble(1, 1, ensemble_size=2, hidden_dim=4), num_min_q=3)


def test_score_matches_the_broadcast_forward():
    torch.manual_seed(0)
    critic = CriticEnsemble(obs_dim=3, action_dim=2, ensemble_size=4, hidden_dim=16, num_layers=3)
    obs, cands = torch.randn(5, 3), torch.randn(5, 6, 2)
    torch.testing.assert_close(critic.score(obs, cands), critic(obs.unsqueeze(1), cands), rtol=1e-5, atol=1e-6)


def test_score_in_cache_sized_blocks_matches_one_call():
    """Blocking the states (CPU) changes nothing but float rounding, also for a ragged last block."""
    torch.manual_seed(0)
    critic = CriticEnsemble(obs_dim=3, action_dim=2, ensemble_size=4, hidden_dim=16, num_layers=2)
    obs, cands = torch.randn(37, 3), torch.randn(37, 6, 2)
    whole = critic.score(obs, cands)
    critic.score_block_elements = 4 * 6 * 16 * 5  # room for 5 states: blocks of 4 (a power of two), the last of 1
    block_sizes, score_block = [], critic._score_block
    critic._score_block = lambda o, c: block_sizes.append(len(o)) or score_block(o, c)
    blocked = critic.score(obs, cands)
    assert block_sizes == [4] * 9 + [1]
    torch.testing.assert_close(blocked, whole, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(blocked, critic(obs.unsqueeze(1), cands), rtol=1e-5, atol=1e-6)


def test_layer_norm_parameters_are_per_member():
    """Members are independent networks (the paper's vmapped ensemble): a loss on one
    member's Q moves only that member's LayerNorm parameters."""
    torch.manual_seed(0)
    critic = CriticEnsemble(3, 2, ensemble_size=4, hidden_dim=8)
    critic(torch.randn(6, 3), torch.randn(6, 2))[2].sum().backward()
    for norm in critic.norms:
        assert norm.weight.shape == (4, 1, 8)
        touched = norm.weight.grad.abs().sum((1, 2)) > 0
        assert touched.tolist() == [False, False, True, False]


def test_loads_a_checkpoint_with_one_layer_norm_shared_by_all_members():
    """State dicts written before per-member LayerNorm ([hidden] weight/bias) load as equal
    copies: the same function."""
    torch.manual_seed(0)
    critic = CriticEnsemble(3, 2, ensemble_size=4, hidden_dim=8)
    old = {k: v.clone() for k, v in critic.state_dict().items()}
    for i in range(len(critic.norms)):
        old[f"norms.{i}.weight"] = torch.rand(8) + 0.5
        old[f"norms.{i}.bias"] = torch.randn(8)
    loaded = CriticEnsemble(3, 2, ensemble_size=4, hidden_dim=8)
    loaded.load_state_dict(old)
    obs, act = torch.randn(5, 3), torch.randn(5, 2)
    x = torch.cat([obs, act], -1)
    for e in range(4):
        h = x
        for i, layer in enumerate(critic.hidden):
            h = torch.nn.functional.layer_norm(h @ layer.weight[e] + layer.bias[e], (8,),
                                               old[f"norms.{i}.weight"], old[f"norms.{i}.bias"]).relu()
        expected = (h @ critic.out.weight[e] + critic.out.bias[e]).squeeze(-1)
        torch.testing.assert_close(loaded(obs, act)[e], expected)
