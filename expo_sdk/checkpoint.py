"""Atomic training checkpoints in safetensors + JSON (never pickle).

A checkpoint is a directory `checkpoint/` holding `tensors.safetensors` (network weights,
optimizer moments, replay contents, RNG states) and `state.json` (counters, optimizer
hyperparameters, metrics history). It is written into a temporary sibling directory and
swapped in by renames, so a process killed mid-write leaves the previous checkpoint
intact (as `checkpoint/` or, for an instant, `checkpoint.old/`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

TENSORS, STATE = "tensors.safetensors", "state.json"


def save_checkpoint(run_dir: str | Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> Path:
    """Write `run_dir/checkpoint` atomically; returns its path.

    A failed write (disk full, quota, permissions) removes the partial copy and raises an
    `OSError` that says the previous checkpoint is intact.
    """
    run_dir = Path(run_dir)
    final, old = run_dir / "checkpoint", run_dir / "checkpoint.old"
    for stale in run_dir.glob("checkpoint.tmp*"):  # left by a run killed mid-write
        shutil.rmtree(stale, ignore_errors=True)
    tmp = run_dir / f"checkpoint.tmp{os.getpid()}"
    try:
        tmp.mkdir(parents=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / TENSORS))
        with open(tmp / STATE, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        _fsync_file(tmp / TENSORS)
    except (OSError, SafetensorError) as exc:  # safetensors reports I/O errors as SafetensorError
        shutil.rmtree(tmp, ignore_errors=True)
        previous = find_checkpoint(run_dir)
        raise OSError(
            _errno_of(exc),
            f"could not write a checkpoint in {run_dir} ({getattr(exc, 'strerror', None) or exc}); "
            + (f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists")
            + ". Free disk space (or point the run at another directory) and resume",
        ) from exc
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    _fsync_dir(run_dir)  # the renames survive a power loss, not only a killed process
    shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint in `run_dir` (falls back to one interrupted mid-swap)."""
    for name in ("checkpoint", "checkpoint.old"):
        path = Path(run_dir) / name
        if (path / TENSORS).is_file() and (path / STATE).is_file():
            return path
    return None


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = Path(path)
    try:
        tensors = load_file(str(path / TENSORS))
        state = json.loads((path / STATE).read_text())
    except Exception as exc:
        raise ValueError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}: {str(exc)[:200]}); "
            "delete it to restart the run from scratch"
        ) from exc
    return tensors, state


def optimizer_to_flat(name: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer's state_dict into tensors (for safetensors) and JSON."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, slots in sd["state"].items():
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{name}/{idx}/{key}"] = value
            else:
                scalars[f"{idx}/{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(name: str, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                        meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    prefix = f"{name}/"
    for key, value in tensors.items():
        if key.startswith(prefix):
            idx, slot = key[len(prefix):].split("/", 1)
            state.setdefault(int(idx), {})[slot] = value
    for key, value in meta["scalars"].items():
        idx, slot = key.split("/", 1)
        state.setdefault(int(idx), {})[slot] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _errno_of(exc: Exception) -> int:
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    found = re.search(r"os error (\d+)", str(exc))
    return int(found.group(1)) if found else errno.EIO
