# `make run` and `make test` are the README's two commands: each creates the virtual environment
# on first use, installs the project into it, and runs the main job or the whole test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install lint bench bench-env clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,onnx,postgres]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/nas run studies/under_6m.yaml

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .

# timm, for the side-by-side model benchmarks only (bench/_timm.py): without its dependencies,
# since torchvision has no CPU wheel for the pinned torch; never needed by the package or tests.
bench-env: install
	$(BIN)/python -m pip install --quiet --no-deps timm

bench: install
	$(BIN)/python bench/search_overhead.py
	$(BIN)/python bench/macs_vs_published.py
	$(BIN)/python bench/model_speed.py
	$(BIN)/python bench/export_coreml.py

clean:
	rm -rf $(VENV) .pytest_cache
