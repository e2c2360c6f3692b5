"""Does torch.compile speed up DDPM sampling's denoiser on this machine? Compile time and speed.

    python benchmarks/compile_denoiser.py [--threads 2] [--rows 2048]   (--rows 8: acting at batch 1, N 8)
    python benchmarks/compile_denoiser.py --device cuda --mode reduce-overhead   (inductor + CUDA graphs)

Compares, on one chunk of rows at the paper's base size (MLP-ResNet 256x3, obs 23, action 7):
the eager inference path `TimeConditionedMLP.infer` used by the fused DDPM sampler, the plain
eager module, and `torch.compile` (inductor, static shapes) of the plain module.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from expo_sdk.adapters import DDPMPolicy
from expo_sdk.allocator import retain_freed_memory


def _time(fn, device: torch.device, n: int = 10) -> float:
    for _ in range(3):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / n * 1e3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mode", default=None, help="torch.compile mode (default, reduce-overhead, max-autotune)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cpu":
        retain_freed_memory()
    torch.manual_seed(0)
    policy = DDPMPolicy.for_dataset(np.random.randn(100, 23).astype(np.float32), [-1.0] * 7, [1.0] * 7)
    net = policy.denoiser.eval().requires_grad_(False).to(device)
    m = args.rows
    obs, x = torch.randn(m, 23, device=device), torch.randn(m, 7, device=device)
    t = torch.full((m,), 5, device=device)
    condition, time_feature = net.condition(obs), net.time_features(torch.tensor([5], device=device))[0]
    start = time.perf_counter()
    compiled = torch.compile(net, dynamic=False, mode=args.mode)
    with torch.no_grad():
        compiled(obs, x, t)
        _sync(device)
        compile_s = time.perf_counter() - start
        n = max(10, 20_000 // m)  # small batches: enough calls for a stable average
        plain = _time(lambda: net(obs, x, t), device, n)
        fused = _time(lambda: net.infer(condition, x, time_feature), device, n)
        comp = _time(lambda: compiled(obs, x, t), device, n)
    print(f"{device}, rows {m}, {torch.get_num_threads()} threads, mode {args.mode}: compile {compile_s:.1f} s; "
          f"per forward: eager module {plain:.3f} ms, eager fused inference path {fused:.3f} ms, "
          f"compiled module {comp:.3f} ms")


if __name__ == "__main__":
    main()
