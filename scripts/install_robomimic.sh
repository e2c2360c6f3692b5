#!/usr/bin/env bash
# Lean install of robomimic 0.3.0 (the `robomimic` adapter and HDF5 reader) into a venv, keeping its torch.
#
#   bash scripts/install_robomimic.sh [VENV]      (default: .venv; `make install-robomimic`)
#
# Why not `pip install robomimic` / an extra in pyproject.toml: robomimic 0.3.0 (newest on
# PyPI) requires an unpinned torchvision, and the newest torchvision pins the newest torch,
# so pip swaps the CPU torch for a multi-GB CUDA build. It also pulls tensorboard,
# tensorboardX, imageio-ffmpeg, psutil and egl_probe (built from source with cmake), which
# only its training scripts and simulator envs import. So: robomimic with --no-deps, then
# only what its BC policy code, config and checkpoint/dataset utilities import: h5py,
# six (used by its config, not declared), termcolor, tqdm, imageio (train_utils, used by
# the tests to save checkpoints). robomimic imports torchvision at module level
# (robomimic.models.base_nets, for its image encoders), so every policy import needs it:
# PyPI's torchvision matching the torch minor is installed --no-deps; it is a CUDA build
# whose C ops cannot load beside a CPU torch, which the adapter works around at import
# (expo_sdk.adapters._torchvision: `transforms`/`models` work, detection ops do not).
set -euo pipefail
ROBOMIMIC_VERSION="${ROBOMIMIC_VERSION:-0.3.0}"
source "$(dirname "$0")/_lean_venv.sh" "$@"  # PY, PIP, TORCHVISION

# pip then prints "ERROR: ... robomimic 0.3.0 requires egl_probe/tensorboard/..., which is not
# installed": expected (those are left out on purpose, see above), and not a failure.
"${PIP[@]}" --no-deps "robomimic==$ROBOMIMIC_VERSION" "$TORCHVISION"
"${PIP[@]}" "h5py>=3" six termcolor tqdm imageio

"$PY" - <<'PY'
from expo_sdk.adapters.robomimic import _robomimic
_robomimic()
import robomimic
print(f"robomimic {robomimic.__version__} ready for expo_sdk.adapters.robomimic")
PY
