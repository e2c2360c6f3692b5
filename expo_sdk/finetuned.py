"""`FinetunedPolicy`: the deployable result of a run (base + edit head + critic).

    policy = FinetunedPolicy.from_pretrained("runs/demo/policy")      # or a Hub repo id
    action = policy.act(obs)          # OTF: N base samples, N mean edits, critic argmax
    action = policy.act_base(obs)     # the base alone, for comparison
    policy = FinetunedPolicy.from_pretrained(path, device="cuda", cuda_graphs=True)  # fast batch-1 acting

A saved fine-tuned policy is a directory (or Hub repo) holding `edit_head/` and `critic/`
(safetensors + JSON), `expo_policy.json` (how to find the base: Hub repo + pinned revision,
or local path + sha256) and a model card `README.md` with the measured results. The base
itself is not copied: it is loaded from where it came from, and refused if its identity
differs from the one the edit head was trained on.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import compile_with_cuda_graphs_error
from .critic import CriticEnsemble
from .cuda_graphs import GraphedFunction
from .edit_head import EditHead
from .normalization import Normalizer
from .policy import policy_device
from .selector import OnTheFlySelector

POLICY_FILE = "expo_policy.json"


class FinetunedPolicy:
    """Acts with the on-the-fly policy of a fine-tuned base.

    Args:
        base: the base policy the edit head was trained on (identity is checked).
        edit_head: the trained `EditHead` (carries normalizer and selector settings).
        critic: the critic ensemble that scores candidates (the run's target critic).
        allow_base_mismatch: skip the base identity check (you take responsibility).
        cuda_graphs: on CUDA, replay `act` from a CUDA graph per batch size (captured on the
            second call with that size): acting at batch 1 is otherwise bound by launching a
            few hundred small kernels. Calls that pass their own `generator` run eagerly.
        compile_acting: the CPU counterpart: torch.compile the base's sampler (switching on
            the base's own `compile_sampling`, where it has one, e.g. `DDPMPolicy`) and the
            selection (edits and scores of the candidates); the same actions to float
            rounding, compiled on the first call per batch size (seconds).
    """

    def __init__(self, base, edit_head: EditHead, critic: CriticEnsemble,
                 allow_base_mismatch: bool = False, cuda_graphs: bool = False,
                 compile_acting: bool = False) -> None:
        edit_head.check_base(base, allow_mismatch=allow_base_mismatch)
        spec = base.spec
        for name, part in (("edit head", edit_head), ("critic", critic)):
            if (part.obs_dim, part.action_dim) != (spec.flat_obs_dim, spec.chunk_dim):
                raise ValueError(
                    f"the {name} takes observations of size {part.obs_dim} and action chunks of size "
                    f"{part.action_dim}, but the base policy has {spec.flat_obs_dim} and {spec.chunk_dim}; "
                    "it was trained for another policy or task"
                )
        self.base, self.edit_head, self.critic = base, edit_head.eval(), critic.eval()
        if edit_head.normalizer is None:
            raise ValueError("the edit head carries no normalizer statistics; it cannot be deployed")
        self.normalizer = Normalizer.from_dict(edit_head.normalizer).to(policy_device(edit_head))
        self.selector = OnTheFlySelector(**(edit_head.selector or {}))
        self.spec = base.spec
        self.cuda_graphs = cuda_graphs
        self._graphed_act: GraphedFunction | None = None
        self._check_cuda_graphs()
        self._scorer = None
        if compile_acting:
            self._compile_acting()

    def _compile_acting(self) -> None:
        if self.cuda_graphs:
            raise ValueError(compile_with_cuda_graphs_error("compile_acting"))
        if hasattr(self.base, "compile_sampling"):
            self.base.compile_sampling = True
        else:
            warnings.warn(f"{type(self.base).__name__} has no `compile_sampling` switch: compile_acting compiles the "
                          "selection only, the base samples eagerly", stacklevel=3)
        self._scorer = torch.compile(self.selector.candidates_and_scores, dynamic=False)

    def to(self, device: torch.device | str) -> "FinetunedPolicy":
        """Move the base, edit head, critic and normalizer to `device`; returns self."""
        for part in (self.base, self.edit_head, self.critic, self.normalizer):
            part.to(device)
        self._graphed_act = None  # graphs hold the old device's tensors
        self._check_cuda_graphs()
        return self

    @property
    def device(self) -> torch.device:
        return self.normalizer.obs_mean.device

    def _check_cuda_graphs(self) -> None:
        if self.cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"cuda_graphs=True needs the policy on a CUDA device, it is on {self.device}: "
                             "load it with device='cuda' (or call .to('cuda')), or set cuda_graphs=False")

    @torch.no_grad()
    def act(self, obs: np.ndarray | torch.Tensor, generator: torch.Generator | None = None) -> np.ndarray:
        """obs [D] or [B, D] (env units) -> env-unit action chunk [H, A] or [B, H, A]."""
        obs_t, single = self._batch(obs)
        if self.cuda_graphs and generator is None:
            if self._graphed_act is None:  # torch's default CUDA generator: registered with every graph
                self._graphed_act = GraphedFunction(self._act, generators=[])
            return self._to_env(self._graphed_act(obs_t), single)
        return self._to_env(self._act(obs_t, generator), single)

    @torch.no_grad()
    def _act(self, obs_t: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        base_actions = self.base.sample(obs_t, self.selector.num_samples, generator=generator)
        base_actions = base_actions.reshape(obs_t.shape[0], self.selector.num_samples, -1).float()
        action, _ = self.selector.act(self.normalizer.normalize_obs(obs_t), base_actions, self.edit_head,
                                      self.critic, generator, deterministic=True, scorer=self._scorer)
        return action

    @torch.no_grad()
    def act_base(self, obs: np.ndarray | torch.Tensor, generator: torch.Generator | None = None) -> np.ndarray:
        """The base policy alone (one sample): obs [D] or [B, D] -> [H, A] or [B, H, A]."""
        obs_t, single = self._batch(obs)
        action = self.base.sample(obs_t, 1, generator=generator)[:, 0].reshape(obs_t.shape[0], -1)
        return self._to_env(action, single)

    def _batch(self, obs) -> tuple[torch.Tensor, bool]:
        obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.normalizer.obs_mean.device)
        return obs_t.reshape(-1, self.normalizer.obs_dim), obs_t.ndim == 1

    def _to_env(self, canonical: torch.Tensor, single: bool) -> np.ndarray:
        chunk = canonical.reshape(canonical.shape[0], self.spec.horizon, self.spec.action_dim)
        env = self.normalizer.action_to_env(chunk).cpu().numpy()
        return env[0] if single else env

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | Path, card: dict[str, Any] | None = None,
                        learning_curve: str | Path | None = None) -> Path:
        """Write edit head, critic, base pointer and a model card (with `card`'s numbers)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.edit_head.save_pretrained(directory / "edit_head")
        self.critic.save_pretrained(directory / "critic")
        info = {"base": self.edit_head.base_identity, "selector": self.edit_head.selector, **(card or {})}
        (directory / POLICY_FILE).write_text(json.dumps(info, indent=2))
        curve = directory / "learning_curve.png"
        if learning_curve is not None and Path(learning_curve).is_file() and Path(learning_curve).resolve() != curve.resolve():
            shutil.copy(learning_curve, curve)
        (directory / "README.md").write_text(model_card(info, has_curve=(directory / "learning_curve.png").is_file()))
        return directory

    def push_to_hub(self, repo_id: str, private: bool = False, card: dict[str, Any] | None = None,
                    api=None) -> str:
        """Save to a temporary directory and upload it (see `push_run`)."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, card=card)
            return push_run(tmp, repo_id, private=private, api=api)

    @classmethod
    def from_pretrained(cls, path_or_repo: str | Path, base=None, revision: str | None = None,
                        allow_base_mismatch: bool = False, device: torch.device | str = "cpu",
                        cuda_graphs: bool = False, compile_acting: bool = False) -> "FinetunedPolicy":
        """Load a saved fine-tuned policy onto `device`; the base is loaded from its pinned
        identity unless given. `cuda_graphs`, `compile_acting`: see the class."""
        directory = Path(path_or_repo)
        if not directory.is_dir():
            from huggingface_hub import snapshot_download

            directory = Path(snapshot_download(str(path_or_repo), revision=revision))
        policy_file = directory / POLICY_FILE
        if not policy_file.is_file():
            raise FileNotFoundError(
                f"{directory} has no {POLICY_FILE}; it is not a saved FinetunedPolicy "
                "(expected edit_head/, critic/ and expo_policy.json)"
            )
        info = json.loads(policy_file.read_text())
        edit_head = _load_part(EditHead, directory / "edit_head")
        critic = _load_part(CriticEnsemble, directory / "critic")
        if base is None:
            base = load_base(info.get("base"))
        policy = cls(base, edit_head, critic, allow_base_mismatch=allow_base_mismatch).to(device)
        policy.cuda_graphs = cuda_graphs
        policy._check_cuda_graphs()
        if compile_acting:
            policy._compile_acting()
        return policy


# What a pushed repo holds: enough for `from_pretrained`, the card, and the run's record.
PUSHED_FILES = ["edit_head/*", "critic/*", POLICY_FILE, "README.md", "learning_curve.png", "summary.json",
                "config.yaml", "recipe.yaml", "normalizer.json"]


def push_run(run_dir: str | Path, repo_id: str, private: bool = False, api=None) -> str:
    """Upload a run directory's deployable policy to the Hub; returns the commit URL/id.

    Only the policy files are pushed (no checkpoint, no metrics log). A base that lives
    only on this machine is recorded by path and sha256: others will need the same
    weights, so this warns.
    """
    import warnings

    from huggingface_hub import HfApi

    run_dir = Path(run_dir)
    info_file = run_dir / POLICY_FILE
    if not info_file.is_file():
        raise FileNotFoundError(f"{run_dir} has no {POLICY_FILE}: not a finished run directory")
    base = json.loads(info_file.read_text()).get("base") or {}
    if not base.get("repo_id"):
        warnings.warn(
            "the base policy is identified by a local path and sha256, not a Hub repo; people "
            "loading this edit head need the same base weights (push the base too and fine-tune "
            "from load_from_hub to pin it by revision)", stacklevel=2)
    api = api or HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(folder_path=str(run_dir), repo_id=repo_id, allow_patterns=PUSHED_FILES,
                               commit_message="Upload EXPO edit head and critic")
    return str(getattr(commit, "commit_url", commit))


def _load_part(cls, directory: Path):
    """from_pretrained with an error that names the damaged file instead of a deep traceback."""
    try:
        return cls.from_pretrained(str(directory))
    except Exception as exc:  # safetensors / JSON / shape errors all mean the same to the user
        raise ValueError(
            f"cannot load {cls.__name__} from {directory}: the files are missing, truncated or "
            f"corrupt ({type(exc).__name__}: {str(exc)[:200]}). Re-download or re-save the policy."
        ) from exc


def load_base(identity: dict[str, Any] | None):
    """Load the base a saved edit head points to: Hub repo at its revision, or a local path."""
    from .loading import load_from_hub, load_policy

    if not identity:
        raise ValueError("the saved policy does not record its base; pass base=... to from_pretrained")
    if identity.get("repo_id"):
        return load_from_hub(identity["repo_id"], revision=identity.get("revision"),
                             adapter=identity.get("adapter"))
    if identity.get("path"):
        return load_policy(identity["path"], adapter=identity.get("adapter"))
    raise ValueError(f"cannot locate the base from {identity}; pass base=... to from_pretrained")


def model_card(info: dict[str, Any], has_curve: bool) -> str:
    """A Hub model card stating the base, the task and the measured results."""
    from huggingface_hub import ModelCard

    base = info.get("base") or {}
    base_ref = base.get("repo_id") and f"{base['repo_id']} @ {base.get('revision')}" or base.get("path", "unknown")
    rows = ""
    if "base_success" in info:
        rows = (f"| base policy alone | {info['base_success']:.2f} |\n"
                f"| EXPO (base + edit head + selector) | {info['final_success']:.2f} |\n")
    content = f"""---
library_name: expo-sdk
tags: [expo, robotics, reinforcement-learning]
---
# EXPO edit head for `{base_ref}`

This repository holds an EXPO **edit head** and **critic ensemble** that fine-tune the base
policy `{base_ref}` (sha256 `{base.get('sha256')}`) without changing it. Load with
`expo_sdk.FinetunedPolicy.from_pretrained(...)`; the base is loaded from its pinned identity
and refused if it differs.

- task: `{info.get('task', 'unknown')}`
- method: `{info.get('method', 'expo')}`, env steps: {info.get('env_steps', 'unknown')}, seed: {info.get('seed', 'unknown')}
- evaluation: {info.get('eval_episodes', '?')} episodes, the same seeds for both rows

| policy | success |
|---|---|
{rows}
{"![learning curve](learning_curve.png)" if has_curve else ""}
"""
    return str(ModelCard(content))
