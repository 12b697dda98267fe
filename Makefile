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

PY_SRC := libs/contracts/src libs/observability/src libs/testing/src services/*/src devtools/runtime_emulator/src devtools/local_stack/src cli/src k8s/src terraform/src

-include mk/*.mk

.PHONY: help setup run test test-deps test-unit lint typecheck fmt lock clean

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

test: test-deps ## every test (unit, integration against moto + the runtime emulator, e2e)
	@$(PY) -m pytest -q

test-unit: setup ## the fast unit layer only
	@$(PY) -m pytest -q -m unit

lint: setup ## ruff lint + format check
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

typecheck: setup ## mypy --strict on every package's src
	@for src in $(PY_SRC); do echo "mypy $$src"; MYPYPATH=$$src $(VENV)/bin/mypy $$src/* || exit 1; done

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
