"""Keyspace notifications (cacheshim.notify), compared with redis-server event by event.

A subscriber (PSUBSCRIBE __key*__:*) on each server hears what a list of commands over every
type makes them send; the ordered streams of (channel, message) must be the same. Expiry is
checked apart (its timing is each server's own), and so is delivery on another shim.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator, Sequence
from typing import cast

import pytest
import redis

from cacheshim import notify
from cacheshim.apply import Applier
from cacheshim.commands import load_all
from cacheshim.hub import Hub
from cacheshim.snapshot.rdb import read_rdb, restore, snapshot_state, write_rdb
from cacheshim.v1 import record_pb2
from tests.cacheshim.harness import Memlog, RedisServer, client, execute, wait_until
from tests.cacheshim.rawresp import RawConnection

Event = tuple[bytes, bytes]
Args = Sequence[object]
END_KEY = b"ks:end"
END: Event = (b"__keyz__:end", b"done")

# Every command of Redis 7.0 that sends an event, most in their cases that send none too (no
# change, a missing key, an error), and the "del" of a collection emptied.
COMMANDS: list[Args] = [
    # strings
    ("SET", "s", "1"), ("SET", "s", "2", "NX"), ("SET", "s", "3", "XX", "EX", "100"),
    ("SET", "s2", "v", "XX"), ("SETNX", "s2", "v"), ("SETNX", "s2", "w"),
    ("SETEX", "s3", "100", "v"), ("PSETEX", "s4", "100000", "v"), ("GETSET", "s", "4"),
    ("MSET", "m1", "a", "m2", "b"), ("MSETNX", "m3", "c", "m1", "d"), ("MSETNX", "m3", "c"),
    ("INCR", "n"), ("DECR", "n"), ("INCRBY", "n", "5"), ("DECRBY", "n", "2"),
    ("INCRBYFLOAT", "n", "1.5"), ("INCR", "s2"), ("APPEND", "ap", "x"), ("APPEND", "ap", "y"),
    ("SETRANGE", "sr", "3", "abc"), ("SETRANGE", "sr", "0", ""), ("SETRANGE", "sr", "1", "Z"),
    ("GETEX", "s", "EX", "50"), ("GETEX", "s", "PERSIST"), ("GETEX", "s", "PERSIST"),
    ("GETEX", "s", "PXAT", "1"), ("GETDEL", "m2"), ("GETDEL", "m2"),
    ("SET", "sx", "1", "PXAT", "99999999999999"), ("SET", "sk", "1", "KEEPTTL"),
    # generic
    ("EXPIRE", "m1", "100"), ("EXPIRE", "m1", "50", "GT"), ("PEXPIRE", "m1", "100000", "LT"),
    ("EXPIREAT", "m3", "99999999999"), ("PEXPIREAT", "nokey", "99999999999"),
    ("PERSIST", "m1"), ("PERSIST", "m1"), ("EXPIRE", "m3", "-1"), ("DEL", "n", "nokey", "ap"),
    ("UNLINK", "sr"), ("SET", "r1", "v"), ("RENAME", "r1", "r2"), ("SET", "r3", "w"),
    ("RENAME", "r2", "r3"), ("RENAMENX", "r3", "r4"), ("SET", "r5", "x"),
    ("RENAMENX", "r4", "r5"), ("RENAME", "r4", "r4"), ("COPY", "r4", "c1"),
    ("COPY", "r4", "c1"), ("COPY", "r4", "c1", "REPLACE"), ("COPY", "r4", "c2", "DB", "3"),
    ("MOVE", "c1", "4"), ("MOVE", "r5", "4"), ("SET", "r5", "y"), ("MOVE", "r5", "4"),
    # lists
    ("LPUSH", "l", "a", "b"), ("RPUSH", "l", "c"), ("LPUSHX", "l", "d"),
    ("RPUSHX", "nolist", "d"), ("LSET", "l", "0", "D"), ("LINSERT", "l", "BEFORE", "c", "C"),
    ("LINSERT", "l", "AFTER", "zz", "q"), ("LREM", "l", "0", "C"), ("LREM", "l", "0", "nope"),
    ("LTRIM", "l", "0", "10"), ("LPOP", "l"), ("RPOP", "l", "0"), ("RPOP", "l", "1"),
    ("RPUSH", "l2", "x", "y", "z"), ("LMOVE", "l2", "l3", "LEFT", "RIGHT"),
    ("RPOPLPUSH", "l2", "l3"), ("LMOVE", "l2", "l2", "LEFT", "LEFT"),
    ("LMPOP", "2", "nolist", "l2", "LEFT", "COUNT", "5"), ("BLPOP", "l3", "0"),
    ("BRPOP", "l3", "0"), ("RPUSH", "l4", "a", "b", "c"), ("BLMOVE", "l4", "l5", "RIGHT",
    "LEFT", "0"), ("BRPOPLPUSH", "l4", "l5", "0"), ("BLMPOP", "0", "1", "l4", "RIGHT"),
    ("LTRIM", "l5", "5", "10"), ("RPUSH", "l6", "a"), ("LREM", "l6", "1", "a"),
    # hashes
    ("HSET", "h", "f", "1", "g", "2"), ("HSET", "h", "f", "1"), ("HMSET", "h", "x", "y"),
    ("HSETNX", "h", "f", "9"), ("HSETNX", "h", "z", "9"), ("HINCRBY", "h", "f", "3"),
    ("HINCRBYFLOAT", "h", "g", "0.5"), ("HDEL", "h", "nope"), ("HDEL", "h", "f", "g"),
    ("HDEL", "h", "x", "z"),
    # sets
    ("SADD", "st", "a", "b", "c"), ("SADD", "st", "a"), ("SREM", "st", "x"),
    ("SREM", "st", "a"), ("SMOVE", "st", "st2", "b"), ("SMOVE", "st", "st2", "zz"),
    ("SADD", "st2", "q", "r", "s", "t"), ("SPOP", "st"), ("SPOP", "st2", "0"),
    ("SPOP", "st2", "2"), ("SADD", "u1", "1", "2", "3"), ("SADD", "u2", "3", "4"),
    ("SINTERSTORE", "d1", "u1", "u2"), ("SUNIONSTORE", "d2", "u1", "u2"),
    ("SDIFFSTORE", "d3", "u1", "u2"), ("SINTERSTORE", "d1", "u1", "nokey"),
    ("SINTERSTORE", "d9", "u1", "nokey"), ("SPOP", "u2", "5"), ("SMOVE", "u1", "u1", "1"),
    # sorted sets
    ("ZADD", "z", "1", "a", "2", "b", "3", "c"), ("ZADD", "z", "1", "a"),
    ("ZADD", "z", "XX", "5", "a"), ("ZADD", "z", "NX", "5", "a"), ("ZINCRBY", "z", "1", "b"),
    ("ZADD", "z", "INCR", "1", "c"), ("ZREM", "z", "nope"), ("ZREM", "z", "a"),
    ("ZADD", "z2", "1", "x", "2", "y", "3", "w", "4", "v"),
    ("ZREMRANGEBYRANK", "z2", "0", "0"), ("ZREMRANGEBYSCORE", "z2", "2", "2"),
    ("ZREMRANGEBYLEX", "z2", "[a", "[b"), ("ZREMRANGEBYSCORE", "z2", "100", "200"),
    ("ZPOPMIN", "z2"), ("ZPOPMAX", "z2", "0"), ("ZPOPMAX", "z2", "5"),
    ("ZADD", "z3", "1", "p", "2", "q"), ("ZUNIONSTORE", "zd", "2", "z", "z3"),
    ("ZINTERSTORE", "zd2", "2", "z", "z3"), ("ZDIFFSTORE", "zd3", "2", "z", "z3"),
    ("ZRANGESTORE", "zd4", "z", "0", "-1"), ("ZRANGESTORE", "zd4", "z", "5", "10"),
    ("ZMPOP", "1", "z3", "MIN", "COUNT", "1"), ("BZPOPMIN", "z3", "0"),
    ("ZADD", "z4", "1", "a"), ("BZPOPMAX", "z4", "0"), ("ZADD", "z4", "1", "a"),
    ("BZMPOP", "0", "1", "z4", "MAX"), ("ZREMRANGEBYRANK", "z", "0", "-1"),
    # streams
    ("XADD", "x", "1-1", "f", "v"), ("XADD", "x", "MAXLEN", "1", "2-1", "f", "v"),
    ("XADD", "x", "MAXLEN", "5", "3-1", "f", "v"), ("XADD", "nox", "NOMKSTREAM", "*", "f", "v"),
    ("XDEL", "x", "9-9"), ("XDEL", "x", "2-1"), ("XTRIM", "x", "MAXLEN", "10"),
    ("XADD", "x", "4-1", "f", "v"), ("XADD", "x", "5-1", "f", "v"),
    ("XTRIM", "x", "MAXLEN", "1"), ("XSETID", "x", "9-9"),
    ("XGROUP", "CREATE", "x", "g", "0"), ("XGROUP", "CREATE", "x2", "g", "$", "MKSTREAM"),
    ("XGROUP", "SETID", "x", "g", "0"), ("XGROUP", "CREATECONSUMER", "x", "g", "c1"),
    ("XGROUP", "CREATECONSUMER", "x", "g", "c1"), ("XREADGROUP", "GROUP", "g", "c2",
    "STREAMS", "x", ">"), ("XREADGROUP", "GROUP", "g", "c2", "STREAMS", "x", "0"),
    ("XCLAIM", "x", "g", "c3", "0", "5-1"), ("XCLAIM", "x", "g", "c3", "0", "5-1"),
    ("XAUTOCLAIM", "x", "g", "c4", "0", "0"), ("XGROUP", "DELCONSUMER", "x", "g", "c9"),
    ("XGROUP", "DELCONSUMER", "x", "g", "c4"), ("XGROUP", "DESTROY", "x", "g"),
    ("XGROUP", "DESTROY", "x", "g"), ("XACK", "x", "g", "5-1"),
    # bitmaps, HyperLogLog, geo, sort
    ("SETBIT", "b", "7", "1"), ("SETBIT", "b", "7", "1"), ("SETBIT", "b", "7", "0"),
    ("SETBIT", "b", "100", "0"), ("BITFIELD", "bf", "SET", "u8", "0", "1"),
    ("BITFIELD", "bf", "SET", "u8", "0", "1"), ("BITFIELD", "bf", "GET", "u8", "0"),
    ("BITOP", "OR", "bo", "b", "bf"), ("BITOP", "AND", "bo", "nokey"),
    ("BITOP", "AND", "bo", "nokey"), ("PFADD", "hll", "a", "b"), ("PFADD", "hll", "a"),
    ("PFADD", "hll2", "c"), ("PFMERGE", "hll3", "hll", "hll2"),
    ("GEOADD", "geo", "13.361389", "38.115556", "Palermo", "15.087269", "37.502669",
    "Catania"), ("GEOADD", "geo", "XX", "13.361389", "38.115556", "Palermo"),
    ("GEORADIUS", "geo", "15", "37", "200", "km", "STORE", "gr"),
    ("GEORADIUSBYMEMBER", "geo", "Palermo", "1", "km", "STORE", "gr"),
    ("GEOSEARCHSTORE", "gs", "geo", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km"),
    ("GEOSEARCHSTORE", "gs", "geo", "FROMLONLAT", "15", "37", "BYRADIUS", "1", "m"),
    ("GEOSEARCHSTORE", "gs2", "nogeo", "FROMLONLAT", "15", "37", "BYRADIUS", "1", "m"),
    ("RPUSH", "so", "3", "1", "2"), ("SORT", "so", "STORE", "so2"),
    ("SORT", "nolist", "STORE", "so2"), ("SORT", "nolist", "STORE", "so2"),
    # DUMP / RESTORE, errors and a transaction
    ("RESTORE", "rs", "0", "DUMP:so"), ("RESTORE", "rs", "0", "DUMP:so", "REPLACE"),
    ("RESTORE", "rs", "1", "DUMP:so", "REPLACE", "ABSTTL"),
    ("LPUSH", "st2", "x"), ("HSET", "l5", "f", "v"), ("INCR", "hll"),
    ("MULTI",), ("SET", "t1", "a"), ("LPUSH", "t2", "b"), ("DEL", "t1"), ("EXEC",),
    ("EVAL", "redis.call('SET', KEYS[1], 'v'); redis.call('EXPIRE', KEYS[1], 100)", "1", "ev"),
]  # fmt: skip


class Subscriber:
    """A connection in PSUBSCRIBE __key*__:*, reading its messages."""

    def __init__(self, port: int) -> None:
        self.conn = client(port)
        self.pubsub = self.conn.pubsub()
        self.pubsub.psubscribe("__key*__:*")
        confirm = self.pubsub.get_message(timeout=10)
        assert confirm is not None and confirm["type"] == "psubscribe", confirm

    def until(self, last: Event, timeout_s: float = 20) -> list[Event]:
        """The events up to and including `last` (which must come within timeout_s)."""
        events: list[Event] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
            if message is None or message["type"] != "pmessage":
                continue
            event = (message["channel"], message["data"])
            events.append(event)
            if event == last:
                return events
        raise AssertionError(f"no {last!r} within {timeout_s}s; heard {events!r}")

    def close(self) -> None:
        self.pubsub.close()
        self.conn.close()


def _run(conn: redis.Redis, commands: Sequence[Args]) -> None:
    for args in commands:
        # "DUMP:so": a payload of the list so, made by the server under test
        args = [execute(conn, "DUMP", "so") if a == "DUMP:so" else a for a in args]
        # (errors send no event; the replies themselves are other tests' business)
        with contextlib.suppress(redis.ResponseError):
            execute(conn, *args)


def _events(port: int, flags: str, commands: Sequence[Args]) -> list[Event]:
    """What a subscriber on port hears while commands run with these flags."""
    conn = redis.Redis(port=port, socket_timeout=15, single_connection_client=True)
    execute(conn, "FLUSHALL")
    execute(conn, "CONFIG", "SET", "notify-keyspace-events", flags)
    subscriber = Subscriber(port)
    try:
        _run(conn, commands)
        # The end: a message the pattern also matches, published after the commands (in
        # memlog through the log, so after their events).
        execute(conn, "PUBLISH", *END)
        return subscriber.until(END)[:-1]
    finally:
        execute(conn, "CONFIG", "SET", "notify-keyspace-events", "")
        subscriber.close()
        conn.close()


@pytest.fixture
def servers(oracle_server: RedisServer, memlog: Memlog) -> Iterator[tuple[int, int]]:
    yield oracle_server.port, memlog.shim_ports[0]


def test_events_of_every_command_match_redis(servers: tuple[int, int]) -> None:
    oracle_port, shim_port = servers
    want = _events(oracle_port, "KEA", COMMANDS)
    got = _events(shim_port, "KEA", COMMANDS)
    assert len(want) > 300  # the list does exercise them
    for i, (w, g) in enumerate(zip(want, got, strict=False)):
        assert g == w, f"event {i}: redis-server sent {w!r}, memlog {g!r}; before: {want[:i][-6:]}"
    assert got == want


def _blocked_events(port: int) -> list[Event]:
    """Clients blocked in BLPOP, BLMOVE, BZPOPMIN and XREADGROUP, then served by writes: the
    events of the writes, then those of the served commands (Redis serves them after the
    write, before the next command)."""
    conn = redis.Redis(port=port, socket_timeout=15, single_connection_client=True)
    execute(conn, "FLUSHALL")
    execute(conn, "XGROUP", "CREATE", "x", "g", "$", "MKSTREAM")
    execute(conn, "CONFIG", "SET", "notify-keyspace-events", "KEA")
    subscriber = Subscriber(port)
    waiting = [RawConnection(port) for _ in range(4)]
    try:
        blocked = [
            ("BLPOP", "l", "0"), ("BLMOVE", "m", "m2", "LEFT", "RIGHT", "0"),
            ("BZPOPMIN", "z", "0"), ("XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS",
            "x", ">"),
        ]  # fmt: skip
        for raw, args in zip(waiting, blocked, strict=True):
            raw.send(args)
        wait_until(
            lambda: execute(conn, "INFO", "clients")["blocked_clients"] == 4,  # type: ignore[index]
            10, "the clients to block",
        )  # fmt: skip
        for args in [("RPUSH", "l", "a"), ("RPUSH", "m", "b", "c"), ("ZADD", "z", "1", "q"),
                     ("XADD", "x", "1-1", "f", "v")]:  # fmt: skip
            execute(conn, *args)
        for raw in waiting:
            raw.replies(1)
        execute(conn, "PUBLISH", *END)
        return subscriber.until(END)[:-1]
    finally:
        execute(conn, "CONFIG", "SET", "notify-keyspace-events", "")
        for raw in waiting:
            raw.close()
        subscriber.close()
        conn.close()


def test_events_of_blocked_clients_served_match_redis(servers: tuple[int, int]) -> None:
    oracle_port, shim_port = servers
    want = _blocked_events(oracle_port)
    for served in (b"lpop", b"rpush", b"zpopmin", b"xgroup-createconsumer"):
        assert served in [message for _, message in want]
    assert _blocked_events(shim_port) == want


@pytest.mark.parametrize("flags", ["En", "Kl", "Eg$", "KEA", "Kh"])
def test_masks_and_new_key_events_match_redis(servers: tuple[int, int], flags: str) -> None:
    commands: list[Args] = [
        ("SET", "a", "1"), ("SET", "a", "2"), ("LPUSH", "l", "x"), ("HSET", "h", "f", "v"),
        ("RENAME", "a", "b"), ("DEL", "b"), ("SADD", "s", "m"), ("EXPIRE", "s", "100"),
        ("ZADD", "z", "1", "m"), ("XADD", "x", "1-1", "f", "v"), ("COPY", "l", "l2"),
    ]  # fmt: skip
    oracle_port, shim_port = servers
    assert _events(shim_port, flags, commands) == _events(oracle_port, flags, commands)


def test_config_get_and_set_of_the_flags_match_redis(servers: tuple[int, int]) -> None:
    cases = ["gKE", "$lshzxeKE", "KA", "EA", "AKn", "Kn", "A", "xE", "", "Q", "KEA!", "gg"]
    for port in servers:
        execute(client(port), "CONFIG", "SET", "notify-keyspace-events", "")
    seen = []
    for port in servers:
        conn = client(port)
        answers: list[object] = []
        for flags in cases:
            try:
                execute(conn, "CONFIG", "SET", "notify-keyspace-events", flags)
                answers.append(execute(conn, "CONFIG", "GET", "notify-keyspace-events"))
            except redis.ResponseError as exc:
                answers.append(str(exc))
        execute(conn, "CONFIG", "SET", "notify-keyspace-events", "")
        seen.append(answers)
    assert seen[1] == seen[0]


def test_keymiss_events_are_refused_not_ignored(memlog: Memlog) -> None:
    conn = client(memlog.shim_ports[0])
    with pytest.raises(redis.ResponseError, match="keymiss"):
        execute(conn, "CONFIG", "SET", "notify-keyspace-events", "KEm")
    assert execute(conn, "CONFIG", "GET", "notify-keyspace-events") == [
        b"notify-keyspace-events",
        b"",
    ]


@pytest.mark.parametrize("triggered", [False, True], ids=["background", "triggered"])
def test_expired_events_come_without_other_writes(memlog: Memlog, triggered: bool) -> None:
    """As in Redis: a key whose time is up is removed and its "expired" event sent though no
    other write comes (the shim proposes the record that removes it)."""
    conn = client(memlog.shim_ports[0])
    execute(conn, "FLUSHALL")
    execute(conn, "CONFIG", "SET", "notify-keyspace-events", "Ex")
    subscriber = Subscriber(memlog.shim_ports[0])
    try:
        execute(conn, "PSETEX", "foo", "100", "1")
        execute(conn, "PSETEX", "bar", "150", "1")
        if triggered:
            deadline = time.monotonic() + 10
            while execute(conn, "EXISTS", "foo") and time.monotonic() < deadline:
                time.sleep(0.02)
        events = subscriber.until((b"__keyevent@0__:expired", b"bar"), timeout_s=10)
        assert events == [(b"__keyevent@0__:expired", b"foo"), (b"__keyevent@0__:expired", b"bar")]
        assert execute(conn, "DBSIZE") == 0
    finally:
        execute(conn, "CONFIG", "SET", "notify-keyspace-events", "")
        subscriber.close()
        conn.close()


def test_a_write_on_one_shim_notifies_the_subscribers_of_another(two_shims: Memlog) -> None:
    """Events are made at apply, on every shim, in log order; the setting travels through
    the log, so a CONFIG SET on shim A decides what shim B's subscribers hear."""
    port_a, port_b = two_shims.shim_ports[:2]
    a = client(port_a)
    execute(a, "FLUSHALL")
    execute(a, "CONFIG", "SET", "notify-keyspace-events", "KEA")
    b = client(port_b)
    deadline = time.monotonic() + 10
    while execute(b, "CONFIG", "GET", "notify-keyspace-events") != [
        b"notify-keyspace-events",
        b"AKE",
    ]:
        assert time.monotonic() < deadline, "shim B never applied the setting"
        time.sleep(0.02)
    subscriber = Subscriber(port_b)
    try:
        execute(a, "SET", "k", "v")
        execute(a, "LPUSH", "l", "x")
        execute(a, "DEL", "k")
        execute(a, "SET", END_KEY, "1")
        assert subscriber.until((b"__keyspace@0__:" + END_KEY, b"set")) == [
            (b"__keyspace@0__:k", b"set"), (b"__keyevent@0__:set", b"k"),
            (b"__keyspace@0__:l", b"lpush"), (b"__keyevent@0__:lpush", b"l"),
            (b"__keyspace@0__:k", b"del"), (b"__keyevent@0__:del", b"k"),
            (b"__keyspace@0__:" + END_KEY, b"set"),
        ]  # fmt: skip
    finally:
        execute(a, "CONFIG", "SET", "notify-keyspace-events", "")
        subscriber.close()
        a.close()
        b.close()


class _Heard:
    """A hub that keeps what it is given (the events of apply)."""

    def __init__(self) -> None:
        self.heard: list[Event] = []

    def publish(self, channel: bytes, message: bytes) -> int:
        self.heard.append((channel, message))
        return 0


def _record(args: Sequence[str], time_ms: int) -> bytes:
    record = record_pb2.Record(db=0, time_ms=time_ms, shim_id="s", proposal_id=0)
    record.commands.add(args=[a.encode() for a in args])
    return record.SerializeToString()


def test_the_flags_travel_in_records_and_snapshots_and_apply_stays_pure() -> None:
    """The CONFIG SET record carries the flags as given ("A" hides "n" in CONFIG GET's text,
    not in the flags, as in Redis); a snapshot keeps them; an applier without a hub (the
    snapshotter) sends nothing and reaches the same digest."""
    load_all()
    hub = _Heard()
    with_hub, without = Applier(cast(Hub, hub)), Applier()
    records = [
        ["CONFIG", "SET", "notify-keyspace-events", "AKn"], ["SET", "a", "1"],
        ["PEXPIRE", "a", "5"], ["SET", "b", "2"],
    ]  # fmt: skip
    for i, args in enumerate(records, 1):
        for applier in (with_hub, without):
            applier.apply(i, _record(args, 1_000 + 10 * i))
    assert notify.text_of(with_hub.keyspace.notify_flags) == "AK"
    assert with_hub.keyspace.notify_flags & notify.NEW
    assert hub.heard == [
        (b"__keyspace@0__:a", b"new"), (b"__keyspace@0__:a", b"set"),
        (b"__keyspace@0__:a", b"expire"), (b"__keyspace@0__:a", b"expired"),
        (b"__keyspace@0__:b", b"new"), (b"__keyspace@0__:b", b"set"),
    ]  # fmt: skip
    assert with_hub.keyspace.digest() == without.keyspace.digest()
    out = io.BytesIO()
    write_rdb(with_hub.keyspace, out, snapshot_state(with_hub))
    fresh = Applier()
    restore(fresh, read_rdb(io.BytesIO(out.getvalue())))
    assert fresh.keyspace.notify_flags == with_hub.keyspace.notify_flags
