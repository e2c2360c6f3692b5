"""Configuration: one pydantic model per concern, composed into `FinetuneConfig`.

Every model forbids unknown keys and names the nearest valid key in the error, so a typo
in a recipe (`utd_raito: 20`) fails loudly instead of silently training with a default.
Defaults are the paper's hyperparameters (Table 1); CPU recipes override and say so.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


def compile_with_cuda_graphs_error(name: str) -> str:
    """The refusal of a compile switch together with CUDA graphs (config and deployment alike)."""
    return (f"{name} and cuda_graphs together are not supported (a CUDA graph already removes the per-op "
            "overhead the compile fuses away): set one of them")


class StrictConfig(BaseModel):
    """Base for all configs: unknown keys are errors that suggest the intended key."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = set(cls.model_fields) | set(getattr(cls, "ALIASES", {}))
            for key in data:
                if key not in known:
                    close = difflib.get_close_matches(str(key), sorted(known), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise ValueError(
                        f"unknown {cls.__name__} key {key!r}{hint} Valid keys: {sorted(known)}"
                    )
        return data


class EditHeadConfig(StrictConfig):
    beta: float = Field(0.05, gt=0, description="edit scale: |edit| <= beta per dimension")
    hidden_dim: int = Field(256, ge=1)
    num_layers: int = Field(3, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    layer_norm: bool = False
    zero_init_mean: bool = Field(
        False, description="start with zero mean edits: an untrained head then only adds noise to base actions")
    lr: float = Field(3e-4, gt=0)
    init_temperature: float = Field(1.0, gt=0)
    target_entropy: float | None = Field(None, description="None: -|A|/2 (+|A| log beta if adjusted)")
    adjust_target_entropy: bool = Field(
        True, description="shift the target by |A| log beta so it is reachable for small beta"
    )
    temperature_lr: float = Field(3e-4, gt=0)


class CriticConfig(StrictConfig):
    ensemble_size: int = Field(10, ge=1)
    num_min_q: int = Field(2, ge=1)
    hidden_dim: int = Field(256, ge=1)
    num_layers: int = Field(2, ge=1)
    lr: float = Field(3e-4, gt=0)
    tau: float = Field(0.005, gt=0, le=1)

    @model_validator(mode="after")
    def _subset_fits(self) -> "CriticConfig":
        if self.num_min_q > self.ensemble_size:
            raise ValueError(
                f"critic.num_min_q={self.num_min_q} exceeds critic.ensemble_size="
                f"{self.ensemble_size}; the REDQ min is over a subset of the ensemble"
            )
        return self


class SelectorConfig(StrictConfig):
    num_samples: int = Field(8, ge=1, description="N base samples per state")
    mode: Literal["argmax", "soft"] = "argmax"
    score: Literal["mean", "min"] = "mean"
    temperature: float = Field(1.0, gt=0, description="softmax temperature for mode=soft")
    include_base: bool = True
    entropy_coef: float | None = Field(
        None, ge=0, description="weight of the selection entropy in the soft backup; None: temperature, "
        "0: expected value only (keep entropy_coef * log(2N) < 1 - gamma on tasks that end on success)")


class ReplayConfig(StrictConfig):
    capacity: int = Field(1_000_000, ge=1)
    offline_ratio: float = Field(0.5, ge=0, le=1, description="fraction of each batch from offline data")


class FinetuneConfig(StrictConfig):
    """Everything `Finetuner` needs; nested per concern.

    Shortcuts accepted at the top level for the knobs people turn most: `beta`
    (edit_head.beta) and `num_samples` (selector.num_samples).
    """

    ALIASES: ClassVar[dict[str, tuple[str, str]]] = {
        "beta": ("edit_head", "beta"),
        "num_samples": ("selector", "num_samples"),
    }

    seed: int = 0
    device: str = Field("cpu", description="'cpu', 'cuda', 'cuda:1' or 'auto'")
    num_threads: int | None = Field(
        None, ge=1, description="torch CPU threads; None leaves torch's default"
    )
    retain_freed_memory: bool = Field(
        True, description="CPU: keep freed memory in the process (glibc) so the update's large "
        "temporaries do not page-fault on every allocation (see expo_sdk.allocator)",
    )
    base_sampling_dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="bfloat16: sample the base under torch.autocast (bf16 matmuls, "
        "fp32 accumulation); the update's denoising is ~95% of its FLOPs with fresh samples. An "
        "approximation, off in every recipe; pays on GPUs and on CPUs with bf16 units (AMX, "
        "AVX512-BF16), and is far slower than float32 on CPUs without them",
    )
    cuda_graphs: bool = Field(
        False, description="CUDA, one process: capture the learner update (after 3 eager updates) and "
        "acting (per batch size) in CUDA graphs and replay them (one launch instead of thousands; the "
        "same kernels, so exact). See expo_sdk.cuda_graphs",
    )
    compile_critic: bool = Field(
        False, description="torch.compile (inductor, static shapes) the target critic's scoring of the TD "
        "targets' candidates, the bulk of an update with cached base samples: fuses LayerNorm, its "
        "per-member affine and ReLU. Compiles on the first update (seconds); the same function up to "
        "float rounding. See benchmarks/critic_scoring.py",
    )
    compile_base_sampling: bool = Field(
        False, description="torch.compile (inductor) the base's denoising loop, for a base that offers it "
        "(`DDPMPolicy.compile_sampling`): fuses each step's elementwise work around the matmuls; the same "
        "function up to float rounding. Pays on CPU (acting at batch 1, fresh-sample updates); compiles "
        "on the first call per batch shape (seconds, cached on disk by inductor). Not with cuda_graphs",
    )
    compile_acting: bool = Field(
        False, description="torch.compile (inductor, static shapes) the OTF selection when acting: the edit "
        "head's edits and the target critic's scores of the 2N candidates, in one fused graph (the random "
        "draws stay eager, in the same order). The same actions up to float rounding. Pays on CPU at small "
        "batches (acting at batch 1); compiles once per acting batch size and for evaluation's mean edits "
        "(seconds). With compile_base_sampling, all of acting but the draws is compiled. Not with cuda_graphs",
    )
    gamma: float = Field(0.99, gt=0, le=1)
    reward_scale: float = Field(1.0, gt=0, description="multiplies every env reward in the TD target")
    reward_bias: float = Field(
        0.0, description="added to every env step's reward in the TD target, after reward_scale (stored "
        "rewards and success stay raw; Q-values and TD targets are in the shaped units). IQL's and "
        "RLPD's AntMaze setting is -1: each step costs and reaching the goal ends the cost (it did not "
        "help this SDK's CPU-scaled AntMaze recipe: docs/RESULTS.md). A chunk of h steps gets bias * "
        "(1 + gamma + ... + gamma^(h-1)). Paper recipe: 0")
    batch_size: int = Field(256, ge=1)
    utd_ratio: int = Field(20, ge=1, description="critic updates per env step (G)")
    base_mode: Literal["frozen", "imitation"] = "imitation"
    base_lr: float = Field(3e-4, gt=0)
    base_ema_decay: float = Field(0.999, ge=0, lt=1)
    edit_input: Literal["base", "data"] = Field(
        "base", description="actions the edit head is trained to edit: fresh base samples or dataset actions"
    )
    learning_starts: int = Field(0, ge=0, description="env steps before the first update")
    warmup_steps: int = Field(
        0, ge=0, description="env steps acted by `warmup_policy` while the critic learns"
    )
    warmup_policy: Literal["base", "random"] = "base"
    cache_base_candidates: bool = Field(
        False,
        description="draw the N base samples for s' once at insertion (exact only for a frozen base)",
    )
    cache_samples: int | None = Field(
        None, ge=1, description="with the cache: K >= N base samples kept per next state (default N); "
        "each TD target uses N of them at random, so one transition's targets vary across updates",
    )
    cache_refresh_per_step: int = Field(
        0, ge=0, description="with the cache: entries re-drawn from the sampling base per env step, "
        "oldest first, in each buffer (every cached sample is then at most size / R env steps old); "
        "required with an imitation-updated base, whose cached samples otherwise go stale",
    )
    eval_every: int = Field(10_000, ge=1)
    eval_episodes: int = Field(50, ge=1)
    num_envs: int = Field(
        1, ge=1, description="training envs stepped together (a gymnasium vector env when > 1); "
        "the OTF policy acts on all E at once and each env step still gets `utd_ratio` critic updates",
    )
    vector_env: Literal["sync", "async"] = Field(
        "sync", description="with num_envs > 1: step the envs in this process ('sync') or one "
        "subprocess each ('async', for simulators slower than the policy)",
    )
    eval_num_envs: int = Field(
        10, ge=1, description="envs stepped together while evaluating (fewer: less memory for heavy simulators)")
    log_every: int = Field(1_000, ge=1)
    checkpoint_every: int = Field(
        0, ge=0, description="env steps between resumable checkpoints (run_dir/checkpoint); 0: none "
        "(the final policy is saved either way)")
    max_env_errors: int = Field(
        10, ge=0, description="env exceptions survived per run (episode truncated, env recreated) before giving up"
    )
    edit_head: EditHeadConfig = EditHeadConfig()
    critic: CriticConfig = CriticConfig()
    selector: SelectorConfig = SelectorConfig()
    replay: ReplayConfig = ReplayConfig()

    @model_validator(mode="before")
    @classmethod
    def _expand_aliases(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for alias, (section, key) in cls.ALIASES.items():
            if alias not in data:
                continue
            value = data.pop(alias)
            sub = data.get(section, {})
            sub = sub.model_dump() if isinstance(sub, BaseModel) else dict(sub)
            if key in sub and sub[key] != value:
                raise ValueError(f"{alias}={value} conflicts with {section}.{key}={sub[key]}")
            sub[key] = value
            data[section] = sub
        return data

    @model_validator(mode="after")
    def _check_cache(self) -> "FinetuneConfig":
        if not self.cache_base_candidates:
            if self.cache_samples is not None or self.cache_refresh_per_step:
                raise ValueError("cache_samples and cache_refresh_per_step need cache_base_candidates: true")
            return self
        if self.base_mode != "frozen" and not self.cache_refresh_per_step:
            raise ValueError(
                "cache_base_candidates=True with base_mode='imitation' needs cache_refresh_per_step > 0: "
                "cached samples of an imitation-updated base go stale unless they are re-drawn "
                "(or set base_mode: frozen, or turn the cache off)"
            )
        if self.cache_samples is not None and self.cache_samples < self.selector.num_samples:
            raise ValueError(f"cache_samples={self.cache_samples} must be >= num_samples="
                             f"{self.selector.num_samples} (each TD target uses N cached samples)")
        return self

    @property
    def cached_samples_per_state(self) -> int:
        """K: base samples cached per next state (0 without the cache)."""
        if not self.cache_base_candidates:
            return 0
        return self.cache_samples or self.selector.num_samples

    @model_validator(mode="after")
    def _bias_needs_discounting(self) -> "FinetuneConfig":
        if self.reward_bias and self.gamma == 1:
            raise ValueError("reward_bias needs gamma < 1: a chunk's step count is read from its "
                             "discount gamma^h (set gamma below 1, or reward_bias: 0)")
        return self

    @model_validator(mode="after")
    def _one_way_to_fuse_sampling(self) -> "FinetuneConfig":
        for name in ("compile_base_sampling", "compile_acting"):
            if getattr(self, name) and self.cuda_graphs:
                raise ValueError(compile_with_cuda_graphs_error(name))
        return self

    @model_validator(mode="after")
    def _batch_fits_replay(self) -> "FinetuneConfig":
        if self.batch_size > self.replay.capacity:
            raise ValueError(
                f"batch_size={self.batch_size} exceeds replay.capacity={self.replay.capacity}; "
                "every minibatch would repeat transitions (raise replay.capacity or lower batch_size)"
            )
        return self

    @property
    def beta(self) -> float:
        return self.edit_head.beta


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; errors name the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a YAML mapping at the top level, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `--set a.b=value` overrides (values parsed as YAML scalars)."""
    data = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key.subkey=value")
        dotted, raw = item.split("=", 1)
        keys = dotted.split(".")
        node = data
        for key in keys[:-1]:
            node[key] = dict(node.get(key) or {})
            node = node[key]
        node[keys[-1]] = yaml.safe_load(raw)
    return data
