"""Task-agnostic demonstrations: concatenation and mixed-quality recipe demo sets."""

from pathlib import Path

import numpy as np
import pytest

from expo_sdk.envs.demos import concatenate_demonstrations
from expo_sdk.recipe import DemoConfig, Recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _part(ids):
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids)
    return {"observations": np.zeros((n, 2), np.float32), "actions": np.zeros((n, 1), np.float32),
            "rewards": np.zeros(n, np.float32), "next_observations": np.zeros((n, 2), np.float32),
            "terminals": np.zeros(n, bool), "timeouts": np.zeros(n, bool), "episode_ids": ids,
            "episode_starts": np.concatenate([[True], ids[1:] != ids[:-1]]) if n else np.zeros(0, bool)}


def test_concatenate_keeps_episode_ids_distinct():
    a, b = _part([0, 0, 2, 2]), _part([0, 1, 1])
    data = concatenate_demonstrations([a, b])
    assert list(data["episode_ids"]) == [0, 0, 2, 2, 3, 4, 4]
    assert list(data["episode_starts"]) == [True, False, True, False, True, True, False]
    # With the rollout counts as offsets, seed_0 + id is each episode's reset seed.
    data = concatenate_demonstrations([a, b], id_offsets=[0, 5])
    assert list(data["episode_ids"]) == [0, 0, 2, 2, 5, 6, 6]
    with pytest.raises(ValueError):
        concatenate_demonstrations([])


def test_mixture_replaces_the_single_quality():
    single = DemoConfig(episodes=7, speed=0.5, noise_std=0.1)
    assert [(s.episodes, s.speed, s.noise_std) for s in single.sources()] == [(7, 0.5, 0.1)]
    mixed = DemoConfig(mixture=[{"episodes": 2}, {"episodes": 3, "speed": 0.4, "noise_std": 0.2}])
    assert [(s.episodes, s.speed, s.noise_std) for s in mixed.sources()] == [(2, 1.0, 0.0), (3, 0.4, 0.2)]
    with pytest.raises(ValueError):
        DemoConfig(mixture=[{"episodes": 2, "sped": 0.5}])


def test_mixed_demos_from_a_recipe(tmp_path, monkeypatch):
    pytest.importorskip("gymnasium_robotics")
    from expo_sdk.recipe import load_or_generate_demos

    monkeypatch.setenv("EXPO_SDK_CACHE", str(tmp_path))
    recipe = Recipe.model_validate({
        "task": {"name": "pointmaze-open"},
        "demos": {"mixture": [{"episodes": 2}, {"episodes": 3, "speed": 0.5, "noise_std": 0.2}],
                  "only_successes": False, "seed": 10},
    })
    data = load_or_generate_demos(recipe)
    assert list(np.unique(data["episode_ids"])) == [0, 1, 2, 3, 4]
    assert data["episode_starts"].sum() == 5
    # The first source is exactly what a single-quality recipe with its settings records.
    single = Recipe.model_validate({"task": {"name": "pointmaze-open"},
                                    "demos": {"episodes": 2, "only_successes": False, "seed": 10}})
    first = load_or_generate_demos(single)
    n = len(first["observations"])
    np.testing.assert_array_equal(data["observations"][:n], first["observations"])


@pytest.mark.parametrize("name", ["robosuite_lift.yaml", "robosuite_can.yaml"])
def test_robosuite_recipes_validate(name):
    recipe = Recipe.load(RECIPES / name)
    assert recipe.task.name.startswith("robosuite-")
    assert "CPU-SCALED" in recipe.description
