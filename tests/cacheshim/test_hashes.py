"""Hash commands (issue 5) against redis-server 7.0: replies and errors must be identical.

Differential tests go through the real write path (log + apply) with redis-py clients whose
reply callbacks are removed. Where Redis's order is fixed (a listpack hash answers in
insertion order) replies are compared exactly; where it is its hash table's (a hashtable
hash) they are compared as sorted lists of pairs. HRANDFIELD's picks are random on both
sides: its replies are compared by shape and membership, and exactly where Redis answers
the whole hash.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

import pytest
import redis

from cacheshim.apply import run
from cacheshim.commands import Ctx, load_all
from cacheshim.types.hashvalue import HashValue
from cacheshim.types.keyspace import Keyspace
from cacheshim.types.setvalue import ScanOrder
from tests.cacheshim.harness import Memlog, RedisServer, arity_probes, compare, execute
from tests.cacheshim.rawresp import Pair, RawConnection, compare_raw, without_callbacks

LLONG_MAX = 2**63 - 1
LLONG_MIN = -(2**63)
LONG_PAST = "x" * 65  # one byte over hash-max-listpack-value


@pytest.fixture
def raw(pair: Pair) -> Pair:
    oracle, subject = pair
    return without_callbacks(oracle), without_callbacks(subject)


def pairs_of(reply: object) -> list[tuple[bytes, bytes]]:
    """A flat [field, value, ...] reply as sorted pairs."""
    assert isinstance(reply, list) and len(reply) % 2 == 0, reply
    return sorted(zip(reply[::2], reply[1::2], strict=True))


def compare_pairs(oracle: redis.Redis, subject: redis.Redis, key: str) -> None:
    """HGETALL of a hashtable hash: the same pairs in any order."""
    want = pairs_of(execute(oracle, "HGETALL", key))
    got = pairs_of(execute(subject, "HGETALL", key))
    assert got == want, f"HGETALL {key}: redis {want!r}, memlog {got!r}"


def fill(conns: Sequence[redis.Redis], key: str, count: int, prefix: str = "f") -> None:
    """HSET count fields f0..f(count-1) (values v0..) on every connection, in one call."""
    args: list[str] = []
    for i in range(count):
        args += [f"{prefix}{i}", f"v{i}"]
    for conn in conns:
        execute(conn, "HSET", key, *args)


# -- HSET and friends ------------------------------------------------------------------------


def test_set_get_delete(raw: Pair) -> None:
    compare(*raw, [
        ["HGET", "h", "a"], ["HLEN", "h"], ["HEXISTS", "h", "a"], ["HSTRLEN", "h", "a"],
        ["HMGET", "h", "a", "b"], ["HGETALL", "h"], ["HKEYS", "h"], ["HVALS", "h"],
        ["HSET", "h", "a", "1"], ["HSET", "h", "a", "2", "b", "3", "a", "4"], ["HGET", "h", "a"],
        ["HSET", "h", "a"], ["HSET", "h", "a", "1", "b"], ["HMSET", "h", "c"],
        ["HMSET", "h", "c", "5", "d", "6"], ["HGETALL", "h"], ["HKEYS", "h"], ["HVALS", "h"],
        ["HLEN", "h"], ["HEXISTS", "h", "c"], ["HEXISTS", "h", "zz"], ["HSTRLEN", "h", "c"],
        ["HSTRLEN", "h", "zz"], ["HMGET", "h", "a", "zz", "d", "a"],
        ["HSETNX", "h", "a", "9"], ["HSETNX", "h", "e", "9"], ["HSETNX", "new", "f", "v"],
        ["HGETALL", "new"], ["HDEL", "h", "a", "zz", "a"], ["HDEL", "h", "zz"],
        ["HDEL", "nokey", "a"], ["HGETALL", "h"],
        # updates keep a listpack field's place; deleted ones come back at the end
        ["HSET", "h", "b", "new"], ["HSET", "h", "a", "back"], ["HGETALL", "h"],
        ["HDEL", "h", "b", "c", "d", "e", "a"], ["EXISTS", "h"], ["HLEN", "h"],
        ["HSET", "h", "", ""], ["HGET", "h", ""], ["HSTRLEN", "h", ""], ["HGETALL", "h"],
        ["HSET", "h", b"\x00\xff", b"\xff\x00"], ["HGET", "h", b"\x00\xff"],
        ["HSET", "t", "f", "v"], ["EXPIRE", "t", "1000"], ["HSET", "t", "g", "w"], ["TTL", "t"],
        ["HDEL", "t", "f"], ["TTL", "t"], ["HDEL", "t", "g"], ["TTL", "t"], ["EXISTS", "t"],
    ])  # fmt: skip


def test_incrby(raw: Pair) -> None:
    compare(*raw, [
        ["HINCRBY", "h", "n", "1"], ["HINCRBY", "h", "n", "-5"], ["HGET", "h", "n"],
        ["HINCRBY", "h", "n", "x"], ["HINCRBY", "h", "n", "1.5"], ["HINCRBY", "h", "n", ""],
        ["HINCRBY", "h", "n", " 1"], ["HINCRBY", "h", "n", "+1"], ["HINCRBY", "h", "n", "01"],
        ["HINCRBY", "h", "n", "9223372036854775808"], ["HINCRBY", "nokey", "n", "x"],
        ["EXISTS", "nokey"],
        ["HSET", "h", "max", str(LLONG_MAX), "min", str(LLONG_MIN)],
        ["HINCRBY", "h", "max", "1"], ["HINCRBY", "h", "max", "0"], ["HINCRBY", "h", "max", "-1"],
        ["HINCRBY", "h", "min", "-1"], ["HINCRBY", "h", "min", str(LLONG_MAX)],
        ["HINCRBY", "h", "n", str(LLONG_MAX)], ["HINCRBY", "h", "n", str(LLONG_MIN)],
        ["HSET", "h", "s", "abc", "sp", " 5", "z", "05", "neg0", "-0", "fl", "1.0", "e", ""],
        ["HINCRBY", "h", "s", "1"], ["HINCRBY", "h", "sp", "1"], ["HINCRBY", "h", "z", "1"],
        ["HINCRBY", "h", "neg0", "1"], ["HINCRBY", "h", "fl", "1"], ["HINCRBY", "h", "e", "1"],
        ["HSET", "h", "big", "12345678901234567890"], ["HINCRBY", "h", "big", "1"],
        ["HGETALL", "h"],
    ])  # fmt: skip


_FLOATS = [
    "0.1", "0.2", "-0.3", "1e300", "5.0e3", "inf", "-inf", "+inf", "nan", " 1", "1 ", "0x10",
    "0x1p-2", "0x", "1e-4951", "1e4932", "1e4933", "1.", ".5", ".", "1e", "+1", "1_0", "",
    "12345678.123456789", "3.0000000000000000001", "-1e-18", "18446744073709551617", "-0.0",
    "1e-20", "1" * 40,
]  # fmt: skip


def test_incrbyfloat(raw: Pair) -> None:
    commands: list[list[object]] = []
    for i, case in enumerate(_FLOATS):
        commands += [["HINCRBYFLOAT", "h", f"f{i}", case], ["HINCRBYFLOAT", "h", "sum", case]]
    commands += [
        ["OBJECT", "ENCODING", "h"], ["HINCRBYFLOAT", "nokey", "f", "x"], ["EXISTS", "nokey"],
        ["HINCRBYFLOAT", "nokey", "f", "inf"], ["EXISTS", "nokey"],
        ["HSET", "g", "s", "abc", "sp", " 1", "inf", "inf", "big", "1e4932", "hex", "0x10"],
        ["HINCRBYFLOAT", "g", "s", "1"], ["HINCRBYFLOAT", "g", "sp", "1"],
        ["HINCRBYFLOAT", "g", "inf", "1"], ["HINCRBYFLOAT", "g", "big", "1e4932"],
        ["HINCRBYFLOAT", "g", "hex", "1"], ["HINCRBYFLOAT", "g", "new", "1e-5000"],
        ["HGETALL", "g"], ["OBJECT", "ENCODING", "g"],
        ["HINCRBYFLOAT", "g", "long", "1" * 70], ["OBJECT", "ENCODING", "g"],
    ]  # fmt: skip
    compare(*raw, commands)
    compare_pairs(*raw, "h")  # a hashtable by now (long values): any order
    rng = random.Random(5)
    commands = []
    for _ in range(60):
        commands.append(
            ["HINCRBYFLOAT", "r", "x", f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 20)}f}"]
        )
    compare(*raw, commands)


# -- types, arity, encodings -----------------------------------------------------------------

_HASH_COMMANDS = [
    "hset", "hsetnx", "hget", "hmget", "hmset", "hdel", "hexists", "hlen", "hstrlen", "hkeys",
    "hvals", "hgetall", "hincrby", "hincrbyfloat", "hrandfield", "hscan",
]  # fmt: skip


def test_wrong_type_both_ways(raw: Pair) -> None:
    compare(*raw, [
        ["SET", "s", "v"], ["SADD", "set", "m"], ["HSET", "h", "f", "v"],
        ["HSET", "s", "f", "v"], ["HMSET", "s", "f", "v"], ["HMSET", "s", "f"],
        ["HSETNX", "s", "f", "v"],
        ["HGET", "s", "f"], ["HMGET", "s", "f"], ["HDEL", "s", "f"], ["HEXISTS", "s", "f"],
        ["HLEN", "s"], ["HSTRLEN", "s", "f"], ["HKEYS", "s"], ["HVALS", "s"], ["HGETALL", "s"],
        ["HINCRBY", "s", "f", "1"], ["HINCRBY", "s", "f", "x"], ["HINCRBYFLOAT", "s", "f", "1"],
        ["HINCRBYFLOAT", "s", "f", "x"], ["HINCRBYFLOAT", "s", "f", "inf"],
        ["HRANDFIELD", "s"], ["HRANDFIELD", "s", "1"], ["HRANDFIELD", "s", "x"],
        ["HRANDFIELD", "s", "1", "WITHVALUES"], ["HRANDFIELD", "s", "1", "BOGUS"],
        ["HSCAN", "s", "0"], ["HSCAN", "s", "x"], ["HSCAN", "s", "0", "COUNT", "0"],
        ["HGET", "set", "f"], ["HSET", "set", "f", "v"],
        ["GET", "h"], ["SET", "h", "x", "GET"], ["APPEND", "h", "x"], ["INCR", "h"],
        ["SADD", "h", "m"], ["SMEMBERS", "h"], ["SCARD", "h"], ["LCS", "h", "s"],
        ["STRLEN", "h"], ["GETRANGE", "h", "0", "1"], ["MGET", "h", "s"], ["TYPE", "h"],
        ["SET", "h", "x"], ["TYPE", "h"], ["GET", "h"],
    ])  # fmt: skip


def test_wrong_number_of_arguments(raw: Pair) -> None:
    commands = arity_probes(_HASH_COMMANDS)
    commands += [["HSET", "k", "f", "v", "g"], ["HMSET", "k", "f", "v", "g"], ["HSET", "k"]]
    compare(*raw, commands)


def test_encodings_and_generic_commands(raw: Pair) -> None:
    oracle, subject = raw
    fill(raw, "at512", 512)
    fill(raw, "at513", 513)
    compare(oracle, subject, [
        ["OBJECT", "ENCODING", "at512"], ["OBJECT", "ENCODING", "at513"],
        ["HSET", "at512", "f0", "again"], ["OBJECT", "ENCODING", "at512"],
        ["HSET", "at512", "one-more", "v"], ["OBJECT", "ENCODING", "at512"],
        ["HDEL", "at512", "one-more", "f1", "f2"], ["OBJECT", "ENCODING", "at512"],
        ["HSET", "v64", "f", "x" * 64], ["OBJECT", "ENCODING", "v64"],
        ["HSET", "v65", "f", LONG_PAST], ["OBJECT", "ENCODING", "v65"],
        ["HSET", "k65", LONG_PAST, "v"], ["OBJECT", "ENCODING", "k65"],
        ["HDEL", "v65", "f"], ["HSET", "v65", "f", "short"], ["OBJECT", "ENCODING", "v65"],
        ["HSET", "keep", "f", "v"], ["HSETNX", "keep", "f", LONG_PAST],
        ["OBJECT", "ENCODING", "keep"], ["HSETNX", "keep", "g", LONG_PAST],
        ["OBJECT", "ENCODING", "keep"], ["HINCRBY", "inc", LONG_PAST, "1"],
        ["OBJECT", "ENCODING", "inc"], ["HINCRBYFLOAT", "incf", "f", "1" * 70],
        ["OBJECT", "ENCODING", "incf"], ["HSET", "mixed", "a", "1", "b", LONG_PAST, "c", "3"],
        ["OBJECT", "ENCODING", "mixed"], ["HMSET", "hm", "a", LONG_PAST],
        ["OBJECT", "ENCODING", "hm"],
        ["TYPE", "keep"], ["OBJECT", "REFCOUNT", "keep"], ["OBJECT", "REFCOUNT", "at513"],
        ["COPY", "keep", "keep2"], ["OBJECT", "ENCODING", "keep2"], ["HLEN", "keep2"],
        ["COPY", "v64", "v64b"], ["OBJECT", "ENCODING", "v64b"],
        ["HSET", "keep2", "z", "1"], ["HLEN", "keep"], ["HLEN", "keep2"],
        ["RENAME", "v64", "v64c"], ["OBJECT", "ENCODING", "v64c"], ["HGETALL", "v64c"],
        ["MOVE", "v64c", "1"], ["EXISTS", "v64c"], ["SCAN", "0", "COUNT", "1000", "TYPE", "set"],
        ["EXPIRE", "keep", "100"], ["PERSIST", "keep"], ["DEL", "keep"], ["EXISTS", "keep"],
    ])  # fmt: skip
    for key in ("at513", "mixed", "keep2"):
        compare_pairs(oracle, subject, key)
    want = sorted(execute(oracle, "SCAN", "0", "COUNT", "1000", "TYPE", "hash")[1])  # type: ignore[index]
    got = sorted(execute(subject, "SCAN", "0", "COUNT", "1000", "TYPE", "hash")[1])  # type: ignore[index]
    assert got == want
    usage = execute(subject, "MEMORY", "USAGE", "at513")
    assert isinstance(usage, int) and usage > 513 * 4


# -- HRANDFIELD ------------------------------------------------------------------------------


def test_hrandfield_arguments(raw: Pair) -> None:
    compare(*raw, [
        ["HRANDFIELD", "nokey"], ["HRANDFIELD", "nokey", "5"], ["HRANDFIELD", "nokey", "-5"],
        ["HRANDFIELD", "nokey", "5", "WITHVALUES"], ["HRANDFIELD", "nokey", "x"],
        ["HRANDFIELD", "nokey", "5", "BOGUS"], ["HSET", "h", "a", "1", "b", "2", "c", "3"],
        ["HRANDFIELD", "h", "0"], ["HRANDFIELD", "h", "0", "WITHVALUES"],
        ["HRANDFIELD", "h", "1", "WITHVALUES", "x"], ["HRANDFIELD", "h", "3", "withvalues\x00x"],
        ["HRANDFIELD", "h", "x"], ["HRANDFIELD", "h", "1.5"], ["HRANDFIELD", "h", ""],
        ["HRANDFIELD", "h", str(LLONG_MIN)], ["HRANDFIELD", "h", str(LLONG_MIN), "WITHVALUES"],
        ["HRANDFIELD", "h", "-9223372036854775807", "WITHVALUES"],
        ["HRANDFIELD", "h", "4611686018427387904", "WITHVALUES"],
        ["HRANDFIELD", "h", "-4611686018427387904", "WITHVALUES"],
        # the whole hash, in its listpack order
        ["HRANDFIELD", "h", "3"], ["HRANDFIELD", "h", "4611686018427387903", "WITHVALUES"],
        ["HRANDFIELD", "h", str(LLONG_MAX)], ["HRANDFIELD", "h", "100", "withvalues"],
    ])  # fmt: skip


def test_hrandfield_picks(raw: Pair) -> None:
    oracle, subject = raw
    fill(raw, "small", 20)
    fill(raw, "big", 700)
    for key, size in (("small", 20), ("big", 700)):
        fields = [b"f%d" % i for i in range(size)]
        for conn in raw:
            single = execute(conn, "HRANDFIELD", key)
            assert single in fields
            for count in (1, 2, 5, size - 1):
                reply = execute(conn, "HRANDFIELD", key, count)
                assert isinstance(reply, list) and len(reply) == count
                assert len(set(reply)) == count and set(reply) <= set(fields)
                pairs = execute(conn, "HRANDFIELD", key, count, "WITHVALUES")
                assert isinstance(pairs, list) and len(pairs) == 2 * count
                assert all(v == b"v" + f[1:] for f, v in zip(pairs[::2], pairs[1::2], strict=True))
            repeats = execute(conn, "HRANDFIELD", key, -3 * size)
            assert isinstance(repeats, list) and len(repeats) == 3 * size
            assert set(repeats) <= set(fields) and len(set(repeats)) > 1
            pairs = execute(conn, "HRANDFIELD", key, -5, "WITHVALUES")
            assert isinstance(pairs, list) and len(pairs) == 10
        want = execute(oracle, "HRANDFIELD", key, size, "WITHVALUES")
        got = execute(subject, "HRANDFIELD", key, size + 1, "WITHVALUES")
        if key == "small":
            assert got == want  # the whole listpack, in order
        assert pairs_of(got) == pairs_of(want)


def test_hrandfield_resp3_shapes(oracle_server: RedisServer, memlog: Memlog, raw: Pair) -> None:
    oracle = RawConnection(oracle_server.port, protocol=3)
    subject = RawConnection(memlog.shim_ports[0], protocol=3)
    try:
        compare_raw(oracle, subject, [
            ["HSET", "h", "a", "1", "b", "2", "c", "3"], ["HRANDFIELD", "nokey"],
            ["HRANDFIELD", "nokey", "2", "WITHVALUES"], ["HRANDFIELD", "h", "3", "WITHVALUES"],
            ["HRANDFIELD", "h", "10"], ["HRANDFIELD", "h", "0", "WITHVALUES"],
            ["HGETALL", "h"], ["HGETALL", "nokey"], ["HKEYS", "h"], ["HVALS", "nokey"],
            ["HMGET", "h", "a", "x"], ["HSCAN", "h", "0"], ["HINCRBYFLOAT", "h", "a", "0.5"],
            ["HGET", "h", "x"],
            # inside MULTI/EXEC apply answers, and still in the client's protocol
            ["MULTI"], ["HRANDFIELD", "h", "10", "WITHVALUES"], ["HGETALL", "h"], ["EXEC"],
        ])  # fmt: skip
        for args in (
            ["HRANDFIELD", "h", "-4", "WITHVALUES"],
            ["HRANDFIELD", "h", "2", "WITHVALUES"],
        ):
            want = oracle.call(*args)
            got = subject.call(*args)
            # an array of [field, value] arrays, the same length; the picks differ
            assert got.startswith(want.split(b"\r\n", 1)[0] + b"\r\n*2\r\n"), (want, got)
            assert got.count(b"*2\r\n") == want.count(b"*2\r\n")
    finally:
        oracle.close()
        subject.close()


# -- HSCAN -------------------------------------------------------------------------------------


def full_hscan(conn: redis.Redis, key: str, *options: object) -> list[tuple[bytes, bytes]]:
    cursor: bytes = b"0"
    found: list[tuple[bytes, bytes]] = []
    for _ in range(100_000):
        reply = execute(conn, "HSCAN", key, cursor, *options)
        assert isinstance(reply, list) and len(reply) == 2, reply
        cursor, flat = reply
        found += list(zip(flat[::2], flat[1::2], strict=True))
        if cursor == b"0":
            return found
    raise AssertionError("HSCAN never returned cursor 0")


def test_hscan(raw: Pair) -> None:
    oracle, subject = raw
    compare(oracle, subject, [
        ["HSCAN", "nokey", "0"], ["HSCAN", "nokey", "x"], ["HSCAN", "nokey", "0", "COUNT", "0"],
        ["HSCAN", "nokey", "0", "BOGUS"], ["HSET", "h", "a", "1", "b", "2", "ab", "3", "", "4"],
        ["HSCAN", "h", "0"], ["HSCAN", "h", "12345"], ["HSCAN", "h", "0", "COUNT", "1"],
        ["HSCAN", "h", "0", "MATCH", "a*"], ["HSCAN", "h", "0", "MATCH", "*"],
        ["HSCAN", "h", "0", "MATCH", "*", "COUNT", "100"], ["HSCAN", "h", "0", "MATCH", "**"],
        ["HSCAN", "h", "0", "COUNT", "0"], ["HSCAN", "h", "0", "COUNT", "-1"],
        ["HSCAN", "h", "0", "COUNT", "x"], ["HSCAN", "h", "0", "COUNT"],
        ["HSCAN", "h", "0", "MATCH"],
        ["HSCAN", "h", "0", "TYPE", "string"], ["HSCAN", "h", "0", "NOVALUES"],
        ["HSCAN", "h", "0", "count\x00x", "5"], ["HSCAN", "h", "-1"], ["HSCAN", "h", "1.5"],
        ["HSCAN", "h", "18446744073709551616"], ["HSCAN", "h", "0", "COUNT", "x", "MATCH"],
    ])  # fmt: skip
    fill(raw, "big", 1000)
    for options in ([], ["COUNT", "1"], ["COUNT", "7"], ["COUNT", "5000"], ["MATCH", "f1*"],
                    ["MATCH", "f?", "COUNT", "3"], ["MATCH", "nothing*"]):  # fmt: skip
        got = full_hscan(subject, "big", *options)
        want = full_hscan(oracle, "big", *options)
        assert len(got) == len(set(got)), "no duplicates"
        assert sorted(got) == sorted(set(want)), options


def test_hscan_returns_fields_present_throughout_despite_changes(raw: Pair) -> None:
    subject = raw[1]
    fill([subject], "h", 600, "stay")
    fill([subject], "h", 600, "gone")
    cursor: bytes = b"0"
    seen: list[bytes] = []
    step = 0
    while True:
        reply = execute(subject, "HSCAN", "h", cursor, "COUNT", "25")
        assert isinstance(reply, list)
        cursor, flat = reply
        seen += flat[::2]
        if step == 3:
            execute(subject, "HDEL", "h", *[f"gone{i}" for i in range(600)])
        if step == 6:
            fill([subject], "h", 3000, "new")
        step += 1
        if cursor == b"0":
            break
    missing = {b"stay%d" % i for i in range(600)} - set(seen)
    assert not missing, f"HSCAN missed {len(missing)} fields present throughout"


def test_scan_order_is_a_function_of_the_members_unit() -> None:
    """Two scan indexes built along different histories answer every cursor the same."""
    rng = random.Random(12)
    members = [b"m%d" % i for i in range(3000)]
    grown = ScanOrder(members)
    churned = ScanOrder(members + [b"x%d" % i for i in range(20000)])
    for i in range(20000):
        churned.discard(b"x%d" % i)
    for _ in range(200):
        cursor = rng.randrange(2**63)
        count = rng.randint(1, 50)
        assert grown.scan(cursor, count) == churned.scan(cursor, count)
    cursor, seen = 0, []
    while True:
        cursor, chunk = grown.scan(cursor, 17)
        seen += chunk
        if cursor == 0:
            break
    assert sorted(seen) == sorted(members) and len(seen) == len(members)


def test_hash_value_unit() -> None:
    value = HashValue([(b"a", b"1"), (b"b", b"2")])
    assert value.encoding == "listpack" and list(value) == [b"a", b"b"]
    value.set(b"c", b"x" * 65)
    assert value.encoding == "hashtable"
    assert value.delete(b"c") and not value.delete(b"c")
    assert value.encoding == "hashtable" and value.as_dict() == {b"a": b"1", b"b": b"2"}
    twin = value.copy()
    twin.set(b"d", b"4")
    assert len(value) == 2 and len(twin) == 3 and twin.encoding == "hashtable"
    assert sorted(twin.fields_for_picks()) == [b"a", b"b", b"d"]


# -- transactions, RESP3 through redis-py ---------------------------------------------------------


def test_watch_sees_hash_changes_only(raw: Pair) -> None:
    """WATCH aborts EXEC after a write that changed the hash, not after one that did not."""
    for conn in raw:
        execute(conn, "HSET", "h", "f", "v")
    outcomes: list[list[object]] = []
    for conn in raw:
        results: list[object] = []
        for change in (["HSETNX", "h", "f", "other"], ["HDEL", "h", "nofield"],
                       ["HSET", "h", "f", "v"], ["HINCRBY", "h", "n", "1"]):  # fmt: skip
            watcher = conn.pipeline(transaction=True)
            execute(watcher, "WATCH", "h")  # the pipeline now holds its own connection
            execute(conn, *change)  # another connection writes
            watcher.multi()
            execute(watcher, "HGET", "h", "f")
            try:
                results.append(watcher.execute())
            except redis.WatchError:
                results.append("aborted")
            finally:
                watcher.reset()
        outcomes.append(results)
    assert outcomes[1] == outcomes[0], outcomes
    assert outcomes[0][:2] == [[b"v"], [b"v"]] and outcomes[0][2:] == ["aborted", "aborted"]


def test_redis_py_hash_api(oracle_server: RedisServer, memlog: Memlog, raw: Pair) -> None:
    for protocol in (2, 3):
        conns = [redis.Redis(port=p, protocol=protocol, socket_timeout=15)
                 for p in (oracle_server.port, memlog.shim_ports[0])]  # fmt: skip
        try:
            answers = []
            for conn in conns:
                conn.delete("user")
                answers.append((
                    conn.hset("user", mapping={"name": "ada", "age": "36"}),
                    conn.hget("user", "name"), conn.hgetall("user"), conn.hincrby("user", "age", 1),
                    conn.hincrbyfloat("user", "score", 1.5), conn.hkeys("user"), conn.hlen("user"),
                    conn.hexists("user", "zz"), conn.hmget("user", ["name", "zz"]),
                    conn.hrandfield("user", 10, withvalues=True), conn.hscan("user"),
                    conn.hstrlen("user", "name"), conn.hdel("user", "age"), conn.hvals("user"),
                ))  # fmt: skip
            assert answers[1] == answers[0]
        finally:
            for conn in conns:
                conn.close()


def test_unit_hash_commands_need_no_server() -> None:
    """The handlers run on a bare keyspace too (what apply does)."""
    load_all()
    ctx = Ctx(Keyspace(), 0, time.time_ns() // 1_000_000, 1, random.Random(1))
    assert run(ctx, [b"HSET", b"h", b"a", b"1"]) == 1
    assert run(ctx, [b"HINCRBYFLOAT", b"h", b"a", b"0.5"]) == b"1.5"
    assert run(ctx, [b"HGETALL", b"h"]) == {b"a": b"1.5"}
