# One entry point for developers and CI. Everything sets itself up from a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test test-e2e test-airflow-3.2 ui-check ui-build ui-test ui-bundle-check bench-ui lint typecheck unit demo airflow emulator bench bench-triggers dist-check docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## make test: the fast inner loop (under 2 minutes): lint, format check, the async client in sync with
## the sync one, mypy --strict, then the unit, integration (emulator on loopback) and dag.test() tests.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/unasync.py --check
	$(BIN)/mypy --strict
	$(BIN)/pytest -m "not e2e"

## make test-e2e: the tests that start real Airflow processes (api-server, scheduler, triggerer, the CLI)
## or build and install a wheel. CI runs both.
test-e2e: $(STAMP)
	$(BIN)/pytest -m e2e

## make test-airflow-3.2: the oldest supported Airflow. A separate venv installed with
## constraints/airflow-3.2.txt; the unit, integration and dag.test() tests (make test's set).
## docutils: the README test checks its links against the anchors Sphinx gives the docs headings.
AF32_VENV  := .venv-airflow-3.2
AF32_STAMP := $(AF32_VENV)/.installed
## What both steps install, under the constraints CI tests.
AF32_PINNED := -c constraints/airflow-3.2.txt apache-airflow pytest-asyncio trustme docutils

$(AF32_VENV)/bin/python:
	$(PYTHON) -m venv $(AF32_VENV)
	$(AF32_VENV)/bin/python -m pip install --quiet --upgrade pip

## Airflow 3.2 and the test tools, without building this project: the slow part (mostly downloads),
## which .ci/run starts in the background while the other tests run.
$(AF32_VENV)/.airflow: constraints/airflow-3.2.txt | $(AF32_VENV)/bin/python
	$(AF32_VENV)/bin/python -m pip install --quiet $(AF32_PINNED)
	touch $@

$(AF32_STAMP): constraints/airflow-3.2.txt pyproject.toml $(AF32_VENV)/.airflow
	$(AF32_VENV)/bin/python -m pip install --quiet $(AF32_PINNED) -e '.[testing]'
	touch $(AF32_STAMP)

test-airflow-3.2: $(AF32_STAMP)
	$(AF32_VENV)/bin/python -c 'import airflow; assert airflow.__version__.startswith("3.2."), airflow.__version__; print("Airflow", airflow.__version__)'
	$(AF32_VENV)/bin/python -m pytest -q -m "not e2e"

## make demo: the quarterly sweep DAG, run for real (airflow dags test) against the local emulator.
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

## make airflow: airflow standalone plus the emulator, to click around in the UI (Ctrl-C stops both).
airflow: $(STAMP)
	$(BIN)/python scripts/airflow_ui.py

## make ui-check: Airflow standalone and the emulator, driven in headless Chromium (Playwright): the
## connection form, its Test button, the quarterly sweep, its run link while deferred, its log, the
## Coverbase tab and page (a failed run's reason at 1280x800, a tier fan-out, dark mode, a webhook-only
## run, a user denied a DAG). Not in CI (several minutes, a browser and a full Airflow).
ui-check: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[ui-check]'
	$(BIN)/python scripts/ui_check.py

## make ui-test: the Coverbase UI plugin's TypeScript check and vitest component tests (Node 20 + npm).
## make ui-build: rebuild the committed bundle from the lockfile (npm ci, vite build).
## make ui-bundle-check: the committed bundle equals a fresh build from the lockfile.
UI_DIR := airflow_provider_coverbase/plugins/www

$(UI_DIR)/node_modules/.package-lock.json: $(UI_DIR)/package-lock.json
	cd $(UI_DIR) && npm ci --no-audit --no-fund

ui-test: $(UI_DIR)/node_modules/.package-lock.json
	cd $(UI_DIR) && npx tsc --noEmit && npx vitest run

ui-build: $(UI_DIR)/node_modules/.package-lock.json
	cd $(UI_DIR) && npx vite build

ui-bundle-check: ui-build
	git diff --exit-code -- $(UI_DIR)/dist || (echo "The committed UI bundle differs from a fresh build: run make ui-build and commit $(UI_DIR)/dist"; exit 1)
	test -z "$$(git status --porcelain -- $(UI_DIR)/dist)"

## make emulator: the emulator alone, on port 8900.
emulator: $(STAMP)
	$(BIN)/coverbase-emulator --port 8900

## make bench: the emulator load benchmark (prints requests/s and latencies).
bench: $(STAMP)
	$(BIN)/python benchmarks/emulator_load.py

## make dist-check: build the sdist and the wheel (isolated build), twine check, check their contents.
dist-check: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*
	$(BIN)/python scripts/check_dist.py dist

## make docs: the Sphinx site (docs/ -> docs/_build/html), every page read afresh, warnings as errors. That
## is also the check of internal links: MyST resolves each link to a page, a heading anchor or a label while
## building and warns on one it cannot find. External URLs are not fetched. Sphinx comes from the docs
## extra, installed into .venv beside the dev tools (`make test` does not install it).
DOCS_STAMP := $(VENV)/.installed-docs
$(DOCS_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/sphinx-build -W --keep-going -E -q -b html docs docs/_build/html
## make bench-ui: the Coverbase page's API with 10,000 recorded runs, p50/p95 per page (benchmarks/ui_api.py).
bench-ui: $(STAMP)
	$(BIN)/python benchmarks/ui_api.py $(BENCH_UI_ARGS)

## make bench-triggers: N waiting triggers in one event loop, ours beside the peer providers' triggers
## (about 40 min; BENCH_ARGS=--quick for about 10, --help for the flags). The peers come from the bench
## extra, in a venv of their own: installed in .venv they would change what `make test` sees.
BENCH_VENV  := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[testing,bench]'
	touch $(BENCH_STAMP)

bench-triggers: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python -m benchmarks.triggerer_scale $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict

unit: $(STAMP)
	$(BIN)/pytest -m "not integration and not dagrun and not e2e"

clean:
	rm -rf $(VENV) $(AF32_VENV) $(BENCH_VENV) .mypy_cache .ruff_cache .airflow-home .demo build dist docs/_build
