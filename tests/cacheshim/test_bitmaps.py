"""Bitmap commands (issue 20) against redis-server 7.0: replies, errors and the bytes they
leave must be identical, in RESP2 and RESP3.

The fixed lists go through a real memlog deployment (log and apply); the randomized ones
run thousands of commands through apply in-process beside redis-server (`ApplyDiff`), and
a shorter random run goes through the deployment too. Seeds are printed.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence

import pytest

from tests.cacheshim.applydiff import ApplyDiff
from tests.cacheshim.harness import Memlog, RedisServer, arity_probes
from tests.cacheshim.rawresp import RawConnection, compare_raw, flushed_pair

Command = Sequence[bytes | str | int]
RawPair = tuple[RawConnection, RawConnection]


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def raw(
    oracle_server: RedisServer, memlog: Memlog, request: pytest.FixtureRequest
) -> Iterator[RawPair]:
    """(redis-server, memlog) byte-level connections in RESP2 or RESP3, keyspaces flushed."""
    yield from flushed_pair(oracle_server.port, memlog.shim_ports[0], request.param)


SETBIT_GETBIT: list[Command] = [
    ["SETBIT", "k", "7", "1"], ["SETBIT", "k", "7", "0"], ["SETBIT", "k", "100", "1"],
    ["GET", "k"], ["SETBIT", "k", "-1", "1"], ["SETBIT", "k", "x", "1"], ["SETBIT", "k", "1", "2"],
    ["SETBIT", "k", "1", "-1"], ["SETBIT", "k", "1", "x"], ["SETBIT", "k", "1", " 1"],
    ["SETBIT", "k", "4294967296", "1"], ["SETBIT", "k", "+1", "1"], ["SETBIT", "k", "01", "1"],
    ["GETBIT", "k", "7"], ["GETBIT", "k", "100"], ["GETBIT", "k", "99999"],
    ["GETBIT", "k", "-1"], ["GETBIT", "k", "4294967296"], ["GETBIT", "nokey", "3"],
    ["SET", "s", "1"], ["SETBIT", "s", "6", "1"], ["GET", "s"], ["GETBIT", "s", "2"],
    ["SET", "n", "12"], ["SETBIT", "n", "2", "1"], ["OBJECT", "ENCODING", "n"],
    ["SETBIT", "big", "4294967295", "1"], ["STRLEN", "big"], ["BITCOUNT", "big"],
    ["BITPOS", "big", "1"], ["BITPOS", "big", "0", "-1"], ["DEL", "big"],
]  # fmt: skip

COUNT_POS: list[Command] = [
    ["SET", "k", b"\x0f\xff\x00\xf0\x01"], ["BITCOUNT", "k"], ["BITCOUNT", "nokey"],
    ["BITCOUNT", "nokey", "a", "b"], ["BITCOUNT", "k", "0"], ["BITCOUNT", "k", "0", "1", "2"],
    ["BITCOUNT", "k", "0", "-1", "bit"], ["BITCOUNT", "k", "0", "-1", "BYTE"],
    ["BITCOUNT", "k", "0", "-1", "foo"], ["BITCOUNT", "k", "-1", "-2", "foo"],
    ["BITCOUNT", "k", "x", "1"], ["BITCOUNT", "k", "1", "x"], ["BITCOUNT", "k", "5", "30", "BIT"],
    ["BITCOUNT", "k", "-9", "-3", "BIT"], ["BITCOUNT", "k", "1", "1", "BIT"],
    ["BITCOUNT", "k", "-100", "100"], ["BITPOS", "k", "2"], ["BITPOS", "k", "x"],
    ["BITPOS", "nokey", "1"], ["BITPOS", "nokey", "0"], ["BITPOS", "nokey", "0", "x"],
    ["BITPOS", "k", "1", "0", "-1", "foo"], ["BITPOS", "k", "1", "x"],
    ["BITPOS", "k", "1", "0", "-1", "bit", "x"], ["BITPOS", "k", "0", "3", "BIT"],
    ["BITPOS", "k", "1", "7", "15", "BIT"], ["BITPOS", "k", "0", "8", "15", "BIT"],
    ["BITPOS", "k", "1", "-3", "-1", "BIT"], ["BITPOS", "k", "0", "1", "1"],
    ["SET", "ones", b"\xff\xff\xff"], ["BITPOS", "ones", "0"], ["BITPOS", "ones", "0", "0", "-1"],
    ["BITPOS", "ones", "0", "1"], ["BITPOS", "ones", "0", "0", "-1", "bit"],
    ["BITPOS", "ones", "0", "3", "bit"], ["BITPOS", "ones", "1", "5", "2"],
    ["SET", "empty", ""], ["BITPOS", "empty", "0"], ["BITPOS", "empty", "1"],
    ["BITCOUNT", "empty"], ["BITCOUNT", "empty", "0", "-1", "bit"],
    ["BITPOS", "empty", "0", "0", "-1"], ["SET", "int", "-123"], ["BITCOUNT", "int"],
    ["BITPOS", "int", "0"],
]  # fmt: skip

BITOP: list[Command] = [
    ["SET", "a", b"\xf0\x0f\xaa"], ["SET", "b", b"\x33"], ["BITOP", "NOT", "d", "a", "b"],
    ["BITOP", "nand", "d", "a"], ["BITOP", "and\x00x", "d", "a", "b"], ["GET", "d"],
    ["BITOP", "NOT", "d", "a"], ["GET", "d"], ["BITOP", "OR", "d", "nokey", "nokey2"],
    ["EXISTS", "d"], ["BITOP", "XOR", "d", "a", "b", "nokey"], ["GET", "d"],
    ["BITOP", "or", "d", "a", "b"], ["GET", "d"], ["SET", "d", "x"], ["EXPIRE", "d", "100"],
    ["BITOP", "AND", "d", "a", "b"], ["GET", "d"], ["TTL", "d"],
    ["SET", "long", "x" * 100], ["BITOP", "XOR", "d", "long", "a", "long"], ["GET", "d"],
]  # fmt: skip

BITFIELD: list[Command] = [
    ["BITFIELD", "bf", "SET", "i8", "0", "-100"],
    ["BITFIELD", "bf", "GET", "i8", "0", "GET", "u8", "0"],
    ["BITFIELD", "bf", "INCRBY", "i8", "0", "-100"],
    ["BITFIELD", "bf", "OVERFLOW", "SAT", "INCRBY", "i8", "0", "-100"],
    ["BITFIELD", "bf", "OVERFLOW", "FAIL", "INCRBY", "i8", "0", "-100", "GET", "i8", "0"],
    ["BITFIELD", "bf", "SET", "u8", "0", "-1"],
    ["BITFIELD", "bf", "OVERFLOW", "SAT", "SET", "u8", "0", "-1"],
    ["BITFIELD", "bf", "OVERFLOW", "FAIL", "SET", "u8", "0", "256"],
    ["BITFIELD", "bf", "SET", "u64", "0", "1"], ["BITFIELD", "bf", "SET", "i65", "0", "1"],
    ["BITFIELD", "bf", "SET", "u0", "0", "1"], ["BITFIELD", "bf", "SET", "I8", "0", "1"],
    ["BITFIELD", "bf", "SET", "", "0", "1"], ["BITFIELD", "bf", "SET", "u8\x00x", "0", "1"],
    ["BITFIELD", "bf", "SET", "u63", "0", "-1"], ["BITFIELD", "bf", "GET", "u63", "0"],
    ["BITFIELD", "bf", "SET", "i64", "#1", "-1"],
    ["BITFIELD", "bf", "INCRBY", "i64", "#1", "-9223372036854775807"],
    ["BITFIELD", "bf", "OVERFLOW", "SAT", "INCRBY", "i64", "64", "-9223372036854775807"],
    ["BITFIELD", "bf", "OVERFLOW", "WRAP", "INCRBY", "i64", "64", "-9223372036854775807"],
    ["BITFIELD", "bf", "OVERFLOW", "BOGUS"], ["BITFIELD", "bf", "OVERFLOW"],
    ["BITFIELD", "bf", "GET", "u8"], ["BITFIELD", "bf", "FOO", "u8", "0"], ["BITFIELD", "bf"],
    ["BITFIELD", "nokey"], ["BITFIELD", "nokey", "GET", "u8", "0"], ["EXISTS", "nokey"],
    ["BITFIELD", "bf", "GET", "u8", "#-1"], ["BITFIELD", "bf", "GET", "u8", "#x"],
    ["BITFIELD", "bf", "GET", "u8", "4294967296"], ["BITFIELD", "bf", "GET", "u8", "4294967295"],
    ["BITFIELD", "bf", "GET", "u8", "#536870911"], ["BITFIELD", "bf", "GET", "u8", "#536870912"],
    ["BITFIELD", "bf", "SET", "u8", "#2305843009213693953", "1"],
    ["BITFIELD_RO", "bf", "GET", "u8", "0", "GET", "i4", "3"],
    ["BITFIELD_RO", "bf", "SET", "u8", "0", "1"], ["BITFIELD_RO", "bf", "INCRBY", "u8", "0", "1"],
    ["BITFIELD_RO", "bf", "OVERFLOW", "SAT"], ["BITFIELD_RO", "nokey", "GET", "i64", "0"],
    ["BITFIELD", "nb", "OVERFLOW", "FAIL", "SET", "u2", "0", "9"], ["EXISTS", "nb"], ["GET", "nb"],
    ["BITFIELD", "bf", "SET", "u8", "0", "x"],
    ["BITFIELD", "bf", "INCRBY", "u8", "0", "99999999999999999999"],
    ["BITFIELD", "bf", "get", "u8", "0", "set", "u8", "0", "3", "incrby", "u8", "0", "1",
     "overflow", "wrap"],
    ["BITFIELD", "bf", "OVERFLOW", "SAT", "INCRBY", "u3", "5", "100", "OVERFLOW", "WRAP",
     "INCRBY", "u3", "5", "100", "INCRBY", "i5", "100", "-1000"],
    ["GET", "bf"], ["BITFIELD", "bf", "SET", "u8", "1000000", "1"], ["STRLEN", "bf"],
    # Redis's headroom arithmetic wraps in 64 bits: this SAT stores the maximum of i62
    ["BITFIELD", "sat", "OVERFLOW", "SAT", "SET", "i62", "0", "-8525994204535615259",
     "GET", "i62", "0", "SET", "i62", "0", "8525994204535615259", "GET", "i62", "0"],
    ["GET", "sat"],
]  # fmt: skip

WRONG_TYPE: list[Command] = [
    ["LPUSH", "l", "a"], ["SETBIT", "l", "1", "1"], ["GETBIT", "l", "1"], ["BITCOUNT", "l"],
    ["BITPOS", "l", "1"], ["BITFIELD", "l", "GET", "u8", "0"], ["BITFIELD", "l"],
    ["BITFIELD_RO", "l", "GET", "u8", "0"], ["BITOP", "AND", "d", "l"],
    ["BITOP", "AND", "l", "nokey"], ["TYPE", "l"], ["BITOP", "AND", "l", "nokey", "nokey"],
    ["EXISTS", "l"],
]  # fmt: skip


@pytest.mark.parametrize(
    "commands",
    [SETBIT_GETBIT, COUNT_POS, BITOP, BITFIELD, WRONG_TYPE],
    ids=["setbit-getbit", "bitcount-bitpos", "bitop", "bitfield", "wrongtype"],
)
def test_bitmap_commands_match_redis(raw: RawPair, commands: list[Command]) -> None:
    compare_raw(*raw, commands)


def test_bitmap_arity_matches_redis(raw: RawPair) -> None:
    names = ["setbit", "getbit", "bitcount", "bitpos", "bitop", "bitfield", "bitfield_ro"]
    compare_raw(*raw, arity_probes(names))  # type: ignore[arg-type]


def test_setbit_that_changes_nothing_keeps_a_watch(raw: RawPair) -> None:
    """Redis counts SETBIT/BITFIELD as a change only when a bit changed (or the string grew):
    a WATCH survives one that sets a bit to the value it had."""
    oracle, subject = raw
    for conn in (oracle, subject):
        conn.call("SETBIT", "w", "3", "1")
        conn.call("WATCH", "w")
        conn.call("SETBIT", "w", "3", "1")
        conn.call("BITFIELD", "w", "SET", "u4", "0", "1")
        conn.call("MULTI")
        conn.call("GET", "w")
    assert subject.call("EXEC") == oracle.call("EXEC")
    for conn in (oracle, subject):
        conn.call("WATCH", "w")
        conn.call("SETBIT", "w", "3", "0")
        conn.call("MULTI")
        conn.call("GET", "w")
    assert subject.call("EXEC") == oracle.call("EXEC")


def _random_bitmap_command(rng: random.Random) -> list[str | bytes]:
    key = rng.choice(["a", "b", "c"])
    ints = [str(rng.randint(-40, 200)) for _ in range(2)]
    r = rng.random()
    if r < 0.15:
        return ["SETBIT", key, str(rng.randint(0, 300)), str(rng.randint(0, 1))]
    if r < 0.25:
        return ["SET", key, bytes(rng.randrange(256) for _ in range(rng.randint(0, 20)))]
    if r < 0.4:
        unit = [rng.choice(["BIT", "BYTE", "bit"])] if rng.random() < 0.6 else []
        return ["BITCOUNT", key, *((ints + unit) if rng.random() < 0.8 else [])]
    if r < 0.6:
        n = rng.randint(0, 2)
        unit = [rng.choice(["BIT", "BYTE"])] if n == 2 and rng.random() < 0.6 else []
        return ["BITPOS", key, str(rng.randint(0, 1)), *ints[:n], *unit]
    if r < 0.7:
        sources = rng.sample(["a", "b", "c", "zz"], rng.randint(1, 3))
        return ["BITOP", rng.choice(["AND", "OR", "XOR", "NOT"]), rng.choice("abcd"), *sources]
    if r < 0.72:
        return ["GET", key]
    args: list[str | bytes] = [rng.choice(["BITFIELD"] * 3 + ["BITFIELD_RO"]), key]
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice("iu") + str(rng.randint(1, 64))
        offset = rng.choice(["", "#"]) + str(rng.randint(0, 100))
        op = rng.choice(["GET", "SET", "INCRBY", "OVERFLOW"])
        if op == "OVERFLOW":
            args += ["OVERFLOW", rng.choice(["WRAP", "SAT", "FAIL"])]
        elif op == "GET":
            args += ["GET", kind, offset]
        else:
            value = rng.choice([rng.randint(-300, 300), rng.randint(-(2**63), 2**63 - 1)])
            args += [op, kind, offset, str(value)]
    return args


def test_random_bitmap_commands_in_apply_match_redis(oracle_server: RedisServer) -> None:
    """Thousands of random bitmap commands, through apply in-process and on redis-server
    (rerun: BITMAP_SEED)."""
    seed = int(os.environ.get("BITMAP_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun: BITMAP_SEED={seed})")
    rng = random.Random(seed)
    for protocol in (2, 3):
        diff = ApplyDiff(oracle_server.port, protocol)
        try:
            for _ in range(1500):
                diff.check(*_random_bitmap_command(rng))
            for key in "abcd":
                diff.check("GET", key)
        finally:
            diff.close()


def test_bitfield_overflow_checks_match_redis(oracle_server: RedisServer) -> None:
    """BITFIELD SET and INCRBY near and past every width's limits, in the three OVERFLOW
    modes, through apply beside redis-server (rerun: BITMAP_SEED). Values are drawn near the
    edges where Redis's 64-bit headroom arithmetic wraps (seed 1851395184 found one)."""
    seed = int(os.environ.get("BITMAP_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun: BITMAP_SEED={seed})")
    rng = random.Random(seed)
    edges = [0, 1, -1, 2**63 - 1, -(2**63)]
    diff = ApplyDiff(oracle_server.port, 2)
    try:
        for _ in range(3000):
            bits = rng.randint(1, 64)
            kind = rng.choice("iu") if bits < 64 else "i"
            limit = 1 << (bits - (kind == "i"))
            near = rng.choice([limit, -limit, *edges]) + rng.randint(-3, 3)
            far = rng.randint(-(2**63), 2**63 - 1)
            value = max(-(2**63), min(2**63 - 1, rng.choice([near, far])))
            offset = rng.choice(["0", "#1", str(rng.randint(0, 70))])
            diff.check(
                "BITFIELD", "f", "OVERFLOW", rng.choice(["WRAP", "SAT", "FAIL"]),
                rng.choice(["SET", "INCRBY"]), f"{kind}{bits}", offset, str(value),
                "GET", f"{kind}{bits}", offset,
            )  # fmt: skip
        diff.check("GET", "f")
    finally:
        diff.close()


def test_random_bitmap_commands_through_the_log_match_redis(raw: RawPair) -> None:
    """A shorter random run through a real deployment (another run: BITMAP_SEED)."""
    seed = int(os.environ.get("BITMAP_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun: BITMAP_SEED={seed})")
    rng = random.Random(seed)
    commands = [_random_bitmap_command(rng) for _ in range(150)]
    compare_raw(*raw, [*commands, ["GET", "a"], ["GET", "b"], ["GET", "c"], ["GET", "d"]])
