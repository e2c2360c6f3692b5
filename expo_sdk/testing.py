"""The adapter conformance kit: one shared test class every base-policy adapter runs.

Modelled on diffusers' shared scheduler tests: an adapter's test file subclasses
`PolicyConformanceTests` and fills in a factory; pytest collects the subclass when its
name starts with `Test`.

    from expo_sdk.testing import PolicyConformanceTests

    class TestMyPolicy(PolicyConformanceTests):
        adapter_name = "my_policy"          # optional: also checks load_policy detection

        def make_policy(self):
            return MyPolicy(obs_dim=4, action_dim=2, hidden_dim=16)

Each test method's docstring says what a failure means and how to fix the adapter. The
kit needs pytest (a test dependency, not a runtime one). `SpecMatchedEnv` builds a tiny
gymnasium env for any flat-observation `PolicySpec`, so the Finetuner smoke test runs
for every adapter without a simulator.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from .config import FinetuneConfig
from .finetuner import Finetuner
from .loading import load_policy
from .policy import BasePolicy, Obs, PolicySpec, check_policy, policy_device, supports_imitation

__all__ = ["PolicyConformanceTests", "SpecMatchedEnv", "random_obs"]


class SpecMatchedEnv(gym.Env):
    """A tiny env that matches any flat-observation `PolicySpec` (for smoke tests).

    Observations: uniform in [-1, 1]^obs_shape, redrawn every step. Actions: a Box with the
    spec's bounds. The goal is the first observation coordinate, read as a canonical
    action: a step succeeds (reward 1, terminated) when the action's first coordinate,
    mapped to [-1, 1], is within `tolerance` of it. Episodes are truncated after
    `max_episode_steps`.
    """

    metadata = {"render_modes": []}

    def __init__(self, spec: PolicySpec, max_episode_steps: int = 5, tolerance: float = 0.2) -> None:
        if isinstance(spec.obs_shape, dict):
            raise TypeError("SpecMatchedEnv needs a flat obs_shape; dict observations are not supported")
        self.max_episode_steps, self.tolerance = max_episode_steps, tolerance
        self.observation_space = spaces.Box(-1.0, 1.0, tuple(spec.obs_shape), np.float32)
        self.action_space = spaces.Box(np.asarray(spec.action_low, np.float32),
                                       np.asarray(spec.action_high, np.float32), dtype=np.float32)
        self._obs = np.zeros(spec.obs_shape, np.float32)
        self._t = 0

    def _draw(self) -> np.ndarray:
        self._obs = self.np_random.uniform(-1.0, 1.0, self.observation_space.shape).astype(np.float32)
        return self._obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._draw(), {"is_success": False}

    def step(self, action):
        low, high = self.action_space.low, self.action_space.high
        action = np.clip(np.asarray(action, np.float32), low, high)
        canonical = 2.0 * (action[0] - low[0]) / (high[0] - low[0]) - 1.0
        success = bool(abs(canonical - self._obs.flat[0]) < self.tolerance)
        self._t += 1
        truncated = self._t >= self.max_episode_steps and not success
        return self._draw(), float(success), success, truncated, {"is_success": success}


def random_obs(spec: PolicySpec, batch_size: int, seed: int = 0, device: torch.device | str = "cpu") -> Obs:
    """Standard-normal observations [B, *obs_shape] (or a dict of them), reproducible by seed."""
    g = torch.Generator().manual_seed(seed)
    if isinstance(spec.obs_shape, dict):
        return {k: torch.randn(batch_size, *s, generator=g).to(device) for k, s in spec.obs_shape.items()}
    return torch.randn(batch_size, *spec.obs_shape, generator=g).to(device)


def _obs_to(obs: Obs, device: torch.device | str) -> Obs:
    if isinstance(obs, torch.Tensor):
        return obs.to(device)
    return {k: v.to(device) for k, v in obs.items()}


def _replace_rows_except(obs: Obs, keep: int, fresh: Obs) -> Obs:
    """A copy of `obs` whose rows other than `keep` come from `fresh`."""
    def one(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = b.clone()
        out[keep] = a[keep]
        return out
    if isinstance(obs, torch.Tensor):
        return one(obs, fresh)
    return {k: one(v, fresh[k]) for k, v in obs.items()}


class PolicyConformanceTests:
    """Shared tests for `expo_sdk.BasePolicy` adapters. Subclass as `Test...` and override:

    Required:
        make_policy(self) -> BasePolicy: a small policy (hidden 16-32, on the CPU).
    Optional:
        make_dataset(self) -> dict | None: demonstrations ({"observations" [M, D],
            "actions" [M, H, A] (or [M, A] when H = 1) in env units, M >= 16}) used as
            inputs of the `imitation_loss` check, mapped to canonical actions with
            `policy.normalizer`; default: random observations and canonical actions.
        make_obs(self, spec, batch_size, seed): observations the policy accepts; default
            standard normal.
        stochastic = True: False for deterministic policies (skips the "samples differ"
            checks).
        supports_save = True: False when the policy has no save_pretrained/from_pretrained.
        adapter_name = None: the entry-point name in "expo_sdk.adapters"; given, the save
            test also checks that `load_policy(dir)` detects this adapter.
        batch_size = 3, num_samples = 4: the B and N the checks sample with.
        cuda_atol = 1e-3: tolerance between CPU and CUDA samples.
    """

    stochastic: bool = True
    supports_save: bool = True
    adapter_name: str | None = None
    batch_size: int = 3
    num_samples: int = 4
    # CPU vs CUDA results of the same computation differ in rounding only.
    cuda_atol: float = 1e-3

    # ------------------------------------------------------------------ hooks
    def make_policy(self) -> BasePolicy:
        raise NotImplementedError(
            f"{type(self).__name__} must implement make_policy(self) returning a small policy"
        )

    def make_dataset(self) -> dict[str, np.ndarray] | None:
        return None

    def make_obs(self, spec: PolicySpec, batch_size: int, seed: int = 0) -> Obs:
        return random_obs(spec, batch_size, seed)

    # ------------------------------------------------------------------ helpers
    def _sample(self, policy, obs: Obs, seed: int | None, num_samples: int | None = None) -> torch.Tensor:
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        with torch.no_grad():
            return policy.sample(obs, num_samples or self.num_samples, generator=generator)

    def _setup(self):
        policy = self.make_policy()
        if hasattr(policy, "eval"):
            policy.eval()
        obs = _obs_to(self.make_obs(policy.spec, self.batch_size), policy_device(policy))
        return policy, obs

    # ------------------------------------------------------------------ the tests
    def test_sample_shape_and_dtype(self):
        """`sample(obs, N)` must return a floating-point tensor of shape [B, N, H, A].

        H is `spec.horizon` (1 without chunking) and A `spec.action_dim`. Keep the N axis
        even when N == 1 and the H axis even when H == 1 (reshape [B * N, H * A] outputs
        with `.reshape(B, N, H, A)`).
        """
        policy, obs = self._setup()
        spec = policy.spec
        for n in (1, self.num_samples):
            actions = self._sample(policy, obs, seed=0, num_samples=n)
            expected = (self.batch_size, n, spec.horizon, spec.action_dim)
            assert isinstance(actions, torch.Tensor), f"sample returned {type(actions).__name__}"
            assert tuple(actions.shape) == expected, (
                f"sample returned shape {tuple(actions.shape)} for B={self.batch_size}, N={n}; "
                f"expected [B, N, H, A] = {expected}")
            assert actions.is_floating_point(), f"sample returned {actions.dtype}; return float actions"

    def test_samples_are_canonical(self):
        """Samples must be finite and inside the canonical box [-1, 1].

        The edit head, critic and replay buffer all work in the canonical space. Map env
        actions with the policy's normalizer (`Normalizer.action_to_canonical`) and clamp
        the sampler's output to [-1, 1].
        """
        policy, obs = self._setup()
        actions = self._sample(policy, obs, seed=0)
        assert torch.isfinite(actions).all(), "sample returned NaN or inf"
        assert actions.abs().max() <= 1.0 + 1e-6, (
            f"sample returned |a| up to {actions.abs().max():.4f}; clamp canonical actions to [-1, 1]")

    def test_batch_independence(self):
        """A state's samples must not depend on the other states in the batch.

        Check: with the same generator seed, changing every *other* row of the batch must
        leave row i's samples unchanged (i = first and last row). The noise an adapter
        draws depends on batch position, so comparing a batch of one against row i of a
        larger batch would be unsound; replacing the other rows keeps every random draw in
        place. Typical causes of a failure: BatchNorm in training mode or any statistic
        taken over the batch dimension, or observations and noise paired in the wrong
        order (use `repeat_interleave(N, 0)` for obs when the noise is [B * N, ...]).
        If your sampler's *number* of random draws depends on observation values
        (e.g. rejection sampling), override this test with a statistical check.
        """
        policy, obs = self._setup()
        fresh = _obs_to(self.make_obs(policy.spec, self.batch_size, seed=1), policy_device(policy))
        base = self._sample(policy, obs, seed=0)
        for i in (0, self.batch_size - 1):
            changed = self._sample(policy, _replace_rows_except(obs, i, fresh), seed=0)
            torch.testing.assert_close(
                changed[i], base[i],
                msg=lambda m, i=i: f"row {i}'s samples changed when the other rows of the batch "
                                   f"changed (same generator seed): states leak across the batch. {m}")

    def test_samples_differ_across_n(self):
        """A stochastic policy's N samples for one state must not all be identical.

        EXPO picks among N candidates; identical samples leave nothing to select. Draw
        independent noise for each of the N samples (not one draw broadcast over N). A
        deterministic policy should set `stochastic = False` in its test class.
        """
        if not self.stochastic:
            pytest.skip("deterministic policy (stochastic = False)")
        policy, obs = self._setup()
        actions = self._sample(policy, obs, seed=0)
        spread = (actions - actions[:, :1]).flatten(1).abs().amax(1)  # [B]
        assert (spread > 1e-6).all(), (
            f"all {self.num_samples} samples are identical for rows "
            f"{torch.nonzero(spread <= 1e-6).flatten().tolist()}")

    def test_generator_reproducibility(self):
        """The same generator seed must give the same samples, whatever the global RNG.

        Draw *all* randomness from the `generator` argument (`torch.randn(...,
        generator=generator)`, or diffusers' `randn_tensor`, which also handles a CPU
        generator for a CUDA policy); never from the global RNG (`torch.randn` without
        `generator=`), which this test reseeds between the two calls. Different seeds
        must give different samples for a stochastic policy.
        """
        policy, obs = self._setup()
        torch.manual_seed(1234)
        first = self._sample(policy, obs, seed=7)
        torch.manual_seed(4321)
        again = self._sample(policy, obs, seed=7)
        torch.testing.assert_close(
            again, first,
            msg=lambda m: f"same generator seed, different samples: sample() ignores `generator` or "
                          f"also draws from the global RNG, or keeps state between calls. {m}")
        if self.stochastic:
            other = self._sample(policy, obs, seed=8)
            assert not torch.allclose(other, first), (
                "different generator seeds gave identical samples: pass `generator` to every "
                "random draw (or set stochastic = False for a deterministic policy)")

    def test_device_move_cpu(self):
        """`policy.to("cpu")` must return the policy and keep its outputs.

        The Finetuner does `base = base.to(device)`: `.to` must return the (moved) policy,
        as `nn.Module.to` does, and every tensor the sampler uses (normalizer statistics,
        schedules) must move with it (register them as buffers).
        """
        policy, obs = self._setup()
        before = self._sample(policy, obs, seed=3)
        moved = policy.to("cpu")
        assert moved is not None and hasattr(moved, "sample"), (
            f".to('cpu') returned {type(moved).__name__}; return self (nn.Module.to does)")
        torch.testing.assert_close(self._sample(moved, obs, seed=3), before)

    def test_device_move_cuda(self):
        """On CUDA the policy must give the CPU results (up to rounding) with a CPU generator.

        The Finetuner samples with a CPU `torch.Generator` whatever the device. Create
        noise with `diffusers.utils.torch_utils.randn_tensor(shape, generator=g,
        device=obs.device)` (draws on the generator's device, then moves) instead of
        `torch.randn(..., generator=g, device=obs.device)`, which fails for a CPU
        generator and CUDA device. Register all tensors as buffers so they move.
        """
        if not torch.cuda.is_available():
            pytest.skip("CUDA is not available")
        policy, obs = self._setup()
        before = self._sample(policy, obs, seed=3)
        moved = policy.to("cuda")
        after = self._sample(moved, _obs_to(obs, "cuda"), seed=3)
        assert after.device.type == "cuda", f"a CUDA policy returned samples on {after.device}"
        torch.testing.assert_close(after.cpu(), before, atol=self.cuda_atol, rtol=self.cuda_atol)

    def test_imitation_loss_gradients(self):
        """`imitation_loss(obs, actions)` must be a finite scalar with finite, non-zero gradients.

        `actions` are canonical chunks [B, H, A]. The loss drives the imitation-updated
        mode; NaN/inf or all-zero gradients mean it cannot train the base. Check for
        detached tensors (`.detach()`, `torch.no_grad` or `.item()` inside the loss),
        divisions by zero, or log of zero. Skipped for policies without `imitation_loss`.
        """
        policy = self.make_policy()
        if not supports_imitation(policy):
            pytest.skip("the policy has no imitation_loss (frozen base only)")
        spec, device = policy.spec, policy_device(policy)
        data = self.make_dataset()
        if data is not None:
            obs = torch.as_tensor(np.asarray(data["observations"][:16], np.float32), device=device)
            env_actions = torch.as_tensor(np.asarray(data["actions"][:16], np.float32), device=device)
            actions = policy.normalizer.action_to_canonical(
                env_actions.reshape(-1, spec.horizon, spec.action_dim)).clamp(-1, 1)
        else:
            obs = _obs_to(self.make_obs(spec, 16), device)
            g = torch.Generator().manual_seed(0)
            actions = (torch.rand(16, spec.horizon, spec.action_dim, generator=g) * 2 - 1).to(device)
        policy.train()
        loss = policy.imitation_loss(obs, actions)
        assert isinstance(loss, torch.Tensor) and loss.numel() == 1, (
            f"imitation_loss returned {getattr(loss, 'shape', type(loss).__name__)}; return a scalar tensor")
        assert torch.isfinite(loss), f"imitation_loss is {loss.item()}"
        loss.backward()
        grads = [p.grad for p in policy.parameters() if p.requires_grad and p.grad is not None]
        assert grads, "imitation_loss did not reach any parameter: is the computation detached?"
        assert all(torch.isfinite(g).all() for g in grads), "imitation_loss has NaN/inf gradients"
        assert any(g.abs().sum() > 0 for g in grads), "imitation_loss gradients are all zero"

    def test_save_load_round_trip(self, tmp_path):
        """`save_pretrained(dir)` then `from_pretrained(dir)` must give the same samples.

        Everything the sampler depends on (weights, normalizer statistics, schedule
        settings) must be in the config or the safetensors file: pass configuration as
        JSON-serialisable `__init__` arguments (PyTorchModelHubMixin stores them) and
        statistics as buffers. With `adapter_name` set, `load_policy(dir)` must pick this
        adapter: make `matches_config(config)` true for your config.json only. Set
        `supports_save = False` if the policy cannot be saved.
        """
        if not self.supports_save:
            pytest.skip("supports_save = False")
        policy, obs = self._setup()
        policy.save_pretrained(tmp_path)
        loaded = type(policy).from_pretrained(tmp_path)
        loaded.eval()
        torch.testing.assert_close(self._sample(loaded, obs, seed=5), self._sample(policy, obs, seed=5))
        assert loaded.spec == policy.spec, f"spec changed on reload: {loaded.spec} != {policy.spec}"
        if self.adapter_name is not None:
            detected = load_policy(tmp_path)
            assert detected.identity["adapter"] == self.adapter_name, (
                f"load_policy detected adapter {detected.identity['adapter']!r}, expected "
                f"{self.adapter_name!r}; make matches_config specific to this adapter's config.json")

    def test_check_policy(self):
        """`expo_sdk.check_policy` must accept the policy (what the Finetuner runs first).

        Its error message names the problem: a missing `spec` or `sample`, a `spec` that
        is not a `PolicySpec`, or samples of the wrong shape, dtype or range for all-zero
        observations and `generator=None`.
        """
        policy, _ = self._setup()
        assert check_policy(policy) == policy.spec

    def test_finetuner_smoke(self):
        """A short `Finetuner` run on a `SpecMatchedEnv` must complete with a frozen base.

        Exercises what the fine-tuner needs beyond `sample`: `.to(device)`,
        `.requires_grad_` / `.eval` (an nn.Module), a `normalizer` whose action bounds
        match the spec (or none), and sampling for batches of 1 and of `batch_size`
        states. Skipped for dict observations or n_obs_steps > 1, which the Finetuner
        does not support yet.
        """
        policy = self.make_policy()
        spec = policy.spec
        if isinstance(spec.obs_shape, dict) or spec.n_obs_steps != 1:
            pytest.skip("the Finetuner supports flat observations with n_obs_steps=1 only")
        config = FinetuneConfig(
            batch_size=16, utd_ratio=1, num_samples=2, eval_episodes=2, base_mode="frozen",
            critic={"ensemble_size": 2, "num_min_q": 2, "hidden_dim": 16},
            edit_head={"hidden_dim": 16, "num_layers": 1},
            learning_starts=8, eval_every=10**6, log_every=10, seed=0,
        )
        total = 24
        result = Finetuner(policy, config).run(lambda: SpecMatchedEnv(spec), total_steps=total, progress=False)
        assert result.env_steps >= total
        assert 0.0 <= result.final_success <= 1.0 and 0.0 <= result.base_success <= 1.0
        assert any("train/critic_loss" in r for r in result.history), "no learning step was logged"
