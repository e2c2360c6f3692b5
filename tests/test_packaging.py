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


def test_optional_adapters_import_without_their_libraries(tmp_path):
    """The robomimic and LeRobot adapter modules import lazily: entry-point detection needs no extras."""
    proc = _run("import sys; import expo_sdk.adapters.robomimic, expo_sdk.adapters.lerobot; "
                "from expo_sdk.loading import available_adapters; a = available_adapters(); "
                "[ep.load() for ep in a.values()]; "
                "print(sorted(a), 'robomimic' in sys.modules, 'lerobot' in sys.modules)", tmp_path)
    assert proc.returncode == 0, proc.stderr
    names, robomimic_imported, lerobot_imported = proc.stdout.strip().rsplit(" ", 2)
    assert "'robomimic'" in names and "'lerobot_diffusion'" in names
    assert robomimic_imported == "False" and lerobot_imported == "False"
