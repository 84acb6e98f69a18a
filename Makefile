# One entry point for developers and CI. Everything sets itself up from a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint typecheck unit demo airflow emulator bench bench-triggers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## make test: lint, format check, the async client in sync with the sync one, mypy --strict, pytest.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/unasync.py --check
	$(BIN)/mypy --strict
	$(BIN)/pytest

## make demo: the quarterly sweep DAG, run for real (airflow dags test) against the local emulator.
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

## make airflow: airflow standalone plus the emulator, to click around in the UI (Ctrl-C stops both).
airflow: $(STAMP)
	$(BIN)/python scripts/airflow_ui.py

## make emulator: the emulator alone, on port 8900.
emulator: $(STAMP)
	$(BIN)/coverbase-emulator --port 8900

## make bench: the emulator load benchmark (prints requests/s and latencies).
bench: $(STAMP)
	$(BIN)/python benchmarks/emulator_load.py

## make bench-triggers: N waiting triggers in one event loop, ours beside the peer providers' triggers
## (installs the bench extra; about 40 min; BENCH_ARGS=--quick for about 10, --help for the flags).
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench-triggers: $(BENCH_STAMP)
	$(BIN)/python benchmarks/triggerer_scale.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict

unit: $(STAMP)
	$(BIN)/pytest -m "not integration and not e2e"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .airflow-home .demo
