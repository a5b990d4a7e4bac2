"""Set commands (issue 5) against redis-server 7.0: replies and errors must be identical.

Where Redis's order is fixed (an intset walks sorted; SINTER walks its smallest set) replies
are compared exactly; where it is a hash table's they are compared sorted. SPOP and
SRANDMEMBER pick at random on both sides: they are compared by shape, membership and the
encoding they leave, and exactly where Redis answers the whole set.

Determinism: the random commands must pick the same on every shim. Two checks: two real
shims end with equal digests and members after SPOPs, SMOVEs and transactions; and the
same log, applied in two processes with different PYTHONHASHSEED, gives byte-identical
replies (SPOP, SRANDMEMBER and HRANDFIELD inside MULTI/EXEC included).

Over 500 lines: every set command beside redis-server; they share the fixtures and
comparison helpers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
import redis

from cacheshim.types.setvalue import SetValue
from tests.cacheshim.harness import (
    Memlog,
    RedisServer,
    arity_probes,
    client,
    compare,
    compare_sorted,
    execute,
    replay,
    same_index,
)
from tests.cacheshim.rawresp import Pair, RawConnection, compare_raw, without_callbacks

LLONG_MAX = 2**63 - 1
LLONG_MIN = -(2**63)


@pytest.fixture
def raw(pair: Pair) -> Pair:
    oracle, subject = pair
    return without_callbacks(oracle), without_callbacks(subject)


def sadd(conns: Sequence[redis.Redis], key: str, members: Sequence[object]) -> None:
    for conn in conns:
        execute(conn, "SADD", key, *members)


def members_of(conn: redis.Redis, key: str) -> list[bytes]:
    reply = execute(conn, "SMEMBERS", key)
    assert isinstance(reply, list)
    return reply


def numbers(count: int, start: int = 0) -> list[int]:
    return list(range(start, start + count))


# -- members ------------------------------------------------------------------------------------


def test_add_remove_and_membership(raw: Pair) -> None:
    compare(*raw, [
        ["SMEMBERS", "s"], ["SCARD", "s"], ["SISMEMBER", "s", "1"], ["SMISMEMBER", "s", "1", "2"],
        ["SREM", "s", "1"], ["SADD", "s", "3", "1", "2", "10", "-5", "1"], ["SADD", "s", "2"],
        ["SMEMBERS", "s"], ["SCARD", "s"], ["SISMEMBER", "s", "10"], ["SISMEMBER", "s", "11"],
        ["SMISMEMBER", "s", "10", "x", "-5", "10"], ["SREM", "s", "10", "x", "10"],
        ["SMEMBERS", "s"], ["OBJECT", "ENCODING", "s"], ["SREM", "s", "3", "1", "2", "-5", "9"],
        ["EXISTS", "s"], ["SADD", "s", str(LLONG_MAX), str(LLONG_MIN), "0", "-1"],
        ["SMEMBERS", "s"], ["OBJECT", "ENCODING", "s"],
        ["SADD", "e", ""], ["SMEMBERS", "e"], ["SISMEMBER", "e", ""], ["OBJECT", "ENCODING", "e"],
        ["SADD", "b", b"\x00\xff"], ["SISMEMBER", "b", b"\x00\xff"], ["SREM", "b", b"\x00\xff"],
        ["SADD", "t", "x"], ["EXPIRE", "t", "1000"], ["SADD", "t", "y"], ["TTL", "t"],
        ["SREM", "t", "x", "y"], ["TTL", "t"], ["EXISTS", "t"],
    ])  # fmt: skip


_SET_COMMANDS = [
    "sadd", "srem", "sismember", "smismember", "smembers", "scard", "spop", "srandmember",
    "smove", "sinter", "sintercard", "sinterstore", "sunion", "sunionstore", "sdiff",
    "sdiffstore", "sscan",
]  # fmt: skip


def test_wrong_number_of_arguments(raw: Pair) -> None:
    commands = arity_probes(_SET_COMMANDS)
    commands += [["SPOP", "k", "1", "2"], ["SRANDMEMBER", "k", "1", "2"]]
    compare(*raw, commands)


def test_wrong_type(raw: Pair) -> None:
    compare(*raw, [
        ["SET", "str", "x"], ["HSET", "h", "f", "v"], ["SADD", "s", "1", "2"],
        ["SADD", "str", "m"], ["SREM", "str", "m"], ["SISMEMBER", "str", "m"],
        ["SMISMEMBER", "str", "m"], ["SMEMBERS", "str"], ["SCARD", "str"], ["SPOP", "str"],
        ["SPOP", "str", "0"], ["SPOP", "str", "1"], ["SPOP", "str", "x"], ["SPOP", "str", "-1"],
        ["SRANDMEMBER", "str"], ["SRANDMEMBER", "str", "0"], ["SRANDMEMBER", "str", "-1"],
        ["SRANDMEMBER", "str", "x"], ["SMOVE", "str", "s", "a"], ["SMOVE", "nokey", "str", "a"],
        ["SMOVE", "s", "str", "1"], ["SMOVE", "s", "str", "nomember"], ["SMOVE", "s", "h", "1"],
        ["SINTER", "s", "str"], ["SINTER", "nokey", "str"], ["SINTER", "str", "nokey"],
        ["SINTERCARD", "2", "nokey", "str"], ["SINTERCARD", "2", "s", "h"],
        ["SINTERSTORE", "d", "nokey", "str"], ["SUNION", "nokey", "str"], ["SUNION", "s", "h"],
        ["SUNIONSTORE", "d", "s", "str"], ["SDIFF", "nokey", "str"], ["SDIFF", "s", "str"],
        ["SDIFFSTORE", "d", "str"], ["SSCAN", "str", "0"], ["SSCAN", "str", "x"],
        ["SSCAN", "h", "0", "COUNT", "0"], ["EXISTS", "d"], ["SMEMBERS", "s"],
        ["GET", "s"], ["HGET", "s", "f"], ["INCR", "s"], ["TYPE", "s"],
        # the STORE variants overwrite a destination of any type
        ["SUNIONSTORE", "str", "s"], ["TYPE", "str"], ["SINTERSTORE", "h", "s", "nokey"],
        ["EXISTS", "h"],
    ])  # fmt: skip


# -- encodings -----------------------------------------------------------------------------------


def test_encodings(raw: Pair) -> None:
    oracle, subject = raw
    sadd(raw, "at512", numbers(512))
    sadd(raw, "at513", numbers(513))
    commands: list[list[object]] = [
        ["OBJECT", "ENCODING", "at512"], ["OBJECT", "ENCODING", "at513"],
        ["SADD", "at512", "0"], ["OBJECT", "ENCODING", "at512"], ["SADD", "at512", "512"],
        ["OBJECT", "ENCODING", "at512"], ["SREM", "at512", "512", "1", "2"],
        ["OBJECT", "ENCODING", "at512"], ["SREM", "at513", "0"], ["OBJECT", "ENCODING", "at513"],
    ]  # fmt: skip
    for member in (
        "01",
        "+1",
        " 1",
        "1 ",
        "-0",
        "0x1",
        "1.0",
        "9223372036854775808",
        "-9223372036854775809",
        "",
        "a",
        str(LLONG_MAX),
        str(LLONG_MIN),
        "-1",
    ):
        commands += [
            ["DEL", "e"], ["SADD", "e", "5", member], ["OBJECT", "ENCODING", "e"],
            ["SREM", "e", member], ["OBJECT", "ENCODING", "e"], ["SMEMBERS", "e"],
        ]  # fmt: skip
    commands += [
        ["SADD", "first", "a", "1"], ["SREM", "first", "a"], ["OBJECT", "ENCODING", "first"],
        ["SMOVE", "first", "moved", "1"], ["OBJECT", "ENCODING", "moved"],
        ["SADD", "mixed", "b", "1", "2"], ["SMOVE", "mixed", "moved", "b"],
        ["OBJECT", "ENCODING", "moved"], ["SMOVE", "mixed", "m2", "b"],
        ["SMOVE", "mixed", "m2", "2"], ["OBJECT", "ENCODING", "m2"],
        ["OBJECT", "ENCODING", "mixed"],
        ["SUNIONSTORE", "u", "mixed"], ["OBJECT", "ENCODING", "u"],
        ["SINTERSTORE", "i", "mixed", "mixed"], ["OBJECT", "ENCODING", "i"],
        ["SDIFFSTORE", "d", "mixed", "nokey"], ["OBJECT", "ENCODING", "d"],
        ["SUNIONSTORE", "u2", "at513"], ["OBJECT", "ENCODING", "u2"],
        ["COPY", "mixed", "c"], ["OBJECT", "ENCODING", "c"], ["COPY", "at512", "c2"],
        ["OBJECT", "ENCODING", "c2"], ["SCARD", "c2"], ["RENAME", "c2", "c4"],
        ["COPY", "c4", "c2"], ["RENAME", "c4", "c3"],
        ["OBJECT", "ENCODING", "c3"], ["OBJECT", "REFCOUNT", "c3"], ["TYPE", "c3"],
        ["SADD", "c3", "x"], ["SCARD", "c3"], ["SCARD", "at512"], ["MOVE", "c3", "2"],
    ]  # fmt: skip
    compare(oracle, subject, commands)
    compare_sorted(oracle, subject, [["SMEMBERS", "at513"], ["SMEMBERS", "c"], ["SMEMBERS", "c2"]])
    usage = execute(subject, "MEMORY", "USAGE", "at513")
    assert isinstance(usage, int) and usage > 513 * 4


def test_store_encodings_follow_redis_algorithms(raw: Pair) -> None:
    """SDIFFSTORE picks one of two algorithms by size, and only one of them can leave a
    small all-integer result as a hashtable: the encodings must come out the same."""
    oracle, subject = raw
    sadd(raw, "s0", numbers(600))
    sadd(raw, "s1", numbers(200))
    sadd(raw, "s2", numbers(50, 200))
    sadd(raw, "t0", ["a", *numbers(9, 1)])
    sadd(raw, "t1", ["a"])
    sadd(raw, "t2", [1])
    commands: list[list[object]] = []
    stores: list[list[object]] = [
        ["SDIFFSTORE", "d", "s0", "s1", "s2"], ["SDIFFSTORE", "d", "s0", "s1"],
        ["SDIFFSTORE", "d", "t0", "t1", "t2"], ["SDIFFSTORE", "d", "t0", "t1"],
        ["SDIFFSTORE", "d", "t0", "nokey", "t1", "t2"], ["SDIFFSTORE", "d", "s2", "s0"],
        ["SINTERSTORE", "d", "s0", "s1"], ["SINTERSTORE", "d", "s0", "t0"],
        ["SUNIONSTORE", "d", "s1", "s2"], ["SUNIONSTORE", "d", "s0", "t2"],
        ["SUNIONSTORE", "d", "t1", "t2"], ["SDIFFSTORE", "d", "t0", "t0"],
        ["SDIFFSTORE", "d", "t0", "t1", "t0"],
    ]  # fmt: skip
    for store in stores:
        commands += [store, ["OBJECT", "ENCODING", "d"], ["SCARD", "d"]]
    compare(oracle, subject, commands)
    compare_sorted(oracle, subject, [["SDIFF", "t0", "t1", "t2"], ["SDIFF", "s0", "s1", "s2"]])


# -- algebra ---------------------------------------------------------------------------------------


def test_algebra(raw: Pair) -> None:
    oracle, subject = raw
    sadd(raw, "a", [1, 2, 3, 4, 5])
    sadd(raw, "b", [4, 5, 6])
    sadd(raw, "c", [5, 6, 7, 8, 9, 10, 11])
    sadd(raw, "x", ["p", "q", 5])
    compare(oracle, subject, [
        # all intsets: sorted replies on both sides
        ["SINTER", "a"], ["SINTER", "a", "b"], ["SINTER", "c", "b", "a"], ["SINTER", "a", "a"],
        ["SINTER", "a", "nokey"], ["SINTER", "nokey"], ["SUNION", "a", "b", "c"],
        ["SUNION", "nokey", "a"], ["SUNION", "nokey"], ["SDIFF", "a", "b"],
        ["SDIFF", "c", "a", "b"],
        ["SDIFF", "a", "nokey"], ["SDIFF", "nokey", "a"], ["SDIFF", "a", "a"],
        ["SDIFF", "a", "b", "a"], ["SINTER", "x", "a"],
        ["SINTERCARD", "1", "a"], ["SINTERCARD", "2", "a", "b"], ["SINTERCARD", "3", "a", "b", "c"],
        ["SINTERCARD", "2", "a", "nokey"], ["SINTERCARD", "2", "a", "b", "LIMIT", "1"],
        ["SINTERCARD", "1", "a", "LIMIT", "3"], ["SINTERCARD", "1", "a", "limit", "0"],
        ["SINTERCARD", "1", "a", "LIMIT", "100"],
        ["SINTERCARD", "1", "a", "LIMIT", "1", "LIMIT", "2"],
        ["SINTERCARD", "0", "a"], ["SINTERCARD", "-1", "a"], ["SINTERCARD", "x", "a"],
        ["SINTERCARD", "", "a"], ["SINTERCARD", "3", "a", "b"], ["SINTERCARD", "2", "a"],
        ["SINTERCARD", "9223372036854775808", "a"], ["SINTERCARD", "1", "a", "LIMIT"],
        ["SINTERCARD", "1", "a", "LIMIT", "-1"], ["SINTERCARD", "1", "a", "LIMIT", "x"],
        ["SINTERCARD", "1", "a", "BOGUS"], ["SINTERCARD", "1", "a", "b"],
        ["SINTERSTORE", "d", "a", "b"], ["SMEMBERS", "d"], ["SINTERSTORE", "d", "a", "nokey"],
        ["EXISTS", "d"], ["SUNIONSTORE", "d", "a", "b"], ["SMEMBERS", "d"],
        ["SUNIONSTORE", "d", "nokey"], ["EXISTS", "d"], ["SDIFFSTORE", "d", "c", "b"],
        ["SMEMBERS", "d"], ["SDIFFSTORE", "d", "a", "a"], ["EXISTS", "d"],
        ["SUNIONSTORE", "a", "a", "c"], ["SMEMBERS", "a"], ["SINTERSTORE", "a", "a", "b"],
        ["SMEMBERS", "a"], ["SET", "t", "v", "EX", "100"], ["SUNIONSTORE", "t", "b"], ["TTL", "t"],
    ])  # fmt: skip
    sadd(raw, "w1", ["apple", "pear", "plum", 1, 2])
    sadd(raw, "w2", ["pear", "fig", 2, 3])
    compare_sorted(oracle, subject, [
        ["SINTER", "w1", "w2"], ["SUNION", "w1", "w2"], ["SDIFF", "w1", "w2"],
        ["SDIFF", "w2", "w1"], ["SINTER", "w1", "x"], ["SUNION", "w1", "a", "x"],
    ])  # fmt: skip
    compare(oracle, subject, [
        ["SINTERSTORE", "d", "w1", "w2"], ["SCARD", "d"], ["OBJECT", "ENCODING", "d"],
        ["SDIFFSTORE", "d", "w1", "w2", "x"], ["SCARD", "d"], ["OBJECT", "ENCODING", "d"],
        ["SINTERCARD", "2", "w1", "w2"], ["SINTERCARD", "2", "w1", "w2", "LIMIT", "1"],
    ])  # fmt: skip


def test_algebra_random(raw: Pair) -> None:
    """Random sets of small integers and words, every operation; the seed is printed."""
    oracle, subject = raw
    seed = random.randrange(2**32)
    print(f"test_algebra_random seed={seed}")
    rng = random.Random(seed)
    words = [str(i) for i in range(-5, 30)] + ["a", "b", "c", "01", "x y"]
    keys = ["k0", "k1", "k2", "k3", "k4"]
    for _ in range(40):
        for key in keys:
            if rng.random() < 0.3:
                for conn in raw:
                    execute(conn, "DEL", key)
                size = rng.choice([0, 1, 3, 8, 20])
                if size:
                    sadd(raw, key, rng.sample(words, size))
        chosen = rng.sample([*keys, "nokey"], rng.randint(1, 4))
        name = rng.choice(["SINTER", "SUNION", "SDIFF"])
        compare_sorted(oracle, subject, [[name, *chosen]])
        store = rng.choice(["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"])
        target = rng.choice([*keys, "dst"])
        compare(oracle, subject, [
            [store, target, *chosen], ["OBJECT", "ENCODING", target], ["SCARD", target],
            ["SINTERCARD", str(len(chosen)), *chosen, "LIMIT", str(rng.randint(0, 5))],
        ])  # fmt: skip
        compare_sorted(oracle, subject, [["SMEMBERS", target]])
        if execute(subject, "OBJECT", "ENCODING", target) == b"intset":
            compare(oracle, subject, [["SMEMBERS", target]])  # sorted on both


# -- SMOVE -----------------------------------------------------------------------------------------


def test_smove(raw: Pair) -> None:
    compare(*raw, [
        ["SMOVE", "nokey", "d", "a"], ["SADD", "s", "a", "b"], ["SMOVE", "s", "d", "x"],
        ["EXISTS", "d"], ["SMOVE", "s", "d", "a"], ["SMEMBERS", "d"], ["SMOVE", "s", "s", "b"],
        ["SMOVE", "s", "s", "x"], ["SMOVE", "s", "d", "b"], ["EXISTS", "s"], ["SCARD", "d"],
        ["SADD", "s", "a"], ["SMOVE", "s", "d", "a"], ["SCARD", "d"], ["EXISTS", "s"],
        ["SADD", "t", "1"], ["EXPIRE", "t", "100"], ["SADD", "u", "2"], ["EXPIRE", "u", "100"],
        ["SMOVE", "u", "t", "2"], ["TTL", "t"], ["EXISTS", "u"], ["SMEMBERS", "t"],
    ])  # fmt: skip


# -- SPOP, SRANDMEMBER -----------------------------------------------------------------------------


def test_spop_and_srandmember_arguments(raw: Pair) -> None:
    compare(*raw, [
        ["SPOP", "nokey"], ["SPOP", "nokey", "0"], ["SPOP", "nokey", "5"], ["SPOP", "nokey", "-1"],
        ["SPOP", "nokey", "x"], ["SRANDMEMBER", "nokey"], ["SRANDMEMBER", "nokey", "5"],
        ["SRANDMEMBER", "nokey", "-5"], ["SRANDMEMBER", "nokey", "x"],
        ["SADD", "s", "3", "1", "2"], ["SPOP", "s", "0"], ["SPOP", "s", "-1"], ["SPOP", "s", "x"],
        ["SPOP", "s", "1.5"], ["SPOP", "s", str(LLONG_MIN)], ["SPOP", "s", "9223372036854775808"],
        ["SRANDMEMBER", "s", "0"], ["SRANDMEMBER", "s", "x"], ["SRANDMEMBER", "s", str(LLONG_MIN)],
        ["SRANDMEMBER", "s", "-9223372036854775807x"],
        # the whole set, sorted (an intset)
        ["SRANDMEMBER", "s", "3"], ["SRANDMEMBER", "s", str(LLONG_MAX)], ["SCARD", "s"],
        ["SPOP", "s", str(LLONG_MAX)], ["EXISTS", "s"], ["SADD", "s", "7"], ["SPOP", "s"],
        ["EXISTS", "s"], ["SADD", "s", "7"], ["SPOP", "s", "1"], ["EXISTS", "s"],
    ])  # fmt: skip


def test_spop_count_cases(raw: Pair) -> None:
    """Each of Redis's three SPOP strategies (the whole set; most of it, where the rest is
    rebuilt; a few members), on intsets and hashtables: what is popped and what stays
    partition the set; the encoding and expiry left behind are Redis's; an intset's whole or
    most-of reply comes sorted on both."""
    words = [f"w{i}" for i in range(40)]
    big_words: list[object] = [f"m{i}" for i in range(3000)]
    cases: list[tuple[str, list[object], int]] = [
        ("ints", [*numbers(40)], 40), ("ints", [*numbers(40)], 100), ("ints", [*numbers(40)], 30),
        ("ints", [*numbers(40)], 9), ("ints", [*numbers(40)], 1), ("many", [*numbers(600)], 200),
        ("many", [*numbers(600)], 100), ("many", [*numbers(600)], 599), ("words", [*words], 30),
        ("words", [*words], 5), ("words", [*words], 40), ("mixed", ["a", *numbers(600)], 601),
        ("fixed", ["01", *numbers(30)], 31),
        # big enough for the C pops to matter: a tenth and most of a hashtable, most of ints
        ("bigw", big_words, 300), ("bigw", big_words, 2800), ("bigi", [*numbers(3000)], 2700),
    ]  # fmt: skip
    for key, members, count in cases:
        size = len(members)
        outcomes = []
        for conn in raw:
            execute(conn, "DEL", key)
            execute(conn, "SADD", key, *members)
            execute(conn, "PEXPIREAT", key, "99999999999999")
            popped = execute(conn, "SPOP", key, count)
            assert isinstance(popped, list)
            rest = members_of(conn, key)
            assert len(popped) == min(count, size) and len(set(popped)) == len(popped)
            assert sorted(popped + rest) == sorted(str(m).encode() for m in members)
            if key == "ints" and (size - count) * 5 <= count:
                assert popped == sorted(popped, key=int), (key, count, popped)
            encoding = execute(conn, "OBJECT", "ENCODING", key)
            outcomes.append((encoding, execute(conn, "PEXPIRETIME", key), len(rest)))
        assert outcomes[1] == outcomes[0], (key, count, outcomes)


def test_srandmember_picks(raw: Pair) -> None:
    for key, members in (("ints", numbers(30)), ("words", [f"w{i}" for i in range(700)])):
        sadd(raw, key, members)
        expected = {str(m).encode() for m in members}
        for conn in raw:
            assert execute(conn, "SRANDMEMBER", key) in expected
            for count in (1, 2, 10, len(members) - 1):
                reply = execute(conn, "SRANDMEMBER", key, count)
                assert isinstance(reply, list) and len(reply) == count
                assert len(set(reply)) == count and set(reply) <= expected
            repeats = execute(conn, "SRANDMEMBER", key, -3 * len(members))
            assert isinstance(repeats, list) and len(repeats) == 3 * len(members)
            assert set(repeats) <= expected and len(set(repeats)) > len(members) // 2
            whole = execute(conn, "SRANDMEMBER", key, len(members) + 5)
            assert isinstance(whole, list) and sorted(whole) == sorted(expected)
        if key == "ints":
            compare(*raw, [["SRANDMEMBER", key, "100"]])  # sorted: an intset


# -- SSCAN -----------------------------------------------------------------------------------------


def full_sscan(conn: redis.Redis, key: str, *options: object) -> list[bytes]:
    cursor: bytes = b"0"
    found: list[bytes] = []
    for _ in range(100_000):
        reply = execute(conn, "SSCAN", key, cursor, *options)
        assert isinstance(reply, list) and len(reply) == 2, reply
        cursor, members = reply
        found += members
        if cursor == b"0":
            return found
    raise AssertionError("SSCAN never returned cursor 0")


def test_sscan(raw: Pair) -> None:
    oracle, subject = raw
    compare(oracle, subject, [
        ["SSCAN", "nokey", "0"], ["SSCAN", "nokey", "x"], ["SSCAN", "nokey", "0", "COUNT", "0"],
        ["SADD", "s", "5", "3", "-1", "10", "33"], ["SSCAN", "s", "0"], ["SSCAN", "s", "777"],
        ["SSCAN", "s", "0", "COUNT", "1"], ["SSCAN", "s", "0", "MATCH", "3*"],
        ["SSCAN", "s", "0", "MATCH", "*"], ["SSCAN", "s", "0", "MATCH", "*", "COUNT", "2"],
        ["SSCAN", "s", "0", "COUNT", "0"], ["SSCAN", "s", "0", "COUNT", "x"],
        ["SSCAN", "s", "0", "COUNT"], ["SSCAN", "s", "0", "MATCH"],
        ["SSCAN", "s", "0", "TYPE", "x"],
        ["SSCAN", "s", "x"], ["SSCAN", "s", "-1"], ["SSCAN", "s", "0", "BOGUS", "1"],
        ["SSCAN", "s", "0", "match\x00z", "1*"],
    ])  # fmt: skip
    sadd(raw, "big", [f"m{i}" for i in range(1500)] + [""])
    for options in ([], ["COUNT", "1"], ["COUNT", "33"], ["COUNT", "100000"], ["MATCH", "m1*"],
                    ["MATCH", "*"], ["MATCH", "**"], ["MATCH", "m?", "COUNT", "2"]):  # fmt: skip
        got = full_sscan(subject, "big", *options)
        want = full_sscan(oracle, "big", *options)
        assert len(got) == len(set(got)), "no duplicates"
        assert sorted(got) == sorted(set(want)), options


def test_sscan_returns_members_present_throughout_despite_changes(raw: Pair) -> None:
    subject = raw[1]
    execute(subject, "SADD", "s", *[f"stay{i}" for i in range(700)])
    execute(subject, "SADD", "s", *[f"gone{i}" for i in range(700)])
    cursor: bytes = b"0"
    seen: list[bytes] = []
    step = 0
    while True:
        reply = execute(subject, "SSCAN", "s", cursor, "COUNT", "30")
        assert isinstance(reply, list)
        cursor, members = reply
        seen += members
        if step == 2:
            execute(subject, "SREM", "s", *[f"gone{i}" for i in range(700)])
        if step == 5:
            execute(subject, "SADD", "s", *[f"new{i}" for i in range(4000)])
        if step == 9:
            execute(subject, "SPOP", "s", "100")
        step += 1
        if cursor == b"0":
            break
    stayed = set(members_of(subject, "s"))
    missing = {f"stay{i}".encode() for i in range(700)} & stayed - set(seen)
    assert not missing, f"SSCAN missed {len(missing)} members present throughout"
    assert len(seen) == len(set(seen)), "a member came back twice"


# -- RESP3 -----------------------------------------------------------------------------------------


def test_resp3_replies(oracle_server: RedisServer, memlog: Memlog, raw: Pair) -> None:
    oracle = RawConnection(oracle_server.port, protocol=3)
    subject = RawConnection(memlog.shim_ports[0], protocol=3)
    try:
        compare_raw(oracle, subject, [
            ["SMEMBERS", "nokey"], ["SINTER", "nokey"], ["SUNION", "nokey"], ["SDIFF", "nokey"],
            ["SPOP", "nokey"], ["SPOP", "nokey", "2"], ["SRANDMEMBER", "nokey"],
            ["SRANDMEMBER", "nokey", "2"], ["SSCAN", "nokey", "0"],
            ["SADD", "s", "3", "1", "2"], ["SADD", "t", "2", "3", "4"], ["SMEMBERS", "s"],
            ["SINTER", "s", "t"], ["SUNION", "s", "t"], ["SDIFF", "s", "t"], ["SPOP", "s", "0"],
            ["SRANDMEMBER", "s", "5"], ["SSCAN", "s", "0"], ["SMISMEMBER", "s", "1", "9"],
            ["SISMEMBER", "s", "1"], ["SINTERCARD", "2", "s", "t"], ["SINTERSTORE", "d", "s", "t"],
            ["SPOP", "s", "10"], ["SADD", "s", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"],
            ["SPOP", "s", "10"], ["SADD", "s", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"],
            ["SMOVE", "t", "u", "4"],
        ])  # fmt: skip
        for args in (["SPOP", "t", "1"], ["SRANDMEMBER", "d", "-3"], ["SRANDMEMBER", "d", "1"],
                     ["SPOP", "s", "9"], ["SPOP", "s", "1"]):  # fmt: skip
            want, got = oracle.call(*args), subject.call(*args)
            assert want[:1] == got[:1] and want.split(b"\r\n")[0] == got.split(b"\r\n")[0], args
    finally:
        oracle.close()
        subject.close()


# -- determinism -----------------------------------------------------------------------------------


def _contents(conn: redis.Redis, key: str) -> list[bytes]:
    reply = execute(conn, "HKEYS" if key.startswith("h") else "SMEMBERS", key)
    assert isinstance(reply, list)
    return sorted(reply)


def test_random_picks_leave_equal_state_on_two_shims(two_shims: Memlog) -> None:
    first, second = (without_callbacks(client(p)) for p in two_shims.shim_ports[:2])
    try:
        execute(first, "FLUSHALL")
        execute(first, "SADD", "ints", *numbers(300))
        execute(second, "SADD", "words", *[f"w{i}" for i in range(1000)])
        execute(first, "HSET", "h", *[f"f{i}" for i in range(200) for _ in (0, 1)])
        popped: list[bytes] = []
        for conn, args in (
            (first, ["SPOP", "ints"]), (second, ["SPOP", "words", "3"]),
            (first, ["SPOP", "ints", "250"]), (second, ["SPOP", "words", "900"]),
            (first, ["SPOP", "ints", "10"]), (second, ["SMOVE", "words", "w", "w1"]),
        ):  # fmt: skip
            reply = execute(conn, *args)
            if args[1] == "ints":
                popped += reply if isinstance(reply, list) else [reply]  # type: ignore[list-item]
        pipe = first.pipeline(transaction=True)
        for args in (["SRANDMEMBER", "words", "5"], ["HRANDFIELD", "h", "-3"],
                     ["SPOP", "words", "2"], ["SADD", "picked", "x"]):  # fmt: skip
            execute(pipe, *args)
        in_multi = pipe.execute()
        assert [len(r) for r in in_multi[:3]] == [5, 3, 2]
        same_index([first, second])
        for key in ("ints", "words", "w", "h"):
            assert _contents(first, key) == _contents(second, key), key
        assert execute(first, "DEBUG", "DIGEST") == execute(second, "DEBUG", "DIGEST")
        encodings = [execute(c, "OBJECT", "ENCODING", "ints") for c in (first, second)]
        assert encodings == [b"intset", b"intset"]
        # what the first shim answered is what the second shim removed
        rest = set(_contents(second, "ints"))
        assert len(popped) == 261 and not rest & set(popped)
        assert len(rest) == 300 - 261
    finally:
        first.close()
        second.close()


def _random_log(seed: int) -> list[list[list[str]]]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(60)] + [str(i) for i in range(60)]
    log: list[list[list[str]]] = []
    for _ in range(400):
        key = rng.choice(["s1", "s2", "s3", "h1", "h2"])
        if key.startswith("s"):
            args = rng.choice([
                ["SADD", key, *rng.sample(words, rng.randint(1, 40))],
                ["SREM", key, *rng.sample(words, rng.randint(1, 10))],
                ["SPOP", key], ["SPOP", key, str(rng.randint(0, 50))],
                ["SRANDMEMBER", key, str(rng.randint(-20, 20))], ["SMEMBERS", key],
                ["SMOVE", key, rng.choice(["s1", "s2", "s3"]), rng.choice(words)],
                ["SUNION", "s1", "s2", "s3"], ["SINTER", "s1", "s2"], ["SDIFF", key, "s1"],
                ["SSCAN", key, "0", "COUNT", "5"], ["SDIFFSTORE", "s3", "s1", "s2"],
            ])  # fmt: skip
        else:
            args = rng.choice([
                ["HSET", key, *[rng.choice(words) for _ in range(2 * rng.randint(1, 20))]],
                ["HDEL", key, *rng.sample(words, 5)], ["HRANDFIELD", key, str(rng.randint(-9, 9))],
                ["HRANDFIELD", key, str(rng.randint(-9, 9)), "WITHVALUES"], ["HGETALL", key],
                ["HSCAN", key, "0", "COUNT", "3"], ["HSET", key, "long", "x" * rng.randint(60, 70)],
            ])  # fmt: skip
        log.append([args] if rng.random() < 0.7 else [args, ["SRANDMEMBER", "s1", "-3"]])
    return log


def test_apply_is_the_same_in_processes_with_different_hash_seeds() -> None:
    """Same log, two interpreters whose str/bytes hashing differs: identical replies and
    digests, random picks included. The seed is printed."""
    seed = random.randrange(2**32)
    print(f"test_apply_is_the_same_in_processes_with_different_hash_seeds seed={seed}")
    log = _random_log(seed)
    outputs = [replay(log, hash_seed) for hash_seed in ("1", "4242")]
    assert outputs[0] == outputs[1]
    assert len({digest for _, digest in outputs[0]}) > 100  # the keyspace kept changing
    replies = b"".join(reply for reply, _ in outputs[0])
    assert b"unknown command" not in replies and b"internal error" not in replies


def test_set_value_unit() -> None:
    value = SetValue([b"3", b"1", b"2"])
    assert value.encoding == "intset" and list(value) == [b"1", b"2", b"3"]
    assert value.add(b"x") and not value.add(b"x") and value.encoding == "hashtable"
    assert value.remove(b"x") and not value.remove(b"x") and value.encoding == "hashtable"
    assert sorted(value) == [b"1", b"2", b"3"] and len(value) == 3 and b"2" in value
    twin = value.copy()
    twin.add(b"4")
    assert len(value) == 3 and len(twin) == 4 and twin.encoding == "hashtable"
    rng = random.Random(1)
    assert value.pop_random(rng) in {b"1", b"2", b"3"} and len(value) == 2
    big = SetValue(str(i).encode() for i in range(513))
    assert big.encoding == "hashtable"
    scanned: list[bytes] = []
    cursor = 0
    while True:
        cursor, chunk = big.scan(cursor, 10)
        scanned += chunk
        if cursor == 0:
            break
    assert sorted(scanned) == sorted(big) and len(scanned) == 513


def test_digest_value_ignores_order(raw: Pair) -> None:
    """DEBUG DIGEST-VALUE of equal sets and hashes is equal whatever their history (and
    unequal otherwise). The oracle refuses DEBUG: memlog alone."""
    subject = raw[1]
    for args in (
        ["SADD", "s1", "a", "b", "c"], ["SADD", "s2", "c", "b", "a", "x"], ["SREM", "s2", "x"],
        ["SADD", "s3", "a", "b"], ["SADD", "i1", "3", "1", "2"], ["SADD", "i2", "1", "2", "3"],
        ["HSET", "h1", "f", "1", "g", "2"], ["HSET", "h2", "g", "2", "f", "1"],
        ["HSET", "h3", "f", "2", "g", "1"], ["SADD", "e", ""], ["HSET", "he", "", ""],
    ):  # fmt: skip
        execute(subject, *args)
    keys = ["s1", "s2", "s3", "i1", "i2", "h1", "h2", "h3", "e", "he", "nokey"]
    digests = execute(subject, "DEBUG", "DIGEST-VALUE", *keys)
    assert isinstance(digests, list)
    s1, s2, s3, i1, i2, h1, h2, h3, e, he, none = digests
    assert s1 == s2 != s3 and i1 == i2 and h1 == h2 != h3, digests
    assert len({e, he, none}) == 3 and none == b"0" * 40
