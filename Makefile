# The two set-up commands: `make demo` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run

.PHONY: demo test lint typecheck services venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The demo needs only the runtime; the tests need the extras (linters, emulators, Terraform).
$(RUN_STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

venv: $(STAMP)

demo: $(RUN_STAMP)
	INFRAKIT_HOME=$(CURDIR)/.infrakit-demo $(BIN)/infrakit run examples/cluster.json

lint: $(STAMP)
	$(BIN)/ruff check actors infrakit tests bench examples scripts
	$(BIN)/ruff format --check actors infrakit tests bench examples scripts

typecheck: $(STAMP)
	$(BIN)/mypy

# Real services for the tests (Docker, Vagrant, ZooKeeper, etcd). In CI a failure here is
# fatal; elsewhere the tests that need a missing service skip and say why.
services:
	@bash scripts/services.sh || [ "$$CI" != true ]

test: services lint typecheck
	$(BIN)/pytest

clean:
	rm -rf $(VENV) build *.egg-info
