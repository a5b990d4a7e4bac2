# Every target calls .venv/bin/... directly, so nothing needs activation.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup lint test sim nemesis run proto lock lock-upgrade

# Installs exactly requirements.lock (every file checked by hash, nothing resolved here),
# then the project itself, then checks that the venv holds the lock and nothing else.
# MEMLOG_PURE_PYTHON=1 make setup goes without the C extension (see setup.py).
setup:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/python .ci/lock.py sync
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python .ci/lock.py check

lint:
	$(BIN)/ruff check .
	$(BIN)/mypy

# The suite runs on TEST_WORKERS processes (pytest-xdist), a test file per worker at a time, so
# a file's module-scoped deployments stay shared; most of a test's time is waiting on processes
# and fsyncs, so two workers overlap well even on two cores. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: setup
	$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

sim:
	$(BIN)/python -m tests.sim --seed 1

# The nemesis suite's long run (tests/nemesis, docs/availability.md): real processes, every
# fault with small and 1 MB values, a table of what was lost and how long clients waited.
# SEED=N reruns a run (a random seed otherwise, printed); NEMESIS_PROFILE=short: the CI one.
NEMESIS_PROFILE ?= long
nemesis:
	$(BIN)/python -m tests.nemesis --profile $(NEMESIS_PROFILE) $(if $(SEED),--seed $(SEED))

run: setup
	$(BIN)/memlog up --port 6379 --data ./memlog-data

proto:
	$(BIN)/python proto/generate.py

# Re-resolve the lock after a change to pyproject.toml (keeps the pins that still fit);
# lock-upgrade moves every package to its newest release. Then `make setup`.
lock:
	$(BIN)/python .ci/lock.py refresh

lock-upgrade:
	$(BIN)/python .ci/lock.py upgrade
