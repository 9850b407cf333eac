# Two commands do all set-up on a fresh machine (each builds the virtual environment if needed):
#   make run    the main job: a short CIFAR-10 demonstration of ST-ResNet-20 (all three stages)
#   make test   the test suite
# GPU users: make GPU=1 ... installs requirements-gpu.txt (mxnet-cu112) instead of the CPU wheel.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
REQUIREMENTS := $(if $(GPU),requirements-gpu.txt,requirements.txt)
STAMP := $(VENV)/.installed-$(if $(GPU),gpu,cpu)
# make run ARGS="--data_dir /path/to/cifar-10-batches-py --epochs_fp 2"
ARGS ?=
PYTEST_ARGS ?= -q

.PHONY: run test bench clean-venv

$(STAMP): requirements.txt requirements-gpu.txt requirements-common.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(REQUIREMENTS)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m strassen_gluon.cifar10 --quick $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/layers.py

clean-venv:
	rm -rf $(VENV)
