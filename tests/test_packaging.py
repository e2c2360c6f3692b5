"""The installed package exposes `expo_sdk.adapters` and no top-level `adapters` module."""

import subprocess
import sys


def _run(code, tmp_path):
    # Run outside the repository so the checkout itself is not on sys.path.
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)


def test_public_api_imports(tmp_path):
    proc = _run("from expo_sdk import Finetuner, FinetuneConfig, EditHead, OnTheFlySelector, BasePolicy, "
                "load_policy; import expo_sdk.adapters; print(expo_sdk.adapters.DDPMPolicy.__name__)", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "DDPMPolicy"


def test_no_top_level_adapters_module(tmp_path):
    proc = _run("import adapters", tmp_path)
    assert proc.returncode != 0 and "No module named 'adapters'" in proc.stderr


def test_ddpm_adapter_is_registered_as_an_entry_point():
    from expo_sdk.loading import available_adapters

    assert available_adapters()["ddpm"].load().__name__ == "DDPMPolicy"


def test_demo_recipe_is_installed_with_the_package():
    from expo_sdk.recipe import Recipe
    from expo_sdk.recipes import recipe_path

    recipe = Recipe.load(recipe_path("demo_pointmaze"))
    assert recipe.task.name == "pointmaze-umaze"
