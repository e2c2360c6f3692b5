"""Make PyPI's torchvision importable beside a CPU torch (LeRobot and robomimic import it).

PyPI's torchvision wheel is a CUDA build: its C extension links against CUDA torch
libraries and fails to load beside this project's CPU torch (DESIGN.md section 5). Then
`import torchvision` dies on `register_fake("torchvision::nms")`, an operator that was
never defined. Defining the two schemas it registers fake kernels for (`nms`, `qnms`)
lets it import; its C ops (detection ops, video/image decoding) stay unavailable. The
Python parts the adapters need (`transforms`, `models`) work.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import torch

# Keeps the fallback op schemas alive for the life of the process.
_FALLBACK: list[Any] = []


def prepare_torchvision() -> None:
    """Call before the first `import torchvision`. Does nothing when its extension loads,
    when torchvision is already imported, or when it is not installed."""
    if "torchvision" in sys.modules or _FALLBACK:
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    libs = sorted(p for d in spec.submodule_search_locations for p in Path(d).glob("_C*.so"))
    if not libs:
        return
    try:
        torch.ops.load_library(str(libs[0]))
        return
    except (OSError, RuntimeError):
        pass
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for name in ("nms", "qnms"):
        try:
            lib.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:  # already defined
            pass
    _FALLBACK.append(lib)
