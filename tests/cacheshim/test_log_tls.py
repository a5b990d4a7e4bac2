"""The shims in front of a log that speaks TLS, as `memlog up` runs it: peers on mutual TLS,
each shim (and the snapshotter) showing its client certificate, whose rights are append,
read and snapshot. Writes, reads across shims, a snapshot and a restart from it work; a shim
without the credential does not get in."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cacheshim.harness import (
    Memlog,
    RedisServer,
    client,
    compare,
    execute,
    same_index,
    wait_until,
)


@pytest.fixture(scope="module")
def tls_memlog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Memlog]:
    deployment = Memlog(tmp_path_factory.mktemp("memlog-tls"), shims=2, tls=True)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


def test_commands_match_redis_over_a_tls_log(
    tls_memlog: Memlog, oracle_server: RedisServer
) -> None:
    oracle, subject = client(oracle_server.port), client(tls_memlog.shim_ports[0])
    for conn in (oracle, subject):
        execute(conn, "FLUSHALL")
    compare(
        oracle,
        subject,
        [
            ["SET", "k", "v"],
            ["GET", "k"],
            ["INCR", "n"],
            ["RPUSH", "l", "a", "b"],
            ["LRANGE", "l", "0", "-1"],
            ["HSET", "h", "f", "1"],
            ["DEL", "k", "missing"],
            ["EXISTS", "k"],
        ],
    )
    other = client(tls_memlog.shim_ports[1])
    same_index([subject, other])
    assert other.lrange("l", 0, -1) == [b"a", b"b"]


def test_the_snapshotter_and_a_restarted_shim_use_the_credential(tls_memlog: Memlog) -> None:
    m = tls_memlog
    assert m.cluster is not None and m.cluster.tls is not None
    conn = client(m.shim_ports[0])
    conn.set("before-snapshot", "1")
    snapshot = subprocess.run(
        [
            sys.executable, "-m", "cacheshim.launcher", "snapshot",
            "--log", ",".join(m.cluster.addresses()),
            *m.cluster.tls.shim_args(),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert snapshot.returncode == 0, snapshot.stdout + snapshot.stderr
    m.shim_procs[1].terminate()
    m.shim_procs[1].wait(30)
    m.start_shim(1)
    restarted = client(m.shim_ports[1])
    same_index([conn, restarted])
    assert restarted.get("before-snapshot") == b"1"


def test_a_shim_without_the_credential_is_refused(tls_memlog: Memlog, tmp_path: Path) -> None:
    m = tls_memlog
    assert m.cluster is not None and m.cluster.tls is not None
    tls = m.cluster.tls
    # The CA but no certificate: the log's client port requires one, so it never connects.
    log_path = tmp_path / "shim.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "cacheshim.cli", "serve",
                "--listen", "127.0.0.1:0",
                "--log", ",".join(m.cluster.addresses()),
                "--local-log", m.cluster.address("a"),
                "--log-tls-ca", str(tls.ca),
            ],
            stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(
            lambda: (
                "UNAVAILABLE" in log_path.read_text(errors="replace") or proc.poll() is not None
            ),
            60,
            "the shim reports it cannot reach the log",
        )
    finally:
        proc.kill()
        proc.wait(30)
    # A certificate flag without its key is refused before anything starts.
    half = subprocess.run(
        [
            sys.executable, "-m", "cacheshim.cli", "serve",
            "--log", ",".join(m.cluster.addresses()),
            "--log-tls-ca", str(tls.ca), "--log-tls-cert", str(tls.shim_cert),
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert half.returncode == 2, half
    assert "a client certificate and its key go together" in half.stderr
    # Nothing of it reached the log: the good shim still answers as before.
    assert client(m.shim_ports[0]).ping()
