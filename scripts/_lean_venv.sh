# Sourced by the lean optional installs (install_lerobot.sh, install_robomimic.sh), which
# add one library with --no-deps beside the venv's own CPU torch. Checks that VENV (first
# argument, default .venv) has python and torch, and sets:
#   PY           the venv's python
#   PIP          ("$PY" -m pip install -q)
#   TORCHVISION  the PyPI torchvision matching that torch (0.(minor+15) goes with torch 2.minor),
#                to be installed --no-deps: it is a CUDA build whose C ops cannot load beside
#                a CPU torch, which expo_sdk.adapters._torchvision works around at import.
VENV="${1:-.venv}"
PY="$VENV/bin/python"
test -x "$PY" || { echo "no python at $PY: create the venv first (make install)" >&2; exit 1; }
"$PY" -c "import torch" 2>/dev/null || { echo "torch is not installed in $VENV (make install)" >&2; exit 1; }
TORCHVISION="torchvision==0.$("$PY" -c "import torch; print(int(torch.__version__.split('.')[1]) + 15)").*"
PIP=("$PY" -m pip install -q)
