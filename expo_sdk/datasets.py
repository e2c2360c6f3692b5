"""Demonstration datasets in other libraries' formats, read into an `OfflineDataset`.

    read_robomimic_hdf5 / write_robomimic_hdf5   robomimic's HDF5 layout (below)
    read_minari                                  a Minari dataset from the local Minari cache
    read_lerobot_dataset                         a LeRobotDataset (state features; `lerobot` extra)
    OfflineDataset.load_npz / save_npz           plain npz arrays

robomimic's HDF5 layout (what its `SequenceDataset` trains on, and what robosuite /
MimicGen demonstrations are converted to):

    data/                          attrs: total, env_args (JSON)
        demo_0/                    attrs: num_samples
            obs/<key>              [T, ...]
            next_obs/<key>         [T, ...]   (optional)
            actions                [T, A]
            rewards                [T]        (optional: zeros)
            dones                  [T]        (optional: zeros)
        demo_1/ ...
    mask/<filter_key>              demo names (optional subsets, e.g. "train", "valid")

Needs h5py (`pip install expo-sdk[data]`, or installed with robomimic), imported on first use.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from .replay import OfflineDataset


def read_robomimic_hdf5(
    path: str | Path,
    obs_keys: Sequence[str] | None = None,
    *,
    filter_key: str | None = None,
) -> OfflineDataset:
    """Read a robomimic HDF5 dataset as flat transitions (actions in env units).

    Args:
        path: the .hdf5 file.
        obs_keys: observation keys concatenated, in this order, into the flat observation
            (each key flattened). Default: every low-dimensional key (per-step rank <= 1) in
            sorted order, which is the layout robomimic's networks use; to match a policy, pass
            `obs_keys=policy.obs_keys` (`expo_sdk.adapters.robomimic.RobomimicPolicy`). Image
            keys (rank > 1 per step) cannot be flattened into state observations and are refused.
        filter_key: read only the demos listed under `mask/<filter_key>`.

    Returns:
        An `OfflineDataset` with observations [M, D], actions [M, A], rewards [M],
        next_observations [M, D], terminals [M], timeouts [M] and episode_ids [M] (the number
        in each demo's name), demos in index order
        (demo_0, demo_1, ..., demo_10). `terminals` are robomimic's `dones` (what they mark,
        success or the end of a demo, is the dataset's `done_mode`); the last step of a demo
        that is not done is a timeout (it bootstraps). Without a `next_obs` group, s' is the
        demo's next `obs`, and the last step of a demo is dropped unless it is terminal (its
        s' is unknown; a terminal step never bootstraps from it).
    """
    try:
        import h5py
    except ImportError as exc:
        raise ImportError("reading robomimic HDF5 datasets needs h5py: `pip install h5py` "
                          "(or `make install-robomimic`)") from exc

    path = Path(path)
    with h5py.File(path, "r") as f:
        if "data" not in f:
            raise ValueError(f"{path} is not a robomimic dataset: it has no 'data' group")
        if filter_key is not None:
            mask = f"mask/{filter_key}"
            if mask not in f:
                have = sorted(f["mask"]) if "mask" in f else []
                raise ValueError(f"{path} has no filter key {filter_key!r}; it has {have}")
            demos = [d.decode() if isinstance(d, bytes) else str(d) for d in np.asarray(f[mask][:]).tolist()]
        else:
            demos = list(f["data"])
        demos = sorted(demos, key=_demo_order)
        if not demos:
            raise ValueError(f"{path} holds no demonstrations" + (f" under mask/{filter_key}" if filter_key else ""))
        obs_keys = _obs_keys(f["data"][demos[0]], obs_keys, path)

        parts: dict[str, list[np.ndarray]] = {k: [] for k in (
            "observations", "actions", "rewards", "next_observations", "terminals", "timeouts", "episode_ids")}
        for name in demos:
            demo = f["data"][name]
            actions = np.asarray(demo["actions"][:], np.float32)
            t = len(actions)
            if t == 0:
                continue
            obs = _flat(demo["obs"], obs_keys, t)
            rewards = np.asarray(demo["rewards"][:], np.float32).reshape(t) if "rewards" in demo \
                else np.zeros(t, np.float32)
            terminals = np.asarray(demo["dones"][:]).reshape(t).astype(bool) if "dones" in demo \
                else np.zeros(t, bool)
            if "next_obs" in demo:
                next_obs = _flat(demo["next_obs"], obs_keys, t)
                keep = t
            else:
                next_obs = np.concatenate([obs[1:], obs[-1:]])  # the last row is used only if terminal
                keep = t if terminals[-1] else t - 1
            timeouts = np.zeros(t, bool)
            timeouts[-1] = not terminals[-1]
            episode_ids = np.full(t, _demo_order(name)[0], np.int64)
            for key, value in (("observations", obs), ("actions", actions), ("rewards", rewards),
                               ("next_observations", next_obs), ("terminals", terminals),
                               ("timeouts", timeouts), ("episode_ids", episode_ids)):
                parts[key].append(value[:keep])
    if not parts["observations"] or sum(len(p) for p in parts["observations"]) == 0:
        raise ValueError(f"{path} holds no transitions")
    return OfflineDataset({k: np.concatenate(v) for k, v in parts.items()})


def _demo_order(name: str) -> tuple[int, str]:
    """demo_2 before demo_10 (robomimic orders demos by their index, not as strings)."""
    match = re.search(r"(\d+)$", name)
    return (int(match.group(1)) if match else -1, name)


def _obs_keys(demo, obs_keys: Sequence[str] | None, path: Path) -> list[str]:
    group = demo["obs"]
    if obs_keys is None:
        keys = sorted(k for k in group if group[k].ndim <= 2)
        if not keys:
            raise ValueError(f"{path} has no low-dimensional observation keys (found {sorted(group)})")
        return keys
    keys = list(obs_keys)
    missing = [k for k in keys if k not in group]
    if missing:
        raise ValueError(f"{path} has no observation keys {missing}; it has {sorted(group)}")
    images = [k for k in keys if group[k].ndim > 2]
    if images:
        raise ValueError(f"observation keys {images} are images (per-step shape "
                         f"{group[images[0]].shape[1:]}); only low-dimensional keys can be flattened")
    return keys


def _flat(group, keys: list[str], t: int) -> np.ndarray:
    """Concatenate `keys` of an obs group into [T, D] float32."""
    columns = []
    for k in keys:
        value = np.asarray(group[k][:], np.float32)
        if len(value) != t:
            raise ValueError(f"observation {group.name}/{k} has {len(value)} steps, actions have {t}")
        columns.append(value.reshape(t, -1))
    return np.concatenate(columns, axis=1)


def write_robomimic_hdf5(
    dataset: OfflineDataset | dict[str, np.ndarray],
    path: str | Path,
    obs_keys: dict[str, int] | None = None,
    env_name: str = "",
) -> Path:
    """Write transitions in robomimic's HDF5 layout (one `demo_<i>` group per episode).

    Args:
        dataset: an `OfflineDataset` or its arrays. Episodes are told apart by
            `episode_ids` when present (demo names then carry those ids), else they end at
            each terminal or timeout.
        obs_keys: name -> width, splitting the flat observation into robomimic keys in this
            order (e.g. {"robot0_eef_pos": 3, "object": 10}); default one key, "state".
            Read back with `read_robomimic_hdf5(path, obs_keys=list(obs_keys))`.
        env_name: recorded in `data.attrs["env_args"]` (as a gym-type env).

    The file is written under a temporary name and renamed, so a killed writer never
    leaves a half-written dataset behind.
    """
    import h5py

    arrays = dataset.arrays if isinstance(dataset, OfflineDataset) else OfflineDataset(dataset).arrays
    obs, next_obs = np.asarray(arrays["observations"]), np.asarray(arrays["next_observations"])
    widths = obs_keys or {"state": obs.shape[1]}
    if sum(widths.values()) != obs.shape[1]:
        raise ValueError(f"obs_keys widths {widths} add up to {sum(widths.values())}, observations have "
                         f"{obs.shape[1]} columns")
    terminals = np.asarray(arrays["terminals"], bool)
    timeouts = np.asarray(arrays.get("timeouts", np.zeros(len(obs), bool)), bool)
    ids = arrays.get("episode_ids")
    if ids is None:  # a new episode after every terminal or timeout
        ids = np.concatenate([[0], np.cumsum((terminals | timeouts)[:-1])])
    ids = np.asarray(ids)
    starts = np.flatnonzero(np.concatenate([[True], ids[1:] != ids[:-1]]))
    bounds = list(zip(starts, np.concatenate([starts[1:], [len(obs)]])))
    if len({int(ids[a]) for a, _ in bounds}) != len(bounds):
        raise ValueError("episode_ids must be contiguous: each episode's transitions in one block")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        data.attrs["total"] = len(obs)
        data.attrs["env_args"] = json.dumps({"env_name": env_name, "type": 2, "env_kwargs": {}})
        for a, b in bounds:
            demo = data.create_group(f"demo_{int(ids[a])}")
            demo.attrs["num_samples"] = b - a
            for group, values in (("obs", obs[a:b]), ("next_obs", next_obs[a:b])):
                column = 0
                for key, width in widths.items():
                    demo.create_dataset(f"{group}/{key}", data=values[:, column:column + width])
                    column += width
            demo.create_dataset("actions", data=np.asarray(arrays["actions"][a:b], np.float32))
            demo.create_dataset("rewards", data=np.asarray(arrays["rewards"][a:b], np.float32))
            demo.create_dataset("dones", data=terminals[a:b].astype(np.int64))
    tmp.replace(path)
    return path


def read_minari(dataset_id: str) -> OfflineDataset:
    """A Minari dataset from the local Minari cache (`minari.load_dataset(id)`, never
    downloaded here). Dict observations are flattened in their space's key order."""
    try:
        import minari
    except ImportError as exc:
        raise ImportError("reading Minari datasets needs minari: `pip install expo-sdk[data]`") from exc
    try:
        dataset = minari.load_dataset(dataset_id, download=False)
    except Exception as exc:
        raise ValueError(f"cannot load Minari dataset {dataset_id!r} from the local cache "
                         f"({type(exc).__name__}: {exc})") from exc
    space = dataset.observation_space
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (
        "observations", "actions", "rewards", "next_observations", "terminals", "timeouts", "episode_ids")}
    for episode in dataset.iterate_episodes():
        obs = _flatten_minari_obs(space, episode.observations)  # [T + 1, D]
        t = len(episode.actions)
        terminated = np.asarray(episode.terminations, bool)
        parts["observations"].append(obs[:-1])
        parts["next_observations"].append(obs[1:])
        parts["actions"].append(np.asarray(episode.actions, np.float32).reshape(t, -1))
        parts["rewards"].append(np.asarray(episode.rewards, np.float32))
        parts["terminals"].append(terminated)
        parts["timeouts"].append(np.asarray(episode.truncations, bool) & ~terminated)
        parts["episode_ids"].append(np.full(t, episode.id, np.int64))
    if not parts["observations"]:
        raise ValueError(f"Minari dataset {dataset_id!r} holds no episodes")
    return OfflineDataset({k: np.concatenate(v) for k, v in parts.items()})


def _flatten_minari_obs(space, obs) -> np.ndarray:
    import gymnasium as gym

    if isinstance(space, gym.spaces.Dict):
        return np.concatenate([_flatten_minari_obs(sub, obs[key]) for key, sub in space.spaces.items()], axis=1)
    if isinstance(space, gym.spaces.Box):
        obs = np.asarray(obs, np.float32)
        return obs.reshape(len(obs), -1)
    raise ValueError(f"cannot flatten Minari observations of space {space}; only Box and Dict of Box")


def read_lerobot_dataset(repo_id: str, root: str | Path | None = None,
                         obs_keys: Sequence[str] | None = None) -> OfflineDataset:
    """A LeRobotDataset's frames as transitions (LeRobot installed: `make install-lerobot`).

    `root`: the dataset's local folder (else LeRobot's cache for `repo_id`, which LeRobot
    downloads from the Hub when missing). Observations concatenate `obs_keys` (default:
    every non-image `observation.*` feature, in the dataset's order); actions are
    `action`; rewards `next.reward` (else zeros); an episode's frame with `next.done` is
    terminal (LeRobot has no separate time-limit flag: a dataset whose episodes end by
    time limit should be read with its terminals cleared). s' is the episode's next frame;
    an episode's last frame, which has none, keeps its own observation as s' and is a
    terminal or, without `next.done`, a time-limit end (`timeouts`).
    """
    from .adapters.lerobot import _prepare_torchvision

    try:
        _prepare_torchvision()
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
    except ImportError as exc:
        raise ImportError("reading LeRobot datasets needs LeRobot: `make install-lerobot`") from exc
    try:
        dataset = LeRobotDataset(repo_id, root=root)
    except Exception as exc:
        raise ValueError(f"cannot open LeRobot dataset {repo_id!r} (root={root}): "
                         f"{type(exc).__name__}: {exc}") from exc
    features = dataset.features
    if obs_keys is None:
        obs_keys = [k for k, f in features.items()
                    if k.startswith("observation.") and f["dtype"] not in ("image", "video")]
    unknown = [k for k in [*obs_keys, "action"] if k not in features]
    if unknown or not obs_keys:
        raise ValueError(f"LeRobot dataset {repo_id!r} has no feature(s) {unknown or 'observation.*'}; "
                         f"it has {sorted(features)}")
    images = [k for k in obs_keys if features[k]["dtype"] in ("image", "video")]
    if images:
        raise ValueError(f"image observations {images} are not supported yet: pass state obs_keys")
    frames = dataset.hf_dataset.with_format("numpy")

    def column(key: str) -> np.ndarray:
        values = np.asarray(frames[key])
        return values.reshape(len(values), -1)

    obs = np.concatenate([column(k).astype(np.float32) for k in obs_keys], axis=1)
    episodes = column("episode_index")[:, 0]
    last = np.append(episodes[1:] != episodes[:-1], True)  # frames are stored episode by episode
    done = column("next.done")[:, 0].astype(bool) if "next.done" in features else np.zeros(len(obs), bool)
    next_obs = obs.copy()
    next_obs[:-1][~last[:-1]] = obs[1:][~last[:-1]]
    return OfflineDataset({
        "observations": obs, "actions": column("action").astype(np.float32), "next_observations": next_obs,
        "rewards": (column("next.reward")[:, 0] if "next.reward" in features else np.zeros(len(obs))
                    ).astype(np.float32),
        "terminals": done, "timeouts": last & ~done, "episode_ids": episodes.astype(np.int64)})
