"""What data-parallel learning adds per optimizer step: averaging the gradients across processes.

    torchrun --nproc_per_node 2 benchmarks/allreduce_cost.py [--repeats 50]

Times `expo_sdk.distributed.average_gradients` (one `accelerator.reduce` of all gradients of
one optimizer) on the paper-size critic ensemble (E 10, 256 x 2, obs 23, action 7) and edit
head (256 x 3), median over `--repeats` calls after a warm-up, on whatever backend accelerate
picks (gloo on CPU, NCCL on GPUs). The main process prints one JSON line; per env step a
data-parallel learner pays `utd_ratio` critic reductions plus one edit-head reduction.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from expo_sdk.critic import CriticEnsemble
from expo_sdk.distributed import accelerator_from_environment, average_gradients
from expo_sdk.edit_head import EditHead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    accelerator = accelerator_from_environment()
    if accelerator is None:
        raise SystemExit("run it with several processes: torchrun --nproc_per_node 2 " + __file__)
    torch.set_num_threads(1)
    networks = {"critic": CriticEnsemble(23, 7, ensemble_size=10, hidden_dim=256),
                "edit_head": EditHead(23, 7, hidden_dim=256, num_layers=3)}
    result = {"processes": accelerator.num_processes, "backend": str(accelerator.distributed_type),
              "device": str(accelerator.device)}
    for name, net in networks.items():
        params = [p.to(accelerator.device) for p in net.parameters()]
        for p in params:
            p.grad = torch.randn_like(p)
        average_gradients(accelerator, params)  # warm-up (connection setup)
        times = []
        for _ in range(args.repeats):
            accelerator.wait_for_everyone()
            start = time.perf_counter()
            average_gradients(accelerator, params)
            if accelerator.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        result[f"{name}_floats"] = sum(p.numel() for p in params)
        result[f"{name}_reduce_ms"] = round(statistics.median(times) * 1e3, 3)
    per_env_step = 20 * result["critic_reduce_ms"] + result["edit_head_reduce_ms"]
    result["paper_utd20_ms_per_env_step"] = round(per_env_step, 2)
    if accelerator.is_main_process:
        print(json.dumps(result))
    accelerator.end_training()


if __name__ == "__main__":
    main()
