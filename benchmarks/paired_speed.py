"""Faithful vs optimized EXPO updates, timed in turns from two processes (paired in time).

    python benchmarks/paired_speed.py [--rounds 5] [--threads 2] [--quick]
        [--paths optimized,compiled,cached,cached_compiled]

Why a second harness beside `expo bench`: the bench times its faithful path under glibc's
default allocator and then switches its process to retained freed memory (a one-way,
process-wide switch), so the faithful path and the optimized ones run minutes apart. On a
machine whose speed drifts by 25-30% within minutes (this project's 2-core Xeon; one bench
run put the same faithful update at 11.5 s in one session and 18-19.5 s in the next), the
headline ratio then carries that drift. Here the faithful path runs in one process
(default allocator, as a straightforward implementation would) and the optimized paths in
another (freed memory retained, as `Finetuner` training runs); the parent lets exactly one
of them compute at a time, one update each in turn, and reverses the order every other
round, so each round's ratio compares updates seconds apart and a steady drift touches
both sides alike.

Both processes build the same tuners as `expo bench` (`expo_sdk.bench.make_tuner`, same
seed: same random weights and minibatches), restore the same snapshot before every update,
and warm up first (lazy initialisation, torch.compile), one process at a time. Paths:
    faithful         `expo_sdk.reference.reference_update`, diffusers' DDPMScheduler.step loop
    optimized        `Finetuner.update` (fused sampler, batched TD targets), eager
    compiled         + `compile_base_sampling` + `compile_critic` (exact to float rounding)
    cached           frozen base, base samples cached at insertion
    cached_compiled  cached + `compile_critic`
Prints one JSON object: each path's update times, the per-round ratios faithful / path
(their median, min and max), and env-steps/s ratios with one OTF action per env step
(acting at batch 1 timed in turns the same way; the faithful side with the reference sampler).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
import traceback

PATHS = ("faithful", "optimized", "compiled", "cached", "cached_compiled")


def _build(name: str, quick: bool):
    """(bench path, its snapshot) for one of PATHS, as `expo bench` builds them."""
    from expo_sdk.bench import PAPER, QUICK, _Path, _Replay, _Snapshot, make_tuner
    from expo_sdk.finetuner import Finetuner
    from expo_sdk.reference import reference_update

    s = QUICK if quick else PAPER
    options = {"faithful": {}, "optimized": {}, "cached": {"cache": True},
               "compiled": {"compile_base_sampling": True, "compile_critic": True},
               "cached_compiled": {"cache": True, "compile_critic": True}}[name]
    tuner = make_tuner(s, "cpu", **options)
    real = tuner.sampler
    tuner.sampler = _Replay([real.sample(s.batch_size, tuner.generator) for _ in range(s.utd_ratio)])
    if name == "faithful":
        path = _Path(name, tuner, reference_update, fused_sampling=False)
    else:
        path = _Path(name, tuner, Finetuner.update)
    return path, _Snapshot(tuner)


def _worker(conn, names: list[str], retained: bool, threads: int, quick: bool) -> None:
    """Serves timing requests for its paths until told to stop: ("update", name) -> seconds,
    ("act", name, calls) -> median seconds of one OTF action at batch 1. A failure is sent
    back as ("error", traceback) for the parent to raise."""
    try:
        _serve(conn, names, retained, threads, quick)
    except BaseException:  # noqa: BLE001 - handed to the parent, which raises it
        conn.send(("error", traceback.format_exc()))


def _serve(conn, names: list[str], retained: bool, threads: int, quick: bool) -> None:
    import torch

    from expo_sdk.allocator import retain_freed_memory
    from expo_sdk.bench import _act_latency

    torch.set_num_threads(threads)
    if retained:
        retain_freed_memory()
    built = {name: _build(name, quick) for name in names}
    conn.send("built")
    while (request := conn.recv()) is not None:
        path, snapshot = built[request[1]]
        if request[0] == "update":
            conn.send(path.run_once(snapshot))
        else:  # acting: the faithful side samples through the reference (diffusers) loop
            path.tuner.sampling_base.fused_sampling = path.fused_sampling
            conn.send(_act_latency(path.tuner, 1, request[2]))
            path.tuner.sampling_base.fused_sampling = True


def _receive(conn):
    """A worker's answer; its failure (or death) raised here, with the worker's traceback."""
    try:
        answer = conn.recv()
    except EOFError:
        raise RuntimeError("a timing worker died without an answer (out of memory?)") from None
    if isinstance(answer, tuple) and answer[0] == "error":
        raise RuntimeError(f"a timing worker failed:\n{answer[1]}")
    return answer


def _turns(order: list[tuple], rounds: int, request, log) -> dict[str, list[float]]:
    """`rounds` rounds of one request per path, in `order` and reversed every other round."""
    times: dict[str, list[float]] = {name: [] for _, name in order}
    for r in range(rounds):
        for conn, name in (order if r % 2 == 0 else order[::-1]):
            conn.send(request(name))
            times[name].append(_receive(conn))
            log(f"  round {r + 1}/{rounds} {name}: {times[name][-1]:.4f} s")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--paths", default="optimized,compiled,cached,cached_compiled",
                        help=f"comma-separated, compared with the faithful path; from {PATHS[1:]}")
    parser.add_argument("--act-calls", type=int, default=50, help="OTF actions per acting measurement")
    parser.add_argument("--quick", action="store_true", help="the bench's tiny preset: a smoke test")
    args = parser.parse_args()
    optimized = [p for p in args.paths.split(",") if p]
    unknown = sorted(set(optimized) - set(PATHS[1:]))
    if unknown or not optimized:
        parser.error(f"--paths: unknown or empty {unknown}; choose from {', '.join(PATHS[1:])}")
    if min(args.rounds, args.threads, args.act_calls) < 1:
        parser.error("--rounds, --threads and --act-calls must be at least 1")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    load_start = os.getloadavg()
    ctx = mp.get_context("spawn")  # fresh interpreters: separate allocators, no forked OpenMP state
    sides = []
    for names, retained in ((["faithful"], False), (optimized, True)):
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_worker, args=(child, names, retained, args.threads, args.quick), daemon=True)
        process.start()
        sides.append((parent, process, names))
    try:
        for conn, _, _ in sides:
            _receive(conn)  # "built"
        order = [(conn, name) for conn, _, names in sides for name in names]
        log("warm-up (first update: lazy initialisation, compilation):")
        first = {name: _turns([(conn, name)], 1, lambda n: ("update", n), lambda _: None)[name][0]
                 for conn, name in order}
        for name, s in first.items():
            log(f"  {name}: {s:.2f} s")
        log("updates:")
        updates = _turns(order, args.rounds, lambda n: ("update", n), log)
        log("acting at batch 1:")
        _turns(order, 1, lambda n: ("act", n, 5), lambda _: None)  # warm-up (compiled acting compiles here)
        acting = _turns(order, 3, lambda n: ("act", n, args.act_calls), log)
    finally:
        for conn, process, _ in sides:
            try:
                conn.send(None)
            except OSError:  # the worker is gone already
                pass
            process.join(timeout=60)

    f_updates, f_act = updates["faithful"], statistics.median(acting["faithful"])
    result: dict = {
        "cpu": platform.processor() or platform.machine(), "threads": args.threads, "rounds": args.rounds,
        "preset": "quick" if args.quick else "paper", "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "first_update_s": {k: round(v, 2) for k, v in first.items()},
        "faithful_s_per_update": round(statistics.median(f_updates), 4),
        "faithful_runs_s": [round(t, 6) for t in f_updates],
        "faithful_act_ms_b1": round(f_act * 1e3, 3),
    }
    for name in optimized:
        ratios = [f / o for f, o in zip(f_updates, updates[name])]
        act = statistics.median(acting[name])
        env_step_ratios = [(f + f_act) / (o + act) for f, o in zip(f_updates, updates[name])]
        result[name] = {
            "s_per_update": round(statistics.median(updates[name]), 4),
            "runs_s": [round(t, 6) for t in updates[name]],
            "vs_faithful_per_round": [round(r, 2) for r in ratios],
            "vs_faithful": {"median": round(statistics.median(ratios), 2), "min": round(min(ratios), 2),
                            "max": round(max(ratios), 2)},
            "act_ms_b1": round(act * 1e3, 3),
            "vs_faithful_env_steps": {"median": round(statistics.median(env_step_ratios), 2),
                                      "min": round(min(env_step_ratios), 2), "max": round(max(env_step_ratios), 2)},
        }
    print(json.dumps(result))


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"paired_speed: {time.perf_counter() - started:.0f} s", file=sys.stderr)
