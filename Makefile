# The two commands of the README: `make run` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
HOST ?= 127.0.0.1
PORT ?= 8080
DATA_DIR ?= .cloudstrype-data
PYTEST_ARGS ?=

.PHONY: run test bench screenshots install install-dev clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit("Cloudstrype needs Python 3.11 or newer; found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(DEV_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@bash scripts/install-test-tools.sh
	@touch $@

install: $(STAMP)
install-dev: $(DEV_STAMP)

run: $(STAMP)
	@# A data directory of Cloudstrype before the metadata engines is read with moto, once.
	@if [ -f "$(DATA_DIR)/aws-state.pickle" ] && [ ! -f "$(DATA_DIR)/aws-state.imported" ]; then \
		$(BIN)/python -m pip install --quiet -e '.[upgrade]'; fi
	$(BIN)/cloudstrype serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

test: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

bench: $(DEV_STAMP)
	$(BIN)/python -m bench

screenshots: $(DEV_STAMP)
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache
