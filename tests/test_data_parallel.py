"""Data-parallel learning with accelerate: two real CPU processes (gloo), tiny sizes."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("accelerate")
WORKER = Path(__file__).with_name("data_parallel_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dp")
    # torchrun starts the processes (accelerate's own launcher needs mpirun for several
    # CPU processes); Accelerator() inside each one joins them into a gloo process group.
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(WORKER), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=WORKER.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


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
