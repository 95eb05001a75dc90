# The front door. `make demo` and `make test` are the README's two commands.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install demo test lint unit integration e2e test-matrix browser bench bench-full-load bench-cdc clean

$(STAMP): pyproject.toml setup.py cdc_assets/decoding/_speedups.pyx
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Demo: embedded PostgreSQL, demo data and pipeline, Dagster UI on http://127.0.0.1:3000
demo: install
	$(VENV)/bin/cdc-assets demo

## Tests: lint + types + the whole suite (unit, integration, e2e, browser) on an embedded PostgreSQL.
## CDC_ASSETS_REQUIRE_SPEEDUPS=1: the compiled decoder must have been built (no silent fallback).
## Then the CDC integration tests again on the pure-Python reference decoder (the fallback).
CDC_TESTS := $(wildcard cdc_assets_tests/integration/test_cdc_*.py)
test: install browser lint
	CDC_ASSETS_REQUIRE_SPEEDUPS=1 $(VENV)/bin/pytest $(PYTEST_ARGS)
	CDC_ASSETS_PURE_PYTHON=1 $(VENV)/bin/pytest $(CDC_TESTS) $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: install
	$(VENV)/bin/pytest -m unit $(PYTEST_ARGS)

integration: install
	$(VENV)/bin/pytest -m integration $(PYTEST_ARGS)

e2e: install browser
	$(VENV)/bin/pytest -m e2e $(PYTEST_ARGS)

## Version matrix: the integration tests again on another PostgreSQL installation (default:
## Debian's PostgreSQL 15 binaries in a throwaway cluster, or CDC_TEST_PG_URL if set).
PG_MATRIX_BINDIR ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin))
test-matrix: install
	@if [ -n "$$CDC_TEST_PG_URL" ]; then \
	  echo "== integration tests against $$CDC_TEST_PG_URL"; \
	  $(VENV)/bin/pytest -m integration $(PYTEST_ARGS); \
	elif [ -n "$(PG_MATRIX_BINDIR)" ]; then \
	  echo "== integration tests against $$($(PG_MATRIX_BINDIR)/postgres --version)"; \
	  CDC_TEST_PG_BINDIR=$(PG_MATRIX_BINDIR) $(VENV)/bin/pytest -m integration $(PYTEST_ARGS); \
	else \
	  echo "== no second PostgreSQL installation on this machine: matrix leg not run"; \
	fi

browser:
	@bash .ci/ensure-chromium.sh

bench: bench-full-load bench-cdc
bench-full-load: install
	$(PY) bench/full_load.py
bench-cdc: install
	$(PY) bench/cdc.py

clean:
	rm -rf .cdc_assets .pytest_cache .mypy_cache .ruff_cache test-artifacts
