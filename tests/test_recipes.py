"""Every shipped recipe validates, names a registered task, and says what it scales."""

import sys
from pathlib import Path

import pytest

from expo_sdk import FinetuneConfig
from expo_sdk.envs import TASKS
from expo_sdk.recipe import Recipe

RECIPES = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))


def test_recipes_are_shipped():
    assert len(RECIPES) >= 6


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_validates_and_states_its_scaling(path):
    recipe = Recipe.load(path)
    assert recipe.task.name in TASKS or recipe.task.name.startswith(("robosuite-", "pusht"))
    paper = FinetuneConfig()
    if path.stem.endswith("_paper"):
        # The paper's Table 1: only beta (and evaluation/checkpoint cadence) may differ.
        f = recipe.finetune
        assert (f.utd_ratio, f.batch_size, f.critic, f.selector, f.gamma, f.base_mode) == (
            paper.utd_ratio, paper.batch_size, paper.critic, paper.selector, paper.gamma, paper.base_mode)
        assert (recipe.base.hidden_dim, recipe.base.num_blocks, recipe.base.num_diffusion_steps) == (256, 3, 10)
        assert "paper" in recipe.description
    else:
        assert "CPU-SCALED" in recipe.description


def test_collectors_without_ray_fail_before_any_work(tmp_path, monkeypatch):
    from expo_sdk.recipe import run_recipe

    recipe = Recipe.load(RECIPES[0].with_name("demo_pointmaze.yaml"), ["collectors.num_collectors=2"])
    assert recipe.collectors.num_collectors == 2 and recipe.collectors.transitions_per_call == 64
    monkeypatch.setitem(sys.modules, "ray", None)  # Ray not installed: `import ray` raises ImportError
    with pytest.raises(ImportError, match=r"collectors` need Ray: pip install 'expo-sdk\[distributed\]'"):
        run_recipe(recipe, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before demos, pretraining or the run directory
    with pytest.raises(ValueError, match="num_collectors"):
        Recipe.load(RECIPES[0].with_name("demo_pointmaze.yaml"), ["collectors.num_collectors=0"])
