"""Loading base policies: local directories, `module:factory` strings, the Hub.

Adapters are found through the entry-point group "expo_sdk.adapters" (ours are declared
in pyproject.toml; third-party packages add theirs the same way). An adapter class is
picked for a directory by its `matches_config(config) -> bool` classmethod, or named
explicitly: `load_policy("ddpm:/path/to/dir")` / `load_from_hub(..., adapter="ddpm")`.
Only safetensors + JSON are read; adapter code comes from installed packages, never from
a downloaded repository. `load_weights` reads foreign `.pt/.pth/.bin` state dicts with
`torch.load(weights_only=True)`, which refuses pickled code.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin
from safetensors.torch import load_file

ENTRY_POINT_GROUP = "expo_sdk.adapters"


def available_adapters() -> dict[str, Any]:
    """name -> entry point of every installed adapter."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _adapter_class(name: str):
    adapters = available_adapters()
    if name not in adapters:
        raise ValueError(f"unknown adapter {name!r}; installed adapters: {sorted(adapters)}")
    return adapters[name].load()


def load_policy(path_or_spec: str | Path, adapter: str | None = None):
    """Load a base policy from a local directory, `adapter:path`, or `module:factory`."""
    spec = str(path_or_spec)
    if adapter is None and ":" in spec and not Path(spec).exists():
        head, tail = spec.split(":", 1)
        if head in available_adapters():
            adapter, spec = head, tail
        else:
            module_name, factory = head, tail
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise ValueError(
                    f"{spec!r} is neither a path, an `adapter:path` (adapters: "
                    f"{sorted(available_adapters())}) nor an importable `module:factory`: {exc}"
                ) from exc
            return getattr(module, factory)()
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"no policy at {path}")
    if not path.is_dir():
        raise ValueError(f"{path} is a file; pass the directory written by save_pretrained")
    config_file = path / "config.json"
    if adapter is None:
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        matches = [n for n, ep in available_adapters().items()
                   if getattr(ep.load(), "matches_config", lambda c: False)(config)]
        if len(matches) != 1:
            what = "no installed adapter recognises" if not matches else f"adapters {matches} all match"
            raise ValueError(
                f"{what} the policy in {path}; pass adapter=... (one of "
                f"{sorted(available_adapters())}) or use 'adapter:{path}'"
            )
        adapter = matches[0]
    cls = _adapter_class(adapter)
    if issubclass(cls, PyTorchModelHubMixin) and not (path / "model.safetensors").is_file():
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth"))
        raise FileNotFoundError(
            f"no model.safetensors in {path}" + (f" (found {pickles}: pickled weights are never loaded "
                                                  "from a policy directory; convert them with "
                                                  "expo_sdk.load_weights + safetensors where you trust them)"
                                                  if pickles else ""))
    # huggingface_hub's mixin loads non-strictly by default: missing tensors would stay random.
    strict = {"strict": True} if issubclass(cls, PyTorchModelHubMixin) else {}
    policy = cls.from_pretrained(str(path), **strict)
    policy.identity = {"adapter": adapter, "path": str(path.resolve()), "sha256": weights_sha256(path)}
    return policy


def load_from_hub(
    repo_id: str, revision: str | None = None, adapter: str | None = None, cache_dir: str | Path | None = None
):
    """Download (or read from the local cache with HF_HUB_OFFLINE=1) and load a policy.

    The resolved commit is recorded in `policy.identity["revision"]` so edit heads can be
    pinned to the exact base they were trained on.
    """
    from huggingface_hub import snapshot_download

    local = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir))
    policy = load_policy(local, adapter=adapter)
    policy.identity = {"adapter": policy.identity["adapter"], "repo_id": repo_id,
                       "revision": local.name, "sha256": policy.identity["sha256"]}
    return policy


def weights_sha256(directory: Path) -> str | None:
    """sha256 of the directory's model.safetensors (None when absent)."""
    weights = Path(directory) / "model.safetensors"
    if not weights.is_file():
        return None
    digest = hashlib.sha256()
    with weights.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_weights(path: str | Path) -> dict[str, Any]:
    """A state dict from `.safetensors`, or from a foreign `.pt/.pth/.bin` file.

    Torch files are read with `torch.load(weights_only=True)`: tensors, numbers, strings
    and containers only. A file whose pickle would import or call anything else is
    refused with an error, and nothing in it runs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    if path.suffix not in (".pt", ".pth", ".bin"):
        raise ValueError(f"{path}: unknown weights format {path.suffix!r}; expected .safetensors, .pt, .pth or .bin")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for code, RuntimeError/EOFError for damage
        raise ValueError(
            f"refusing to load {path}: it is not a plain tensor file that torch.load(weights_only=True) "
            f"accepts ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). Pickled Python objects "
            "can run arbitrary code; convert the file to safetensors where you trust its origin"
        ) from exc
