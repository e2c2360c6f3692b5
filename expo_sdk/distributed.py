"""Data-parallel learning across processes with Hugging Face accelerate.

    torchrun --nproc_per_node 2 -m expo_sdk.cli finetune recipes/demo_pointmaze.yaml   # CPU processes
    accelerate launch --multi_gpu --num_processes 2 -m expo_sdk.cli finetune RECIPE      # two GPUs

or, from Python, `Finetuner(base, config, accelerator=Accelerator())` in a script started
the same way.

Every process runs the whole EXPO loop on its own env(s) and replay (collection seeded
per process), and every optimizer step averages the gradients of all processes first, so
the networks stay identical everywhere: P processes learn like one learner with a P
times larger batch, on P times the data, for about the wall-clock time of one. Evaluation
episodes are split across processes and gathered; only the main process writes the run
directory's files, and every process writes its shard of the checkpoints (`checkpoint_every`,
`expo finetune --resume` with the same number of processes).

Why not `accelerator.prepare(model)` (DistributedDataParallel): one EXPO update runs the
critic several times per backward (TD target, edit-head loss through the critic), samples
through the edit head under `no_grad`, and steps four optimizers on different losses;
DDP's reducer hooks fire per backward of a wrapped forward and need every parameter used
once. Averaging each optimizer's gradients with one `accelerator.reduce` call per step is
the same math with none of those constraints.
"""

from __future__ import annotations

import os
from typing import Iterable

import torch


def launched_data_parallel() -> bool:
    """True inside `accelerate launch` / `torchrun` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def accelerator_from_environment():
    """An `accelerate.Accelerator` when launched with several processes, else None."""
    if not launched_data_parallel():
        return None
    try:
        from accelerate import Accelerator
    except ImportError as exc:  # pragma: no cover - accelerate is a core dependency
        raise ImportError("data-parallel runs need accelerate: pip install accelerate") from exc
    # Without a GPU, accelerate only joins torchrun's processes when told to run on CPU;
    # otherwise each one would silently run alone.
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    if accelerator.num_processes != int(os.environ["WORLD_SIZE"]):
        raise RuntimeError(
            f"launched as {os.environ['WORLD_SIZE']} processes, but accelerate joined "
            f"{accelerator.num_processes} ({accelerator.distributed_type}): check the launcher's "
            "settings (`accelerate config`), so the processes do not run as independent copies")
    return accelerator


def is_main_process(accelerator) -> bool:
    return accelerator is None or accelerator.is_main_process


def world(accelerator) -> tuple[int, int]:
    """(this process's index, number of processes)."""
    if accelerator is None:
        return 0, 1
    return accelerator.process_index, accelerator.num_processes


def average_gradients(accelerator, parameters: Iterable[torch.nn.Parameter]) -> None:
    """Replace each parameter's gradient by its mean over processes (one collective call)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = accelerator.reduce(torch.cat([g.reshape(-1) for g in grads]), reduction="mean")
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_modules(modules: Iterable[torch.nn.Module]) -> None:
    """Copy the main process's parameters and buffers into every process."""
    from accelerate.utils import broadcast

    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            tensor.data.copy_(broadcast(tensor.data.clone(), from_process=0))


def gather_lists(accelerator, items: list) -> list:
    """Concatenate each process's list, in process order, on every process."""
    if accelerator is None or accelerator.num_processes == 1:
        return list(items)
    from accelerate.utils import gather_object

    return list(gather_object(list(items)))


def all_succeeded(accelerator, ok: bool) -> bool:
    """True on every process when `ok` is True on all of them (a collective: also a barrier)."""
    flags = accelerator.gather(torch.tensor([int(ok)], device=accelerator.device))
    return bool(flags.all())
