# Thin entry points; the logic lives in devstack/ (Python).
PYTHON ?= python3
VENV_PY := .venvs/main/bin/python
PYTEST_ARGS ?=

.PHONY: up down test bootstrap clean

## Install what is needed, then start the local data lake (Ctrl-C or `make down` stops it).
up:
	$(PYTHON) -m devstack.bootstrap
	$(VENV_PY) -m devstack up

## Stop everything `make up` started, by PID.
down:
	@if [ -x $(VENV_PY) ]; then $(VENV_PY) -m devstack down; else $(PYTHON) -m devstack down; fi

## Install what is needed, then run the whole test suite.
test:
	$(PYTHON) -m devstack.bootstrap --test
	$(VENV_PY) -m pytest $(PYTEST_ARGS)

bootstrap:
	$(PYTHON) -m devstack.bootstrap --test

## Forget the local data lake's state (databases, RSE files, keys). Installed packages stay.
clean: down
	rm -rf .devstack
