"""Faults: an env that raises, a process killed mid-checkpoint, a disk that fills up,
and reruns with the same seed."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from toy_policy import BiasedMixturePolicy

from expo_sdk import FinetuneConfig, Finetuner
from expo_sdk.checkpoint import find_checkpoint, load_checkpoint
from expo_sdk.envs.toy import ReachGoalEnv
from expo_sdk.rollout import EnvError

HERE = Path(__file__).parent
TINY = dict(batch_size=8, utd_ratio=1, base_mode="frozen", num_samples=2, eval_episodes=2,
            eval_every=10**6, log_every=20, critic={"ensemble_size": 2, "hidden_dim": 8},
            edit_head={"hidden_dim": 8, "num_layers": 1}, learning_starts=10)


class FlakyEnv(ReachGoalEnv):
    """Raises on every `fail_every`-th step across all instances (a crashing simulator)."""

    calls = made = 0
    fail_every = 37

    def __init__(self):
        super().__init__()
        FlakyEnv.made += 1

    def step(self, action):
        FlakyEnv.calls += 1
        if FlakyEnv.calls % FlakyEnv.fail_every == 0:
            raise ConnectionError("simulator connection lost")
        return super().step(action)


@pytest.fixture
def flaky():
    FlakyEnv.calls = FlakyEnv.made = 0
    return FlakyEnv


def test_env_errors_truncate_the_episode_recreate_the_env_and_are_counted(flaky, tmp_path):
    tuner = Finetuner(BiasedMixturePolicy(), FinetuneConfig(**TINY))
    with pytest.warns(UserWarning, match="ConnectionError: simulator connection lost; episode truncated, env "
                                         "recreated"):
        result = tuner.run(flaky, total_steps=200, env_fn=ReachGoalEnv, run_dir=tmp_path, progress=False)
    failures = flaky.calls // flaky.fail_every
    assert failures >= 5 and result.env_steps == 200
    assert flaky.made == 1 + failures  # a fresh env after each failure
    assert len(tuner.online) == 200  # failed steps store nothing; every stored step is real
    last = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
            if "faults/env_errors" in line][-1]
    assert last["faults/env_errors"] == failures


def test_too_many_env_errors_stop_the_run_with_the_cause(flaky):
    flaky.fail_every = 3
    tuner = Finetuner(BiasedMixturePolicy(), FinetuneConfig(**TINY, max_env_errors=2))
    with pytest.warns(UserWarning), pytest.raises(EnvError, match="over the limit max_env_errors=2") as info:
        tuner.run(flaky, total_steps=100, env_fn=ReachGoalEnv, progress=False)
    assert isinstance(info.value.__cause__, ConnectionError)
    FlakyEnv.fail_every = 37


def test_an_env_instance_without_a_factory_cannot_be_recreated(flaky):
    tuner = Finetuner(BiasedMixturePolicy(), FinetuneConfig(**TINY))
    with pytest.raises(EnvError, match="cannot be recreated: pass the env as a factory"):
        tuner.run(flaky(), total_steps=100, env_fn=ReachGoalEnv, progress=False)


def _writer(directory, *args):
    return subprocess.Popen([sys.executable, str(HERE / "checkpoint_writer.py"), str(directory), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_during_checkpoint_writes_leaves_a_consistent_checkpoint(tmp_path):
    rng = random.Random(0)
    torn_writes = 0
    for trial in range(6):
        run_dir = tmp_path / f"trial{trial}"
        writer = _writer(run_dir)
        assert writer.stdout.readline().strip() == "1", writer.stderr.read()  # one complete checkpoint
        time.sleep(rng.uniform(0.0, 0.4))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        # Killed mid-write, the new copy is still in its temporary directory (or the swap's
        # backup is): count those, to know the test really interrupted writes.
        torn_writes += any(p.name.startswith(("checkpoint.tmp", "checkpoint.old")) for p in run_dir.iterdir())
        tensors, state = load_checkpoint(find_checkpoint(run_dir))
        assert state["step"] >= 1 and torch.all(tensors["x"] == state["step"])  # not torn
    assert torn_writes >= 1


def test_a_full_disk_is_a_clear_error_and_keeps_the_previous_checkpoint(tmp_path):
    # RLIMIT_FSIZE makes writes past 10 MB fail with EFBIG, as a full disk fails with ENOSPC.
    writer = _writer(tmp_path, str(10_000_000))
    out, err = writer.communicate(timeout=120)
    failure = json.loads(out.strip().splitlines()[-1])
    assert failure["step"] == 3, err  # 4 MB and 8 MB fit, 12 MB does not
    assert failure["errno"] == errno.EFBIG
    assert "could not write a checkpoint" in failure["message"]
    assert "the previous checkpoint" in failure["message"] and "is intact" in failure["message"]
    tensors, state = load_checkpoint(find_checkpoint(tmp_path))
    assert state["step"] == 2 and torch.all(tensors["x"] == 2)
    assert not list(tmp_path.glob("checkpoint.tmp*"))  # the partial copy was removed


def test_same_seed_gives_identical_metrics_files_in_fresh_processes(tmp_path):
    """Two separate processes (different hash seeds), same config and seed: the same
    metrics.jsonl, apart from wall-clock fields."""
    script = ("import sys, torch; sys.path.insert(0, %r); from toy_policy import BiasedMixturePolicy; "
              "from expo_sdk import FinetuneConfig, Finetuner; from expo_sdk.envs.toy import ReachGoalEnv; "
              "torch.set_num_threads(1); "
              "Finetuner(BiasedMixturePolicy(), FinetuneConfig(**%r)).run(ReachGoalEnv, 120, run_dir=sys.argv[1], "
              "progress=False)") % (str(HERE), {**TINY, "seed": 5, "eval_every": 60})

    def metrics(run_dir, hash_seed):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-c", script, str(run_dir)], check=True, env=env, capture_output=True)
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")} for line in lines]

    first, second = metrics(tmp_path / "a", "1"), metrics(tmp_path / "b", "2")
    assert len(first) >= 6 and any("train/critic_loss" in r for r in first)
    assert first == second
    np.testing.assert_equal(json.loads((tmp_path / "a" / "summary.json").read_text())["final_success"],
                            json.loads((tmp_path / "b" / "summary.json").read_text())["final_success"])
