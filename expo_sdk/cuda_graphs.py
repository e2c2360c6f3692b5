"""Replaying the learner update, and acting, as CUDA graphs (`FinetuneConfig.cuda_graphs`).

At the paper's settings one update launches thousands of small kernels (G critic steps,
each a few dozen launches for the ensemble, the TD target, Adam and Polyak). On a GPU the
CPU cannot launch them as fast as the GPU runs them, so the update is bound by launch
overhead. A CUDA graph records the update's kernels once and replays them with one launch.
Acting is the same story at batch 1: T denoising steps of a small MLP, then the edit head
and the critic, a few hundred launches for microseconds of GPU work each. Measured on an
H100 at the paper's sizes (docs/RESULTS.md, "GPU"): update 0.103 -> 0.064 s, with cached
base samples 0.057 -> 0.020 s, OTF acting at batch 1 7.7 -> 0.93 ms.

What makes the update capturable (each is kept by the code it concerns; the CUDA tests in
tests/test_cuda_graphs.py check the graphed update against the eager one):
  - no host-device synchronisation inside it (tests/test_reference.py checks that too);
  - minibatch indices drawn against the buffer's size as a device tensor (a graph replays
    the kernel arguments it captured, and the buffer keeps growing after the capture:
    `TransitionBuffer.sample`);
  - Adam with `capturable=True` (its step counter lives on the device);
  - the algorithm's generator registered with the graph, so every replay draws fresh
    random numbers, exactly the ones an eager update would have drawn from that state;
  - the work before the update that depends on Python-side state (the cache refresh's
    cursor) runs eagerly, outside the graph.

A graphed call is the same computation as the eager one, kernel for kernel: exact (no
approximation). Weights, optimizer states and buffers must keep their storage for the
graph's lifetime: they are updated in place by the training loop, and `Finetuner` captures
only after a restore and captures again when its buffers are replaced, so this holds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import torch


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: tuple[torch.Tensor, ...]  # static: each call's inputs are copied in
    outputs: Any  # static: overwritten by every replay


class GraphedFunction:
    """`fn(*tensors)` on CUDA, replayed from a CUDA graph captured for each input signature
    (shapes and dtypes) after `warmup_calls` eager calls with that signature.

    Each call computes once (the capturing call replays right after capturing: capture only
    records) and returns a copy of the outputs (a tensor, or a tuple or dict of tensors):
    the graph's own outputs are overwritten by the next replay. `fn` must take its inputs
    as tensors and keep everything else it reads in tensors updated in place. Called while
    another graph is being captured, it runs `fn` plainly, into that graph.
    """

    def __init__(self, fn: Callable[..., Any], generators: list[torch.Generator], warmup_calls: int = 1) -> None:
        if warmup_calls < 1:
            raise ValueError("a CUDA graph needs at least one eager warm-up call")
        self.fn, self.generators, self.warmup_calls = fn, generators, warmup_calls
        self._graphs: dict[tuple, _Captured] = {}
        self._calls: Counter = Counter()

    def reset(self) -> None:
        """Forget every graph (the tensors they captured were replaced): warm up and capture again."""
        self._graphs.clear()
        self._calls.clear()

    def captured(self, *inputs: torch.Tensor) -> bool:
        return _signature(inputs) in self._graphs

    def __call__(self, *inputs: torch.Tensor) -> Any:
        if torch.cuda.is_current_stream_capturing():
            return self.fn(*inputs)
        key = _signature(inputs)
        captured = self._graphs.get(key)
        if captured is None:
            self._calls[key] += 1
            if self._calls[key] <= self.warmup_calls:
                # The last warm-up runs with synchronisation as an error: what a graph
                # cannot capture fails here, with a message, instead of corrupting the capture.
                return self._eager(inputs, check_syncs=self._calls[key] == self.warmup_calls)
            captured = self._graphs[key] = self._capture(inputs)
        for static, value in zip(captured.inputs, inputs):
            static.copy_(value)
        captured.graph.replay()
        return _clone(captured.outputs)

    def _capture(self, inputs: tuple[torch.Tensor, ...]) -> _Captured:
        static_inputs = tuple(t.clone() for t in inputs)
        graph = torch.cuda.CUDAGraph()
        for generator in self.generators:
            graph.register_generator_state(generator)
        try:
            with torch.cuda.graph(graph):
                outputs = self.fn(*static_inputs)
        except RuntimeError as error:
            raise RuntimeError(f"capturing {_name(self.fn)} in a CUDA graph failed: {error}. {_ADVICE}") from error
        return _Captured(graph, static_inputs, outputs)

    def _eager(self, inputs: tuple[torch.Tensor, ...], check_syncs: bool) -> Any:
        # On a side stream, as capture needs: lazy initialisation (cuBLAS workspaces,
        # optimizer states, autograd's buffers) happens outside the graph.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        previous = torch.cuda.get_sync_debug_mode()
        try:
            with torch.cuda.stream(side):
                if check_syncs:
                    torch.cuda.set_sync_debug_mode("error")
                outputs = self.fn(*inputs)
        except RuntimeError as error:  # torch's words: "called a synchronizing CUDA operation"
            if not check_syncs or "synchroniz" not in str(error):
                raise
            raise RuntimeError(f"{_name(self.fn)} synchronises the host with the GPU, which a CUDA graph "
                               f"cannot capture: {error}. {_ADVICE}") from error
        finally:
            torch.cuda.set_sync_debug_mode(previous)
        torch.cuda.current_stream().wait_stream(side)
        return outputs


def _signature(inputs: tuple[torch.Tensor, ...]) -> tuple:
    return tuple((tuple(t.shape), t.dtype, t.device) for t in inputs)


def _clone(outputs: Any) -> Any:
    if isinstance(outputs, torch.Tensor):
        return outputs.clone()
    if isinstance(outputs, dict):
        return {k: _clone(v) for k, v in outputs.items()}
    if isinstance(outputs, (tuple, list)):
        return type(outputs)(_clone(v) for v in outputs)
    raise TypeError(f"a graphed function returns tensors, tuples or dicts of them; got {type(outputs).__name__}")


def _name(fn: Callable) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


_ADVICE = ("The usual cause is the base policy's sample() or imitation_loss() copying from the host or "
           "reading a GPU value (.item(), a diffusers scheduler's step index); expo-sdk's DDPM adapter is "
           "capturable. Set cuda_graphs: false to run without graphs")
