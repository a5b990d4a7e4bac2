# Every target calls .venv/bin/... directly, so nothing needs activation.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup lint test sim run proto

setup:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'

lint:
	$(BIN)/ruff check .
	$(BIN)/mypy

test: setup
	$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest

sim:
	$(BIN)/python -m tests.sim --seed 1

run:
	$(BIN)/memlog up --port 6379 --data ./memlog-data

proto:
	$(BIN)/python proto/generate.py
