# The two commands a newcomer needs: `make run` and `make test`.
SHELL  := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint bench services ui clean

install: $(STAMP)

# Reinstall when the dependencies or the lock change.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint requirements.lock --editable '.[dev]' 2>&1 \
		| { grep -v "^WARNING: Location" || true; }
	$(BIN)/featurepipe --version
	touch $(STAMP)

run: install
	$(BIN)/featurepipe run

lint: install
	$(BIN)/ruff check featurepipe tests bench
	$(BIN)/ruff format --check featurepipe tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy

services:
	@sh .ci/services

test: install services lint
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/flow.py
	$(BIN)/python -P bench/load.py
	$(BIN)/python -P bench/sql.py
	$(BIN)/python -P bench/push.py
	$(BIN)/python -P bench/schema_typing.py
	$(BIN)/python -P bench/stream_ingest.py
	$(BIN)/python -P bench/stream_readers.py
	$(BIN)/python bench/model.py

ui: install
	$(BIN)/featurepipe ui

clean:
	rm -rf warehouse runs mlruns mlflow.db models/*.skops models/*.json
