"""The `expo` command line.

    expo demo [--out DIR] [--set key=value ...]       the embedded default, no downloads
    expo finetune RECIPE.yaml [--out DIR] [--set key=value ...]
    expo finetune --resume RUN_DIR [--set total_steps=N]   continue a run from its last checkpoint
    expo eval RUN_DIR [--episodes N] [--seed S]       base vs fine-tuned, same episodes, 95% CIs
    expo push RUN_DIR REPO_ID [--private]             upload the edit head + critic + model card
    expo plot RUN_DIR... [--out PNG] [--group-by parent|task|none]   curves, mean and spread over seeds
    expo data generate TASK --episodes N [--quality proficient|okay|worse|mixed] [--seed S]
                            [--only-successes] [--out FILE.npz|FILE.hdf5]   scripted-expert demos
    expo bench [--json] [--device D] [--quick]        learner/acting speed, faithful vs optimized
    expo bench --paired [--paths P] [--repeats N]     the same ratios, timed in turns (CPU)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

DEMO_RECIPE = "demo_pointmaze"


def _default_out(name: str) -> Path:
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _run(recipe_path: Path, overrides: list[str], out: Path | None, resume: bool = False) -> int:
    from .recipe import Recipe, describe, run_recipe

    try:
        recipe = Recipe.load(recipe_path, overrides)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = out or _default_out(recipe_path.stem)
    # data-parallel (torchrun / accelerate launch): the main process reports, and writes
    say = print if int(os.environ.get("RANK", "0")) == 0 else (lambda *_: None)
    say(f"recipe: {recipe_path}\nrun directory: {out}")
    try:
        result = run_recipe(recipe, out, resume=resume)
    except ImportError as exc:  # an optional extra the recipe needs (Ray for `collectors`)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    say(describe(result))
    say(f"summary: {out / 'summary.json'}\nlearning curve: {out / 'learning_curve.png'}")
    say(json.dumps(result.summary()))
    return 0


def _eval(run_dir: Path, episodes: int, seed: int) -> int:
    """Base alone vs base + edit head + selector, on the same seeded episodes."""
    import torch

    from .evaluation import evaluate
    from .finetuned import FinetunedPolicy
    from .recipe import Recipe, task_factory

    if not (run_dir / "recipe.yaml").is_file():
        print(f"error: {run_dir} has no recipe.yaml; is it a run directory?", file=sys.stderr)
        return 2
    recipe = Recipe.load(run_dir / "recipe.yaml")
    try:
        policy = FinetunedPolicy.from_pretrained(run_dir)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    env_fn = task_factory(recipe.task)
    rows = []
    for name, act in (("base policy alone", policy.act_base), ("EXPO fine-tuned", policy.act)):
        generator = torch.Generator().manual_seed(seed)  # same sampling noise for both rows
        result = evaluate(lambda obs, act=act, g=generator: act(obs, g), env_fn, episodes, seed)
        low, high = result.confidence_interval()
        rows.append((name, result.success_rate, low, high))
    print(f"{recipe.task.name}: {episodes} episodes, seeds {seed}..{seed + episodes - 1}")
    for name, rate, low, high in rows:
        print(f"  {name:<18} {rate:.2f}   (95% CI {low:.2f}-{high:.2f})")
    return 0


def _plot(run_dirs: list[Path], out: Path, group_by: str, title: str) -> int:
    from .plotting import group_runs, plot_runs, summarize_groups

    try:
        groups = group_runs(run_dirs, group_by)
        rows = summarize_groups(groups)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    plot_runs(groups, out, title)

    def spread(row, key):
        if row[f"{key}_mean"] is None:
            return "-"
        return f"{row[f'{key}_mean']:.2f} ({row[f'{key}_min']:.2f}-{row[f'{key}_max']:.2f})"

    print("| group | seeds | env steps | base success mean (min-max) | EXPO success mean (min-max) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['group']} | {row['seeds']} | {row['final_step']} | {spread(row, 'base')} | "
              f"{spread(row, 'final')} |")
    print(f"curves: {out}")
    return 0


def _generate(args) -> int:
    from .datasets import write_robomimic_hdf5
    from .demonstrations import generate_demos
    from .recipe import cache_dir
    from .replay import OfflineDataset

    name = (f"{args.task}-{args.quality}-{args.episodes}ep-seed{args.seed}"
            f"{'-successes' if args.only_successes else ''}{f'-T{args.max_episode_steps}' if args.max_episode_steps else ''}")
    out = args.out or cache_dir() / "demos" / f"{name}.npz"
    if out.suffix not in (".npz", ".hdf5", ".h5"):
        print(f"error: --out must end in .npz or .hdf5, got {out}", file=sys.stderr)
        return 2
    if args.out is None and out.is_file():
        print(f"cached: {out} ({len(OfflineDataset.load_npz(out))} transitions)")
        return 0
    try:
        demos, stats = generate_demos(args.task, args.episodes, args.quality, args.seed,
                                      args.only_successes, args.max_episode_steps)
        if out.suffix == ".npz":
            OfflineDataset(demos).save_npz(out)
        else:
            write_robomimic_hdf5(demos, out, env_name=args.task)
    except ValueError as exc:  # an unknown task or quality, or no episode kept
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.task}: {stats.episodes} episodes ({args.quality}), expert success {stats.success_rate:.2f}, "
          f"kept {stats.kept_episodes} episodes / {stats.transitions} transitions -> {out}")
    return 0


def _bench(args) -> int:
    from .bench import format_result, run_bench

    def log(msg: str) -> None:  # progress on stderr: stdout stays one JSON object with --json
        print(msg, file=sys.stderr, flush=True)

    if args.paired:
        from .bench_paired import PATHS, format_paired, run_paired

        if args.device not in ("auto", "cpu"):
            print(f"error: --paired times CPU paths only (their allocators differ), not --device {args.device}",
                  file=sys.stderr)
            return 2
        try:
            rounds = args.repeats or (1 if args.quick else 5)
            paths = PATHS[1:] if args.paths is None else [p for p in args.paths.split(",") if p]
            result = run_paired(list(paths), rounds=rounds, threads=args.threads,
                                act_calls=3 if args.quick else 50, quick=args.quick, log=log)
        except ValueError as error:
            print(f"error: --paths/--repeats/--threads: {error}", file=sys.stderr)
            return 2
        print(json.dumps(result) if args.json else format_paired(result))
        return 0
    result = run_bench(device=args.device, quick=args.quick, repeats=args.repeats, threads=args.threads, log=log,
                       matmul_precision=args.matmul_precision)
    print(json.dumps(result) if args.json else format_result(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="expo", description="Fine-tune expressive policies with EXPO.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the embedded PointMaze demo (no downloads, CPU)")
    finetune = sub.add_parser("finetune", help="run a recipe YAML")
    finetune.add_argument("recipe", type=Path, nargs="?", help="recipe YAML (omit with --resume)")
    finetune.add_argument("--resume", type=Path, metavar="RUN_DIR",
                          help="continue the run in RUN_DIR from its last checkpoint (uses its recipe.yaml; "
                          "--set total_steps=N trains it on past its end)")
    for p in (demo, finetune):
        p.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<recipe>-<time>)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a recipe value, e.g. --set finetune.utd_ratio=4")

    evaluate = sub.add_parser("eval", help="evaluate a run's fine-tuned policy against its base")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--episodes", type=int, default=100)
    evaluate.add_argument("--seed", type=int, default=0)
    push = sub.add_parser("push", help="push a run's policy to the Hugging Face Hub")
    push.add_argument("run_dir", type=Path)
    push.add_argument("repo_id")
    push.add_argument("--private", action="store_true")

    plot = sub.add_parser("plot", help="overlay learning curves of runs (mean and min-max over seeds)")
    plot.add_argument("run_dirs", type=Path, nargs="+")
    plot.add_argument("--out", type=Path, default=Path("curves.png"))
    plot.add_argument("--group-by", choices=["parent", "task", "none"], default="parent",
                      help="runs sharing a parent directory (default), a task, or none form one curve")
    plot.add_argument("--title", default="")

    data = sub.add_parser("data", help="demonstration datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    gen = data_sub.add_parser("generate", help="roll out a task's scripted expert into a dataset")
    gen.add_argument("task")
    gen.add_argument("--episodes", type=int, required=True)
    gen.add_argument("--quality", default="proficient",
                     help="proficient, okay, worse, or mixed (a third each, like robomimic's multi-human sets)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--only-successes", action="store_true")
    gen.add_argument("--max-episode-steps", type=int, default=None)
    gen.add_argument("--out", type=Path, default=None,
                     help="FILE.npz or FILE.hdf5 (robomimic layout); default: the cache dir, reused if present")


    bench = sub.add_parser("bench", help="measure update and acting speed: faithful vs optimized paths")
    bench.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    bench.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    bench.add_argument("--quick", action="store_true", help="tiny networks and batches: a smoke test")
    bench.add_argument("--repeats", type=int, default=None, help="timed rounds per path (default 2, quick 1)")
    bench.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    bench.add_argument("--matmul-precision", choices=["highest", "high"], default="highest",
                       help="float32 matmuls of every path: highest (true fp32, default) or high (TF32 on NVIDIA)")
    bench.add_argument("--paired", action="store_true",
                       help="CPU: time the faithful path and --paths in turns from two processes, one update each, "
                       "so a drift in the machine's speed cannot bias the ratios (--repeats rounds, default 5)")
    bench.add_argument("--paths", default=None,
                       help="with --paired: the paths compared with the faithful one, comma-separated "
                       "(default: all of optimized, compiled, cached, cached_compiled)")


    args = parser.parse_args(argv)
    if args.command == "bench":
        return _bench(args)
    if args.command == "data":
        return _generate(args)
    if args.command == "plot":
        return _plot(args.run_dirs, args.out, args.group_by, args.title)
    if args.command == "eval":
        return _eval(args.run_dir, args.episodes, args.seed)
    if args.command == "push":
        from .finetuned import push_run

        try:
            print(push_run(args.run_dir, args.repo_id, private=args.private))
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "demo":
        from .recipes import recipe_path

        return _run(recipe_path(DEMO_RECIPE), args.overrides, args.out)
    if args.resume is not None:
        if args.recipe is not None or args.out is not None:
            print("error: --resume RUN_DIR takes the recipe and output directory from RUN_DIR", file=sys.stderr)
            return 2
        # The rest of the recipe must stay as the checkpoint was written (the base is rebuilt
        # from it); only the budget may grow (`--set total_steps=N` trains an ended run on)
        # and the remote collection change (`collectors.*`: actors hold no learner state).
        keys = [o.split("=", 1)[0] for o in args.overrides]
        changed = [k for k in keys if k != "total_steps" and k.split(".")[0] != "collectors"]
        if changed:
            print(f"error: --resume can only change total_steps and collectors (got {', '.join(changed)}): the run "
                  "continues with the recipe it was started with; start a new run to change anything else",
                  file=sys.stderr)
            return 2
        if not (args.resume / "recipe.yaml").is_file():
            print(f"error: {args.resume} has no recipe.yaml; is it a run directory?", file=sys.stderr)
            return 2
        return _run(args.resume / "recipe.yaml", args.overrides, args.resume, resume=True)
    if args.recipe is None:
        print("error: give a recipe YAML (or --resume RUN_DIR)", file=sys.stderr)
        return 2
    if not args.recipe.is_file():
        print(f"error: no recipe file at {args.recipe}", file=sys.stderr)
        return 2
    return _run(args.recipe, args.overrides, args.out)


if __name__ == "__main__":
    sys.exit(main())
