"""`expo plot`: curves of several runs, grouped, with mean and spread over seeds."""

import json

from toy_policy import BiasedMixturePolicy

from expo_sdk import FinetuneConfig, Finetuner
from expo_sdk.cli import main
from expo_sdk.envs.toy import ReachGoalEnv
from expo_sdk.plotting import align_evaluations, group_runs, read_metrics, summarize_groups

TINY = dict(batch_size=8, utd_ratio=1, base_mode="frozen", num_samples=2, eval_episodes=5, eval_every=20,
            log_every=20, critic={"ensemble_size": 2, "hidden_dim": 8}, edit_head={"hidden_dim": 8, "num_layers": 1})


def _runs(tmp_path):
    dirs = []
    for group, beta in (("small-beta", 0.05), ("large-beta", 0.5)):
        for seed in (0, 1):
            run_dir = tmp_path / group / f"seed{seed}"
            Finetuner(BiasedMixturePolicy(), FinetuneConfig(**TINY, seed=seed, beta=beta)).run(
                ReachGoalEnv, total_steps=60, run_dir=run_dir, task="reach", progress=False)
            dirs.append(run_dir)
    return dirs


def test_plot_groups_runs_and_reports_mean_and_spread(tmp_path, capsys):
    dirs = _runs(tmp_path)
    assert main(["plot", *map(str, dirs), "--out", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    out = capsys.readouterr().out
    rows = {r["group"]: r for r in summarize_groups(group_runs(dirs))}
    assert set(rows) == {"small-beta", "large-beta"} and all(r["seeds"] == 2 for r in rows.values())
    for group, row in rows.items():
        finals = [json.loads((tmp_path / group / s / "summary.json").read_text())["final_success"]
                  for s in ("seed0", "seed1")]
        assert row["final_mean"] == sum(finals) / 2 and row["final_min"] == min(finals)
        assert f"| {group} | 2 | 60 |" in out


def test_plot_of_a_directory_without_evaluations_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text("")
    assert main(["plot", str(tmp_path / "empty")]) == 2
    assert "has no evaluations" in capsys.readouterr().err
    assert read_metrics(tmp_path / "empty" / "metrics.jsonl") == []


def test_evaluations_a_few_steps_apart_are_aligned_across_seeds():
    # chunked runs evaluate at the first decision past the schedule: 2500 vs 2503
    steps, table = align_evaluations([([0, 2501, 5002, 7501], [0.4, 0.36, 0.52, 0.68]),
                                      ([0, 2502, 5000, 7503], [0.44, 0.46, 0.58, 0.64])])
    assert steps == [0, 2501, 5000, 7501]
    assert table == [[0.4, 0.36, 0.52, 0.68], [0.44, 0.46, 0.58, 0.64]]
    # a run on another schedule shares only the points that match; a shorter run, its length
    steps, table = align_evaluations([([0, 1000, 2000], [0.1, 0.2, 0.3]), ([0, 2000, 4000], [0.1, 0.5, 0.6])])
    assert steps == [0] and table == [[0.1], [0.1]]
    steps, _ = align_evaluations([([0, 1000, 2000], [0.1, 0.2, 0.3]), ([0, 1001], [0.1, 0.2])])
    assert steps == [0, 1000]
