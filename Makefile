# Two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# The bootstrap is keyed on the hash of pyproject.toml: a second run costs nothing.
HASH := $(shell sha256sum pyproject.toml | cut -c1-16)
STAMP := $(VENV)/.installed-$(HASH)
CONFIG ?= configs/sim-lab.yaml
TYPECHECK := $(VENV)/typecheck

.PHONY: run test lint format venv typecheck-tree clean

venv: $(STAMP)

$(STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@# brush (a public client of the Menlo comb's XML-RPC server, a test oracle) pins a tornado
	@# web app we do not use: its client module needs only six, so it goes in without its deps
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps 'brush==1.2.0'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/ionpilot up --config $(CONFIG)

# mypy cannot follow setuptools' package-dir mapping, so it reads a tree of links laid out as the
# installed package (ionpilot/bus -> bus/, ...), rebuilt on every run (cheap, and new files show up).
typecheck-tree:
	@rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/ionpilot
	@for f in ionpilot/*; do ln -s "$(CURDIR)/$$f" $(TYPECHECK)/ionpilot/; done
	@for d in core bus drivers sim servo sequencer gui harness recorder experiments configs; do ln -s "$(CURDIR)/$$d" $(TYPECHECK)/ionpilot/$$d; done

lint: $(STAMP) typecheck-tree
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd $(TYPECHECK) && MYPYPATH=. $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p ionpilot
	MYPYPATH=$(TYPECHECK) $(BIN)/mypy --config-file pyproject.toml --allow-untyped-defs --allow-incomplete-defs --no-warn-unused-ignores bench
	@# each tests/<subsystem> has its own conftest.py: one mypy run per folder keeps module names unique
	@set -e; for d in tests/*/; do \
	  if ls $$d*.py >/dev/null 2>&1; then MYPYPATH=$(TYPECHECK) $(BIN)/mypy --config-file pyproject.toml --allow-untyped-defs --allow-incomplete-defs --no-warn-unused-ignores $$d; fi; \
	done

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build dist *.egg-info
