"""`expo bench`: speed of EXPO's learner and of the OTF policy, faithful vs optimized.

One process, one run, the same weights and the same minibatches for every path:

    faithful                     `expo_sdk.reference`: minibatch by minibatch, base samples
                                 through diffusers' DDPMScheduler.step loop, glibc's default
                                 allocator behaviour (the structure of the reference code)
    + fused DDPM sampler         same structure, `DDPMPolicy`'s fused sampler
    optimized, default allocator `Finetuner.update`: candidates for all G TD targets in one
                                 batched call, fused sampler
    --- from here on freed memory is retained (`expo_sdk.allocator`; one-way, process-wide) ---
    faithful + fused sampler     the reference structure again, to isolate the allocator
    optimized                    `Finetuner.update` as training runs it (the default path)
    cached                       frozen base, base samples cached at insertion
                                 (`cache_base_candidates`)
    cached + refresh             imitation-updated base (as in the paper), its cache re-drawn
                                 for `REFRESH_PER_STEP` entries per update (`cache_refresh_per_step`)
    optimized + bf16 sampling    the optimized path with `base_sampling_dtype="bfloat16"` (an
                                 approximation; only where bf16 has hardware: a CUDA GPU, a
                                 CPU with AMX / AVX512-BF16; always in the quick preset)
    optimized + CUDA graph       CUDA only: the optimized path captured once and replayed
    cached + CUDA graph          (`cuda_graphs`, exact); these replay from where the last
                                 replay left off instead of restoring the snapshot (a restore
                                 would replace tensors the graph captured; the work of a replay
                                 does not depend on the values)
    cached + compiled critic     the cached path (with CUDA graphs on CUDA) and `compile_critic`:
                                 the TD targets' scoring compiled by torch.compile (the same
                                 function up to float rounding); its compile time is reported.
                                 A path that fails (compilation, capture) is reported under
                                 `failed_paths` instead of stopping the bench.
    optimized + compiled sampling    the optimized path (fresh samples, imitation base) with
                                 `compile_base_sampling`: the DDPM sampler's denoising loop through
                                 torch.compile (exact up to float rounding); then also
                                 `compile_critic` (the fastest exact path on CPU). Not on CUDA,
                                 where CUDA graphs do this job. Acting at batch 1 is measured
                                 with the compiled sampler, and with the selection (edits,
                                 scores) compiled too (`compile_acting`, second tuner).

Every path restarts from the same snapshot of all weights, optimizer states and the
generator, and replays the same G minibatches. Paths are interleaved round by round so that
load from other processes hits them alike; medians are reported. The allocator switch above
splits the rounds into two groups timed minutes apart: on a machine whose speed drifts, the
faithful-vs-optimized ratios of `expo bench --paired` (`expo_sdk.bench_paired`: the two
sides in two processes, one update each in turn) are the ones to trust. Also measured: OTF action
latency at batch 1 and throughput at batch 256, peak memory. Weights and data are random:
the cost does not depend on their values.
"""

from __future__ import annotations

import copy
import os
import platform
import resource
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from .allocator import retain_freed_memory
from .config import FinetuneConfig
from .finetuner import Finetuner
from .reference import reference_update


@dataclass(frozen=True)
class BenchSettings:
    utd_ratio: int
    batch_size: int
    num_samples: int
    diffusion_steps: int
    ensemble_size: int
    critic_hidden: int
    edit_hidden: int
    base_hidden: int
    base_blocks: int
    obs_dim: int
    action_dim: int
    dataset_size: int


# The paper's hyperparameters (Table 1) at robomimic Can-like sizes (obs 23, action 7).
PAPER = BenchSettings(utd_ratio=20, batch_size=256, num_samples=8, diffusion_steps=10, ensemble_size=10,
                      critic_hidden=256, edit_hidden=256, base_hidden=256, base_blocks=3, obs_dim=23,
                      action_dim=7, dataset_size=5000)
# A smoke-test size: every path runs, in seconds.
QUICK = BenchSettings(utd_ratio=2, batch_size=16, num_samples=4, diffusion_steps=3, ensemble_size=2,
                      critic_hidden=32, edit_hidden=32, base_hidden=32, base_blocks=1, obs_dim=5,
                      action_dim=2, dataset_size=64)


# Cached entries re-drawn per update in the "cached + refresh" path: one minibatch's worth,
# so the cache of a replay of 1M transitions is at most ~4k env steps old.
REFRESH_PER_STEP = 256


def make_tuner(s: BenchSettings, device: str, cache: bool = False, seed: int = 0, refresh: int = 0,
               cuda_graphs: bool = False, compile_critic: bool = False,
               compile_base_sampling: bool = False, compile_acting: bool = False) -> Finetuner:
    """A Finetuner on random data with a random DDPM base of the given size (`cache`: frozen
    base with cached samples; `refresh` > 0: imitation-updated base, cache refreshed)."""
    from .adapters import DDPMPolicy

    rng = np.random.default_rng(seed)
    n = s.dataset_size
    data = {"observations": rng.normal(size=(n, s.obs_dim)).astype(np.float32),
            "actions": rng.uniform(-1, 1, (n, s.action_dim)).astype(np.float32),
            "rewards": rng.uniform(0, 1, n).astype(np.float32),
            "next_observations": rng.normal(size=(n, s.obs_dim)).astype(np.float32),
            "terminals": rng.random(n) < 0.05}
    torch.manual_seed(seed)
    base = DDPMPolicy.for_dataset(data["observations"], [-1.0] * s.action_dim, [1.0] * s.action_dim,
                                  num_diffusion_steps=s.diffusion_steps, hidden_dim=s.base_hidden,
                                  num_blocks=s.base_blocks)
    config = FinetuneConfig(
        device=device, seed=seed, utd_ratio=s.utd_ratio, batch_size=s.batch_size, num_samples=s.num_samples,
        critic={"ensemble_size": s.ensemble_size, "hidden_dim": s.critic_hidden},
        edit_head={"hidden_dim": s.edit_hidden},
        # The paper fine-tunes the base by imitation; the cache needs a frozen base.
        base_mode="frozen" if cache and not refresh else "imitation", cache_base_candidates=cache,
        cache_refresh_per_step=refresh, cuda_graphs=cuda_graphs, compile_critic=compile_critic,
        compile_base_sampling=compile_base_sampling, compile_acting=compile_acting,
        retain_freed_memory=False,  # the bench switches it on itself, after the default-allocator rounds
    )
    tuner = Finetuner(base, config)
    tuner._prepare_buffers(n, data)
    return tuner


class _Replay:
    """Stands in for the tuner's sampler: hands out the same minibatches on every run."""

    def __init__(self, batches) -> None:
        self.batches, self.next = batches, 0

    def sample(self, batch_size: int, generator=None):
        batch = self.batches[self.next % len(self.batches)]
        self.next += 1
        return batch


def _replay_fixed_batches(tuner: Finetuner, s: BenchSettings) -> None:
    """Swap the tuner's sampler for a `_Replay` of G minibatches drawn now (same every run)."""
    real = tuner.sampler
    tuner.sampler = _Replay([real.sample(s.batch_size, tuner.generator) for _ in range(s.utd_ratio)])


class _Snapshot:
    """All learner state of a tuner (weights, optimizers, generator), restorable."""

    def __init__(self, tuner: Finetuner) -> None:
        self.tuner = tuner
        self.modules = {k: copy.deepcopy(m.state_dict()) for k, m in tuner._modules().items()}
        self.optimizers = {k: copy.deepcopy(o.state_dict()) for k, o in tuner._optimizers().items()}
        self.generator = tuner.generator.get_state()

    def restore(self) -> None:
        for k, m in self.tuner._modules().items():
            m.load_state_dict(self.modules[k])
        for k, o in self.tuner._optimizers().items():
            o.load_state_dict(copy.deepcopy(self.optimizers[k]))
        self.tuner.generator.set_state(self.generator)
        self.tuner.sampler.next = 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


@dataclass
class _Path:
    name: str
    tuner: Finetuner
    update: Callable[[Finetuner], object]
    fused_sampling: bool = True
    sampling_dtype: torch.dtype | None = None  # bf16: base sampling under autocast
    times: list | None = None
    capture_s: float = 0.0  # CUDA graphs: the capturing call (capture, instantiation, one replay)
    first_s: float = 0.0  # the first call (lazy initialisation; compilation with compile_critic)
    restore: bool = True  # False for CUDA graphs (see the module docstring)

    def run_once(self, snapshot: _Snapshot) -> float:
        if self.restore:
            snapshot.restore()
        self.tuner.sampling_base.fused_sampling = self.fused_sampling
        self.tuner.sampling_dtype = self.sampling_dtype
        try:
            return _timed(lambda: self.update(self.tuner), self.tuner.device)
        finally:
            self.tuner.sampling_base.fused_sampling, self.tuner.sampling_dtype = True, None


def _rounds(paths: list[_Path], snapshots: dict[int, _Snapshot], repeats: int, log,
            failed: dict[str, str] | None = None) -> list[_Path]:
    """Warm up, then time `repeats` interleaved rounds; returns the paths that ran. A path
    that raises is dropped and its error kept in `failed` (when given; else it raises)."""
    ran = []
    for path in paths:  # warm-up: first-call costs (allocator, lazy init, compilation) are not steady state
        try:
            path.first_s = path.run_once(snapshots[id(path.tuner)])
            log(f"  {path.name}: first update {path.first_s:.2f} s")
            graphed = path.tuner._graphed_update
            while graphed is not None and not graphed.captured():  # eager warm-ups, then the capturing call
                path.capture_s = path.run_once(snapshots[id(path.tuner)])
            if graphed is not None:
                log(f"  {path.name}: capture and first replay {path.capture_s:.2f} s")
        except Exception as error:  # noqa: BLE001 - reported, not swallowed
            if failed is None:
                raise
            failed[path.name] = f"{type(error).__name__}: {error}"[:2000]
            log(f"  {path.name}: FAILED ({failed[path.name][:200]})")
            continue
        ran.append(path)
    for r in range(repeats):
        for path in ran:
            path.times = (path.times or []) + [path.run_once(snapshots[id(path.tuner)])]
            log(f"  round {r + 1}/{repeats} {path.name}: {path.times[-1]:.2f} s")
    return ran


def _act_latency_compiled(tuner: Finetuner, calls: int, log, failed: dict[str, str], label: str) -> float | None:
    """`_act_latency` at batch 1 of a tuner with compiled acting parts (its first call compiles)."""
    try:
        compile_s = _timed(lambda: tuner.select_action(torch.zeros(1, tuner.spec.flat_obs_dim, device=tuner.device)),
                           tuner.device)
        log(f"  acting at batch 1, {label}: first call {compile_s:.1f} s")
        return _act_latency(tuner, 1, calls)
    except Exception as error:  # noqa: BLE001 - reported, not swallowed
        failed[f"acting with {label}"] = f"{type(error).__name__}: {error}"[:2000]
        return None


def _compiled_sampling_fields(paths: list[_Path], faithful_s: float, optimized_s: float,
                              act_b1_reference: float, act_b1: float | None, act_b1_all: float | None) -> dict:
    """The JSON fields of the compiled-sampling paths (those that ran) and compiled acting
    (`act_b1`: base sampling compiled; `act_b1_all`: also the selection, `compile_acting`)."""
    out: dict = {"act_latency_ms_b1_compiled_sampling": round(act_b1 * 1e3, 3) if act_b1 else None,
                 "act_latency_ms_b1_compiled_acting": round(act_b1_all * 1e3, 3) if act_b1_all else None}
    for key, path in zip(["compiled_sampling", "compiled_sampling_and_critic"], paths):
        s = statistics.median(path.times)
        out |= {f"{key}_s_per_update": round(s, 4), f"{key}_vs_faithful": round(faithful_s / s, 2),
                f"{key}_vs_optimized": round(optimized_s / s, 2), f"{key}_first_update_s": round(path.first_s, 2)}
        if act_b1:
            out[f"{key}_vs_faithful_env_steps"] = round((faithful_s + act_b1_reference) / (s + act_b1), 2)
    return out


def _compiled_critic_fields(path: _Path, ran: bool, faithful_env_step_s: float, act_s: float) -> dict:
    """The JSON fields of the compiled-critic path (None where it failed); its env steps pair
    each update with one action of the same learner's acting (graphed where it is)."""
    s = statistics.median(path.times) if ran else None
    return {"compiled_critic_path": path.name,
            "compiled_critic_s_per_update": round(s, 4) if ran else None,
            "compiled_critic_first_update_s": round(path.first_s, 2) if ran else None,
            "compiled_critic_env_steps_per_s": round(1 / (s + act_s), 4) if ran else None,
            "compiled_critic_vs_faithful_env_steps": round(faithful_env_step_s / (s + act_s), 1) if ran else None}


def _act_latency(tuner: Finetuner, batch: int, calls: int) -> float:
    """Median seconds per `select_action` call (OTF: N base samples, edits, target-critic argmax)."""
    obs = torch.randn(batch, tuner.spec.flat_obs_dim, generator=torch.Generator().manual_seed(0)).to(tuner.device)
    for _ in range(3):
        tuner.select_action(obs)
    return statistics.median(_timed(lambda: tuner.select_action(obs), tuner.device) for _ in range(calls))


def _matmul_gflops(device: torch.device, repeats: int = 20) -> float:
    """Best fp32 matmul rate seen on a denoiser-shaped product ([2048, 256] x [256, 1024])."""
    a, b = torch.randn(2048, 256, device=device), torch.randn(256, 1024, device=device)
    best = min(_timed(lambda: a @ b, device) for _ in range(repeats))
    return 2 * 2048 * 256 * 1024 / best / 1e9


def _denoising_gflop(tuner: Finetuner, s: BenchSettings) -> float:
    """Matmul GFLOP of the base sampling in one update with fresh samples (G * B * N rows, T steps)."""
    net = tuner.sampling_base.denoiser.mlp
    per_row = 2 * sum(m.weight.numel() for m in net.modules() if isinstance(m, torch.nn.Linear))
    return per_row * s.utd_ratio * s.batch_size * s.num_samples * s.diffusion_steps / 1e9


def _bf16_has_hardware(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    from .finetuner import cpu_has_bf16_units

    return cpu_has_bf16_units()


def _peak_memory_mb(device: torch.device) -> dict[str, float]:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    out = {"peak_rss_mb": round(rss, 1)}
    if device.type == "cuda":
        out["peak_cuda_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def run_bench(device: str = "cpu", quick: bool = False, repeats: int | None = None,
              threads: int | None = None, log: Callable[[str], None] = lambda _: None,
              matmul_precision: str = "highest") -> dict:
    """Measure everything; returns the JSON-able result (see module docstring).

    `matmul_precision` is torch's float32 matmul precision for every path alike ('high':
    TF32 on NVIDIA GPUs, what JAX uses there by default; 'highest': true float32)."""
    s = QUICK if quick else PAPER
    repeats = repeats or (1 if quick else 2)
    if threads:
        torch.set_num_threads(threads)
    torch.set_float32_matmul_precision(matmul_precision)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    load_start = os.getloadavg()
    peak_gflops = _matmul_gflops(dev)
    tuner, cached = make_tuner(s, str(dev)), make_tuner(s, str(dev), cache=True)
    refreshed = make_tuner(s, str(dev), cache=True, refresh=min(REFRESH_PER_STEP, s.dataset_size))
    graphs = dev.type == "cuda"
    graphed = [make_tuner(s, str(dev), cuda_graphs=True), make_tuner(s, str(dev), cache=True, cuda_graphs=True)] \
        if graphs else []
    compiled = make_tuner(s, str(dev), cache=True, cuda_graphs=graphs, compile_critic=True)
    compiled_sampling = [] if graphs else [make_tuner(s, str(dev), compile_base_sampling=True),
                                           make_tuner(s, str(dev), compile_base_sampling=True, compile_critic=True,
                                                      compile_acting=True)]
    for t in (tuner, cached, refreshed, *graphed, compiled, *compiled_sampling):
        _replay_fixed_batches(t, s)
    snapshots = {id(t): _Snapshot(t) for t in (tuner, cached, refreshed, *graphed, compiled, *compiled_sampling)}

    log("default allocator:")
    faithful = _Path("faithful", tuner, reference_update, fused_sampling=False)
    faithful_fused = _Path("faithful + fused DDPM sampler", tuner, reference_update)
    optimized_default = _Path("optimized, default allocator", tuner, Finetuner.update)
    _rounds([faithful, faithful_fused, optimized_default], snapshots, repeats, log)

    retained = retain_freed_memory() if dev.type == "cpu" else False
    log(f"freed memory retained: {retained}")
    faithful_fused_retained = _Path("faithful + fused DDPM sampler + retained memory", tuner, reference_update)
    optimized = _Path("optimized", tuner, Finetuner.update)
    cached_path = _Path("optimized + cached base samples (frozen base)", cached, Finetuner.update)
    refreshed_path = _Path(f"cached + {refreshed.config.cache_refresh_per_step} refreshed per update "
                           "(imitation base)", refreshed, Finetuner.update)
    bf16 = _bf16_has_hardware(dev) or quick
    bf16_path = _Path("optimized + bf16 base sampling (approximate)", tuner, Finetuner.update,
                      sampling_dtype=torch.bfloat16)
    graph_paths = [_Path("optimized + CUDA graph", graphed[0], Finetuner.update, restore=False),
                   _Path("cached + CUDA graph", graphed[1], Finetuner.update, restore=False)] if graphs else []
    _rounds([faithful_fused_retained, optimized, cached_path, refreshed_path] + ([bf16_path] if bf16 else [])
            + graph_paths, snapshots, repeats, log)
    failed: dict[str, str] = {}
    compiled_path = _Path("cached + CUDA graph + compiled critic" if graphs else "cached + compiled critic scoring",
                          compiled, Finetuner.update, restore=not graphs)
    compiled_paths = _rounds([compiled_path], snapshots, repeats, log, failed)
    sampling_paths = _rounds([_Path(name, t, Finetuner.update) for name, t in zip(
        ["optimized + compiled base sampling", "optimized + compiled base sampling + compiled critic"],
        compiled_sampling)], snapshots, repeats, log, failed)

    log("acting:")
    act_b1 = _act_latency(tuner, 1, 20 if quick else 100)
    act_b256 = _act_latency(tuner, 256, 3 if quick else 10)
    tuner.sampling_base.fused_sampling = False
    act_b1_reference = _act_latency(tuner, 1, 20 if quick else 100)
    tuner.sampling_base.fused_sampling = True
    if graphs:  # the same OTF call replayed from a CUDA graph
        act_b1_graph, act_b256_graph = _act_latency(graphed[0], 1, 100), _act_latency(graphed[0], 256, 10)
    act_b1_compiled, act_b1_all_compiled = (
        _act_latency_compiled(t, 20 if quick else 100, log, failed, label)
        for t, label in zip(compiled_sampling, ["compiled base sampling", "compiled sampling and selection"])) \
        if compiled_sampling else (None, None)

    def median(path: _Path) -> float:
        return statistics.median(path.times)

    ladder = [faithful, faithful_fused, optimized_default, faithful_fused_retained, optimized, cached_path,
              refreshed_path]
    ladder += ([bf16_path] if bf16 else []) + graph_paths + compiled_paths + sampling_paths
    f, o, c = median(faithful), median(optimized), median(cached_path)
    refreshed_s, bf16_s = median(refreshed_path), (median(bf16_path) if bf16 else None)
    return {
        "device": str(dev),
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "float32_matmul_precision": matmul_precision,
        "settings": {**asdict(s), "preset": "quick" if quick else "paper"},
        "repeats": repeats,
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "freed_memory_retained": retained,
        "ladder": [{"path": p.name, "s_per_update": round(median(p), 4),
                    "runs_s": [round(t, 4) for t in p.times], "vs_faithful": round(f / median(p), 2)}
                   for p in ladder],
        "faithful_s_per_update": round(f, 4),
        "optimized_s_per_update": round(o, 4),
        "cached_s_per_update": round(c, 4),
        "cached_refreshed_s_per_update": round(refreshed_s, 4),
        "cached_refreshed_vs_faithful": round(f / refreshed_s, 2),
        "bf16_sampling_s_per_update": round(bf16_s, 4) if bf16 else None,
        "bf16_sampling_vs_optimized": round(o / bf16_s, 2) if bf16 else None,
        "faithful_updates_per_s": round(1 / f, 4),
        "optimized_updates_per_s": round(1 / o, 4),
        "cached_updates_per_s": round(1 / c, 4),
        "optimized_vs_faithful": round(f / o, 2),
        # One update per env step; acting adds one OTF call (the simulator's own time excluded).
        "faithful_env_steps_per_s": round(1 / (f + act_b1_reference), 4),
        "optimized_env_steps_per_s": round(1 / (o + act_b1), 4),
        "cached_env_steps_per_s": round(1 / (c + act_b1), 4),
        "cached_vs_faithful_env_steps": round((f + act_b1_reference) / (c + act_b1), 1),
        **({"cuda_graph_s_per_update": round(median(graph_paths[0]), 4),
            "cuda_graph_vs_faithful": round(f / median(graph_paths[0]), 2),
            "cuda_graph_vs_optimized": round(o / median(graph_paths[0]), 2),
            "cached_cuda_graph_s_per_update": round(median(graph_paths[1]), 4),
            # graphed learner and graphed acting (`cuda_graphs` does both)
            "cached_cuda_graph_env_steps_per_s": round(1 / (median(graph_paths[1]) + act_b1_graph), 4),
            "cached_cuda_graph_vs_faithful_env_steps": round(
                (f + act_b1_reference) / (median(graph_paths[1]) + act_b1_graph), 1),
            "cuda_graph_capture_s": max(round(p.capture_s, 3) for p in graph_paths),
            "act_latency_ms_b1_cuda_graph": round(act_b1_graph * 1e3, 3),
            "act_throughput_b256_cuda_graph": round(256 / act_b256_graph, 1)} if graphs else {}),
        # Context for "where the time goes": the denoising matmuls alone at the best matmul
        # rate this process saw is a floor for any exact fp32 path with fresh base samples.
        "matmul_peak_gflops": round(peak_gflops, 1),
        "denoising_gflop_per_update": round(_denoising_gflop(tuner, s), 1),
        "denoising_floor_s_per_update": round(_denoising_gflop(tuner, s) / peak_gflops, 3),
        **_compiled_critic_fields(compiled_path, bool(compiled_paths), f + act_b1_reference,
                                  act_b1_graph if graphs else act_b1),
        **_compiled_sampling_fields(sampling_paths, f, o, act_b1_reference, act_b1_compiled, act_b1_all_compiled),
        "failed_paths": failed,
        "act_latency_ms_b1": round(act_b1 * 1e3, 3),
        "act_latency_ms_b1_reference_sampler": round(act_b1_reference * 1e3, 3),
        "act_throughput_b256": round(256 / act_b256, 1),
        **_peak_memory_mb(dev),
    }


def format_result(r: dict) -> str:
    """A human-readable table of `run_bench`'s result."""
    s = r["settings"]
    lines = [
        f"expo bench on {r['device']}{' (' + r['gpu'] + ')' if r['gpu'] else ''} ({r['cpu']}, "
        f"{r['cpu_capability']}, {r['threads']} threads, torch {r['torch']}, float32 matmul precision "
        f"{r['float32_matmul_precision']})",
        f"settings: UTD {s['utd_ratio']}, batch {s['batch_size']}, N {s['num_samples']}, T {s['diffusion_steps']}, "
        f"ensemble {s['ensemble_size']}, base MLP-ResNet {s['base_hidden']}x{s['base_blocks']}, "
        f"obs {s['obs_dim']}, action {s['action_dim']} ({s['preset']})",
        f"load average at start {r['load_average_start']}, at end {r['load_average_end']}",
        "",
        f"{'path':<52} {'s/update':>9} {'updates/s':>10} {'vs faithful':>12}",
    ]
    for p in r["ladder"]:
        lines.append(f"{p['path']:<52} {p['s_per_update']:>9.3f} {1 / p['s_per_update']:>10.3f} "
                     f"{p['vs_faithful']:>11.2f}x")
    lines += [
        "",
        f"optimized vs faithful: {r['optimized_vs_faithful']:.2f}x; env steps/s of training: faithful "
        f"{r['faithful_env_steps_per_s']:.3f}, optimized {r['optimized_env_steps_per_s']:.3f}, cached "
        f"{r['cached_env_steps_per_s']:.3f} ({r['cached_vs_faithful_env_steps']:.1f}x faithful)",
        f"OTF action latency, batch 1: {r['act_latency_ms_b1']:.2f} ms (reference sampler "
        f"{r['act_latency_ms_b1_reference_sampler']:.2f} ms); throughput at batch 256: "
        f"{r['act_throughput_b256']:.0f} states/s",
        (f"bf16 base sampling (approximate): {r['bf16_sampling_vs_optimized']:.2f}x the optimized path"
         if r["bf16_sampling_s_per_update"] else "bf16 base sampling: not measured (no bf16 hardware)"),
        *([f"CUDA graphs: update {r['cuda_graph_vs_optimized']:.2f}x the optimized path (capture took "
           f"{r['cuda_graph_capture_s']:.2f} s); OTF action latency at batch 1 "
           f"{r['act_latency_ms_b1_cuda_graph']:.2f} ms, throughput at batch 256 "
           f"{r['act_throughput_b256_cuda_graph']:.0f} states/s; cached + graphs: "
           f"{r['cached_cuda_graph_env_steps_per_s']:.1f} env steps/s of training "
           f"({r['cached_cuda_graph_vs_faithful_env_steps']:.1f}x faithful)"]
          if "cuda_graph_s_per_update" in r else []),
        *([f"compiled critic scoring ({r['compiled_critic_path']}): {r['compiled_critic_s_per_update']:.3f} s "
           f"per update (first update, compiling: {r['compiled_critic_first_update_s']:.1f} s), "
           f"{r['compiled_critic_env_steps_per_s']:.1f} env steps/s of training "
           f"({r['compiled_critic_vs_faithful_env_steps']:.1f}x faithful)"]
          if r["compiled_critic_s_per_update"] else []),
        *([f"compiled base sampling (exact): {r['compiled_sampling_s_per_update']:.3f} s per update "
           f"({r['compiled_sampling_vs_faithful']:.2f}x faithful, {r['compiled_sampling_vs_optimized']:.2f}x "
           f"optimized; first update, compiling: {r['compiled_sampling_first_update_s']:.1f} s)"]
          if r.get("compiled_sampling_s_per_update") else []),
        *([f"compiled base sampling + compiled critic (exact): "
           f"{r['compiled_sampling_and_critic_s_per_update']:.3f} s per update "
           f"({r['compiled_sampling_and_critic_vs_faithful']:.2f}x faithful)"]
          if r.get("compiled_sampling_and_critic_s_per_update") else []),
        *([f"OTF action latency at batch 1 with compiled base sampling: "
           f"{r['act_latency_ms_b1_compiled_sampling']:.2f} ms"]
          if r.get("act_latency_ms_b1_compiled_sampling") else []),
        *([f"... and compiled selection (compile_acting): {r['act_latency_ms_b1_compiled_acting']:.2f} ms"]
          if r.get("act_latency_ms_b1_compiled_acting") else []),
        *[f"FAILED {name}: {error[:300]}" for name, error in r["failed_paths"].items()],
        f"peak RSS {r['peak_rss_mb']:.0f} MB; best fp32 matmul {r['matmul_peak_gflops']:.0f} GFLOP/s, so the "
        f"{r['denoising_gflop_per_update']:.0f} GFLOP of denoising per update take at least "
        f"{r['denoising_floor_s_per_update']:.2f} s",
    ]
    return "\n".join(lines)
