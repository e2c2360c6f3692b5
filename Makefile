# Two commands do everything on a fresh machine:
#   make demo   - installs into .venv, then runs the embedded PointMaze demo (CPU, no downloads)
#   make test   - installs into .venv, then runs the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; an already-installed torch >= 2.2 is reused instead.
TORCH ?= torch==2.13.0

.PHONY: install install-lerobot install-robomimic install-robosuite demo test test-fast test-lerobot test-robomimic test-robosuite clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)" || $(PY) -m pip install -q torch
	$(PY) -m pip install -q -e ".[sim,data,distributed,dev]"
	touch $@

install: $(VENV)/.installed

# Optional: LeRobot 0.4.4 for the `lerobot_diffusion` adapter, installed lean (no CUDA torch).
# Downgrades diffusers/huggingface-hub in $(VENV) to LeRobot's pins (<0.36).
install-lerobot: $(VENV)/.lerobot-installed

$(VENV)/.lerobot-installed: $(VENV)/.installed scripts/install_lerobot.sh scripts/_lean_venv.sh
	bash scripts/install_lerobot.sh $(VENV)
	touch $@

# Optional: robomimic 0.3.0 for the `robomimic` adapter and the HDF5 reader, installed lean
# (no CUDA torch, no tensorboard/egl_probe); see scripts/install_robomimic.sh.
install-robomimic: $(VENV)/.robomimic-installed

$(VENV)/.robomimic-installed: $(VENV)/.installed scripts/install_robomimic.sh scripts/_lean_venv.sh
	bash scripts/install_robomimic.sh $(VENV)
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/expo demo

test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 --durations=10

# The LeRobot adapter in its own venv (LeRobot pins older diffusers/huggingface-hub, so the
# main .venv keeps testing the newest releases): the adapter's tests plus loading/packaging.
LEROBOT_VENV ?= .venv-lerobot
test-lerobot:
	$(MAKE) VENV=$(LEROBOT_VENV) install-lerobot
	$(LEROBOT_VENV)/bin/python -m pytest -q -n 2 tests/test_adapter_lerobot.py tests/test_lerobot_dataset.py tests/test_loading.py tests/test_packaging.py tests/test_finetuned.py tests/test_examples.py::test_lerobot_example_fine_tunes_and_reports

# The robomimic adapter in its own venv (its install adds PyPI's torchvision, which only imports
# beside the CPU torch through the adapter's workaround; the main .venv stays without it):
# the adapter, the HDF5 reader, loading and packaging.
ROBOMIMIC_VENV ?= .venv-robomimic
test-robomimic:
	$(MAKE) VENV=$(ROBOMIMIC_VENV) install-robomimic
	$(ROBOMIMIC_VENV)/bin/python -m pytest -q -n 2 tests/test_adapter_robomimic.py tests/test_datasets.py tests/test_loading.py tests/test_packaging.py

# Optional: robosuite 1.5 (the robosuite-* tasks) in its own venv: it needs mujoco <3.10 and,
# through its IK dependency, numpy<2, while the main venv keeps the newest numpy and mujoco.
# That venv has the `sim` extra too (PointMaze runs on its mujoco 3.9).
ROBOSUITE_VENV ?= .venv-robosuite
install-robosuite: $(ROBOSUITE_VENV)/.installed

$(ROBOSUITE_VENV)/.installed: pyproject.toml scripts/install_robosuite.sh
	bash scripts/install_robosuite.sh $(ROBOSUITE_VENV)
	touch $@

# The robosuite tasks and experts, demos/recipes on them, and PointMaze on the older mujoco/numpy.
test-robosuite: install-robosuite
	$(ROBOSUITE_VENV)/bin/python -m pytest -q --durations=5 tests/test_robosuite_tasks.py tests/test_demos.py tests/test_pointmaze.py

# Unit tests only (skips learning tests and end-to-end runs).
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 -m "not slow"

clean:
	rm -rf $(VENV) $(LEROBOT_VENV) $(ROBOMIMIC_VENV) $(ROBOSUITE_VENV) build *.egg-info runs .pytest_cache
