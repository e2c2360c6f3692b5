"""Checkpoints: a run killed with SIGKILL resumes and ends with the same metrics."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from resume_worker import CONFIG
from toy_policy import BiasedMixturePolicy

from expo_sdk import FinetuneConfig, Finetuner
from expo_sdk.checkpoint import (find_checkpoint, load_checkpoint, load_checkpoint_shard, save_checkpoint,
                                 save_sharded_checkpoint)
from expo_sdk.envs.toy import ReachGoalEnv

WORKER = str(Path(__file__).with_name("resume_worker.py"))


def _metrics(run_dir):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")} for line in lines]


def _worker(run_dir, *flags):
    return subprocess.Popen([sys.executable, WORKER, str(run_dir), *flags], cwd=Path(WORKER).parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigkilled_run_resumes_to_identical_metrics(tmp_path):
    reference = _worker(tmp_path / "reference")
    assert reference.wait(timeout=300) == 0, reference.stderr.read()[-2000:]

    killed_dir = tmp_path / "killed"
    victim = _worker(killed_dir)
    deadline = time.time() + 300
    while find_checkpoint(killed_dir) is None or _checkpoint_step(killed_dir) < 300:
        assert victim.poll() is None, "the run finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (killed_dir / "summary.json").exists()  # it really died mid-run

    resumed = _worker(killed_dir, "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-2000:]
    assert _metrics(killed_dir) == _metrics(tmp_path / "reference")
    summary = json.loads((killed_dir / "summary.json").read_text())
    reference_summary = json.loads((tmp_path / "reference" / "summary.json").read_text())
    for key in ("base_success", "final_success", "final_base_success", "env_steps"):
        assert summary[key] == reference_summary[key]


def _checkpoint_step(run_dir):
    try:
        return load_checkpoint(find_checkpoint(run_dir))[1]["env_step"]
    except (ValueError, TypeError):
        return -1


def test_in_process_resume_matches_and_rejects_a_changed_config(tmp_path):
    def tuner(**overrides):
        return Finetuner(BiasedMixturePolicy(), FinetuneConfig(**{**CONFIG, **overrides}))

    full = tuner().run(ReachGoalEnv, 400, run_dir=tmp_path / "full", progress=False)

    class StopAt(__import__("expo_sdk").Callback):
        def on_step(self, t, env_step):
            return env_step >= 250

    tuner().run(ReachGoalEnv, 400, run_dir=tmp_path / "part", callbacks=[StopAt()], progress=False)
    assert find_checkpoint(tmp_path / "part") is not None
    with pytest.raises(ValueError, match="different config"):
        tuner(utd_ratio=3).run(ReachGoalEnv, 400, run_dir=tmp_path / "part", resume=True, progress=False)
    resumed = Finetuner.resume(tmp_path / "part", BiasedMixturePolicy(), ReachGoalEnv, 400, progress=False)
    assert resumed.final_success == full.final_success and resumed.env_steps == 400
    assert _metrics(tmp_path / "part") == _metrics(tmp_path / "full")


def test_interrupted_swap_falls_back_to_the_previous_checkpoint(tmp_path):
    save_checkpoint(tmp_path, {"x": torch.ones(2)}, {"env_step": 1})
    (tmp_path / "checkpoint").rename(tmp_path / "checkpoint.old")  # killed between the two renames
    (tmp_path / "checkpoint.tmp123").mkdir()  # and a half-written new one
    tensors, state = load_checkpoint(find_checkpoint(tmp_path))
    assert state["env_step"] == 1 and torch.equal(tensors["x"], torch.ones(2))
    save_checkpoint(tmp_path, {"x": torch.zeros(2)}, {"env_step": 2})
    assert load_checkpoint(find_checkpoint(tmp_path))[1]["env_step"] == 2


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path, {"x": torch.ones(2)}, {"env_step": 1})
    (path / "tensors.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="unreadable.*delete it to restart"):
        load_checkpoint(path)


def test_a_run_resumes_with_more_total_steps_keeping_its_replay(tmp_path):
    # The replay is sized by total_steps: extending a finished run loads it into a larger one.
    config = FinetuneConfig(**{**CONFIG, "checkpoint_every": 100})
    first = Finetuner(BiasedMixturePolicy(), config)
    first.run(ReachGoalEnv, 300, run_dir=tmp_path, progress=False)
    tensors, state = load_checkpoint(find_checkpoint(tmp_path))
    stored = state["replay"]["size"]
    assert 200 <= stored < 300 and first.online.capacity == 300
    longer = Finetuner(BiasedMixturePolicy(), config)
    result = longer.run(ReachGoalEnv, 500, run_dir=tmp_path, resume=True, progress=False)
    assert result.env_steps == 500 and longer.online.capacity == 500
    assert longer.online.obs[:stored].equal(tensors["replay/obs"])


class _Collective:
    """`all_succeeded` for P threads standing in for P processes (a real barrier, no mock)."""

    def __init__(self, world_size):
        self.barrier, self.flags = threading.Barrier(world_size), [True] * world_size

    def for_rank(self, rank):
        def all_succeeded(ok):
            self.flags[rank] = ok
            self.barrier.wait()
            result = all(self.flags)
            self.barrier.wait()  # nobody overwrites a flag before everyone has read them
            return result
        return all_succeeded


def _save_shards(run_dir, states, world_size=2):
    collective, errors = _Collective(world_size), {}

    def shard(rank):
        try:
            save_sharded_checkpoint(run_dir, {"x": torch.full((2,), float(rank))}, states[rank], rank,
                                    world_size, collective.for_rank(rank))
        except OSError as exc:
            errors[rank] = exc

    threads = [threading.Thread(target=shard, args=(r,)) for r in range(world_size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


def test_sharded_checkpoint_keeps_each_process_shard_and_its_process_count(tmp_path):
    assert _save_shards(tmp_path, [{"env_step": 10}, {"env_step": 12}]) == {}
    path = find_checkpoint(tmp_path)
    for rank in (0, 1):
        tensors, state = load_checkpoint_shard(path, rank, 2)
        assert torch.equal(tensors["x"], torch.full((2,), float(rank)))
        assert state["rank"] == rank and state["world_size"] == 2 and state["env_step"] == 10 + 2 * rank
    with pytest.raises(ValueError, match="written by 2 process.*this run has 1.*resume with 2"):
        load_checkpoint_shard(path, 0, 1)
    single = save_checkpoint(tmp_path / "single", {"x": torch.ones(1)}, {"env_step": 1})
    with pytest.raises(ValueError, match="written by 1 process.*this run has 2"):
        load_checkpoint_shard(single, 1, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "single"]  # no temporaries left


def test_one_failing_shard_fails_every_process_and_keeps_the_previous_checkpoint(tmp_path):
    assert _save_shards(tmp_path, [{"env_step": 10}, {"env_step": 10}]) == {}
    errors = _save_shards(tmp_path, [{"env_step": 20}, {"env_step": object()}])  # rank 1 cannot write
    assert sorted(errors) == [0, 1]
    assert "another process could not write its shard" in str(errors[0])
    assert "not JSON serializable" in str(errors[1]) and "previous checkpoint" in str(errors[1])
    path = find_checkpoint(tmp_path)
    assert [load_checkpoint_shard(path, r, 2)[1]["env_step"] for r in (0, 1)] == [10, 10]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_a_refreshed_cache_resumes_exactly_with_its_demonstrations(tmp_path):
    # With cache_refresh_per_step the demos' cached samples change during the run too: the
    # checkpoint keeps them, so a resumed run still reproduces the uninterrupted one.
    rng = np.random.default_rng(0)
    demos = {"observations": rng.uniform(-1, 1, (50, 4)).astype(np.float32),
             "actions": rng.uniform(-1, 1, (50, 2)).astype(np.float32), "rewards": np.zeros(50, np.float32),
             "next_observations": rng.uniform(-1, 1, (50, 4)).astype(np.float32), "terminals": np.zeros(50, bool)}
    config = FinetuneConfig(**{**CONFIG, "cache_refresh_per_step": 16, "cache_samples": 6})

    class StopAt(__import__("expo_sdk").Callback):
        def on_step(self, t, env_step):
            return env_step >= 250

    Finetuner(BiasedMixturePolicy(), config).run(ReachGoalEnv, 400, offline_data=demos, run_dir=tmp_path / "full",
                                                 progress=False)
    Finetuner(BiasedMixturePolicy(), config).run(ReachGoalEnv, 400, offline_data=demos, run_dir=tmp_path / "part",
                                                 callbacks=[StopAt()], progress=False)
    tensors, state = load_checkpoint(find_checkpoint(tmp_path / "part"))
    assert tensors["offline/next_base_actions"].shape == (50, 6, 2) and state["offline_refresh_cursor"] > 0
    Finetuner(BiasedMixturePolicy(), config).run(ReachGoalEnv, 400, offline_data=demos, run_dir=tmp_path / "part",
                                                 resume=True, progress=False)
    assert _metrics(tmp_path / "part") == _metrics(tmp_path / "full")
