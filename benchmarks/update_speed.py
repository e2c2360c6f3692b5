"""Env-steps/s of EXPO's learning loop at the paper's hyperparameters: now `expo bench`.

    python benchmarks/update_speed.py [--threads 2] [--repeats 2] [--json]

Same as `expo bench --device cpu`: the faithful reference update and the optimized
`Finetuner.update` side by side on the same weights and minibatches, the cached-base path,
OTF acting latency and peak memory (see `expo_sdk/bench.py`).
"""

from __future__ import annotations

import sys

from expo_sdk.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--device", "cpu", *sys.argv[1:]]))
