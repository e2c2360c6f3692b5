"""Action chunks from demonstration episodes: imitation targets and chunk-level transitions.

A chunked policy (horizon H) picks H actions at once and the env executes them open-loop,
so both its imitation targets and its replay transitions are windows of H steps:

    actions:     a_t .. a_{t+H-1}, padded with the episode's last action past its end
                 (Diffusion Policy's convention: the policy learns to hold still at the end)
    reward:      sum_{k<h} gamma^k r_{t+k},  h = min(H, steps left in the episode)
    next state:  s_{t+h},  discount gamma^h,  terminated if the episode terminated inside

which is what `TrainingEnv.step_chunk` records online (it stops a chunk at the episode's
end), so offline and online transitions mean the same thing and one TD target serves both.
Because a transition spans H steps, a sparse reward propagates back H times faster per
backup: the reason to chunk long-horizon sparse-reward tasks (Q-chunking, Li et al. 2025).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

__all__ = ["episode_ends", "chunk_windows", "chunk_transitions"]


def episode_ends(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """bool [M]: transition t is the last of its episode.

    An episode ends at a termination or timeout, where `episode_ids` change, where the next
    transition does not start at this one's s' (datasets without episode markers), and at
    the end of the arrays.
    """
    m = len(arrays["observations"])
    ends = np.asarray(arrays["terminals"], bool).copy()
    if "timeouts" in arrays:
        ends |= np.asarray(arrays["timeouts"], bool)
    if "episode_ids" in arrays:
        ids = np.asarray(arrays["episode_ids"])
        ends[:-1] |= ids[1:] != ids[:-1]
    obs, next_obs = np.asarray(arrays["observations"]), np.asarray(arrays["next_observations"])
    ends[:-1] |= ~np.all(next_obs[:-1].reshape(m - 1, -1) == obs[1:].reshape(m - 1, -1), axis=1)
    ends[-1] = True
    return ends


def chunk_windows(arrays: Mapping[str, np.ndarray], horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of each transition's window: (index [M, H], steps [M]).

    index[t, k] is transition t+k, or the episode's last transition past its end (so
    `actions[index]` is the padded chunk); steps[t] = h, how many of the H actions the
    episode still runs.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    ends = episode_ends(arrays)
    m = len(ends)
    # the index of each transition's episode end: the next True at or after t
    last = np.flatnonzero(ends)
    episode_last = last[np.searchsorted(last, np.arange(m))]
    index = np.minimum(np.arange(m)[:, None] + np.arange(horizon)[None, :], episode_last[:, None])
    steps = np.minimum(horizon, episode_last - np.arange(m) + 1)
    return index, steps


def chunk_transitions(arrays: Mapping[str, np.ndarray], horizon: int, gamma: float) -> dict[str, np.ndarray]:
    """Chunk-level transitions from step-level ones (see the module docstring).

    Returns observations [M, D], actions [M, H, A], rewards [M], next_observations [M, D],
    terminals [M] and discounts [M] (gamma^h), one per step of the dataset.
    """
    index, steps = chunk_windows(arrays, horizon)
    m = len(steps)
    rewards = np.asarray(arrays["rewards"], np.float64)
    executed = np.arange(horizon)[None, :] < steps[:, None]  # [M, H]: inside the episode
    discounts_k = gamma ** np.arange(horizon, dtype=np.float64)
    chunk_rewards = (rewards[index] * discounts_k * executed).sum(1)
    final = index[np.arange(m), steps - 1]  # the window's last executed transition
    return {
        "observations": np.asarray(arrays["observations"], np.float32),
        "actions": np.asarray(arrays["actions"], np.float32)[index],
        "rewards": chunk_rewards.astype(np.float32),
        "next_observations": np.asarray(arrays["next_observations"], np.float32)[final],
        "terminals": np.asarray(arrays["terminals"], bool)[final],
        "discounts": (gamma ** steps.astype(np.float64)).astype(np.float32),
    }
