"""Transitions: a tensor-backed ring buffer, offline datasets, and the mixed sampler.

A transition stores the canonical action chunk the agent committed to, the (discounted)
reward collected while executing it, and `terminated` only for true terminations: a
time-limit truncation still bootstraps from s'. `discount` is gamma^k for a chunk of k
executed env steps (gamma for single-step actions).

`next_base_actions` optionally caches K base-policy samples at s' drawn when the
transition was stored (see `FinetuneConfig.cache_base_candidates`), so a frozen base
does not have to be sampled again for every TD target.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping

import numpy as np
import torch


@dataclass
class Batch:
    """A minibatch; shapes: obs/next_obs [B, D], action [B, HA], the rest [B]."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    discount: torch.Tensor
    next_base_actions: torch.Tensor | None = None  # [B, K, HA]

    @staticmethod
    def cat(parts: list["Batch"]) -> "Batch":
        parts = [p for p in parts if p.obs.shape[0] > 0]
        values = {}
        for f in fields(Batch):
            items = [getattr(p, f.name) for p in parts]
            values[f.name] = None if any(i is None for i in items) else torch.cat(items)
        return Batch(**values)


class TransitionBuffer:
    """Fixed-capacity ring buffer of transitions, stored as preallocated tensors."""

    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        action_dim: int,
        num_cached_samples: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        self.capacity, self.device = capacity, torch.device(device)
        self.obs = torch.zeros(capacity, obs_dim, device=device)
        self.action = torch.zeros(capacity, action_dim, device=device)
        self.reward = torch.zeros(capacity, device=device)
        self.next_obs = torch.zeros(capacity, obs_dim, device=device)
        self.terminated = torch.zeros(capacity, dtype=torch.bool, device=device)
        self.discount = torch.zeros(capacity, device=device)
        self.next_base_actions = (
            torch.zeros(capacity, num_cached_samples, action_dim, device=device)
            if num_cached_samples > 0 else None
        )
        # On CUDA the size is mirrored in a device tensor that minibatch indices are drawn
        # against: a CUDA graph of the update (`expo_sdk.cuda_graphs`) replays the kernel
        # arguments it captured, so a Python int would freeze the sampled range.
        self._size_on_device = torch.zeros((), dtype=torch.float64, device=device) \
            if self.device.type == "cuda" else None
        self.clear()

    def clear(self) -> None:
        """Empty the buffer; its storage stays allocated and the next adds overwrite it."""
        self.size = 0
        self._next = 0
        self.refresh_cursor = 0  # the next cached entry to re-draw (`Finetuner.refresh_cached_samples`)

    @property
    def size(self) -> int:
        return self._size

    @size.setter
    def size(self, value: int) -> None:
        self._size = value
        if self._size_on_device is not None:
            self._size_on_device.fill_(value)  # an asynchronous fill kernel: no synchronisation

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor | float,
        next_obs: torch.Tensor,
        terminated: torch.Tensor | bool,
        discount: torch.Tensor | float,
        next_base_actions: torch.Tensor | None = None,
    ) -> None:
        """Add a batch of transitions (leading dim M) or a single one (no leading dim)."""
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        single = obs.ndim == 1
        as_batch = (lambda t: t.unsqueeze(0)) if single else (lambda t: t)
        obs = as_batch(obs)
        m = obs.shape[0]
        if m > self.capacity:
            raise ValueError(f"cannot add {m} transitions to a buffer of capacity {self.capacity}")
        idx = (torch.arange(m) + self._next) % self.capacity
        self.obs[idx] = obs
        self.action[idx] = as_batch(torch.as_tensor(action, dtype=torch.float32, device=self.device))
        self.reward[idx] = self._column(reward, m, torch.float32)
        self.next_obs[idx] = as_batch(torch.as_tensor(next_obs, dtype=torch.float32, device=self.device))
        self.terminated[idx] = self._column(terminated, m, torch.bool)
        self.discount[idx] = self._column(discount, m, torch.float32)
        if self.next_base_actions is not None:
            if next_base_actions is None:
                raise ValueError("this buffer caches base samples: pass next_base_actions")
            self.next_base_actions[idx] = as_batch(next_base_actions.to(self.device))
        self._next = int((self._next + m) % self.capacity)
        self.size = min(self.size + m, self.capacity)

    _FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "discount", "next_base_actions")

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The filled part of every field (for checkpoints)."""
        return {f: getattr(self, f)[: self.size] for f in self._FIELDS if getattr(self, f) is not None}

    def state_meta(self) -> dict[str, int]:
        return {"size": self.size, "next": self._next, "capacity": self.capacity,
                "refresh_cursor": self.refresh_cursor}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, int]) -> None:
        """Restore a checkpointed buffer, into one of the same or a larger capacity (a run
        resumed with more total steps); refuses to drop transitions to fit a smaller one."""
        size, capacity = meta["size"], meta["capacity"]
        if size > self.capacity:
            raise ValueError(
                f"the checkpoint's replay holds {size} transitions, more than this buffer's capacity "
                f"{self.capacity}: resume with total_steps >= {size} (and replay.capacity >= {size})")
        if capacity == self.capacity:
            order, self._next = slice(None), meta["next"]
        else:  # oldest first: a full ring's oldest transition is at its `next`
            order = torch.arange(size).roll(-meta["next"]) if size == capacity else torch.arange(size)
            self._next = size % self.capacity
        for f, value in tensors.items():
            getattr(self, f)[:size] = value[order].to(self.device)
        self.size = size
        # the sweep restarts at the oldest entry when the order changed (a larger buffer)
        self.refresh_cursor = meta.get("refresh_cursor", 0) if capacity == self.capacity else 0

    def load_cached_samples(self, cached: torch.Tensor, refresh_cursor: int) -> None:
        """Put back the cached base samples (and where their refresh sweep stood) of a buffer
        rebuilt from the same transitions: the offline demonstrations on resume, which are
        not checkpointed themselves, only their refreshed cache."""
        if self.next_base_actions is None or cached.shape != self.next_base_actions.shape:
            have = None if self.next_base_actions is None else tuple(self.next_base_actions.shape)
            raise ValueError(f"the checkpoint's demonstrations have cached samples {tuple(cached.shape)}, "
                             f"this run's {have}: resume with the same offline data")
        self.next_base_actions.copy_(cached)
        self.refresh_cursor = refresh_cursor

    def _column(self, value, m: int, dtype: torch.dtype) -> torch.Tensor:
        """A per-transition scalar field as [m]; a single value is broadcast."""
        column = torch.as_tensor(np.asarray(value), device=self.device).to(dtype).reshape(-1)
        return column.expand(m) if column.numel() == 1 else column.reshape(m)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty buffer")
        device = generator.device if generator is not None else self.device
        if self._size_on_device is not None and device.type == "cuda":
            # floor(u * size) with u in [0, 1) in float64: uniform over the filled entries
            uniform = torch.rand(batch_size, generator=generator, device=device, dtype=torch.float64)
            idx = (uniform.to(self.device) * self._size_on_device).long()
        else:
            idx = torch.randint(self.size, (batch_size,), generator=generator, device=device).to(self.device)
        return self.gather(idx)

    def gather(self, idx: torch.Tensor) -> Batch:
        return Batch(
            obs=self.obs[idx], action=self.action[idx], reward=self.reward[idx],
            next_obs=self.next_obs[idx], terminated=self.terminated[idx],
            discount=self.discount[idx],
            next_base_actions=None if self.next_base_actions is None else self.next_base_actions[idx],
        )


class OfflineDataset:
    """Demonstrations as flat transition arrays, actions in env units.

    Required keys: observations [M, D], actions [M, A], rewards [M], next_observations
    [M, D], terminals [M] (true terminations). Optional: timeouts [M] (truncations;
    informational, they bootstrap like any non-terminal step).
    """

    REQUIRED = ("observations", "actions", "rewards", "next_observations", "terminals")

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        missing = [k for k in self.REQUIRED if k not in arrays]
        if missing:
            raise ValueError(
                f"offline dataset is missing {missing}; expected keys {list(self.REQUIRED)}"
            )
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        m = len(self.arrays["observations"])
        if m == 0:
            raise ValueError("offline dataset is empty (0 transitions)")
        for k in self.REQUIRED:
            if len(self.arrays[k]) != m:
                raise ValueError(
                    f"offline dataset arrays disagree in length: observations has {m}, "
                    f"{k} has {len(self.arrays[k])}"
                )
        for k in ("observations", "actions", "rewards", "next_observations"):
            if not np.isfinite(self.arrays[k]).all():
                raise ValueError(f"offline dataset field {k!r} contains NaN or inf")

    def __len__(self) -> int:
        return len(self.arrays["observations"])

    @property
    def observations(self) -> np.ndarray:
        return self.arrays["observations"].astype(np.float32)

    @property
    def actions(self) -> np.ndarray:
        return self.arrays["actions"].astype(np.float32)

    @classmethod
    def load_npz(cls, path: str) -> "OfflineDataset":
        """Read an .npz of plain arrays (object arrays, which need pickle, are refused)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except FileNotFoundError:
            raise
        except Exception as exc:  # zipfile/zlib/numpy errors for truncated or foreign files
            raise ValueError(
                f"cannot read offline dataset {path}: not a complete .npz of plain arrays "
                f"({type(exc).__name__}: {str(exc)[:200]}); regenerate or re-download it"
            ) from exc
        return cls(arrays)

    def save_npz(self, path: str | Path) -> None:
        """Write the arrays as a compressed .npz, atomically: under a temporary name in the
        same directory, then renamed, so a killed writer never leaves a truncated file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
        np.savez_compressed(tmp, **self.arrays)
        tmp.replace(path)


class MixedSampler:
    """Draws each batch as `offline_ratio` offline + the rest online (0.5 = RLPD)."""

    def __init__(
        self,
        online: TransitionBuffer,
        offline: TransitionBuffer | None,
        offline_ratio: float = 0.5,
    ) -> None:
        if not 0.0 <= offline_ratio <= 1.0:
            raise ValueError(f"offline_ratio must be in [0, 1], got {offline_ratio}")
        self.online, self.offline, self.offline_ratio = online, offline, offline_ratio

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        have_offline = self.offline is not None and len(self.offline) > 0
        have_online = len(self.online) > 0
        if not have_offline and not have_online:
            raise RuntimeError("no data to sample: both the online and offline buffers are empty")
        n_offline = round(self.offline_ratio * batch_size) if have_offline else 0
        if not have_online:
            n_offline = batch_size
        parts = []
        if n_offline:
            parts.append(self.offline.sample(n_offline, generator))
        if batch_size - n_offline:
            parts.append(self.online.sample(batch_size - n_offline, generator))
        return parts[0] if len(parts) == 1 else Batch.cat(parts)
