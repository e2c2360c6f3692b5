#!/usr/bin/env bash
# Lean install of LeRobot 0.4.4 (the `lerobot_diffusion` adapter) into a venv, keeping its torch.
#
#   bash scripts/install_lerobot.sh [VENV]        (default: .venv; `make install-lerobot`)
#
# Why not `pip install lerobot` / an extra in pyproject.toml: lerobot 0.4.4 (newest for
# Python 3.11) pins torch<2.11, so pip swaps the CPU torch for a multi-GB CUDA build, and
# it pulls cameras/robots/logging packages the Diffusion policy never imports. So:
# lerobot with --no-deps, then only what its policy code imports, at versions inside its
# pins (diffusers<0.36 and huggingface-hub<0.36: these DOWNGRADE a newer diffusers/hub
# in the venv; expo-sdk works with both). PyPI's torchvision (a CUDA build) is installed
# --no-deps; it cannot load its C ops beside a CPU torch, which the adapter works around
# at import (expo_sdk.adapters._torchvision).
set -euo pipefail
LEROBOT_VERSION="${LEROBOT_VERSION:-0.4.4}"
source "$(dirname "$0")/_lean_venv.sh" "$@"  # PY, PIP, TORCHVISION

"${PIP[@]}" --no-deps "lerobot==$LEROBOT_VERSION" "$TORCHVISION"
"${PIP[@]}" "draccus==0.10.*" "einops<0.9" "diffusers<0.36" "huggingface-hub<0.36" "datasets>=4,<5" \
    "deepdiff<9" termcolor accelerate imageio pyserial "gymnasium>=1.0" \
    "numpy<2.4"  # writing LeRobot datasets: scalar features reach float(array[1]) in datasets 4, an error from numpy 2.4
# PyAV (video decoding; imported by lerobot's datasets module, unused by the policy). If its
# wheel cannot be installed, a stub module stands in for it.
if ! "${PIP[@]}" --no-deps "av>=15,<16"; then
    SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    mkdir -p "$SITE/av"
    cp "$(dirname "$0")/av_stub.py" "$SITE/av/__init__.py"
    echo "installed a stub 'av' module (video datasets will not work)" >&2
fi

"$PY" - <<'PY'
from expo_sdk.adapters.lerobot import _lerobot
_lerobot()
import lerobot
print(f"lerobot {lerobot.__version__ if hasattr(lerobot, '__version__') else ''} ready for expo_sdk.adapters.lerobot")
PY
