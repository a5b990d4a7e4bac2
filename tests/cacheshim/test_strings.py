"""String commands (issue 4) against redis-server 7.0: replies and errors must be identical.

Differential tests go through the real write path (log + apply) with redis-py clients whose
reply callbacks are removed, so INCRBYFLOAT's text, SCAN's cursor and so on are compared as
sent. Paths that need a type memlog does not have yet (WRONGTYPE) run at the unit level:
handlers on a Keyspace holding a stand-in list, against a real list on redis-server, byte
for byte.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from fractions import Fraction

import pytest

from cacheshim.apply import run
from cacheshim.commands import Ctx, load_all
from cacheshim.commands import strings as string_commands
from cacheshim.protocol.resp import encode
from cacheshim.types import longdouble
from cacheshim.types.keyspace import Keyspace, ValueKind, register_kind
from tests.cacheshim.harness import (
    Memlog,
    RedisServer,
    arity_probes,
    compare,
    execute,
    wait_until,
)
from tests.cacheshim.rawresp import Pair, RawConnection, compare_raw, without_callbacks

LLONG_MAX = 2**63 - 1
LLONG_MIN = -(2**63)


@pytest.fixture
def raw(pair: Pair) -> Pair:
    oracle, subject = pair
    return without_callbacks(oracle), without_callbacks(subject)


def test_get_and_set_options(raw: Pair) -> None:
    compare(*raw, [
        ["GET", "missing"],
        ["SET", "k", "v"], ["GET", "k"],
        ["SET", "k", ""], ["GET", "k"], ["STRLEN", "k"],
        ["SET", "k", "w", "NX"], ["SET", "new", "w", "NX"], ["GET", "new"],
        ["SET", "k", "x", "XX"], ["SET", "none", "x", "XX"], ["EXISTS", "none"],
        ["SET", "k", "y", "GET"], ["SET", "fresh", "y", "GET"], ["GET", "fresh"],
        ["SET", "k", "z", "NX", "GET"], ["SET", "gone", "z", "XX", "GET"],
        ["SET", "k", "v", "nx", "xx"], ["SET", "k", "v", "XX", "NX"],
        ["SET", "k", "v", "xx", "xx", "get", "get"],
        ["SET", "k", "v", "EX", "100", "EX", "200"], ["TTL", "k"],
        ["SET", "k", "v", "EX", "100", "PX", "200"],
        ["SET", "k", "v", "PX", "100", "EXAT", "200"],
        ["SET", "k", "v", "KEEPTTL", "EX", "10"], ["SET", "k", "v", "EX", "10", "KEEPTTL"],
        ["SET", "k", "v", "KEEPTTL"], ["TTL", "k"],
        ["SET", "k", "v", "PERSIST"], ["SET", "k", "v", "EX"], ["SET", "k", "v", "BOGUS"],
        ["SET", "k", "v", "EX", "abc", "BOGUS"], ["SET", "k", "v", "EX", "abc"],
        ["SET", "k", "v", "EX", "0"], ["SET", "k", "v", "EX", "-1"], ["SET", "k", "v", "PX", "0"],
        ["SET", "k", "v", "EX", "1.5"], ["SET", "k", "v", "EX", " 1"],
        ["SET", "k", "v", "EX", "+1"],
        ["SET", "k", "v", "EX", "9223372036854775"], ["SET", "k", "v", "EX", "9223372036854776"],
        ["SET", "k", "v", "PX", str(LLONG_MAX)], ["SET", "k", "v", "PX", "9223372036854775808"],
        ["SET", "k", "v", "EXAT", "9223372036854775"], ["EXPIRETIME", "k"],
        ["SET", "k", "v", "EXAT", "9223372036854776"], ["SET", "k", "v", "PXAT", str(LLONG_MAX)],
        ["PEXPIRETIME", "k"],
        ["SET", "k", "v", "EXAT", "1"], ["GET", "k"], ["EXISTS", "k"],
        ["SET", "k", "v", "PXAT", "1", "GET"], ["GET", "k"],
        ["SET", "k", "v", "NX\x00junk"], ["SET", "k", "v", "GET\x00"],
        ["SET", "k", "v", "EX", "100", "GET", "NX"], ["SET", "k", "v2", "GET", "XX", "KEEPTTL"],
        ["TTL", "k"], ["SET", "k", "v3"], ["TTL", "k"],
        ["SET", b"\x00\xff", b"\xff\x00"], ["GET", b"\x00\xff"],
    ])  # fmt: skip


def test_setnx_setex_psetex_getset_getdel(raw: Pair) -> None:
    compare(*raw, [
        ["SETNX", "k", "1"], ["SETNX", "k", "2"], ["GET", "k"],
        ["SETEX", "k", "100", "v"], ["GET", "k"], ["TTL", "k"],
        ["SETEX", "k", "0", "v"], ["SETEX", "k", "-5", "v"], ["SETEX", "k", "abc", "v"],
        ["SETEX", "k", "9223372036854776", "v"], ["SETEX", "k", "9223372036854775", "v"],
        ["PSETEX", "k", "100000", "v"], ["PSETEX", "k", "0", "v"], ["PSETEX", "k", "x", "v"],
        ["PSETEX", "k", str(LLONG_MAX), "v"],
        ["SET", "g", "old", "EX", "100"], ["GETSET", "g", "new"], ["TTL", "g"], ["GET", "g"],
        ["GETSET", "nothing", "v"], ["GET", "nothing"],
        ["GETDEL", "g"], ["GETDEL", "g"], ["EXISTS", "g"],
    ])  # fmt: skip


def test_getex(raw: Pair) -> None:
    compare(*raw, [
        ["GETEX", "missing"], ["GETEX", "missing", "EX", "abc"], ["GETEX", "missing", "EX", "0"],
        ["GETEX", "missing", "BOGUS"], ["GETEX", "missing", "NX"],
        ["SET", "k", "v"], ["GETEX", "k"], ["TTL", "k"],
        ["GETEX", "k", "EX", "abc"], ["GETEX", "k", "EX", "0"], ["GETEX", "k", "PX", "-1"],
        ["GETEX", "k", "PERSIST", "EX", "10"], ["GETEX", "k", "EX", "10", "PERSIST"],
        ["GETEX", "k", "KEEPTTL"], ["GETEX", "k", "GET"], ["GETEX", "k", "EX"],
        ["GETEX", "k", "EX", "10", "PX", "10"], ["GETEX", "k", "EX", "10", "EX", "200"],
        ["TTL", "k"], ["GETEX", "k", "PERSIST"], ["TTL", "k"], ["GETEX", "k", "PERSIST"],
        ["GETEX", "k", "EXAT", "9999999999"], ["EXPIRETIME", "k"],
        ["GETEX", "k", "PXAT", "99999999999999"], ["PEXPIRETIME", "k"],
        ["GETEX", "k", "EXAT", "9223372036854776"],
        ["GETEX", "k", "EXAT", "1"], ["EXISTS", "k"], ["GETEX", "k"],
        ["SET", "k", "v"], ["GETEX", "k", "PXAT", "1"], ["EXISTS", "k"],
    ])  # fmt: skip


def test_mget_mset_msetnx(raw: Pair) -> None:
    compare(*raw, [
        ["MGET", "a", "b"],
        ["MSET", "a", "1", "b", "2", "a", "3"], ["MGET", "a", "b", "c", "a"],
        ["MSET", "a"], ["MSET", "a", "1", "b"], ["MSETNX", "a", "1", "b"],
        ["SET", "t", "v", "EX", "100"], ["MSET", "t", "w"], ["TTL", "t"],
        ["MSETNX", "x", "1", "a", "2"], ["MGET", "x", "a"],
        ["MSETNX", "x", "1", "y", "2", "x", "3"], ["MGET", "x", "y"],
        ["MSETNX", "x", "9"], ["GET", "x"],
    ])  # fmt: skip


def test_counters(raw: Pair) -> None:
    compare(*raw, [
        ["INCR", "n"], ["INCR", "n"], ["DECR", "n"], ["DECR", "m"],
        ["INCRBY", "n", "10"], ["INCRBY", "n", "-100"], ["DECRBY", "n", "5"],
        ["DECRBY", "n", "-5"], ["GET", "n"],
        ["INCRBY", "n", "1.5"], ["INCRBY", "n", ""], ["INCRBY", "n", " 1"], ["INCRBY", "n", "+1"],
        ["INCRBY", "n", "01"], ["INCRBY", "n", "-0"], ["INCRBY", "n", "1_0"],
        ["INCRBY", "n", "9223372036854775808"], ["INCRBY", "n", "-9223372036854775809"],
        ["DECRBY", "n", str(LLONG_MIN)], ["DECRBY", "missing", str(LLONG_MIN)],
        ["SET", "n", str(LLONG_MAX)], ["INCR", "n"], ["INCRBY", "n", "0"], ["DECR", "n"],
        ["SET", "n", str(LLONG_MIN)], ["DECR", "n"], ["INCRBY", "n", str(LLONG_MIN)],
        ["INCR", "n"], ["INCRBY", "n", str(LLONG_MAX)], ["INCRBY", "n", str(LLONG_MAX)],
        ["SET", "n", "abc"], ["INCR", "n"], ["SET", "n", " 5"], ["INCR", "n"],
        ["SET", "n", "5 "], ["DECR", "n"], ["SET", "n", "1.0"], ["INCR", "n"],
        ["SET", "n", "00"], ["INCR", "n"], ["SET", "n", ""], ["INCR", "n"],
        ["SET", "n", "12345678901234567890"], ["INCR", "n"],
        ["SET", "n", "-0"], ["INCR", "n"],
        ["SET", "n", "7", "EX", "100"], ["INCR", "n"], ["TTL", "n"],
    ])  # fmt: skip


_FLOAT_CASES = [
    "0.1", "0.2", "-0.3", "1e300", "1e308", "5.0e3", "inf", "-inf", "INFINITY", "nan", " 1",
    "1 ", "0x10", "0x1p-2", "0x.8", "0x", "1e-320", "1e-4950", "1e-4951", "1e4932", "1e4933",
    "1.", ".5", ".", "1e", "1e+", "-.5e-3", "+1", "1_0", "", "12345678.123456789",
    "0.000003814697265625", "0.000011444091796875", "3.0000000000000000001", "-1e-18",
    "18446744073709551617", "123456789012345678901234567890", "1" * 40, "1.7976931348623157e308",
    "0e999999999", "1e999999999", "1." + "0" * 5117, "1." + "0" * 5118, "1\x00", "\x00",
]  # fmt: skip


def _float_cases() -> list[str]:
    rng = random.Random(20240407)
    cases = list(_FLOAT_CASES)
    for _ in range(60):
        cases.append(repr(rng.uniform(-1e6, 1e6)))
        cases.append(f"{rng.uniform(-1, 1):.{rng.randint(1, 25)}f}")
        cases.append(f"{rng.randint(-(10**25), 10**25)}e{rng.randint(-40, 30)}")
    return cases


def test_incrbyfloat_text_matches_redis(raw: Pair) -> None:
    """Each value alone (the text Redis stores for it), then all added up in one key."""
    commands: list[list[object]] = []
    for i, case in enumerate(_float_cases()):
        commands += [["INCRBYFLOAT", f"f{i}", case], ["INCRBYFLOAT", "sum", case]]
    commands += [
        ["SET", "s", "1.5e2"], ["INCRBYFLOAT", "s", "0"], ["OBJECT", "ENCODING", "s"],
        ["SET", "s", " 1"], ["INCRBYFLOAT", "s", "1"], ["SET", "s", "abc"],
        ["INCRBYFLOAT", "s", "1"], ["SET", "s", "inf"], ["INCRBYFLOAT", "s", "1"],
        ["SET", "s", "1e4932"], ["INCRBYFLOAT", "s", "1e4932"], ["GET", "s"],
        ["SET", "s", "10", "EX", "100"], ["INCRBYFLOAT", "s", "-10"], ["TTL", "s"],
        ["OBJECT", "ENCODING", "s"], ["INCRBYFLOAT", "s", "-0.1"],
    ]  # fmt: skip
    compare(*raw, commands)


def test_long_double_matches_naive_rounding() -> None:
    """The exact-arithmetic model rounds like x87: a few values checked by hand."""
    parse = longdouble.parse
    assert parse(b"18446744073709551617") == 2**64  # 65 significant bits: rounds to even
    assert parse(b"18446744073709551619") == 2**64 + 4
    assert parse(b"0x1p-16445") == Fraction(1, 2**16445)
    assert parse(b"0x1p-16446") is None  # halfway to the smallest subnormal: rounds to zero
    assert parse(b"0x1.fffffffffffffffep16383") is not None
    assert parse(b"0x1.ffffffffffffffffp16383") is None  # rounds up to 2**16384: overflow
    assert longdouble.format_human(Fraction(-1, 10**18)) == b"0"
    # %.17Lf ties go to the even last digit, as glibc prints exact binary values
    assert longdouble.format_human(Fraction(1, 2 * 10**17)) == b"0"
    assert longdouble.format_human(Fraction(5, 2 * 10**17)) == b"0.00000000000000002"
    assert longdouble.format_human(Fraction(7, 2 * 10**17)) == b"0.00000000000000004"


def test_append_strlen_ranges(raw: Pair) -> None:
    compare(*raw, [
        ["APPEND", "a", "hello"], ["APPEND", "a", " world"], ["GET", "a"], ["STRLEN", "a"],
        ["APPEND", "empty", ""], ["EXISTS", "empty"], ["STRLEN", "empty"], ["STRLEN", "none"],
        ["SET", "t", "x", "EX", "100"], ["APPEND", "t", "y"], ["TTL", "t"],
        ["GETRANGE", "a", "0", "4"], ["GETRANGE", "a", "-5", "-1"], ["GETRANGE", "a", "6", "100"],
        ["GETRANGE", "a", "-100", "2"], ["GETRANGE", "a", "5", "2"], ["GETRANGE", "a", "-1", "-5"],
        ["GETRANGE", "a", "0", "-100"], ["GETRANGE", "a", "100", "200"],
        ["GETRANGE", "a", str(LLONG_MIN), str(LLONG_MAX)], ["GETRANGE", "a", "x", "1"],
        ["GETRANGE", "a", "0", "1.5"], ["GETRANGE", "none", "0", "-1"],
        ["GETRANGE", "none", "x", "1"], ["GETRANGE", "empty", "0", "-1"],
        ["SUBSTR", "a", "0", "4"], ["SUBSTR", "a", "-3", "-1"], ["SUBSTR", "none", "0", "1"],
        ["SETRANGE", "a", "6", "WORLD"], ["GET", "a"], ["SETRANGE", "a", "20", "!"], ["GET", "a"],
        ["SETRANGE", "a", "0", ""], ["SETRANGE", "new", "0", ""], ["EXISTS", "new"],
        ["SETRANGE", "new", "3", "x"], ["GET", "new"], ["SETRANGE", "a", "-1", "x"],
        ["SETRANGE", "a", "x", "x"], ["SETRANGE", "none2", "-1", ""],
        ["SETRANGE", "a", "536870912", "x"], ["SETRANGE", "a", "536870911", "xy"],
        ["SETRANGE", "a", str(LLONG_MAX), "x"], ["SETRANGE", "a", "536870912", ""],
        ["SETRANGE", "big", "536870912", "x"], ["EXISTS", "big"],
        ["SET", "t", "abc", "EX", "100"], ["SETRANGE", "t", "1", "X"], ["TTL", "t"], ["GET", "t"],
    ])  # fmt: skip


def test_string_encodings_and_refcounts(raw: Pair) -> None:
    """OBJECT ENCODING/REFCOUNT say what Redis would for strings made by each command."""
    commands: list[list[object]] = []
    for value in [
        "0",
        "100",
        "9999",
        "10000",
        "-5",
        "12345678901234567890",
        "-0",
        "007",
        "x" * 44,
        "x" * 45,
        "",
        "1.5",
        str(LLONG_MAX),
        str(LLONG_MIN),
        "1 ",
    ]:
        commands += [["SET", "s", value], ["OBJECT", "ENCODING", "s"], ["OBJECT", "REFCOUNT", "s"]]
    commands += [
        ["SET", "n", "100"], ["APPEND", "n", ""], ["OBJECT", "ENCODING", "n"],
        ["OBJECT", "REFCOUNT", "n"], ["INCR", "n"], ["OBJECT", "ENCODING", "n"],
        ["SET", "n", "5"], ["SETRANGE", "n", "0", "7"], ["OBJECT", "ENCODING", "n"],
        ["APPEND", "fresh", "123"], ["OBJECT", "ENCODING", "fresh"],
        ["OBJECT", "REFCOUNT", "fresh"], ["SETRANGE", "sr", "0", "12"],
        ["OBJECT", "ENCODING", "sr"], ["INCRBYFLOAT", "f", "3"], ["OBJECT", "ENCODING", "f"],
        ["INCRBYFLOAT", "f", "1e40"], ["OBJECT", "ENCODING", "f"],
        ["SET", "c", "42"], ["COPY", "c", "c2"], ["OBJECT", "ENCODING", "c2"],
        ["OBJECT", "REFCOUNT", "c2"], ["OBJECT", "REFCOUNT", "c"], ["RENAME", "c", "c3"],
        ["OBJECT", "REFCOUNT", "c3"], ["SET", "r", "x" * 50], ["COPY", "r", "r2"],
        ["OBJECT", "ENCODING", "r2"], ["DECR", "zero"], ["OBJECT", "REFCOUNT", "zero"],
        ["INCR", "zero"], ["OBJECT", "REFCOUNT", "zero"], ["GETSET", "g", "12"],
        ["OBJECT", "ENCODING", "g"], ["MSET", "m", "77"], ["OBJECT", "REFCOUNT", "m"],
    ]  # fmt: skip
    compare(*raw, commands)


def test_lcs(raw: Pair) -> None:
    compare(*raw, [
        ["MSET", "key1", "ohmytext", "key2", "mynewtext"],
        ["LCS", "key1", "key2"], ["LCS", "key1", "key2", "LEN"], ["LCS", "key1", "key2", "IDX"],
        ["LCS", "key1", "key2", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN"],
        ["LCS", "key1", "key2", "idx", "withmatchlen"], ["LCS", "key1", "key2", "IDX", "IDX"],
        ["LCS", "key1", "key2", "MINMATCHLEN", "-5", "IDX"],
        ["LCS", "key1", "key2", "LEN", "IDX"], ["LCS", "key1", "key2", "MINMATCHLEN"],
        ["LCS", "key1", "key2", "MINMATCHLEN", "x"], ["LCS", "key1", "key2", "BOGUS"],
        ["LCS", "key1", "key2", "LEN", "MINMATCHLEN", "3", "WITHMATCHLEN"],
        ["LCS", "nokey", "nokey2"], ["LCS", "nokey", "nokey2", "IDX"],
        ["LCS", "key1", "nokey", "LEN"], ["LCS", "key1", "key1", "IDX", "WITHMATCHLEN"],
    ])  # fmt: skip
    rng = random.Random(7)
    commands: list[list[object]] = []
    for _ in range(25):
        a = "".join(rng.choice("abcde") for _ in range(rng.randint(0, 40)))
        b = "".join(rng.choice("abcd") for _ in range(rng.randint(0, 40)))
        commands += [
            ["MSET", "a", a, "b", b],
            ["LCS", "a", "b"],
            ["LCS", "a", "b", "IDX", "WITHMATCHLEN"],
            ["LCS", "b", "a", "IDX", "MINMATCHLEN", str(rng.randint(0, 4))],
        ]
    compare(*raw, commands)


def test_lcs_large_strings(raw: Pair) -> None:
    rng = random.Random(11)
    a = "".join(rng.choice("ACGT") for _ in range(3000))
    b = "".join(rng.choice("ACGT") for _ in range(2500))
    compare(*raw, [
        ["MSET", "a", a, "b", b], ["LCS", "a", "b", "LEN"], ["LCS", "a", "b"],
        ["LCS", "a", "b", "IDX", "MINMATCHLEN", "6", "WITHMATCHLEN"],
        ["SET", "x", "x" * 12000], ["SET", "y", "y" * 12000], ["LCS", "x", "y", "LEN"],
    ])  # fmt: skip


def test_append_limit_unit(monkeypatch: pytest.MonkeyPatch) -> None:
    """APPEND's proto-max-bulk-len check (a 512 MiB string is too big for a test)."""
    monkeypatch.setattr(string_commands, "STRING_BYTES_MAX", 10)
    ctx = _unit_ctx()
    assert run(ctx, [b"APPEND", b"k", b"12345"]) == 5
    assert run(ctx, [b"APPEND", b"k", b"67890"]) == 10
    assert encode(run(ctx, [b"APPEND", b"k", b"x"])) == (
        b"-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n"
    )
    assert run(ctx, [b"SETRANGE", b"k", b"9", b"x"]) == 10
    assert encode(run(ctx, [b"SETRANGE", b"k", b"10", b"x"])).startswith(b"-ERR string exceeds")


# -- arity -----------------------------------------------------------------------------------

_STRING_COMMANDS = [
    "get", "set", "setnx", "setex", "psetex", "getset", "getdel", "getex", "mget", "mset",
    "msetnx", "incr", "incrby", "decr", "decrby", "incrbyfloat", "append", "strlen", "getrange",
    "setrange", "substr", "lcs",
]  # fmt: skip


def test_wrong_number_of_arguments(raw: Pair) -> None:
    compare(*raw, arity_probes(_STRING_COMMANDS))


# -- RESP3 -----------------------------------------------------------------------------------


def test_resp3_encoding(oracle_server: RedisServer, memlog: Memlog, pair: Pair) -> None:
    oracle = RawConnection(oracle_server.port, protocol=3)
    subject = RawConnection(memlog.shim_ports[0], protocol=3)
    try:
        compare_raw(oracle, subject, [
            ["GET", "missing"], ["SET", "k", "v"], ["SET", "k", "w", "GET"],
            ["SET", "k", "v", "NX"], ["SET", "k", "v", "XX", "GET"], ["GETEX", "nope"],
            ["MGET", "k", "missing"], ["INCRBYFLOAT", "f", "1.5"], ["INCR", "i"],
            ["MSET", "a", "ohmytext", "b", "mynewtext"], ["LCS", "a", "b", "IDX", "WITHMATCHLEN"],
            ["LCS", "a", "b"], ["LCS", "a", "b", "LEN"], ["GETRANGE", "missing", "0", "1"],
            ["TYPE", "k"], ["TYPE", "missing"], ["OBJECT", "ENCODING", "k"],
            ["OBJECT", "ENCODING", "missing"], ["OBJECT", "HELP"], ["TTL", "k"],
            ["EXPIRETIME", "missing"], ["EXISTS", "k", "a"],
            ["KEYS", "k*"], ["SET", "k", "v", "EX", "0"], ["INCR", "k"], ["RENAME", "x", "y"],
        ])  # fmt: skip
    finally:
        oracle.close()
        subject.close()


# -- WRONGTYPE at the unit level -------------------------------------------------------------


class StandInList(list[bytes]):
    """A value of another Redis type, until memlog has lists."""


register_kind(
    StandInList,
    ValueKind("list", lambda v: "quicklist", lambda v: 1, lambda v: StandInList(v)),
)


def _unit_ctx() -> Ctx:
    load_all()
    return Ctx(Keyspace(), 0, time.time_ns() // 1_000_000, 1, random.Random(1))


@pytest.fixture
def wrongtype_pair(oracle_server: RedisServer) -> Iterator[tuple[RawConnection, Ctx]]:
    """redis-server with a list at "l" and a string at "s", and a unit keyspace with the
    same keys (a stand-in list)."""
    oracle = RawConnection(oracle_server.port)
    oracle.call("FLUSHALL")
    oracle.call("RPUSH", "l", "x")
    oracle.call("SET", "s", "ohmytext")
    ctx = _unit_ctx()
    ctx.db.set(b"l", StandInList([b"x"]), 1)  # type: ignore[arg-type]
    ctx.db.set(b"s", b"ohmytext", 1)
    try:
        yield oracle, ctx
    finally:
        oracle.close()


_WRONGTYPE_STRING_COMMANDS = [
    ["GET", "l"], ["SET", "l", "v", "GET"], ["SET", "l", "v", "GET", "NX"],
    ["SET", "l", "v", "GET", "BOGUS"], ["SET", "l", "v", "GET", "EX", "0"],
    ["GETSET", "l", "x"], ["GETDEL", "l"], ["GETEX", "l"], ["GETEX", "l", "EX", "x"],
    ["GETEX", "l", "bogus"], ["MGET", "s", "l", "missing"], ["INCR", "l"], ["DECR", "l"],
    ["INCRBY", "l", "x"], ["INCRBY", "l", "1"], ["DECRBY", "l", "1"],
    ["INCRBYFLOAT", "l", "x"], ["INCRBYFLOAT", "l", "1"], ["APPEND", "l", "x"], ["STRLEN", "l"],
    ["GETRANGE", "l", "0", "1"], ["GETRANGE", "l", "x", "1"], ["SUBSTR", "l", "0", "1"],
    ["SETRANGE", "l", "-1", ""], ["SETRANGE", "l", "0", ""], ["SETRANGE", "l", "0", "x"],
    ["SETRANGE", "l", "x", ""], ["LCS", "s", "l"], ["LCS", "l", "s", "BOGUS"],
    ["SETNX", "l", "x"], ["MSETNX", "l", "x"], ["SET", "l", "v", "NX"],
    ["SET", "l", "v", "XX", "GET"], ["TYPE", "l"],
]  # fmt: skip


def test_wrongtype_replies_match_redis(wrongtype_pair: tuple[RawConnection, Ctx]) -> None:
    """Every string command on a key of another type, as redis-server answers for a list."""
    oracle, ctx = wrongtype_pair
    for args in _WRONGTYPE_STRING_COMMANDS:
        want = oracle.call(*args)
        ctx.index += 1
        got = encode(run(ctx, [str(a).encode() for a in args]))
        assert got == want, f"{args}: redis-server sent {want!r}, memlog sent {got!r}"


def test_set_overwrites_other_types_unit(wrongtype_pair: tuple[RawConnection, Ctx]) -> None:
    oracle, ctx = wrongtype_pair
    for args in (["SET", "l", "v"], ["TYPE", "l"], ["GET", "l"], ["MSET", "l", "w"], ["GET", "l"]):
        want = oracle.call(*args)
        ctx.index += 1
        assert encode(run(ctx, [str(a).encode() for a in args])) == want, args


# -- expiry ----------------------------------------------------------------------------------


def test_short_expiry_hides_then_frees_keys(raw: Pair) -> None:
    """PX/PXAT with small values: the key disappears on both, and the shim's apply frees it."""
    oracle, subject = raw
    now_ms = time.time_ns() // 1_000_000
    for conn in raw:
        execute(conn, "SET", "px", "v", "PX", "150")
        execute(conn, "SET", "pxat", "v", "PXAT", str(now_ms + 300))
        execute(conn, "PSETEX", "psetex", "200", "v")
        execute(conn, "SET", "counter", "41", "PX", "150")
        execute(conn, "SET", "stays", "v")

    def both_gone() -> bool:
        return all(execute(conn, "EXISTS", "px", "pxat", "psetex", "counter") == 0 for conn in raw)

    wait_until(both_gone, 10, "the short-lived keys to expire on both servers")
    compare(oracle, subject, [
        ["GET", "px"], ["TTL", "pxat"], ["PTTL", "psetex"], ["KEYS", "*"], ["SCAN", "0"],
        ["SET", "px", "again", "NX"], ["GET", "px"], ["INCR", "counter"],
        ["SETRANGE", "pxat", "1", "x"], ["APPEND", "psetex", "z"], ["MGET", "px", "pxat"],
        ["EXISTS", "stays"],
    ])  # fmt: skip
