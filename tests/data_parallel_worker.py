"""One process of a 2-process data-parallel run (launched by test_data_parallel.py with
torchrun): trains a tiny EXPO learner and writes what the test compares across processes.
Phases: "whole" (one run), or "first" (30 steps, checkpointing) then "resumed" (to 40), or
"collectors" (one run, each process with its own Ray collector, in the cluster at RAY_ADDRESS)
then "collectors-resumed" (from its last checkpoint to 56)."""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from toy_policy import BiasedMixturePolicy

from expo_sdk import Callback, FinetuneConfig, Finetuner
from expo_sdk.distributed import accelerator_from_environment, average_gradients
from expo_sdk.envs.toy import ReachGoalEnv

out = Path(sys.argv[1])
phase = sys.argv[2] if len(sys.argv) > 2 else "whole"  # or "first" / "resumed": a run checkpointed, then resumed
accelerator = accelerator_from_environment()  # what `expo finetune` does under torchrun
rank = accelerator.process_index

# average_gradients: gradient rank + 1 on process `rank` -> the mean, 1.5, everywhere
probe = torch.nn.Parameter(torch.zeros(3))
probe.grad = torch.full((3,), rank + 1.0)
average_gradients(accelerator, [probe])

config = FinetuneConfig(batch_size=8, utd_ratio=2, base_mode="frozen", num_samples=2, eval_episodes=5,
                        eval_num_envs=2, eval_every=10**6, log_every=20, learning_starts=10,
                        checkpoint_every=0 if phase == "whole" else 20,
                        critic={"ensemble_size": 2, "hidden_dim": 8}, edit_head={"hidden_dim": 8, "num_layers": 1})
RUN_DIRS = {"whole": "run", "collectors": "collected", "collectors-resumed": "collected"}
run_dir = out / RUN_DIRS.get(phase, "checkpointed")
if phase.startswith("collectors"):  # every process its own actor, all in the cluster the test started
    from expo_sdk.ray_collection import RayCollectors

    resume = phase == "collectors-resumed"
    tuner = Finetuner(BiasedMixturePolicy(), config, accelerator=accelerator)
    result = tuner.run(ReachGoalEnv, total_steps=56 if resume else 40, run_dir=run_dir, progress=False,
                       resume=resume, collectors=RayCollectors(num_collectors=1, transitions_per_call=4, sync_every=8))
elif phase == "resumed":  # the Python API's resume, each process with its accelerator
    tuner = None

    class Keep(Callback):
        def on_train_start(self, t, total_steps):
            global tuner
            tuner = t

    result = Finetuner.resume(run_dir, BiasedMixturePolicy(), ReachGoalEnv, 40, accelerator=accelerator,
                              progress=False, callbacks=[Keep()])
else:
    tuner = Finetuner(BiasedMixturePolicy(), config, accelerator=accelerator)
    result = tuner.run(ReachGoalEnv, total_steps=30 if phase == "first" else 40, run_dir=run_dir, progress=False)

tensors = {f"critic/{k}": v for k, v in tuner.critic.state_dict().items()}
tensors.update({f"edit_head/{k}": v for k, v in tuner.edit_head.state_dict().items()})
tensors.update({f"target/{k}": v for k, v in tuner.target.target.state_dict().items()})
tensors["replay/obs"] = tuner.online.obs[: len(tuner.online)].clone()
tensors["probe_grad"] = probe.grad
name = f"rank{rank}" + ("" if phase == "whole" else f"-{phase}")
save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / f"{name}.safetensors"))
(out / f"{name}.json").write_text(json.dumps(
    {"world_size": accelerator.num_processes, "eval_episodes": result.eval_episodes,
     "final_success": result.final_success, "base_success": result.base_success, "env_steps": result.env_steps,
     "critic_steps": sorted({int(s["step"]) for s in tuner.critic_optimizer.state.values()})}))
accelerator.wait_for_everyone()
accelerator.end_training()  # destroys the process group: exiting with gloo's connections open can abort
