"""Would torch.compile speed up the critic ensemble, the bulk of a cached update? Compile time and speed.

    python benchmarks/critic_scoring.py --device cuda [--mode max-autotune-no-cudagraphs]

At the paper's sizes (E 10, hidden 256 x 2, obs 23, action 7, batch 256, 2N = 16 candidates
per state), times per call: `CriticEnsemble.score` of one TD target's candidates (no grad),
and one training forward + backward on a minibatch; eager vs `torch.compile` (inductor, static
shapes), which can fuse LayerNorm, its per-member affine and ReLU into fewer passes over the
[E, B*2N, hidden] activations. Also prints the largest difference between the two.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from expo_sdk.critic import CriticEnsemble


def _median_ms(fn, device: torch.device, calls: int = 50) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(calls):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mode", default=None, help="torch.compile mode")
    parser.add_argument("--matmul-precision", default="highest", choices=["highest", "high"])
    args = parser.parse_args()
    torch.set_float32_matmul_precision(args.matmul_precision)
    device = torch.device(args.device)
    torch.manual_seed(0)
    critic = CriticEnsemble(23, 7, ensemble_size=10, hidden_dim=256).to(device)
    obs, candidates = torch.randn(256, 23, device=device), torch.randn(256, 16, 7, device=device).clamp(-1, 1)
    actions = candidates[:, 0]

    def score(fn):
        with torch.no_grad():
            return fn(obs, candidates)

    def train_step(module):
        module.zero_grad(set_to_none=True)
        module(obs, actions).square().mean().backward()

    start = time.perf_counter()
    compiled_score = torch.compile(critic.score, dynamic=False, mode=args.mode)
    score(compiled_score)
    score_compile_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled_critic = torch.compile(critic, dynamic=False, mode=args.mode)
    train_step(compiled_critic)
    train_compile_s = time.perf_counter() - start
    error = (score(compiled_score) - score(critic.score)).abs().max().item()

    rows = [("score 256 x 16 candidates", _median_ms(lambda: score(critic.score), device),
             _median_ms(lambda: score(compiled_score), device), score_compile_s),
            ("train step, batch 256", _median_ms(lambda: train_step(critic), device),
             _median_ms(lambda: train_step(compiled_critic), device), train_compile_s)]
    print(f"{device}, mode {args.mode}, float32 matmul precision {args.matmul_precision}; "
          f"max |compiled - eager| score {error:.2e}")
    for name, eager, compiled, compile_s in rows:
        print(f"  {name:<28} eager {eager:7.3f} ms, compiled {compiled:7.3f} ms ({eager / compiled:.2f}x), "
              f"compile {compile_s:.1f} s")


if __name__ == "__main__":
    main()
