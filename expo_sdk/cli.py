"""The `expo` command line.

    expo demo [--out DIR] [--set key=value ...]       the embedded default, no downloads
    expo finetune RECIPE.yaml [--out DIR] [--set key=value ...]
    expo finetune --resume RUN_DIR                    continue a run from its last checkpoint
    expo eval RUN_DIR [--episodes N] [--seed S]       base vs fine-tuned, same episodes, 95% CIs
    expo push RUN_DIR REPO_ID [--private]             upload the edit head + critic + model card
    expo bench [--json] [--device D] [--quick]        learner/acting speed, faithful vs optimized
"""

from __future__ import annotations

import argparse
import json
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
    print(f"recipe: {recipe_path}\nrun directory: {out}")
    result = run_recipe(recipe, out, resume=resume)
    print(describe(result))
    print(f"summary: {out / 'summary.json'}\nlearning curve: {out / 'learning_curve.png'}")
    print(json.dumps(result.summary()))
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


def _bench(args) -> int:
    from .bench import format_result, run_bench

    def log(msg: str) -> None:  # progress on stderr: stdout stays one JSON object with --json
        print(msg, file=sys.stderr, flush=True)

    result = run_bench(device=args.device, quick=args.quick, repeats=args.repeats, threads=args.threads, log=log)
    print(json.dumps(result) if args.json else format_result(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="expo", description="Fine-tune expressive policies with EXPO.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the embedded PointMaze demo (no downloads, CPU)")
    finetune = sub.add_parser("finetune", help="run a recipe YAML")
    finetune.add_argument("recipe", type=Path, nargs="?", help="recipe YAML (omit with --resume)")
    finetune.add_argument("--resume", type=Path, metavar="RUN_DIR",
                          help="continue the run in RUN_DIR from its last checkpoint (uses its recipe.yaml)")
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

    bench = sub.add_parser("bench", help="measure update and acting speed: faithful vs optimized paths")
    bench.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    bench.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    bench.add_argument("--quick", action="store_true", help="tiny networks and batches: a smoke test")
    bench.add_argument("--repeats", type=int, default=None, help="timed rounds per path (default 2, quick 1)")
    bench.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")

    args = parser.parse_args(argv)
    if args.command == "bench":
        return _bench(args)
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
        if args.recipe is not None or args.overrides or args.out is not None:
            print("error: --resume RUN_DIR takes the recipe and output directory from RUN_DIR", file=sys.stderr)
            return 2
        if not (args.resume / "recipe.yaml").is_file():
            print(f"error: {args.resume} has no recipe.yaml; is it a run directory?", file=sys.stderr)
            return 2
        return _run(args.resume / "recipe.yaml", [], args.resume, resume=True)
    if args.recipe is None:
        print("error: give a recipe YAML (or --resume RUN_DIR)", file=sys.stderr)
        return 2
    if not args.recipe.is_file():
        print(f"error: no recipe file at {args.recipe}", file=sys.stderr)
        return 2
    return _run(args.recipe, args.overrides, args.out)


if __name__ == "__main__":
    sys.exit(main())
