"""Learning-curve plots from `metrics.jsonl` (matplotlib, headless)."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(path: str | Path) -> list[dict]:
    """Records of a metrics.jsonl file; a half-written last line (killed run) is skipped."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_learning_curve(metrics_path: str | Path, out_path: str | Path, title: str = "") -> Path:
    """Eval success of the fine-tuned (OTF) policy vs env steps, with the base's line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in read_metrics(metrics_path) if r.get("eval/success") is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    if records:
        steps = [r["env_step"] for r in records]
        ok = [r["eval/success"] for r in records]
        err = [r.get("eval/stderr", 0.0) or 0.0 for r in records]
        ax.plot(steps, ok, marker="o", label="EXPO (base + edit + selector), band: ±1 s.e.")
        ax.fill_between(steps, [s - e for s, e in zip(ok, err)], [s + e for s, e in zip(ok, err)],
                        alpha=0.2)
        base = [r for r in records if r.get("eval/base_success") is not None]
        if base:
            ax.axhline(base[0]["eval/base_success"], color="gray", linestyle="--",
                       label="base policy alone (before fine-tuning)")
    return _save(fig, ax, "success rate", title, out_path, loc="lower right")


def _run_curve(run_dir: Path) -> tuple[list[int], list[float], float | None]:
    """(eval steps, OTF success, base success) of one run directory."""
    records = [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("eval/success") is not None]
    if not records:
        raise ValueError(f"{run_dir} has no evaluations in metrics.jsonl; is it a run directory?")
    base = next((r["eval/base_success"] for r in records if r.get("eval/base_success") is not None), None)
    return [r["env_step"] for r in records], [r["eval/success"] for r in records], base


def group_runs(run_dirs: list[str | Path], group_by: str = "parent") -> dict[str, list[Path]]:
    """Runs grouped into curves: by parent directory (runs/expo/seed0, runs/expo/seed1 ->
    "expo"), by the task in summary.json, or each run alone ("none")."""
    groups: dict[str, list[Path]] = {}
    for run_dir in map(Path, run_dirs):
        if group_by == "parent":
            key = run_dir.resolve().parent.name
        elif group_by == "task":
            summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
            key = " ".join(filter(None, (summary.get("task"), summary.get("method")))) or run_dir.name
        elif group_by == "none":
            key = run_dir.name
        else:
            raise ValueError(f"group_by must be 'parent', 'task' or 'none', got {group_by!r}")
        groups.setdefault(key, []).append(run_dir)
    return groups


def summarize_groups(groups: dict[str, list[Path]]) -> list[dict]:
    """Per group: seeds, base and final success as mean, min and max over the runs."""
    rows = []
    for name, dirs in groups.items():
        curves = [_run_curve(d) for d in dirs]
        finals = [ok[-1] for _, ok, _ in curves]
        bases = [b for _, _, b in curves if b is not None]
        rows.append({"group": name, "seeds": len(dirs), "final_step": min(s[-1] for s, _, _ in curves),
                     "final_mean": sum(finals) / len(finals), "final_min": min(finals), "final_max": max(finals),
                     "base_mean": sum(bases) / len(bases) if bases else None,
                     "base_min": min(bases, default=None), "base_max": max(bases, default=None)})
    return rows


def align_evaluations(curves: list[tuple[list[int], list[float]]]) -> tuple[list[int], list[list[float]]]:
    """The evaluation points that every run shares: (steps, success per run at them).

    Runs evaluate when their env-step count first reaches the schedule, which with action
    chunks or several envs is a few steps past it (2500 in one seed, 2503 in another).
    So the k-th evaluations of the runs are matched when they lie closer together than
    half the runs' shortest gap between evaluations, and plotted at the earliest of their
    steps; points that do not match that way (different schedules) are left out.
    """
    count = min(len(steps) for steps, _ in curves)
    gaps = [b - a for steps, _ in curves for a, b in zip(steps, steps[1:])]
    tolerance = min(gaps) / 2 if gaps else 0
    shared = [k for k in range(count)
              if max(s[k] for s, _ in curves) - min(s[k] for s, _ in curves) <= tolerance]
    return ([min(s[k] for s, _ in curves) for k in shared],
            [[ok[k] for k in shared] for _, ok in curves])


def plot_runs(groups: dict[str, list[Path]], out_path: str | Path, title: str = "") -> Path:
    """One curve per group: mean eval success over its runs at the evaluations all of them
    share (`align_evaluations`), a min-max band (the spread over seeds), and the group's mean base success."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, dirs) in enumerate(groups.items()):
        color = f"C{i}"
        curves = [_run_curve(d) for d in dirs]
        steps, table = align_evaluations([(s, ok) for s, ok, _ in curves])
        mean = [sum(col) / len(col) for col in zip(*table)]
        ax.plot(steps, mean, marker="o", color=color, label=f"{name} (EXPO, {len(dirs)} seeds)")
        if len(dirs) > 1:
            ax.fill_between(steps, [min(c) for c in zip(*table)], [max(c) for c in zip(*table)],
                            color=color, alpha=0.2)
        bases = [b for _, _, b in curves if b is not None]
        if bases:
            ax.axhline(sum(bases) / len(bases), color=color, linestyle="--", alpha=0.8,
                       label=f"{name} (base alone)")
    return _save(fig, ax, "success rate (band: min-max over seeds)", title, out_path, loc="best", fontsize=8)


def _save(fig, ax, ylabel: str, title: str, out_path: str | Path, **legend) -> Path:
    """Shared axes styling of the success plots, then write the PNG."""
    import matplotlib.pyplot as plt

    ax.set_xlabel("env steps")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(**legend)
    ax.set_title(title or "EXPO fine-tuning")
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
