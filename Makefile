# rollback-lab: `make demo` and `make test` each set themselves up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The venv is reinstalled whenever the dependency list (pyproject.toml) changes.
DEPS_HASH := $(shell sha256sum pyproject.toml | cut -c1-16)
STAMP := $(VENV)/.installed-$(DEPS_HASH)
# Tests and the demo use their own local-services instance, never the user's default one.
export ROLLBACK_LAB_STATE_DIR ?= $(CURDIR)/build/state
NBVAL := --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: setup demo test lint format bench clean

setup: $(STAMP)
	@# Notebook outputs stay out of commits: register nbstripout's git filter once per clone
	@# (.gitattributes names it). Not required, so git still works if .venv is removed.
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1 && \
	  ! git config filter.nbstripout.clean >/dev/null 2>&1; then \
	  $(BIN)/nbstripout --install --attributes .gitattributes && \
	  git config filter.nbstripout.required false; fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: setup
	$(BIN)/rollback-lab demo --out build/demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/python -m pytest -rs tests $(PYTEST_ARGS)
	@# The notebooks get a workspace and chart folder of their own (never the student's
	@# lab-workspace); the local services they start are stopped whether nbval passes or not.
	ROLLBACK_LAB_WORKSPACE=$(CURDIR)/build/test-workspace LAB_OUTPUT_DIR=$(CURDIR)/build/test-charts \
	  $(BIN)/python -m pytest $(NBVAL) notebooks $(PYTEST_ARGS); status=$$?; \
	  $(BIN)/rollback-lab down; exit $$status

bench: setup
	$(BIN)/rollback-lab bench

clean:
	-$(BIN)/rollback-lab down
	rm -rf build lab-workspace
