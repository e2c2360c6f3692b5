"""Replaying the learner update as one CUDA graph (`FinetuneConfig.cuda_graphs`).

At the paper's settings one update launches thousands of small kernels (G critic steps,
each a few dozen launches for the ensemble, the TD target, Adam and Polyak). On a GPU the
CPU cannot launch them as fast as the GPU runs them, so the update is bound by launch
overhead. A CUDA graph records the update's kernels once and replays them with one launch.

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

The graphed update is the same computation as the eager one, kernel for kernel; it is exact
(no approximation). Weights, optimizer states and buffers must keep their storage for the
graph's lifetime: they are updated in place by the training loop, and `Finetuner` captures
only after a restore, so this holds.
"""

from __future__ import annotations

from typing import Callable

import torch

Stats = dict[str, torch.Tensor]


class GraphedUpdate:
    """Calls `step` eagerly `warmup_calls` times, captures it on the next call, then replays.

    Each call does one step (the capturing call replays right after capturing: capture
    only records). Returns a copy of the step's outputs: the graph's own output tensors are
    overwritten by the next replay.
    """

    def __init__(self, step: Callable[[], Stats], generators: list[torch.Generator], warmup_calls: int = 3) -> None:
        self.step, self.generators, self.warmup_calls = step, generators, warmup_calls
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: Stats | None = None

    def reset(self) -> None:
        """Forget the graph (the tensors it captured were replaced): warm up and capture again."""
        self.calls, self.graph, self.outputs = 0, None, None

    def __call__(self) -> Stats:
        if self.graph is None and self.calls < self.warmup_calls:
            self.calls += 1
            # The last warm-up runs with synchronisation as an error: what a graph cannot
            # capture fails here, with a message, instead of corrupting the capture.
            return self._eager(check_syncs=self.calls == self.warmup_calls)
        if self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            for generator in self.generators:
                self.graph.register_generator_state(generator)
            try:
                with torch.cuda.graph(self.graph):
                    self.outputs = self.step()
            except RuntimeError as error:
                self.graph = None
                raise RuntimeError(f"capturing the update in a CUDA graph failed: {error}. {_ADVICE}") from error
        self.graph.replay()
        return {k: v.clone() for k, v in self.outputs.items()}

    def _eager(self, check_syncs: bool) -> Stats:
        # On a side stream, as capture needs: lazy initialisation (cuBLAS workspaces,
        # optimizer states, autograd's buffers) happens outside the graph.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        previous = torch.cuda.get_sync_debug_mode()
        try:
            with torch.cuda.stream(side):
                if check_syncs:
                    torch.cuda.set_sync_debug_mode("error")
                outputs = self.step()
        except RuntimeError as error:
            if not check_syncs:
                raise
            raise RuntimeError(f"the update synchronises the host with the GPU, which a CUDA graph cannot "
                               f"capture: {error}. {_ADVICE}") from error
        finally:
            torch.cuda.set_sync_debug_mode(previous)
        torch.cuda.current_stream().wait_stream(side)
        return outputs


_ADVICE = ("The usual cause is the base policy's sample() or imitation_loss() copying from the host or "
           "reading a GPU value (.item(), a diffusers scheduler's step index); expo-sdk's DDPM adapter is "
           "capturable. Set cuda_graphs: false to train without a graph")
