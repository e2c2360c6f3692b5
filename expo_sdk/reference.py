"""The faithful reference EXPO update: Algorithm 1 written out minibatch by minibatch.

This is the structure of the paper's Algorithm 1 and of the reference (JAX)
implementation, kept deliberately plain:

    for g in 1..G:
        sample a minibatch
        N base samples at each s' (fresh, or cached at insertion), N edits of them
        score the 2N candidates with the target ensemble (one critic call per candidate set)
        y = r + discount * (1 - terminated) * Q_min(s', best candidate)
        one critic step, Polyak
    edit-head + temperature step, base imitation step, on the last minibatch

`Finetuner.update` computes the same thing faster (`expo bench` measures both on the same
weights and batches; `tests/test_reference.py` checks that they agree when fed the same
random draws). Nothing here is used for training.
"""

from __future__ import annotations

import torch

from .replay import Batch


def reference_update(tuner) -> dict[str, torch.Tensor]:
    """One env step of learning for `tuner` (a `Finetuner`), the faithful way."""
    cfg = tuner.config
    for _ in range(cfg.utd_ratio):
        batch = tuner.sampler.sample(cfg.batch_size, tuner.generator)
        critic_stats = reference_critic_step(tuner, batch)
    stats = {**critic_stats, **tuner.update_edit_head(batch)}
    if tuner.base_optimizer is not None:
        stats.update(tuner.update_base(batch))
    return stats


@torch.no_grad()
def reference_td_target(tuner, batch: Batch) -> torch.Tensor:
    """y [B] for one minibatch: candidates generated and scored for this minibatch only."""
    selector, n = tuner.selector, tuner.selector.num_samples
    next_obs_n = tuner.normalizer.normalize_obs(batch.next_obs)
    if batch.next_base_actions is not None:
        base_next = batch.next_base_actions[:, :n]
    else:
        base_next = tuner.base_samples(batch.next_obs, n)
    tuner.edit_head.eval()
    candidates = selector.candidates(next_obs_n, base_next, tuner.edit_head, tuner.generator)  # [B, C, HA]
    q = tuner.target.target(next_obs_n.unsqueeze(1), candidates)  # [E, B, C]
    q_min = tuner.target.min_over_subset(q, tuner.generator)  # [B, C]
    scores = q.mean(0) if selector.score == "mean" else q.min(0).values
    if selector.mode == "argmax":
        value = q_min.gather(1, scores.argmax(dim=1, keepdim=True)).squeeze(1)
    else:
        log_probs = torch.log_softmax(scores / selector.temperature, dim=1)
        probs = log_probs.exp()
        value = (probs * q_min).sum(1) - selector.entropy_coef * (probs * log_probs).sum(1)
    return tuner.td_reward(batch) + batch.discount * (~batch.terminated).float() * value


def reference_critic_step(tuner, batch: Batch) -> dict[str, torch.Tensor]:
    target = reference_td_target(tuner, batch)
    q = tuner.critic(tuner.normalizer.normalize_obs(batch.obs), batch.action)  # [E, B]
    loss = ((q - target) ** 2).mean()
    tuner.critic_optimizer.zero_grad(set_to_none=True)
    loss.backward()
    tuner.critic_optimizer.step()
    tuner.target.polyak_update(tuner.config.critic.tau)
    return {"critic_loss": loss.detach(), "q_mean": q.detach().mean(), "td_target_mean": target.mean()}
