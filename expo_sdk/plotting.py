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
    ax.set_xlabel("env steps")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or "EXPO fine-tuning")
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
