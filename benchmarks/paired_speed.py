"""Faithful vs optimized EXPO updates, timed in turns from two processes (paired in time).

    python benchmarks/paired_speed.py [--rounds 5] [--threads 2] [--quick]
        [--paths optimized,compiled,cached,cached_compiled]

The same as `expo bench --paired --json` (with `--repeats` for rounds): see
`expo_sdk/bench_paired.py` for why and how. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from expo_sdk.bench_paired import PATHS, run_paired


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--paths", default=",".join(PATHS[1:]),
                        help=f"comma-separated, compared with the faithful path; from {PATHS[1:]}")
    parser.add_argument("--act-calls", type=int, default=50, help="OTF actions per acting measurement")
    parser.add_argument("--quick", action="store_true", help="the bench's tiny preset: a smoke test")
    args = parser.parse_args()
    try:
        result = run_paired([p for p in args.paths.split(",") if p], args.rounds, args.threads, args.act_calls,
                            args.quick, log=lambda message: print(message, file=sys.stderr, flush=True))
    except ValueError as error:
        parser.error(str(error))
    print(json.dumps(result))


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"paired_speed: {time.perf_counter() - started:.0f} s", file=sys.stderr)
