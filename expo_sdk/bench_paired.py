"""`expo bench --paired`: faithful vs optimized EXPO updates, timed in turns from two processes.

`expo bench` times its faithful path under glibc's default allocator and then switches its
process to retained freed memory (a one-way, process-wide switch), so the faithful path and
the optimized ones run minutes apart. On a machine whose speed drifts by 25-30% within
minutes (this project's 2-core Xeon; the same faithful update took 11.5 s in one session
and 18-19.5 s in the next), the headline ratio then carries that drift. Here the faithful
path runs in one process (default allocator, as a straightforward implementation would)
and the optimized paths in another (freed memory retained, as `Finetuner` training runs);
the parent lets exactly one of them compute at a time, one update each in turn, and
reverses the order every other round, so each round's ratio compares updates seconds apart
and a steady drift touches both sides alike. CPU only (the allocator is the reason).

Both processes build the same tuners as `expo bench` (`make_tuner`, same seed: same random
weights and minibatches), restore the same snapshot before every update, and warm up first
(lazy initialisation, torch.compile), one process at a time. Paths:
    faithful         `expo_sdk.reference.reference_update`, diffusers' DDPMScheduler.step loop
    optimized        `Finetuner.update` (fused sampler, batched TD targets), eager
    compiled         + `compile_base_sampling` + `compile_critic` (exact to float rounding)
    cached           frozen base, base samples cached at insertion
    cached_compiled  cached + `compile_critic`
The result: each path's update times, the per-round ratios faithful / path (median, min,
max), and env-steps/s ratios with one OTF action per env step (acting at batch 1 timed in
turns the same way; the faithful side with the reference sampler).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import statistics
import traceback
from typing import Callable

PATHS = ("faithful", "optimized", "compiled", "cached", "cached_compiled")


def _build(name: str, quick: bool):
    """(bench path, its snapshot) for one of PATHS, as `expo bench` builds them."""
    from .bench import PAPER, QUICK, _Path, _replay_fixed_batches, _Snapshot, make_tuner
    from .finetuner import Finetuner
    from .reference import reference_update

    s = QUICK if quick else PAPER
    options = {"faithful": {}, "optimized": {}, "cached": {"cache": True},
               "compiled": {"compile_base_sampling": True, "compile_critic": True},
               "cached_compiled": {"cache": True, "compile_critic": True}}[name]
    tuner = make_tuner(s, "cpu", **options)
    _replay_fixed_batches(tuner, s)
    if name == "faithful":
        path = _Path(name, tuner, reference_update, fused_sampling=False)
    else:
        path = _Path(name, tuner, Finetuner.update)
    return path, _Snapshot(tuner)


def _worker(conn, names: list[str], retained: bool, threads: int | None, quick: bool) -> None:
    """Serves timing requests for its paths until told to stop: ("update", name) -> seconds,
    ("act", name, calls) -> median seconds of one OTF action at batch 1. A failure is sent
    back as ("error", traceback) for the parent to raise."""
    try:
        _serve(conn, names, retained, threads, quick)
    except BaseException:  # noqa: BLE001 - handed to the parent, which raises it
        conn.send(("error", traceback.format_exc()))


def _serve(conn, names: list[str], retained: bool, threads: int | None, quick: bool) -> None:
    import torch

    from .allocator import retain_freed_memory
    from .bench import _act_latency

    if threads:
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


def run_paired(paths: list[str], rounds: int = 5, threads: int | None = None, act_calls: int = 50,
               quick: bool = False, log: Callable[[str], None] = lambda _: None) -> dict:
    """Time `paths` (from PATHS[1:]) against the faithful path in turns; returns the JSON-able result."""
    unknown = sorted(set(paths) - set(PATHS[1:]))
    if unknown or not paths:
        raise ValueError(f"unknown or no paths to compare {unknown}; choose from {', '.join(PATHS[1:])}")
    if rounds < 1 or act_calls < 1 or (threads is not None and threads < 1):
        raise ValueError(f"rounds, act_calls and threads must be at least 1, got {rounds}, {act_calls}, {threads}")
    load_start = os.getloadavg()
    ctx = mp.get_context("spawn")  # fresh interpreters: separate allocators, no forked OpenMP state
    sides = []
    for names, retained in ((["faithful"], False), (list(paths), True)):
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_worker, args=(child, names, retained, threads, quick), daemon=True)
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
        updates = _turns(order, rounds, lambda n: ("update", n), log)
        log("acting at batch 1:")
        _turns(order, 1, lambda n: ("act", n, 5), lambda _: None)  # warm-up (compiled acting compiles here)
        acting = _turns(order, 3, lambda n: ("act", n, act_calls), log)
    finally:
        for conn, process, _ in sides:
            try:
                conn.send(None)
            except OSError:  # the worker is gone already
                pass
            process.join(timeout=60)

    f_updates, f_act = updates["faithful"], statistics.median(acting["faithful"])
    result: dict = {
        "device": "cpu", "cpu": platform.processor() or platform.machine(), "threads": threads, "rounds": rounds,
        "preset": "quick" if quick else "paper", "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "first_update_s": {k: round(v, 2) for k, v in first.items()},
        "faithful_s_per_update": round(statistics.median(f_updates), 4),
        "faithful_runs_s": [round(t, 6) for t in f_updates],
        "faithful_act_ms_b1": round(f_act * 1e3, 3),
    }
    for name in paths:
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
    return result


def format_paired(r: dict) -> str:
    """A readable table of `run_paired`'s result."""
    rounds = f"{r['rounds']} round" + ("s" if r["rounds"] != 1 else "")
    lines = [f"paired in time ({rounds}, {r['preset']} preset, threads {r['threads']}): "
             f"faithful {r['faithful_s_per_update']:.3f} s per update, "
             f"acting at batch 1 {r['faithful_act_ms_b1']:.2f} ms",
             f"{'path':<18} {'s/update':>9} {'vs faithful: median (min-max)':>31} {'act b1 ms':>10}"]
    for name in PATHS[1:]:
        if name in r:
            p, v = r[name], r[name]["vs_faithful"]
            lines.append(f"{name:<18} {p['s_per_update']:>9.3f} {v['median']:>16.2f}x ({v['min']:.2f}-{v['max']:.2f})"
                         f" {p['act_ms_b1']:>10.2f}")
    return "\n".join(lines)
