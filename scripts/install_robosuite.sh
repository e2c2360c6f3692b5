#!/usr/bin/env bash
# robosuite 1.5 (the robosuite-* tasks) in its OWN venv, beside the CPU torch.
#
#   bash scripts/install_robosuite.sh [VENV]        (default: .venv-robosuite; `make install-robosuite`)
#
# Why a separate venv: robosuite 1.5.2 needs mujoco >=3.3 and breaks on >=3.10, and its
# dependency mink 0.0.5 pins numpy<2. The main .venv keeps the newest numpy (2.x) and
# mujoco 3.11 for gymnasium-robotics. mujoco 3.9 serves both simulators (PointMaze and
# Fetch run on it), so this venv also gets the `sim` extra and runs the PointMaze tasks.
# Measured here: about 2.5 minutes from nothing (torch ~1 min, the rest ~1.5 min), 2.4 GB.
set -euo pipefail
VENV="${1:-.venv-robosuite}"
PY="$VENV/bin/python"
TORCH="${TORCH:-torch==2.13.0}"  # the CPU build on this machine's disk; never a CUDA one
cd "$(dirname "$0")/.."

test -x "$PY" || python3 -m venv "$VENV"
"$PY" -m pip install -q --upgrade pip
# torch first, pinned, so nothing below can pull a multi-GB CUDA build.
"$PY" -c "import torch" 2>/dev/null || "$PY" -m pip install -q "$TORCH"
"$PY" -m pip install -q -e ".[sim,dev,robosuite]"

OMP_NUM_THREADS=1 "$PY" - <<'PY'
import mujoco, numpy, robosuite
from expo_sdk.envs import make_task

env = make_task("robosuite-lift")
env.reset(seed=0)
env.close()
print(f"robosuite {robosuite.__version__} (mujoco {mujoco.__version__}, numpy {numpy.__version__}) ready")
PY
