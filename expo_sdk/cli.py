"""The `expo` command line.

    expo demo [--out DIR] [--set key=value ...]       the embedded default, no downloads
    expo finetune RECIPE.yaml [--out DIR] [--set key=value ...]
    expo finetune --resume RUN_DIR                    continue a run from its last checkpoint
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

    args = parser.parse_args(argv)
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
