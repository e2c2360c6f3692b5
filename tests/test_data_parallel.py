"""Data-parallel learning with accelerate: two real CPU processes (gloo), tiny sizes."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from ray_cluster import start_local_ray_cluster
from safetensors.torch import load_file
from toy_policy import BiasedMixturePolicy

from expo_sdk import FinetuneConfig, Finetuner
from expo_sdk.checkpoint import load_checkpoint_shard
from expo_sdk.envs.toy import ReachGoalEnv

pytest.importorskip("accelerate")
WORKER = Path(__file__).with_name("data_parallel_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(out, *args, env=None):
    # torchrun starts the processes (accelerate's own launcher needs mpirun for several
    # CPU processes); Accelerator() inside each one joins them into a gloo process group.
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(WORKER), str(out), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=WORKER.parent, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dp")
    _launch(out)
    return out


@pytest.fixture(scope="module")
def checkpointed_and_resumed(tmp_path_factory):
    out = tmp_path_factory.mktemp("dp-resume")
    _launch(out, "first")  # 30 env steps, a checkpoint at 20
    shards = [load_checkpoint_shard(out / "checkpointed" / "checkpoint", r, 2) for r in (0, 1)]
    _launch(out, "resumed")  # from the checkpoint at 20 to 40
    return out, shards


def test_gradients_are_averaged_across_processes(two_process_run):
    for rank in (0, 1):
        assert torch.equal(load_file(two_process_run / f"rank{rank}.safetensors")["probe_grad"],
                           torch.full((3,), 1.5))


def test_processes_learn_from_different_data_into_identical_networks(two_process_run):
    rank0, rank1 = (load_file(two_process_run / f"rank{r}.safetensors") for r in (0, 1))
    # each process collected its own episodes (differently seeded envs)...
    assert rank0["replay/obs"].shape == rank1["replay/obs"].shape
    assert not torch.equal(rank0["replay/obs"], rank1["replay/obs"])
    # ...and, with every gradient averaged, the networks never drifted apart
    networks = [k for k in rank0 if k.split("/")[0] in ("critic", "edit_head", "target")]
    assert len(networks) > 6
    for key in networks:
        assert torch.equal(rank0[key], rank1[key]), key
    summaries = [json.loads((two_process_run / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert summaries[0]["world_size"] == 2
    assert summaries[0]["critic_steps"] == summaries[1]["critic_steps"] == [2 * (40 - 10)]


def test_evaluation_is_split_and_gathered_and_only_the_main_process_writes(two_process_run):
    summaries = [json.loads((two_process_run / f"rank{r}.json").read_text()) for r in (0, 1)]
    # 5 episodes: 3 on one process and 2 on the other, gathered into one result everywhere
    assert summaries[0]["eval_episodes"] == summaries[1]["eval_episodes"] == 5
    assert summaries[0]["final_success"] == summaries[1]["final_success"]
    run = two_process_run / "run"
    assert (run / "metrics.jsonl").is_file() and (run / "summary.json").is_file()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len([line for line in lines if '"final": true' in line]) == 1  # one writer


def test_every_process_checkpoints_its_own_shard_at_the_same_step(checkpointed_and_resumed):
    out, shards = checkpointed_and_resumed
    (tensors0, state0), (tensors1, state1) = shards
    assert [state0["rank"], state1["rank"]] == [0, 1] and state0["world_size"] == state1["world_size"] == 2
    assert state0["env_step"] == state1["env_step"] == 20  # one env each: the clock agrees
    assert not torch.equal(tensors0["replay/obs"], tensors1["replay/obs"])  # each its own data
    for key in (k for k in tensors0 if k.split("/")[0] in ("critic", "edit_head", "target_critic")):
        assert torch.equal(tensors0[key], tensors1[key]), key
    assert not (out / "checkpointed" / "checkpoint" / "loop").exists()


def test_a_resumed_data_parallel_run_continues_each_process_from_its_shard(checkpointed_and_resumed):
    out, shards = checkpointed_and_resumed
    resumed = [load_file(out / f"rank{r}-resumed.safetensors") for r in (0, 1)]
    for rank in (0, 1):  # each process got its own replay back, and collected on from there
        stored = shards[rank][0]["replay/obs"]
        assert torch.equal(resumed[rank]["replay/obs"][: len(stored)], stored)
        assert len(resumed[rank]["replay/obs"]) == 40
    networks = [k for k in resumed[0] if k.split("/")[0] in ("critic", "edit_head", "target")]
    for key in networks:
        assert torch.equal(resumed[0][key], resumed[1][key]), key
    summaries = [json.loads((out / f"rank{r}-resumed.json").read_text()) for r in (0, 1)]
    # the updates of both parts add up to those of one run: none lost or repeated
    assert summaries[0]["critic_steps"] == summaries[1]["critic_steps"] == [2 * (40 - 10)]
    lines = (out / "checkpointed" / "metrics.jsonl").read_text().splitlines()
    # the resume rewrote the log from the checkpoint's history (the first part's steps after
    # the checkpoint, its end included, were logged again by the resumed run)
    finals = [json.loads(line) for line in lines if '"final": true' in line]
    assert len(finals) == 1 and finals[0]["env_step"] == 40


def test_a_data_parallel_checkpoint_refuses_another_number_of_processes(checkpointed_and_resumed):
    out, _ = checkpointed_and_resumed
    config = FinetuneConfig.model_validate(yaml.safe_load((out / "checkpointed" / "config.yaml").read_text()))
    with pytest.raises(ValueError, match="written by 2 process.*this run has 1.*resume with 2"):
        Finetuner(BiasedMixturePolicy(), config).run(ReachGoalEnv, 40, run_dir=out / "checkpointed",
                                                     resume=True, progress=False)


@pytest.fixture(scope="module")
def run_with_collectors(tmp_path_factory):
    ray = pytest.importorskip("ray")
    out = tmp_path_factory.mktemp("dp-collectors")
    # One local Ray cluster (2 CPUs) that both learner processes join through RAY_ADDRESS,
    # as they would join a real cluster.
    start_local_ray_cluster(ray)
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    try:
        _launch(out, "collectors", env=env)  # 40 env steps, checkpoints every 20
        shards = [load_checkpoint_shard(out / "collected" / "checkpoint", r, 2) for r in (0, 1)]
        _launch(out, "collectors-resumed", env=env)  # from the last checkpoint to 56
    finally:
        ray.shutdown()
    return out, shards


def test_data_parallel_processes_each_learn_from_their_own_remote_collectors(run_with_collectors):
    out, _ = run_with_collectors
    rank0, rank1 = (load_file(out / f"rank{r}-collectors.safetensors") for r in (0, 1))
    summaries = [json.loads((out / f"rank{r}-collectors.json").read_text()) for r in (0, 1)]
    # each process stored what its own actor sent (differently seeded episodes)...
    assert summaries[0]["env_steps"] >= 40 and summaries[1]["env_steps"] >= 40
    assert len(rank0["replay/obs"]) == summaries[0]["env_steps"]
    assert not torch.equal(rank0["replay/obs"][:8], rank1["replay/obs"][:8])
    # ...and both took utd_ratio steps per nominal batch transition together, so the
    # averaged gradients kept their networks identical
    assert summaries[0]["critic_steps"] == summaries[1]["critic_steps"]
    assert summaries[0]["critic_steps"][0] % (2 * 4) == 0 and summaries[0]["critic_steps"][0] >= 2 * (40 - 12)
    for key in (k for k in rank0 if k.split("/")[0] in ("critic", "edit_head", "target")):
        assert torch.equal(rank0[key], rank1[key]), key
    assert summaries[0]["final_success"] == summaries[1]["final_success"]


def test_data_parallel_processes_with_collectors_checkpoint_and_resume_together(run_with_collectors):
    out, shards = run_with_collectors
    (tensors0, state0), (tensors1, state1) = shards
    assert state0["env_step"] == state1["env_step"] >= 20  # the same (shared) step in both shards
    resumed = [load_file(out / f"rank{r}-collectors-resumed.safetensors") for r in (0, 1)]
    for rank, (tensors, state) in enumerate(shards):  # each process got its own replay back, and went on
        stored = tensors["replay/obs"]
        assert len(stored) == state["env_step"]
        assert torch.equal(resumed[rank]["replay/obs"][: len(stored)], stored)
        assert len(resumed[rank]["replay/obs"]) >= 56
    for key in (k for k in resumed[0] if k.split("/")[0] in ("critic", "edit_head", "target")):
        assert torch.equal(resumed[0][key], resumed[1][key]), key
    summaries = [json.loads((out / f"rank{r}-collectors-resumed.json").read_text()) for r in (0, 1)]
    assert summaries[0]["critic_steps"] == summaries[1]["critic_steps"]
