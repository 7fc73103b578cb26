# Two entry points: `make demo` (set up, then train, evaluate, promote and serve the demo fleet, and retrain
# it live) and `make test` (set up with the dev and embeddings extras, then lint and run the test suite).
# Both create .venv on first use; the demo needs only the core (no torch).
PYTHON ?= python3
VENV := .venv
SHOAL_TEST_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
export SHOAL_TEST_POSTGRES_URL

$(VENV)/bin/pip:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip

$(VENV)/.core: pyproject.toml | $(VENV)/bin/pip
	$(VENV)/bin/pip install --quiet -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(VENV)/bin/pip
	$(VENV)/bin/pip install --quiet -e ".[dev,embeddings]"
	touch $@ $(VENV)/.core

.PHONY: demo test lint
demo: $(VENV)/.core
	$(VENV)/bin/shoal demo

test: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/pytest

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
