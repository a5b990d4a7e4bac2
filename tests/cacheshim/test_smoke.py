"""The shim end to end: redis-py and redis-cli against a real deployment, beside redis-server."""

from __future__ import annotations

import shutil
import subprocess

import redis

from tests.cacheshim.harness import Memlog, client, compare


def test_basic_strings_match_redis(pair: tuple[redis.Redis, redis.Redis]) -> None:
    oracle, subject = pair
    compare(
        oracle,
        subject,
        [
            ["PING"],
            ["SET", "k", "v"],
            ["GET", "k"],
            ["SET", "k", "w", "NX"],
            ["SET", "k", "w", "XX", "GET"],
            ["SET", "k", "v", "EX", "0"],
            ["SET", "k", "v", "BOGUS"],
            ["GET"],
            ["NOSUCHCOMMAND", "a"],
            ["DEL", "k", "missing"],
            ["EXISTS", "k"],
        ],
    )


def test_transaction_queues_and_executes(pair: tuple[redis.Redis, redis.Redis]) -> None:
    for conn in pair:
        pipe = conn.pipeline(transaction=True)
        pipe.set("a", "1")
        pipe.get("a")
        pipe.delete("a")
        assert pipe.execute() == [True, b"1", 1]


def test_resp3_hello(memlog: Memlog) -> None:
    conn = client(memlog.shim_ports[0], protocol=3)
    assert conn.ping()
    conn.set("r3", "x")
    assert conn.get("r3") == b"x"
    conn.close()


def test_redis_cli_talks_to_the_shim(memlog: Memlog) -> None:
    cli = shutil.which("redis-cli")
    assert cli is not None, "redis-cli is missing (apt-get install redis-tools)"
    port = str(memlog.shim_ports[0])
    out = subprocess.run(
        [cli, "-p", port, "SET", "cli-key", "hello"], capture_output=True, text=True, timeout=30
    )
    assert out.stdout.strip() == "OK", out
    out = subprocess.run(
        [cli, "-p", port, "GET", "cli-key"], capture_output=True, text=True, timeout=30
    )
    assert out.stdout.strip() == "hello", out
