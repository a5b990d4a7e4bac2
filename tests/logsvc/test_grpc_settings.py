"""logsvc sets gRPC's experiments before grpc loads, and grpc knows every one it names."""

from __future__ import annotations

import os
import subprocess
import sys

import logsvc

PROBE = "import logsvc, grpc, os; print(os.environ['GRPC_EXPERIMENTS'])"


def _probe(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )


def test_importing_logsvc_first_sets_the_experiments_and_grpc_knows_them() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    done = _probe(env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == logsvc.GRPC_EXPERIMENTS
    # A grpc release that dropped one of them says so on stderr, once per process.
    assert "Unknown experiment" not in done.stderr, done.stderr


def test_an_operators_own_setting_is_left_alone() -> None:
    done = _probe({**os.environ, "GRPC_EXPERIMENTS": "-event_engine_client"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "-event_engine_client"
