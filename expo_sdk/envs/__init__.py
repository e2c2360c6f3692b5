"""Task registry: short names -> env factories.

Factories import their simulators lazily, so importing this package (and the
core library) works without the optional ``sim`` / ``robosuite`` extras installed.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import gymnasium as gym

from expo_sdk.envs.antmaze import AntMazeExpert, make_antmaze
from expo_sdk.envs.demos import concatenate_demonstrations, generate_demonstrations
from expo_sdk.envs.fetch import FetchExpert, make_fetch
from expo_sdk.envs.pusht import PushTExpert, make_pusht
from expo_sdk.envs.pointmaze import (
    PointMazeExpert,
    SparseGoalObservation,
    make_pointmaze,
)
from expo_sdk.envs.robosuite_tasks import make_robosuite, make_robosuite_expert

# Step limits scale with maze size: the scripted expert needs ~50 / ~80 / ~140
# steps on average (p90 ~90 / ~130 / ~240) on UMaze / Medium / Large.
# Any default can be overridden, e.g. make_task("pointmaze-umaze", max_episode_steps=300).
TASKS: dict[str, Callable[..., gym.Env]] = {
    "pointmaze-open": partial(make_pointmaze, "Open", max_episode_steps=120),
    "pointmaze-umaze": partial(make_pointmaze, "UMaze", max_episode_steps=100),
    "pointmaze-medium": partial(make_pointmaze, "Medium", max_episode_steps=200),
    "pointmaze-large": partial(make_pointmaze, "Large", max_episode_steps=400),
    # AntMaze (20 Hz): gymnasium-robotics' own limits, as D4RL's AntMaze (700 / 1000 / 1000
    # steps); measured expert success and lengths in docs/tasks.md.
    "antmaze-umaze": partial(make_antmaze, "UMaze", max_episode_steps=700),
    "antmaze-medium": partial(make_antmaze, "Medium", max_episode_steps=1000),
    "antmaze-large": partial(make_antmaze, "Large", max_episode_steps=1000),
    # gymnasium-robotics' own 50-step limit; the expert needs ~28 / ~25 steps (p90 44 / 30).
    "fetch-push": partial(make_fetch, "Push", max_episode_steps=50),
    "fetch-pickandplace": partial(make_fetch, "PickAndPlace", max_episode_steps=50),
    # robosuite (Panda, OSC_POSE, 20 Hz; `make install-robosuite`). The scripted experts need
    # ~34 / ~111 / ~109 / ~74 steps on average (longest of 50: 45 / 166 / 155 / 119) on
    # Lift / Can / Square / Stack (docs/tasks.md).
    "robosuite-lift": partial(make_robosuite, "lift", max_episode_steps=100),
    "robosuite-can": partial(make_robosuite, "can", max_episode_steps=250),
    "robosuite-square": partial(make_robosuite, "square", max_episode_steps=250),
    "robosuite-stack": partial(make_robosuite, "stack", max_episode_steps=200),
    # gym-pusht's own 300-step limit; the expert needs ~78 steps on average (p90 ~115).
    "pusht": partial(make_pusht, max_episode_steps=300),
}


def make_task(name: str, **kwargs: Any) -> gym.Env:
    """Build the registered task ``name``; ``kwargs`` go to its factory.

    Raises:
        ValueError: if ``name`` is not in :data:`TASKS` (the message lists the
            known names).
    """
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name](**kwargs)


def make_expert(name: str, env: gym.Env, **kwargs: Any):
    """The scripted expert for task ``name`` (quality knobs such as speed/noise_std in kwargs)."""
    if name.startswith("pointmaze-"):
        return PointMazeExpert(env, **kwargs)
    if name.startswith("antmaze-"):
        return AntMazeExpert(env, **kwargs)
    if name.startswith("fetch-"):
        return FetchExpert(env, **kwargs)
    if name.startswith("robosuite-"):
        return make_robosuite_expert(name[len("robosuite-"):], env, **kwargs)
    if name == "pusht":
        return PushTExpert(env, **kwargs)
    raise ValueError(f"no scripted expert for task {name!r}; tasks with experts: {', '.join(sorted(TASKS))}")


__all__ = [
    "AntMazeExpert",
    "make_antmaze",
    "FetchExpert",
    "make_fetch",
    "PushTExpert",
    "make_pusht",
    "make_expert",
    "TASKS",
    "make_task",
    "make_pointmaze",
    "SparseGoalObservation",
    "PointMazeExpert",
    "generate_demonstrations",
    "concatenate_demonstrations",
    "make_robosuite",
    "make_robosuite_expert",
]
