"""Fixtures: the redis-server oracle and a memlog deployment, shared per test module, with
both keyspaces flushed before each test that uses `pair`."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from tests.cacheshim.harness import Memlog, RedisServer, client, execute


@pytest.fixture(scope="module")
def oracle_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-oracle"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


# MEMLOG_TEST_TLS=1 runs the shared deployments as `memlog up` runs them: peers on mutual
# TLS, shims showing a client certificate to the log.
TLS = os.environ.get("MEMLOG_TEST_TLS", "") not in ("", "0")


@pytest.fixture(scope="module")
def memlog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Memlog]:
    deployment = Memlog(tmp_path_factory.mktemp("memlog"), tls=TLS)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture(scope="module")
def two_shims(memlog: Memlog) -> Memlog:
    """The module's deployment with a second shim (zone b) beside the first."""
    if len(memlog.shim_ports) < 2:
        memlog.start_shim(1)
    return memlog


@pytest.fixture
def pair(oracle_server: RedisServer, memlog: Memlog) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    """(redis-server client, memlog client), both keyspaces empty."""
    oracle, subject = client(oracle_server.port), client(memlog.shim_ports[0])
    for conn in (oracle, subject):
        execute(conn, "FLUSHALL")
    try:
        yield oracle, subject
    finally:
        oracle.close()
        subject.close()
