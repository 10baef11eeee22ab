# Thin entry points; the logic lives in devstack/ (Python).
PYTHON ?= python3
VENV_PY := .venvs/main/bin/python
PYTEST_ARGS ?=
# `make test` lints first (DLAAS_LINT=0 skips it while iterating; CI always lints).
DLAAS_LINT ?= 1
# What needs no service: pure-logic unit tests and the offline deployment checks (helm, kustomize, validators).
FAST_TESTS := tests/unit tests/deploy

# The lint (hooks in .pre-commit-config.yaml), after the pinned hadolint and helm are in .tools.
define lint_steps
	$(VENV_PY) -m devstack.deploy_tools > /dev/null
	$(VENV_PY) -m pre_commit run --all-files --show-diff-on-failure
endef

.PHONY: up down test test-fast lint format bootstrap clean

## Install what is needed, then start the local data lake (Ctrl-C or `make down` stops it).
up:
	$(PYTHON) -m devstack.bootstrap
	$(VENV_PY) -m devstack up

## Stop everything `make up` started, by PID.
down:
	@if [ -x $(VENV_PY) ]; then $(VENV_PY) -m devstack down; else $(PYTHON) -m devstack down; fi

## Install what is needed, lint, then run the whole test suite.
test:
	$(PYTHON) -m devstack.bootstrap --test
ifeq ($(DLAAS_LINT),1)
	$(lint_steps)
endif
	$(VENV_PY) -m pytest $(PYTEST_ARGS)

## Unit tests and deployment checks only: no services, no system packages; for iterating.
test-fast:
	$(PYTHON) -m devstack.bootstrap --fast
	$(VENV_PY) -m pytest -n auto $(FAST_TESTS) $(PYTEST_ARGS)

## ruff, yamllint, workflow schema, hadolint and helm lint over the whole tree (.pre-commit-config.yaml); checks only.
lint:
	$(PYTHON) -m devstack.bootstrap --fast
	$(lint_steps)

## Rewrite Python files the way the lint wants them: import order, safe fixes, ruff format.
format:
	$(PYTHON) -m devstack.bootstrap --fast
	$(VENV_PY) -m ruff check --fix .
	$(VENV_PY) -m ruff format .

bootstrap:
	$(PYTHON) -m devstack.bootstrap --test

## Forget the local data lake's state (databases, RSE files, keys). Installed packages stay.
clean: down
	rm -rf .devstack
