"""Recipe YAML files shipped with expo-sdk (installed as `expo_sdk.recipes`)."""

from pathlib import Path

RECIPE_DIR = Path(__file__).resolve().parent


def recipe_path(name: str) -> Path:
    """Path of a shipped recipe by name (with or without `.yaml`)."""
    path = RECIPE_DIR / (name if name.endswith(".yaml") else f"{name}.yaml")
    if not path.is_file():
        known = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no shipped recipe {name!r}; known recipes: {known}")
    return path
