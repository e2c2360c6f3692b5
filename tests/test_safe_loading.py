"""Safe loading: no file we read can run code.

Each test plants a pickle whose unpickling would create a marker file (the classic
`__reduce__` -> `os.system` payload) where a careless loader would pick it up, calls the
public loaders, and checks that they refuse with a clear error and the marker never
appears.
"""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from test_loading import COMMIT, _hub_cache_with_policy

from expo_sdk import FinetunedPolicy, load_from_hub, load_policy, load_weights
from expo_sdk.checkpoint import load_checkpoint, save_checkpoint
from expo_sdk.replay import OfflineDataset


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def evil(tmp_path):
    """write(path): put a malicious pickle at `path`; `.marker` exists iff it ever ran."""
    marker = tmp_path / "PWNED"

    def write(path):
        torch.save({"weight": torch.ones(2), "payload": _Payload(marker)}, path)
        return path

    write.marker = marker
    return write


def test_the_payload_is_live(evil, tmp_path):
    """Control: a plain unpickle does run it (so the other tests' checks mean something)."""
    path = evil(tmp_path / "control.pt")
    torch.load(path, weights_only=False)
    assert evil.marker.exists()


@pytest.mark.parametrize("name", ["model.pt", "model.pth", "pytorch_model.bin"])
def test_foreign_torch_files_load_with_weights_only(evil, tmp_path, name):
    with pytest.raises(ValueError, match="refusing to load .*weights_only"):
        load_weights(evil(tmp_path / name))
    assert not evil.marker.exists()
    plain = tmp_path / f"plain-{name}"
    torch.save({"weight": torch.ones(2)}, plain)  # a plain state dict still loads
    assert torch.equal(load_weights(plain)["weight"], torch.ones(2))


def test_a_policy_directory_with_only_a_pickle_is_refused(evil, tmp_path):
    _, cache = _hub_cache_with_policy(tmp_path)
    directory = next((cache / "models--org--ddpm-policy" / "snapshots").iterdir())
    (directory / "model.safetensors").unlink()
    evil(directory / "pytorch_model.bin")  # what huggingface_hub's mixin would fall back to on the Hub
    with pytest.raises(FileNotFoundError, match=r"no model.safetensors .*found \['pytorch_model.bin'\]"):
        load_policy(directory)
    assert not evil.marker.exists()


def test_a_pickle_disguised_as_safetensors_is_refused(evil, tmp_path):
    _, cache = _hub_cache_with_policy(tmp_path)
    directory = next((cache / "models--org--ddpm-policy" / "snapshots").iterdir())
    evil(directory / "model.safetensors")
    with pytest.raises(Exception):
        load_policy(directory)
    checkpoint = save_checkpoint(tmp_path / "run", {"x": torch.ones(1)}, {"env_step": 1})
    evil(checkpoint / "tensors.safetensors")
    with pytest.raises(ValueError, match="unreadable"):
        load_checkpoint(checkpoint)
    assert not evil.marker.exists()


def test_a_saved_fine_tuned_policy_with_pickles_is_refused(evil, tmp_path):
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "expo_policy.json").write_text(json.dumps({"format": 1}))
    for part in ("edit_head", "critic"):
        (tmp_path / "policy" / part).mkdir()
        evil(tmp_path / "policy" / part / "model.safetensors")
        evil(tmp_path / "policy" / part / "pytorch_model.bin")
    with pytest.raises(ValueError):
        FinetunedPolicy.from_pretrained(tmp_path / "policy")
    assert not evil.marker.exists()


def test_a_dataset_needing_pickle_is_refused(evil, tmp_path):
    np.savez(tmp_path / "demos.npz", observations=np.array([_Payload(evil.marker)], dtype=object))
    with pytest.raises(ValueError, match="not a complete .npz of plain arrays"):
        OfflineDataset.load_npz(tmp_path / "demos.npz")
    assert not evil.marker.exists()


def test_adapter_code_in_a_downloaded_repo_is_never_imported(tmp_path, monkeypatch):
    """A repo can name an adapter and ship its code; only installed entry points are used."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    _, cache = _hub_cache_with_policy(tmp_path)
    repo = cache / "models--org--ddpm-policy"
    shutil.copytree(repo, cache / "models--org--evil-policy")
    snapshot = cache / "models--org--evil-policy" / "snapshots" / COMMIT
    marker = tmp_path / "IMPORTED"
    (snapshot / "evil_adapter.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (snapshot / "config.json").write_text(json.dumps({"adapter": "evil_adapter", "auto_map": "evil_adapter.Policy"}))
    with pytest.raises(ValueError, match="no installed adapter recognises"):
        load_from_hub("org/evil-policy", cache_dir=cache)
    with pytest.raises(ValueError, match="unknown adapter 'evil_adapter'"):
        load_from_hub("org/evil-policy", cache_dir=cache, adapter="evil_adapter")
    assert not marker.exists()
