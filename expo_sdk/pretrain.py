"""Imitation pretraining for any policy that exposes `imitation_loss` (behaviour cloning)."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from .chunks import chunk_windows
from .normalization import Normalizer
from .policy import supports_imitation
from .replay import OfflineDataset


def train_imitation(
    policy,
    dataset: OfflineDataset | dict,
    steps: int,
    batch_size: int = 256,
    lr: float = 3e-4,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """Train `policy` by imitation on the dataset's (observation, action chunk) pairs.

    A policy of horizon H learns each observation's next H actions in its episode, padded
    with the episode's last action (`chunks.chunk_windows`). Actions are mapped to the
    canonical space with the policy's own normalizer. Returns the loss of every step.
    """
    if not supports_imitation(policy):
        raise TypeError(f"{type(policy).__name__} has no imitation_loss(obs, actions) to train with")
    if not isinstance(dataset, OfflineDataset):
        dataset = OfflineDataset(dataset)
    normalizer: Normalizer = policy.normalizer
    device = normalizer.obs_mean.device
    horizon = getattr(getattr(policy, "spec", None), "horizon", 1)
    obs = torch.as_tensor(dataset.observations, device=device)
    # [M, H, A]: each observation with the H actions that follow it in its episode
    window, _ = chunk_windows(dataset.arrays, horizon)
    actions = normalizer.action_to_canonical(torch.as_tensor(dataset.actions[window], device=device)).clamp(-1, 1)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    policy.train()
    losses: list[float] = []
    for _ in tqdm(range(steps), desc="imitation pretraining", disable=not progress, unit="step"):
        idx = torch.randint(len(obs), (batch_size,), generator=generator).to(device)
        loss = policy.imitation_loss(obs[idx], actions[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    policy.eval()
    if not np.isfinite(losses).all():
        raise FloatingPointError("imitation pretraining diverged (non-finite loss)")
    return losses
