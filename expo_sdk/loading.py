"""Loading base policies: local directories, `module:factory` strings, the Hub.

Adapters are found through the entry-point group "expo_sdk.adapters" (ours are declared
in pyproject.toml; third-party packages add theirs the same way). An adapter class is
picked for a directory by its `matches_config(config) -> bool` classmethod (for a single
checkpoint file, by `matches_file(path) -> bool`), or named
explicitly: `load_policy("ddpm:/path/to/dir")` / `load_from_hub(..., adapter="ddpm")`.
Our own files are safetensors + JSON; foreign `.pt/.pth/.bin` files (robomimic
checkpoints, state dicts given to `load_weights`) are read only with
`torch.load(weights_only=True)`, which refuses pickled code. Adapter code comes from
installed packages, never from a downloaded repository.
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
    """Load a base policy from a local directory or checkpoint file, `adapter:path`, or `module:factory`.

    A directory is matched by its config.json (`matches_config`); a single file, such as a
    robomimic `.pth` checkpoint, by the adapters' `matches_file(path)`.
    """
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
    if path.is_file():
        return _load_file(path, adapter)
    config_file = path / "config.json"
    if adapter is None:
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        adapter = _detect_adapter("matches_config", config, f"the policy in {path}",
                                  f"or use 'adapter:{path}'")
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


def _load_file(path: Path, adapter: str | None):
    """A single checkpoint file (e.g. a robomimic `.pth`): adapters claim it by `matches_file(path)`."""
    if adapter is None:
        adapter = _detect_adapter(
            "matches_file", path, f"the file {path}",
            f"use 'adapter:{path}', or pass the directory written by save_pretrained. An adapter may need "
            "its optional dependency first (robomimic .pth checkpoints: `make install-robomimic`).")
    policy = _adapter_class(adapter).from_pretrained(str(path))
    policy.identity = {"adapter": adapter, "path": str(path.resolve()), "sha256": weights_sha256(path)}
    return policy


def _detect_adapter(hook: str, subject: Any, what: str, hint: str) -> str:
    """The one installed adapter whose `hook` classmethod (matches_config / matches_file)
    claims `subject`; an error listing the adapters when none or several do."""
    adapters = available_adapters()
    matches = [name for name, ep in adapters.items() if getattr(ep.load(), hook, lambda _: False)(subject)]
    if len(matches) != 1:
        who = "no installed adapter recognises" if not matches else f"adapters {matches} all match"
        raise ValueError(f"{who} {what}; pass adapter=... (one of {sorted(adapters)}), {hint}")
    return matches[0]


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


# Weight files hashed for a policy directory, first found wins (model.pth: robomimic's format).
WEIGHT_FILES = ("model.safetensors", "model.pth")


def weights_sha256(path: Path) -> str | None:
    """sha256 of a checkpoint file, or of a directory's weights (`WEIGHT_FILES`); None when absent."""
    path = Path(path)
    weights = path if path.is_file() else next(
        (path / name for name in WEIGHT_FILES if (path / name).is_file()), None)
    if weights is None:
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
