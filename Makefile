# sdq — one entry point for developers and CI. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
CONFIG ?= config.yaml
export SDQ_CONFIG := $(abspath $(CONFIG))

# Every package's tests and the benchmarks are type-checked too, with relaxations justified here:
# pytest injects fixtures by parameter name, so test functions and fixtures may stay unannotated
# (untyped defs/calls/decorators); JSON-shaped test data is `dict` / Any (type-arg, no-any-return),
# which also makes some strict-mode `type: ignore`s in test helpers unused.
TEST_DIRS := $(sort $(wildcard libs/*/tests services/*/tests devtools/*/tests)) cli/tests k8s/tests terraform/tests tests
MYPY_TESTS := --allow-untyped-defs --allow-incomplete-defs --allow-untyped-calls --allow-untyped-decorators \
	--disable-error-code=type-arg --disable-error-code=no-any-return --no-warn-unused-ignores
# `make test` reports coverage of every src package (report only: no threshold).
COVERAGE := --cov --cov-report=term-missing:skip-covered

PY_SRC := libs/contracts/src libs/observability/src libs/moto/src libs/testing/src services/*/src devtools/runtime_emulator/src devtools/local_stack/src devtools/bench/src devtools/conformance/src cli/src k8s/src terraform/src

-include mk/*.mk

.PHONY: help setup run test test-deps test-unit test-integration test-e2e test-thorough lint typecheck fmt lock clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt constraints.txt $(wildcard */pyproject.toml */*/pyproject.toml)
	@echo "==> creating $(VENV) (Python: $$($(PYTHON) --version))"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check "uv==$$(grep -E '^uv==' constraints.txt | cut -d= -f3)"
	@echo "==> installing pinned packages (constraints.txt)"
	@$(UV) pip install --quiet --python $(PY) -c constraints.txt -r requirements-dev.txt
	@touch $(STAMP)

setup: $(STAMP) ## create the venv with every package and tool, pinned

run: setup awscli ## the local stack end to end: a batch of every task type, images saved to ./outputs/
	@$(VENV)/bin/sdq demo --config $(CONFIG) --out outputs

# Tools some tests drive that cannot share the workspace venv (they pin their own botocore).
test-deps: setup awscli checkov-venv

test: test-deps ## every test but the conformance suite (unit, integration against moto + the runtime emulator, e2e), with coverage
	@$(PY) -m pytest -q -m "not conformance" $(COVERAGE)

test-unit: setup ## the unit layer only: pure code with in-memory fakes (seconds)
	@$(PY) -m pytest -q -m unit

test-integration: test-deps ## adapters against the moto server, the runtime emulator, cdktf synth, Terraform
	@$(PY) -m pytest -q -m integration

test-e2e: test-deps ## the whole local stack end to end
	@$(PY) -m pytest -q -m e2e

test-thorough: setup ## the property tests with thousands of examples each (HYPOTHESIS_PROFILE=thorough)
	@HYPOTHESIS_PROFILE=thorough $(PY) -m pytest -q -m unit services/api_validator/tests/test_api_properties.py

lint: setup ## ruff lint + format check
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

typecheck: setup ## mypy --strict on every package's src (benchmarks included), then on every package's tests
	@for src in $(PY_SRC); do echo "mypy $$src"; MYPYPATH=$$src $(VENV)/bin/mypy $$src/* || exit 1; done
	@# Helper modules are imported by name from their own folder (tests/conformance/cases.py).
	@for tests in $(TEST_DIRS); do echo "mypy $$tests"; \
	  path=$$tests; for sub in $$tests/*/; do path=$$path:$${sub%/}; done; \
	  MYPYPATH=$$path $(VENV)/bin/mypy $(MYPY_TESTS) $$tests || exit 1; done

fmt: setup ## format and autofix
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

lock: ## re-resolve every package to its newest allowed version and rewrite constraints.txt
	@rm -rf build/lock-venv && $(PYTHON) -m venv build/lock-venv
	@build/lock-venv/bin/pip install --quiet uv
	@build/lock-venv/bin/uv pip install --quiet --python build/lock-venv/bin/python -r requirements-dev.txt
	@{ echo "# Pinned versions of every third-party package (regenerate: make lock)."; \
	   build/lock-venv/bin/uv pip freeze --python build/lock-venv/bin/python --exclude-editable; } > constraints.txt
	@rm -rf build/lock-venv && echo "constraints.txt rewritten; run make setup"

clean: ## remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build
