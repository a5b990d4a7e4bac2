"""DUMP, RESTORE and SWAPDB (issue 20) against redis-server 7.0.

DUMP and RESTORE: a payload moves either way (redis-server
DUMPs, memlog RESTOREs, and the other way round) and the value reads back the same, with the
same encoding; options and errors as Redis answers them.

Payloads are equal byte for byte where memlog writes the form redis-server writes (strings
up to 20 bytes or integers, lists, large sorted sets); elsewhere (LZF-compressed strings,
intsets and listpacks) they differ in form, not in value.

SWAPDB: the keys and expiries trade places, a WATCH of a key either database held breaks
(and only those), and a client blocked on a key the swap brings is served.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import cast

import pytest
import redis

from tests.cacheshim.harness import Memlog, RedisServer, client, execute, outcome, wait_until
from tests.cacheshim.rawresp import without_callbacks

Pair = tuple[redis.Redis, redis.Redis]

VALUES: list[list[object]] = [
    ["SET", "s", "hello"], ["SET", "i", "12345"], ["SET", "long", "x" * 5000],
    ["SET", "bigint", "12345678901"], ["SET", "neg", "-5"], ["SET", "empty", ""],
    ["RPUSH", "l", "a", "b", "1", "2", "x" * 9000], ["SADD", "st", "a", "b"],
    ["SADD", "is", "1", "2", "-3"], ["HSET", "h", "f", "v", "g", "1"],
    ["ZADD", "z", "1", "a", "2.5", "b", "-inf", "c"],
    ["SADD", "bigset", *[f"m{i}" for i in range(600)]],
    ["ZADD", "bigz", *[x for i in range(300) for x in (str(i * 0.5), f"m{i}")]],
    ["HSET", "bigh", *[x for i in range(600) for x in (f"f{i}", "v")]],
    ["PFADD", "hll", "a", "b"], ["SETBIT", "bits", "100", "1"],
    ["GEOADD", "geo", "13.361389", "38.115556", "Palermo"],
]  # fmt: skip
KEYS = ["s", "i", "long", "bigint", "neg", "empty", "l", "st", "is", "h", "z", "bigset", "bigz",
        "bigh", "hll", "bits", "geo"]  # fmt: skip
SAME_PAYLOAD = {"s", "i", "bigint", "neg", "empty", "bigz", "hll", "bits"}


@pytest.fixture
def pair(oracle_server: RedisServer, memlog: Memlog) -> Iterator[Pair]:
    oracle = without_callbacks(client(oracle_server.port))
    subject = without_callbacks(client(memlog.shim_ports[0]))
    try:
        for conn in (oracle, subject):
            execute(conn, "FLUSHALL")
            for args in VALUES:
                execute(conn, *args)
        yield oracle, subject
    finally:
        oracle.close()
        subject.close()


def _read(conn: redis.Redis, key: str) -> tuple[object, ...]:
    """Everything a client can read of a value: its type, encoding and content."""
    kind = execute(conn, "TYPE", key)
    reads: dict[bytes, Sequence[object]] = {
        b"string": ["GET", key], b"list": ["LRANGE", key, "0", "-1"],
        b"set": ["SMEMBERS", key], b"hash": ["HGETALL", key],
        b"zset": ["ZRANGE", key, "0", "-1", "WITHSCORES"],
    }  # fmt: skip
    content = execute(conn, *reads[kind]) if kind in reads else None
    if kind in (b"set", b"hash") and isinstance(content, list):
        content = sorted(content)
    return kind, execute(conn, "OBJECT", "ENCODING", key), content


def test_payloads_move_both_ways(pair: Pair) -> None:
    oracle, subject = pair
    for key in KEYS:
        theirs, ours = execute(oracle, "DUMP", key), execute(subject, "DUMP", key)
        assert isinstance(theirs, bytes) and isinstance(ours, bytes)
        if key in SAME_PAYLOAD:
            assert ours == theirs, key
        for conn in (oracle, subject):
            assert execute(conn, "RESTORE", f"{key}:from-redis", "0", theirs) == b"OK"
            assert execute(conn, "RESTORE", f"{key}:from-memlog", "0", ours) == b"OK"
        original = _read(oracle, key)
        want = _read(oracle, f"{key}:from-redis")  # encoded as redis-server loads it
        assert want[::2] == original[::2], key  # the same type and content
        for conn in (oracle, subject):
            assert _read(conn, f"{key}:from-redis") == want, key
            assert _read(conn, f"{key}:from-memlog") == want, key
    assert execute(subject, "DUMP", "nokey") is None


def test_restore_options_and_errors_match_redis(pair: Pair) -> None:
    oracle, subject = pair
    payload = execute(oracle, "DUMP", "i")
    other = execute(oracle, "DUMP", "l")
    assert isinstance(payload, bytes) and isinstance(other, bytes)
    commands: list[list[object]] = [
        ["RESTORE", "s", "0", payload], ["RESTORE", "x", "-1", payload],
        ["RESTORE", "x", "a", payload], ["RESTORE", "x", "0", "garbage"],
        ["RESTORE", "x", "0", ""], ["RESTORE", "x", "0", payload, "IDLETIME", "-1"],
        ["RESTORE", "x", "0", payload, "FREQ", "300"], ["RESTORE", "x", "0", payload, "FREQ", "x"],
        ["RESTORE", "x", "0", payload, "FREQ", "1", "IDLETIME", "1"],
        ["RESTORE", "x", "0", payload, "BOGUS"], ["RESTORE", "x", "0", payload, "IDLETIME"],
        ["RESTORE", "x", "0", payload[:-1] + bytes([payload[-1] ^ 1])],
        ["RESTORE", "x", "0", payload[:-10] + b"\x0b\x00" + payload[-8:]],
        ["RESTORE", "x", "0", b"\x00\x05hello\x0a\x00" + bytes(8)],
        ["RESTORE", "x", "0", b"\x0f\x01\x0a\x00" + bytes(8)], ["EXISTS", "x"],
        ["RESTORE", "s", "0", other, "REPLACE"], ["TYPE", "s"], ["LRANGE", "s", "0", "-1"],
        ["RESTORE", "s", "0", payload, "replace", "absttl", "idletime", "100"], ["GET", "s"],
        ["RESTORE", "f", "0", payload, "FREQ", "5"], ["GET", "f"],
        ["RESTORE", "past", "1000", payload, "ABSTTL"], ["EXISTS", "past"],
        ["RESTORE", "s", "1000", payload, "ABSTTL", "REPLACE"], ["EXISTS", "s"],
        ["RESTORE", "far", "9223372036854775807", payload], ["EXISTS", "far"],
        ["RESTORE", "later", "100000", payload], ["TTL", "later"],
        ["RESTORE", "abs", "99999999999999", payload, "ABSTTL"], ["PEXPIRETIME", "abs"],
        ["DUMP"], ["DUMP", "a", "b"], ["RESTORE", "a", "0"],
    ]  # fmt: skip
    for args in commands:
        want, got = outcome(oracle, args), outcome(subject, args)
        assert got == want, f"{args!r}: redis-server said {want!r}, memlog said {got!r}"


def test_swapdb_matches_redis(pair: Pair) -> None:
    oracle, subject = pair
    commands: list[list[object]] = [
        ["SELECT", "1"], ["SET", "only1", "a"], ["SET", "both", "in1"], ["EXPIRE", "both", "1000"],
        ["SELECT", "0"], ["SWAPDB", "0", "1"], ["GET", "only1"], ["GET", "both"], ["TTL", "both"],
        ["GET", "s"], ["DBSIZE"], ["SELECT", "1"], ["GET", "s"], ["DBSIZE"], ["SELECT", "0"],
        ["SWAPDB", "1", "1"], ["SWAPDB", "0", "16"], ["SWAPDB", "-1", "0"], ["SWAPDB", "x", "0"],
        ["SWAPDB", "0", "y"], ["SWAPDB", "0", "4294967296"], ["SWAPDB", "0"],
        ["SWAPDB", "1", "0"], ["GET", "s"], ["SCAN", "0", "COUNT", "1000", "MATCH", "only*"],
    ]  # fmt: skip
    for args in commands:
        want, got = outcome(oracle, args), outcome(subject, args)
        assert got == want, f"{args!r}: redis-server said {want!r}, memlog said {got!r}"


def _watch_then_swap(conn: redis.Redis, other: redis.Redis, key: str) -> object:
    execute(conn, "WATCH", key)
    execute(other, "SWAPDB", "0", "1")
    execute(conn, "MULTI")
    execute(conn, "PING")
    return execute(conn, "EXEC")


def test_swapdb_breaks_the_watches_of_keys_it_moves(
    oracle_server: RedisServer, memlog: Memlog
) -> None:
    """A WATCHed key held by either database aborts the transaction; one held by neither
    does not (Redis 7.0's touchAllWatchedKeysInDb)."""
    results = []
    for port in (oracle_server.port, memlog.shim_ports[0]):
        conn, other = without_callbacks(client(port)), without_callbacks(client(port))
        try:
            execute(conn, "FLUSHALL")
            execute(conn, "SET", "here", "1")
            execute(conn, "SELECT", "1")
            execute(conn, "SET", "there", "1")
            execute(conn, "SELECT", "0")
            results.append(
                [_watch_then_swap(conn, other, key) for key in ("here", "there", "nowhere")]
            )
        finally:
            conn.close()
            other.close()
    assert results[0] == results[1] == [None, None, [b"PONG"]]


def test_swapdb_serves_a_client_blocked_on_a_key_it_brings(memlog: Memlog) -> None:
    waiter = without_callbacks(client(memlog.shim_ports[0]))
    other = without_callbacks(client(memlog.shim_ports[0]))
    try:
        execute(other, "FLUSHALL")
        execute(other, "SELECT", "1")
        execute(other, "RPUSH", "queue", "job")
        got: list[object] = []
        thread = threading.Thread(
            target=lambda: got.append(execute(waiter, "BLPOP", "queue", "30"))
        )
        thread.start()
        wait_until(
            lambda: b"cmd=blpop" in cast(bytes, execute(other, "CLIENT", "LIST")), 30, "blocked"
        )
        execute(other, "SWAPDB", "0", "1")
        thread.join(30)
        assert got == [[b"queue", b"job"]]
        assert execute(other, "EXISTS", "queue") == 0  # db 1 now holds what db 0 held
    finally:
        waiter.close()
        other.close()
