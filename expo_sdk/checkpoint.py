"""Atomic training checkpoints in safetensors + JSON (never pickle).

A checkpoint is a directory `checkpoint/` holding `tensors.safetensors` (network weights,
optimizer moments, replay contents, RNG states) and `state.json` (counters, optimizer
hyperparameters, metrics history). It is written into a temporary sibling directory and
swapped in by renames, so a process killed mid-write leaves the previous checkpoint
intact (as `checkpoint/` or, for an instant, `checkpoint.old/`).

A data-parallel run (P processes, each with its own replay and env) writes one checkpoint
with one shard per process: the main process's at the top, process r's in `rank-r/`
(`save_sharded_checkpoint`). All shards go into one temporary directory that is swapped
in only after every process has written its own, so the shards always belong together.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

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
    final, old, tmp = run_dir / "checkpoint", run_dir / "checkpoint.old", run_dir / f"checkpoint.tmp{os.getpid()}"
    try:
        _make_tmp(run_dir, tmp)
        _write(tmp, tensors, state)
    except (OSError, SafetensorError) as exc:  # safetensors reports I/O errors as SafetensorError
        shutil.rmtree(tmp, ignore_errors=True)
        raise _not_written(run_dir, exc) from exc
    _swap_in(tmp, final, old, run_dir)
    return final


def save_sharded_checkpoint(run_dir: str | Path, tensors: dict[str, torch.Tensor], state: dict[str, Any],
                            rank: int, world_size: int, all_succeeded: Callable[[bool], bool]) -> Path:
    """Every process of a data-parallel run calls this at the same step with its own shard.

    `all_succeeded(ok)` is a collective: it returns True on every process when `ok` was
    True on all of them (it is also the barrier between the phases). Rank 0 prepares the
    temporary directory, every rank writes its shard, and rank 0 swaps the directory in
    only if all shards were written; otherwise every rank raises and the previous
    checkpoint stays. `run_dir` must be the same directory for all processes (a shared
    filesystem when they run on several machines).
    """
    run_dir = Path(run_dir)
    final, old, tmp = run_dir / "checkpoint", run_dir / "checkpoint.old", run_dir / "checkpoint.tmp-shards"
    error: BaseException | None = None
    if rank == 0:
        try:
            _make_tmp(run_dir, tmp)
        except OSError as exc:
            error = exc
    if not all_succeeded(error is None):
        raise _not_written(run_dir, error)
    shard = tmp if rank == 0 else tmp / f"rank-{rank}"
    try:  # any failure (not only I/O): every rank must reach the next collective call
        shard.mkdir(exist_ok=True)
        _write(shard, tensors, {**state, "world_size": world_size, "rank": rank})
    except Exception as exc:
        error = exc
    if not all_succeeded(error is None):
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        raise _not_written(run_dir, error)
    if rank == 0:
        try:
            _swap_in(tmp, final, old, run_dir)
        except OSError as exc:
            error = exc
    if not all_succeeded(error is None):
        raise _not_written(run_dir, error)
    return final


def _make_tmp(run_dir: Path, tmp: Path) -> None:
    """Create the directory a checkpoint is written into, first removing any left by a
    run killed mid-write (a leftover named `tmp` itself included)."""
    for stale in run_dir.glob("checkpoint.tmp*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir(parents=True)


def _write(directory: Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(directory / TENSORS))
    with open(directory / STATE, "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    _fsync_file(directory / TENSORS)


def _swap_in(tmp: Path, final: Path, old: Path, run_dir: Path) -> None:
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    _fsync_dir(run_dir)  # the renames survive a power loss, not only a killed process
    shutil.rmtree(old, ignore_errors=True)


def _not_written(run_dir: Path, error: BaseException | None) -> OSError:
    """The error raised when a checkpoint could not be written (`error`: this process's cause,
    None when another process of a data-parallel run failed)."""
    reason = (getattr(error, "strerror", None) or error) if error is not None else \
        "another process could not write its shard; see its error"
    previous = find_checkpoint(run_dir)
    return OSError(
        _errno_of(error) if isinstance(error, Exception) else errno.EIO,
        f"could not write a checkpoint in {run_dir} ({reason}); "
        + (f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists")
        + ". Free disk space (or point the run at another directory) and resume",
    )


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
        raise _unreadable(path, exc) from exc
    return tensors, state


def load_checkpoint_shard(path: str | Path, rank: int, world_size: int) -> tuple[dict[str, torch.Tensor],
                                                                              dict[str, Any]]:
    """Process `rank`'s shard of a checkpoint; refuses one written by another number of processes
    (each process's replay and env state are in its own shard)."""
    path = Path(path)
    try:
        written_by = json.loads((path / STATE).read_text()).get("world_size", 1)
    except Exception as exc:
        raise _unreadable(path, exc) from exc
    if written_by != world_size:
        raise ValueError(
            f"the checkpoint in {path} was written by {written_by} process(es) and this run has {world_size}: "
            f"resume with {written_by} process(es) (each holds its own replay), or start a new run directory")
    return load_checkpoint(path if rank == 0 else path / f"rank-{rank}")


def _unreadable(path: Path, exc: Exception) -> ValueError:
    return ValueError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {str(exc)[:200]}); "
                      "delete it to restart the run from scratch")


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
