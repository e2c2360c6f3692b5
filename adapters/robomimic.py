"""robomimic's BC policies (BC, BC-Gaussian, BC-GMM, BC-RNN, BC-RNN-GMM) as expo-sdk base policies.

    from expo_sdk import load_policy
    base = load_policy("model_epoch_600.pth")             # a robomimic checkpoint file
    # or: RobomimicPolicy.from_pretrained("model_epoch_600.pth", action_low=..., action_high=...)

robomimic is an optional dependency: `make install-robomimic` (or
`bash scripts/install_robomimic.sh VENV`) installs robomimic 0.3.0 lean beside the CPU torch.
This module imports robomimic lazily, inside functions: importing it (and
`expo_sdk.adapters`, and `load_policy`'s adapter detection) works without robomimic.

Loading. robomimic checkpoints are `torch.save` pickles of a dict (`algo_name`, `config`
(a JSON string), `env_metadata`, `shape_metadata`, `model` (the state dict of the algo's
networks), optionally `obs_normalization_stats` (lists)). They are read ONLY with
`torch.load(weights_only=True)`, which restores tensors, dicts, lists, strings and numbers
and never runs code from the file; a checkpoint that needs anything else is refused with
an error naming what it contains. The network is then built by robomimic itself
(`FileUtils.policy_from_checkpoint(ckpt_dict=...)`: `config_factory`, `algo_factory`,
`deserialize`), never reimplemented here.

Observations. Low-dimensional (state) observations only: no cameras, no goals. robomimic
takes a dict keyed by observation names; our observation is the flat concatenation of
those keys in the order of the algo's `obs_shapes` (the checkpoint's
`shape_metadata["all_shapes"]` order, which robomimic writes sorted by name), each key
flattened: `policy.obs_keys` lists them and `spec.extra["obs_layout"]` gives
`[[key, size], ...]`. Read a robomimic dataset in the same layout with
`expo_sdk.datasets.read_robomimic_hdf5(path, obs_keys=policy.obs_keys)`. `sample` also
accepts a dict of tensors keyed like robomimic's observations. When the checkpoint has
observation normalization statistics (`train.hdf5_normalize_obs`), they are applied before
the network (as robomimic's `RolloutPolicy` does) and shared with the edit head and critic
through `policy.normalizer`; otherwise the shared normalizer is the identity on
observations (pass `Finetuner(normalizer=...)` to standardize for the critic).

Actions. robomimic's actions are in env units and its networks squash them to [-1, 1]
(robosuite's convention). The canonical space is the env's action box
`[action_low, action_high]` (default [-1, 1] per dimension, as robomimic assumes) mapped
onto [-1, 1]; samples are clamped there. `spec.horizon` is 1.

Sampling (`sample(obs, N, generator)` -> [B, N, 1, A]), stateless and reproducible:
- BC-GMM / BC-RNN-GMM / BC-Gaussian: the mixture's parameters come from robomimic's own
  `forward_train` (its distribution object); the N samples are then drawn here with
  `generator` (one uniform per sample picks the component by inverse CDF, then Gaussian
  noise; tanh for `use_tanh` policies), because robomimic's `dist.sample()` only draws
  from the global RNG. `low_noise` (default: the checkpoint's `algo.gmm.low_noise_eval` /
  `algo.gaussian.low_noise_eval`, True in robomimic's defaults) is robomimic's eval-time
  behaviour: component std 1e-4, so a GMM's N samples are (almost exactly) its mode means,
  picked with the mixture weights, and a Gaussian's are its mean. Pass `low_noise=False`
  to sample the full mixture. Unlike robomimic, this does not depend on train/eval mode.
- BC / BC-RNN (deterministic): N identical samples (the edit head is then the only source
  of candidate diversity).
- BC-RNN / BC-RNN-GMM keep a hidden state in robomimic's rollouts (reset every
  `algo.rnn.horizon` steps). Here every call starts from robomimic's zero initial state:
  a flat observation [B, D] is a sequence of length 1 (what the network was trained on at
  the first step of each window), or pass a history [B, T, D] (oldest first) to unroll T
  steps and act from the last. So a BC-RNN acts as at the start of each window in every
  state, not as in robomimic's own rollouts; that is the limitation of stateless sampling.

`imitation_loss(obs, actions)` is robomimic's own loss (`algo._forward_training` +
`algo._compute_losses`, its "action_loss"): negative log-likelihood for GMM/Gaussian
policies (always of the full mixture, whatever `low_noise`), the configured
L2/L1/cosine mix for BC. For BC-RNN it is the loss of length-1 sequences.

Saving. `save_pretrained(dir)` writes `model.pth` (a checkpoint in robomimic's own format,
loadable by robomimic, with the current weights) and `config.json` (the action bounds and
`low_noise`); `from_pretrained` takes that directory or a robomimic `.pth` file.

Uses one robomimic internal besides its public API (checked against robomimic 0.3.0): the
algo's `_forward_training` / `_compute_losses` for the loss.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import logging
import pickle
import sys
import types
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from expo_sdk.normalization import Normalizer
from expo_sdk.policy import PolicySpec

from ._torchvision import prepare_torchvision

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "model.pth"
CONFIG_FILE = "config.json"
REQUIRED_KEYS = ("algo_name", "config", "shape_metadata", "model")
# robomimic algo classes this adapter knows how to sample from (BC family, low-dim).
SUPPORTED_ALGOS = ("BC", "BC_Gaussian", "BC_GMM", "BC_RNN", "BC_RNN_GMM")
_RNN_ALGOS = ("BC_RNN", "BC_RNN_GMM")
_DETERMINISTIC_ALGOS = ("BC", "BC_RNN")

_INSTALL_HINT = (
    "robomimic is not installed (or does not import). It is an optional dependency: run "
    "`make install-robomimic` (or `bash scripts/install_robomimic.sh /path/to/venv`), which installs "
    "robomimic==0.3.0 next to the CPU torch without pulling a CUDA build."
)


def robomimic_available() -> bool:
    """True when robomimic is installed (checked without importing it)."""
    return importlib.util.find_spec("robomimic") is not None


def _robomimic() -> dict[str, Any]:
    """The robomimic modules this adapter uses (imported on first use)."""
    # robomimic.models.base_nets imports torchvision at module level (for image encoders).
    prepare_torchvision()
    try:
        # robomimic.macros warns on stdout at import unless a private macro file exists; an
        # empty one means "robomimic's defaults". A real user file is left alone.
        if "robomimic.macros_private" not in sys.modules and robomimic_available() \
                and importlib.util.find_spec("robomimic.macros_private") is None:
            sys.modules["robomimic.macros_private"] = types.ModuleType("robomimic.macros_private")
        import robomimic.utils.file_utils as FileUtils
        from robomimic.models.distributions import TanhWrappedDistribution
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
    return {"FileUtils": FileUtils, "TanhWrappedDistribution": TanhWrappedDistribution}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a robomimic checkpoint with `torch.load(weights_only=True)`; never runs its code.

    Raises ValueError, saying why, when the file is not a robomimic checkpoint or holds
    objects that `weights_only` refuses (custom classes, numpy arrays, functions).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no robomimic checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _unsafe_globals(path)
        why = f"it references {found}" if found else str(exc).splitlines()[0]
        raise ValueError(
            f"{path} cannot be loaded safely: torch.load(weights_only=True) refused it ({why}). "
            "robomimic checkpoints are pickles; expo-sdk reads only tensors, dicts, lists, strings and "
            "numbers from them and never runs code from the file. If you trust the file, load it with "
            "robomimic yourself, turn anything else into lists/tensors, and torch.save the dict again."
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise ValueError(f"{path} is not a readable torch checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, Mapping) or any(k not in ckpt for k in REQUIRED_KEYS):
        have = sorted(ckpt) if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise ValueError(f"{path} is not a robomimic checkpoint: expected a dict with {list(REQUIRED_KEYS)}, "
                         f"got {have}")
    return dict(ckpt)


def _unsafe_globals(path: Path) -> list[str]:
    finder = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if finder is None:
        return []
    try:
        return list(finder(str(path)))
    except Exception:  # noqa: BLE001 - only used to improve an error message
        return []


class RobomimicPolicy(nn.Module):
    """A robomimic BC-family policy (low-dim observations) as an expo-sdk `BasePolicy`.

    Build it from a checkpoint dict in robomimic's format (`load_checkpoint(path)`), or
    with `from_pretrained(path)`. See the module docstring for the observation layout,
    sampling, BC-RNN's state and what the loss is. `self.algo` is robomimic's `Algo`;
    its networks (`self.nets`, the same object) are this module's parameters.
    """

    def __init__(
        self,
        checkpoint: Mapping[str, Any],
        *,
        action_low: Sequence[float] | None = None,
        action_high: Sequence[float] | None = None,
        low_noise: bool | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        rm = _robomimic()
        missing = [k for k in REQUIRED_KEYS if k not in checkpoint]
        if missing:
            raise ValueError(f"not a robomimic checkpoint: missing {missing}")
        config = json.loads(checkpoint["config"]) if isinstance(checkpoint["config"], str) else checkpoint["config"]
        _check_supported(checkpoint["algo_name"], config)
        # Kept to write the checkpoint back in robomimic's format (save_pretrained).
        self._meta = {k: copy.deepcopy(checkpoint[k]) for k in ("algo_name", "env_metadata", "shape_metadata",
                                                               "obs_normalization_stats") if k in checkpoint}
        self._meta["config"] = json.dumps(config, indent=4) if not isinstance(checkpoint["config"], str) \
            else checkpoint["config"]

        ckpt = dict(checkpoint)
        ckpt["config"] = self._meta["config"]
        ckpt["obs_normalization_stats"] = copy.deepcopy(checkpoint.get("obs_normalization_stats"))
        quiet = io.StringIO()  # robomimic prints its observation setup
        with contextlib.redirect_stdout(quiet):
            rollout, _ = rm["FileUtils"].policy_from_checkpoint(device=torch.device(device), ckpt_dict=ckpt)
        logger.debug("robomimic: %s", quiet.getvalue())
        algo = rollout.policy
        self.algo_class = type(algo).__name__
        if self.algo_class not in SUPPORTED_ALGOS:
            raise ValueError(f"RobomimicPolicy supports robomimic's {list(SUPPORTED_ALGOS)}; this checkpoint "
                             f"builds {self.algo_class}")
        if algo.goal_shapes:
            raise ValueError(f"goal-conditioned robomimic policies are not supported (goal keys "
                             f"{list(algo.goal_shapes)})")
        self.algo = algo
        self.nets = algo.nets  # registers robomimic's networks as our parameters
        self.nets.eval()
        self._tanh_dist = rm["TanhWrappedDistribution"]

        self._layout = [(k, int(np.prod(s))) for k, s in algo.obs_shapes.items()]
        self._shapes = {k: tuple(int(d) for d in s) for k, s in algo.obs_shapes.items()}
        obs_dim, action_dim = sum(d for _, d in self._layout), int(algo.ac_dim)
        self.is_rnn = self.algo_class in _RNN_ALGOS
        self.stochastic = self.algo_class not in _DETERMINISTIC_ALGOS
        policy_net = self.nets["policy"]
        if low_noise is None:
            low_noise = bool(getattr(policy_net, "low_noise_eval", False))
        self.low_noise = bool(low_noise) and self.stochastic

        stats = checkpoint.get("obs_normalization_stats")
        mean = std = None
        if stats is not None:
            mean = np.concatenate([np.asarray(stats[k]["mean"], np.float32).reshape(-1) for k, _ in self._layout])
            std = np.concatenate([np.asarray(stats[k]["std"], np.float32).reshape(-1) for k, _ in self._layout])
        # Applied before robomimic's network (RolloutPolicy's normalize_obs); moves with .to().
        self.register_buffer("rm_obs_mean", torch.as_tensor(mean if mean is not None else np.zeros(obs_dim, np.float32)))
        self.register_buffer("rm_obs_std", torch.as_tensor(std if std is not None else np.ones(obs_dim, np.float32)))

        action_low = [-1.0] * action_dim if action_low is None else _floats(action_low)
        action_high = [1.0] * action_dim if action_high is None else _floats(action_high)
        # Shared with the edit head and critic (their observation standardization).
        self.normalizer = Normalizer(action_low, action_high, obs_mean=None if mean is None else mean.tolist(),
                                     obs_std=None if std is None else std.tolist(), obs_dim=obs_dim)
        self._spec = PolicySpec(
            obs_shape=(obs_dim,), action_dim=action_dim, action_low=tuple(action_low),
            action_high=tuple(action_high), horizon=1, n_obs_steps=1,
            extra={"robomimic_algo": self.algo_class, "obs_layout": [[k, d] for k, d in self._layout],
                   "low_noise": self.low_noise,
                   **({"rnn_horizon": int(algo.algo_config.rnn.horizon)} if self.is_rnn else {})},
        )

    # ------------------------------------------------------------------ protocol
    @property
    def spec(self) -> PolicySpec:
        return self._spec

    @property
    def obs_keys(self) -> list[str]:
        """robomimic observation keys, in the order they are concatenated in a flat observation."""
        return [k for k, _ in self._layout]

    @torch.no_grad()
    def sample(self, obs, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """obs [B, D] (env units; or [B, T, D] for BC-RNN, or a dict) -> canonical actions [B, N, 1, A]."""
        obs_dict = self._obs_dict(obs)
        b, n, a_dim = next(iter(obs_dict.values())).shape[0], num_samples, self._spec.action_dim
        net = self.nets["policy"]
        if not self.stochastic:
            actions = net(obs_dict) if not self.is_rnn else net(obs_dict)[:, -1]  # [B, A]
            actions = actions[:, None].expand(b, n, a_dim)
        else:
            with _attributes(net, low_noise_eval=self.low_noise, training=False):
                dist = net.forward_train(obs_dict)
            logits, loc, scale, tanh = self._mixture(dist)  # [B, K], [B, K, A], [B, K, A]
            k, device = logits.shape[-1], loc.device
            u = _draw(torch.rand, (b, n, 1), generator, device, loc.dtype)
            comp = (logits.softmax(-1).cumsum(-1)[:, None] < u).sum(-1).clamp_max(k - 1)  # [B, N]
            idx = comp[..., None].expand(b, n, a_dim)
            eps = _draw(torch.randn, (b, n, a_dim), generator, device, loc.dtype)
            actions = loc.gather(1, idx) + scale.gather(1, idx) * eps
            if tanh:
                actions = torch.tanh(actions)
        canonical = self.normalizer.action_to_canonical(actions.reshape(b * n, a_dim))
        return canonical.clamp(-1.0, 1.0).reshape(b, n, 1, a_dim)

    def imitation_loss(self, obs, actions: torch.Tensor) -> torch.Tensor:
        """robomimic's own action loss. obs [B, D] env units; actions canonical [B, 1, A] -> scalar."""
        obs_dict = self._obs_dict(obs)
        b = next(iter(obs_dict.values())).shape[0]
        env_actions = self.normalizer.action_to_env(actions.reshape(b, self._spec.action_dim))
        env_actions = env_actions.to(next(iter(obs_dict.values())).dtype)
        if self.is_rnn:
            t = next(iter(obs_dict.values())).shape[1]
            if t != 1:
                raise ValueError("imitation_loss takes single observations [B, D] (sequences of length 1)")
            env_actions = env_actions[:, None]
        batch = {"obs": obs_dict, "goal_obs": None, "actions": env_actions}
        net = self.nets["policy"]
        flags = {"low_noise_eval": False} if hasattr(net, "low_noise_eval") else {}
        with _attributes(net, **flags):
            predictions = self.algo._forward_training(batch)
            losses = self.algo._compute_losses(predictions, batch)
        return losses["action_loss"]

    # ------------------------------------------------------------------ helpers
    def _obs_dict(self, obs) -> dict[str, torch.Tensor]:
        """Flat env observations [B, D] / [B, T, D] (or a dict) -> robomimic's normalized obs dict.

        Non-RNN: {key: [B, *shape]}. RNN: {key: [B, T, *shape]}, T = 1 for [B, D].
        """
        d = self._spec.flat_obs_dim
        if isinstance(obs, Mapping):
            missing = [k for k in self.obs_keys if k not in obs]
            if missing:
                raise ValueError(f"observation dict is missing robomimic keys {missing}")
            lead = obs[self.obs_keys[0]].shape[: obs[self.obs_keys[0]].ndim - len(self._shapes[self.obs_keys[0]])]
            obs = torch.cat([obs[k].reshape(*lead, -1) for k in self.obs_keys], dim=-1)
        if not isinstance(obs, torch.Tensor):
            raise TypeError(f"RobomimicPolicy takes tensor observations [B, {d}], got {type(obs).__name__}")
        ok = (obs.ndim == 2 or (obs.ndim == 3 and self.is_rnn)) and obs.shape[-1] == d
        if not ok:
            seq = f" or [B, T, {d}]" if self.is_rnn else ""
            raise ValueError(f"observations must be [B, {d}]{seq} (keys {self._layout}), got {tuple(obs.shape)}")
        param = self.rm_obs_mean
        obs = (obs.to(device=param.device, dtype=param.dtype) - self.rm_obs_mean) / self.rm_obs_std
        if self.is_rnn:
            if obs.ndim == 2:
                obs = obs[:, None]
            if self.algo._rnn_is_open_loop:  # robomimic feeds the window's first observation at every step
                obs = obs[:, :1].expand(-1, obs.shape[1], -1)
        lead = obs.shape[:-1]
        out, i = {}, 0
        for key, size in self._layout:
            out[key] = obs[..., i:i + size].reshape(*lead, *self._shapes[key])
            i += size
        return out

    def _mixture(self, dist):
        """robomimic's action distribution -> (logits [B, K], loc [B, K, A], scale [B, K, A], tanh).

        A Gaussian policy is a mixture of one. RNN distributions are [B, T]: the last step is kept.
        """
        tanh = isinstance(dist, self._tanh_dist)
        base = dist.base_dist if tanh else dist
        if isinstance(base, torch.distributions.MixtureSameFamily):
            logits = base.mixture_distribution.logits
            normal = base.component_distribution.base_dist
            loc, scale = normal.loc, normal.scale
        else:  # Independent(Normal): BC-Gaussian
            normal = base.base_dist
            loc, scale = normal.loc.unsqueeze(-2), normal.scale.unsqueeze(-2)
            logits = torch.zeros(loc.shape[:-1], dtype=loc.dtype, device=loc.device)
        if self.is_rnn:
            logits, loc, scale = logits[:, -1], loc[:, -1], scale[:, -1]
        return logits, loc, scale.expand_as(loc), tanh

    # ------------------------------------------------------------------ persistence
    def checkpoint(self) -> dict[str, Any]:
        """This policy as a robomimic checkpoint dict (current weights, on the CPU)."""
        ckpt = copy.deepcopy(self._meta)
        ckpt["model"] = {k: v.detach().cpu().clone() for k, v in self.algo.serialize().items()}
        return ckpt

    def save_pretrained(self, save_directory: str | Path) -> None:
        """`model.pth` (robomimic's checkpoint format: robomimic can load it) + `config.json`."""
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.checkpoint(), path / CHECKPOINT_FILE)
        (path / CONFIG_FILE).write_text(json.dumps({
            "robomimic_checkpoint": CHECKPOINT_FILE, "algo_name": self._meta["algo_name"],
            "algo_class": self.algo_class, "obs_keys": self.obs_keys, "low_noise": self.low_noise,
            "action_low": list(self._spec.action_low), "action_high": list(self._spec.action_high),
        }, indent=2))

    @classmethod
    def from_pretrained(
        cls,
        pretrained_path: str | Path,
        *,
        action_low: Sequence[float] | None = None,
        action_high: Sequence[float] | None = None,
        low_noise: bool | None = None,
        device: str | torch.device = "cpu",
    ) -> "RobomimicPolicy":
        """Load a robomimic checkpoint file (`.pth`) or a directory written by `save_pretrained`.

        Reads only local files, with `torch.load(weights_only=True)`. The arguments override
        what the directory's config.json records (action bounds, `low_noise`).
        """
        path = Path(pretrained_path)
        saved: dict[str, Any] = {}
        if path.is_dir():
            config_file = path / CONFIG_FILE
            if not config_file.is_file():
                raise FileNotFoundError(f"{path} has no {CONFIG_FILE}; pass the robomimic .pth file itself")
            saved = json.loads(config_file.read_text())
            path = path / saved.get("robomimic_checkpoint", CHECKPOINT_FILE)
        _robomimic()  # a clear install hint before reading anything
        checkpoint = load_checkpoint(path)
        return cls(
            checkpoint,
            action_low=action_low if action_low is not None else saved.get("action_low"),
            action_high=action_high if action_high is not None else saved.get("action_high"),
            low_noise=low_noise if low_noise is not None else saved.get("low_noise"),
            device=device,
        )

    @staticmethod
    def matches_config(config: dict) -> bool:
        """True for the config.json `save_pretrained` writes (adapter detection)."""
        return "robomimic_checkpoint" in config

    @staticmethod
    def matches_file(path: str | Path) -> bool:
        """True for a `.pth` file when robomimic is installed (`load_policy` file detection)."""
        return Path(path).suffix == ".pth" and robomimic_available()


def _check_supported(algo_name: str, config: Mapping[str, Any]) -> None:
    """Refuse, before building anything, what this adapter cannot sample from."""
    if algo_name != "bc":
        raise ValueError(f"RobomimicPolicy supports robomimic's BC family (algo 'bc': BC, BC-GMM, BC-RNN, "
                         f"BC-RNN-GMM, BC-Gaussian); this checkpoint is algo {algo_name!r}")
    modalities = config.get("observation", {}).get("modalities", {})
    for group, mods in modalities.items():
        for modality, keys in (mods or {}).items():
            if keys and (group != "obs" or modality != "low_dim"):
                raise ValueError(
                    f"RobomimicPolicy supports low-dimensional (state) observations only; this checkpoint "
                    f"uses {group}/{modality} keys {list(keys)}")


@contextlib.contextmanager
def _attributes(module: nn.Module, **values):
    """Temporarily set plain attributes (robomimic's `low_noise_eval`, the `training` flag)."""
    old = {k: getattr(module, k) for k in values}
    try:
        for k, v in values.items():
            setattr(module, k, v)
        yield
    finally:
        for k, v in old.items():
            setattr(module, k, v)


def _draw(fn, shape, generator, device, dtype) -> torch.Tensor:
    # Draw on the generator's device, then move: a CPU generator works for a CUDA policy.
    where = generator.device if generator is not None else device
    return fn(shape, generator=generator, device=where, dtype=dtype).to(device)


def _floats(x) -> list[float]:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return [float(v) for v in np.asarray(x, dtype=np.float64).reshape(-1)]
