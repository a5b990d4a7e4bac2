"""Generic key commands (issue 4) against redis-server 7.0: replies and errors must match.

Where Redis leaves an order unspecified (KEYS, SCAN) the keys are compared as sorted lists;
where a reply depends on the clock (TTL of a relative expiry) it is compared with a tolerance.
Keys of types memlog does not have yet are tested at the unit level against a real list.

Over 500 lines: every generic key command beside redis-server; they share the fixtures and
comparison helpers.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest
import redis

from cacheshim.apply import run
from cacheshim.commands import COMMANDS, Command, Ctx, load_all
from cacheshim.protocol.resp import encode
from cacheshim.types.glob import Pattern
from cacheshim.types.keyindex import KeyIndex
from cacheshim.types.keyspace import Database, Keyspace, ValueKind, register_kind
from tests.cacheshim.harness import (
    Memlog,
    RedisServer,
    arity_probes,
    client,
    compare,
    compare_sorted,
    execute,
    wait_until,
)
from tests.cacheshim.rawresp import Pair, RawConnection, without_callbacks

LLONG_MAX = 2**63 - 1


@pytest.fixture
def raw(pair: Pair) -> Pair:
    oracle, subject = pair
    return without_callbacks(oracle), without_callbacks(subject)


@pytest.fixture
def raw_db1(raw: Pair, oracle_server: RedisServer, memlog: Memlog) -> Iterator[Pair]:
    """Clients of database 1 on both servers (after `raw` flushed everything)."""
    oracle = without_callbacks(redis.Redis(port=oracle_server.port, db=1, socket_timeout=15))
    subject = without_callbacks(redis.Redis(port=memlog.shim_ports[0], db=1, socket_timeout=15))
    try:
        yield oracle, subject
    finally:
        oracle.close()
        subject.close()


def full_scan(conn: redis.Redis, *options: object) -> list[bytes]:
    """Every key a whole SCAN walk returns (duplicates kept)."""
    cursor: bytes = b"0"
    found: list[bytes] = []
    for _ in range(100_000):
        reply = execute(conn, "SCAN", cursor, *options)
        assert isinstance(reply, list) and len(reply) == 2, reply
        cursor, keys = reply
        found += keys
        if cursor == b"0":
            return found
    raise AssertionError("SCAN never returned cursor 0")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- DEL, EXISTS, TYPE, TOUCH ---------------------------------------------------------------


def test_del_unlink_exists_touch_type(raw: Pair) -> None:
    compare(*raw, [
        ["DEL", "a"], ["MSET", "a", "1", "b", "2", "c", "3"], ["EXISTS", "a", "a", "b", "x"],
        ["TOUCH", "a", "x", "a"], ["TYPE", "a"], ["TYPE", "x"],
        ["DEL", "a", "a", "x"], ["UNLINK", "b", "c", "b"], ["EXISTS", "a", "b", "c"],
        ["SET", "", "empty key"], ["EXISTS", ""], ["TYPE", ""], ["DEL", ""],
    ])  # fmt: skip


# -- expiry ------------------------------------------------------------------------------------


def test_expire_options_and_errors(raw: Pair) -> None:
    base = now_ms() // 1000 + 10_000
    compare(*raw, [
        ["EXPIRE", "missing", "100"], ["PEXPIRE", "missing", "100", "NX"],
        ["SET", "k", "v"],
        ["EXPIRE", "k", "100", "NX", "XX"], ["EXPIRE", "k", "100", "GT", "LT"],
        ["EXPIRE", "k", "100", "nx", "gt"], ["EXPIRE", "k", "100", "NX", "LT"],
        ["EXPIRE", "k", "100", "XX", "GT", "LT"], ["EXPIRE", "k", "100", "foo"],
        ["EXPIRE", "k", "abc", "foo"], ["EXPIRE", "k", "100", "NX", "foo\x00bar"],
        ["EXPIRE", "k", "abc"], ["EXPIRE", "k", "1.5"], ["EXPIRE", "k", ""],
        ["EXPIRE", "k", str(LLONG_MAX)], ["EXPIRE", "k", "-9223372036854775808"],
        ["EXPIRE", "k", "9223372036854776"], ["PEXPIRE", "k", str(LLONG_MAX)],
        ["EXPIREAT", "k", "9223372036854776"], ["EXPIREAT", "k", "-9223372036854776"],
        ["EXPIREAT", "k", str(base), "XX"], ["EXPIREAT", "k", str(base), "GT"],
        ["EXPIREAT", "k", str(base), "LT"], ["EXPIRETIME", "k"],
        ["EXPIREAT", "k", str(base), "NX"], ["EXPIRETIME", "k"],
        ["EXPIREAT", "k", str(base), "NX"], ["EXPIREAT", "k", str(base + 5), "LT"],
        ["EXPIREAT", "k", str(base - 5), "GT"], ["EXPIREAT", "k", str(base + 5), "GT"],
        ["EXPIRETIME", "k"], ["EXPIREAT", "k", str(base - 5), "LT"], ["EXPIRETIME", "k"],
        ["EXPIREAT", "k", str(base), "XX", "GT"], ["EXPIREAT", "k", str(base), "XX", "LT"],
        ["PEXPIREAT", "k", str(base * 1000 + 1234)], ["PEXPIRETIME", "k"], ["EXPIRETIME", "k"],
        ["PEXPIREAT", "k", str(base * 1000 + 499)], ["EXPIRETIME", "k"],
        ["PEXPIREAT", "k", str(LLONG_MAX)], ["PEXPIRETIME", "k"], ["EXPIRETIME", "k"],
        ["EXPIREAT", "k", "9223372036854775"], ["EXPIRETIME", "k"],
        ["PERSIST", "k"], ["PERSIST", "k"], ["PERSIST", "missing"], ["TTL", "k"],
        ["EXPIRETIME", "k"], ["PEXPIRETIME", "missing"],
        ["EXPIRE", "k", "-1"], ["EXISTS", "k"], ["SET", "k", "v"], ["PEXPIREAT", "k", "0"],
        ["EXISTS", "k"], ["SET", "k", "v"], ["EXPIRE", "k", "-9223372036854775"],
        ["EXISTS", "k"], ["SET", "k", "v"], ["EXPIREAT", "k", "1", "LT"], ["GET", "k"],
        ["SET", "k", "v"], ["EXPIREAT", "k", "1", "GT"], ["GET", "k"],
        ["SET", "k", "v", "EX", "100"], ["EXPIRE", "k", "0", "XX"], ["EXISTS", "k"],
    ])  # fmt: skip


def _close(want: object, got: object, tolerance: int) -> bool:
    if not isinstance(want, int) or not isinstance(got, int):
        return False
    if want < 0 or got < 0:
        return want == got
    return abs(want - got) <= tolerance


def test_relative_expiry_with_tolerance(raw: Pair) -> None:
    """TTLs of relative expiries depend on each server's clock: equal within a margin."""
    oracle, subject = raw
    setups = [
        ["SET", "ex", "v", "EX", "1000"], ["SET", "px", "v", "PX", "500000"],
        ["SETEX", "setex", "2000", "v"], ["PSETEX", "psetex", "3000000", "v"],
        ["SET", "e", "v"], ["EXPIRE", "e", "4000"], ["SET", "p", "v"], ["PEXPIRE", "p", "77777"],
        ["SET", "g", "v"], ["GETEX", "g", "EX", "600"], ["SET", "n", "v"],
    ]  # fmt: skip
    compare(oracle, subject, setups)
    for key in ("ex", "px", "setex", "psetex", "e", "p", "g", "n", "missing"):
        for name, tolerance in (
            ("TTL", 2),
            ("PTTL", 2000),
            ("EXPIRETIME", 2),
            ("PEXPIRETIME", 2000),
        ):
            want = execute(oracle, name, key)
            got = execute(subject, name, key)
            assert _close(want, got, tolerance), f"{name} {key}: redis {want!r}, memlog {got!r}"


def test_short_expiries_are_polled_not_slept(raw: Pair) -> None:
    oracle, subject = raw
    for conn in raw:
        execute(conn, "MSET", "a", "1", "b", "2", "c", "3", "d", "4")
        execute(conn, "PEXPIRE", "a", "100")
        execute(conn, "PEXPIREAT", "b", str(now_ms() + 200))
        execute(conn, "GETEX", "c", "PX", "150")
        execute(conn, "COPY", "d", "d2")
        execute(conn, "PEXPIRE", "d", "120")
        execute(conn, "COPY", "d", "d3")  # copies the expiry too
        execute(conn, "RENAME", "d3", "d4")  # and so does RENAME

    def expired() -> bool:
        return all(execute(conn, "EXISTS", "a", "b", "c", "d", "d4") == 0 for conn in raw)

    wait_until(expired, 10, "keys with short expiries to disappear on both servers")
    compare(oracle, subject, [
        ["TTL", "a"], ["PTTL", "b"], ["GET", "c"], ["EXISTS", "d2"], ["TYPE", "d"],
        ["RENAME", "a", "z"], ["RENAMENX", "b", "z"], ["COPY", "c", "z"], ["MOVE", "d", "1"],
        ["PERSIST", "a"], ["EXPIRE", "b", "100"], ["OBJECT", "ENCODING", "c"], ["TOUCH", "a", "d2"],
        ["SET", "a", "x", "XX"], ["SETNX", "b", "y"], ["GET", "b"], ["LCS", "a", "b"],
    ])  # fmt: skip
    compare_sorted(oracle, subject, [["KEYS", "*"]], lists_only=True)
    assert sorted(full_scan(subject)) == sorted(full_scan(oracle))


# -- RENAME, COPY, MOVE --------------------------------------------------------------------------


def test_rename_renamenx(raw: Pair) -> None:
    compare(*raw, [
        ["RENAME", "nokey", "x"], ["RENAMENX", "nokey", "x"], ["RENAME", "nokey", "nokey"],
        ["SET", "a", "1", "EX", "1000"], ["RENAME", "a", "a"], ["RENAMENX", "a", "a"],
        ["RENAME", "a", "b"], ["EXISTS", "a"], ["GET", "b"], ["EXPIRETIME", "b"],
        ["SET", "c", "3"], ["RENAMENX", "b", "c"], ["GET", "c"], ["RENAMENX", "b", "d"],
        ["GET", "d"], ["SET", "e", "5", "EX", "1000"], ["RENAME", "d", "e"], ["TTL", "e"],
        ["GET", "e"],
    ])  # fmt: skip


def test_copy(raw: Pair, raw_db1: Pair) -> None:
    compare(*raw, [
        ["COPY", "nokey", "x"], ["SET", "k", "v"], ["COPY", "k", "k"],
        ["COPY", "k", "k", "DB", "0"], ["COPY", "k", "k", "DB", "1"],
        ["COPY", "k", "j", "DB", "99999999999"], ["COPY", "k", "j", "DB", "16"],
        ["COPY", "k", "j", "DB", "-1"], ["COPY", "k", "j", "DB", "abc"],
        ["COPY", "k", "j", "DB"], ["COPY", "k", "j", "BOGUS"], ["COPY", "k", "j", "REPLACE", "x"],
        ["COPY", "nokey", "nokey"], ["COPY", "k", "j"], ["GET", "j"], ["COPY", "k", "j"],
        ["SET", "k", "w", "EX", "1000"], ["COPY", "k", "j", "replace"], ["GET", "j"],
        ["EXPIRETIME", "j"], ["COPY", "k", "j", "REPLACE", "REPLACE", "DB", "1", "DB", "0"],
        ["COPY", "k", "other", "DB", "2"], ["EXISTS", "other"],
    ])  # fmt: skip
    compare(*raw_db1, [["GET", "k"], ["EXPIRETIME", "k"], ["COPY", "k", "k", "DB", "0"]])


def test_move(raw: Pair, raw_db1: Pair) -> None:
    compare(*raw, [
        ["MOVE", "nokey", "1"], ["SET", "k", "v", "EX", "1000"], ["MOVE", "k", "0"],
        ["MOVE", "k", "16"], ["MOVE", "k", "-1"], ["MOVE", "k", "99999999999"], ["MOVE", "k", "x"],
        ["MOVE", "nokey", "0"], ["MOVE", "k", "1"], ["EXISTS", "k"], ["SET", "j", "1"],
    ])  # fmt: skip
    compare(*raw_db1, [
        ["GET", "k"], ["EXPIRETIME", "k"], ["SET", "j", "2"], ["MOVE", "k", "0"],
    ])  # fmt: skip
    compare(*raw, [["MOVE", "j", "1"], ["GET", "j"], ["GET", "k"]])
    compare(*raw_db1, [["GET", "j"]])


# -- KEYS and glob patterns -------------------------------------------------------------------

_GLOB_KEYS = [
    b"hello",
    b"hallo",
    b"hxllo",
    b"hllo",
    b"heeeello",
    b"h*llo",
    b"h?llo",
    b"h[llo",
    b"h]llo",
    b"h\\llo",
    b"h-llo",
    b"h^llo",
    b"a-b",
    b"-",
    b"]",
    b"[",
    b"\\",
    b"^",
    b"*",
    b"?",
    b"\x00",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"\xe9t\xe9",
    b"a",
    b"b",
    b"z",
    b"A",
    b"Z",
    b"abc",
    b"ab",
    b"aXc",
    b"a\x00c",
    b"user:1",
    b"user:22",
    b"user:333",
    b"key",
    b"KEY",
    b"x" * 100,
]

_GLOB_PATTERNS = [
    b"*",
    b"**",
    b"***",
    b"",
    b"?",
    b"??",
    b"h?llo",
    b"h*llo",
    b"h*",
    b"*llo",
    b"*l*l*o*",
    b"h[ae]llo",
    b"h[^e]llo",
    b"h[a-b]llo",
    b"h[b-a]llo",
    b"h[\\]]llo",
    b"h[]]llo",
    b"h[\\\\]llo",
    b"h\\*llo",
    b"h\\?llo",
    b"h\\[llo",
    b"\\",
    b"\\\\",
    b"a\\",
    b"*\\",
    b"[",
    b"[^",
    b"[a",
    b"[a-",
    b"[a-c",
    b"[a-]",
    b"[a-]x",
    b"[z-a]",
    b"[a-\xff]",
    b"[\xff-a]",
    b"[\x80-\xff]",
    b"[^a-z]",
    b"[-]",
    b"[--]",
    b"[a-c-e]",
    b"[^]",
    b"[]",
    b"[\\",
    b"h[",
    b"user:?",
    b"user:*",
    b"user:??*",
    b"*[0-9]",
    b"[A-Z]*",
    b"*\x00*",
    b"a?c",
    b"\x00",
    b"?\\",
    b"[\\a-c]",
    b"[a\\-c]",
    b"x*x*x*x",
    b"\\x*",
    b"[*]",
    b"[?]",
    b"*]",
    b"*[",
    b"^*",
]


def _random_patterns(count: int) -> list[bytes]:
    rng = random.Random(42)
    alphabet = [b"*", b"?", b"[", b"]", b"^", b"-", b"\\", b"a", b"b", b"h", b"l", b"o", b"e",
                b"x", b"\xff", b"\x00", b"Z"]  # fmt: skip
    return [b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 7))) for _ in range(count)]


def test_keys_glob_patterns_match_redis(raw: Pair) -> None:
    oracle, subject = raw
    for conn in raw:
        pairs: list[bytes] = []
        for key in _GLOB_KEYS:
            pairs += [key, b"v"]
        execute(conn, "MSET", *pairs)
    compare_sorted(
        oracle,
        subject,
        [["KEYS", p] for p in _GLOB_PATTERNS + _random_patterns(300)],
        lists_only=True,
    )


def test_glob_nocase_matches_redis_config_get(raw: Pair) -> None:
    """nocase mode (for CONFIG GET) against redis-server's own CONFIG GET matching."""
    oracle = raw[0]

    def names(reply: object) -> set[bytes]:
        assert isinstance(reply, list)
        return set(reply[::2])

    every = names(execute(oracle, "CONFIG", "GET", "*"))
    for text in (b"MAXMEMORY*", b"*MAX*", b"[M-N]*", b"[m-n]*", b"[Z-a]*", b"[a-Z]*",
                 b"*-[A-D]*", b"?ort", b"[^A-L]*", b"*[_]*", b"Lfu-*", b"[LM]*-?oli*"):  # fmt: skip
        pattern = Pattern(text, nocase=True)
        got = {name for name in every if pattern.match(name)}
        assert got == names(execute(oracle, "CONFIG", "GET", text)), text


def test_glob_does_not_blow_up_on_many_stars() -> None:
    pattern = Pattern(b"a*" * 40 + b"b")
    started = time.monotonic()
    assert not pattern.match(b"a" * 2000)
    assert time.monotonic() - started < 5


# -- SCAN ---------------------------------------------------------------------------------------


def test_scan_arguments(raw: Pair) -> None:
    compare(*raw, [
        ["SCAN", "0"], ["SCAN", ""], ["SCAN", " 0"], ["SCAN", "0x1"], ["SCAN", "+"],
        ["SCAN", "-"], ["SCAN", "18446744073709551616"], ["SCAN", "-18446744073709551616"],
        ["SCAN", "1.5"], ["SCAN", "0", "COUNT", "0"], ["SCAN", "0", "COUNT", "-1"],
        ["SCAN", "0", "COUNT", "abc"], ["SCAN", "0", "COUNT"], ["SCAN", "0", "MATCH"],
        ["SCAN", "0", "TYPE"], ["SCAN", "0", "BOGUS", "x"], ["SCAN", "0", "COUNT", "10", "x"],
        ["SCAN", "0", "COUNT", "9223372036854775808"],
        ["SCAN", "0", "COUNT", str(LLONG_MAX), "MATCH", "*", "TYPE", "string"],
        ["SCAN", "x", "COUNT", "0"], ["SCAN", "0", "COUNT", "0", "COUNT", "1"],
    ])  # fmt: skip


def test_scan_walks_every_key(raw: Pair) -> None:
    oracle, subject = raw
    for conn in raw:
        pairs: list[bytes] = []
        for i in range(300):
            pairs += [b"key:%d" % i, b"%d" % i]
        execute(conn, "MSET", *pairs)
        execute(conn, "SET", "", "empty")
    for options in ([], ["COUNT", "1"], ["COUNT", "7"], ["COUNT", "1000"], ["MATCH", "key:1*"],
                    ["MATCH", "*", "COUNT", "3"], ["TYPE", "string"], ["TYPE", "STRING"],
                    ["TYPE", "list"], ["TYPE", "bogus"], ["MATCH", "nothing*"],
                    ["MATCH", "key:?", "TYPE", "string", "COUNT", "2"]):  # fmt: skip
        got = full_scan(subject, *options)
        want = full_scan(oracle, *options)
        assert len(got) == len(set(got)), "no duplicates without resizes"
        assert sorted(got) == sorted(set(want)), options


def test_scan_returns_keys_present_throughout_while_writes_resize_the_table(raw: Pair) -> None:
    """Keys present from the first call to the last all come back, despite concurrent writes
    that grow and shrink the table in between."""
    subject = raw[1]
    execute(subject, "MSET", *[b"stay:%d" % i for i in range(200) for _ in (0, 1)])
    execute(subject, "MSET", *[b"gone:%d" % i for i in range(400) for _ in (0, 1)])
    cursor = b"0"
    seen: list[bytes] = []
    step = 0
    while True:
        reply = execute(subject, "SCAN", cursor, "COUNT", "20")
        assert isinstance(reply, list)
        cursor, keys = reply
        seen += keys
        if step == 2:
            execute(subject, "DEL", *[b"gone:%d" % i for i in range(400)])  # shrinks
        if step == 4:
            execute(subject, "MSET", *[b"new:%d" % i for i in range(2000) for _ in (0, 1)])
        step += 1
        if cursor == b"0":
            break
    missing = {b"stay:%d" % i for i in range(200)} - set(seen)
    assert not missing, f"SCAN missed {len(missing)} keys present throughout: {sorted(missing)[:5]}"


def test_key_index_scan_guarantee_unit() -> None:
    rng = random.Random(3)
    for _ in range(30):
        index = KeyIndex()
        stable = [b"s%d" % i for i in range(rng.randint(0, 300))]
        churn = [b"c%d" % i for i in range(rng.randint(0, 1500))]
        for key in stable + churn[: len(churn) // 2]:
            index.add(key)
        cursor, seen = 0, set()
        while True:
            cursor, keys = index.scan(cursor, rng.randint(1, 30))
            seen.update(keys)
            for key in rng.sample(churn, min(len(churn), rng.randint(0, 200))):
                if rng.random() < 0.5:
                    index.add(key)
                else:
                    index.discard(key)
            if cursor == 0:
                break
        assert set(stable) <= seen
        assert len(index) == len(set(stable) | {k for k in churn if k in index})


def test_database_rebuilds_a_stale_key_index() -> None:
    db = Database(0)
    db.data[b"written-around-set"] = b"v"  # as a snapshot loader might
    assert db.scan(0, 10) == (0, [b"written-around-set"])


def test_database_numbers_parse_as_in_redis(raw: Pair) -> None:
    """MOVE, COPY ... DB and SELECT read a database number with Redis's strict rules."""
    commands: list[list[object]] = [["SET", "k", "v"]]
    for db in ("1_0", " 1", "+1", "1.0", "99999999999", "-1", "16", "", "0x1"):
        commands += [["SELECT", db], ["MOVE", "k", db], ["COPY", "k", "j", "DB", db]]
    commands += [["SELECT", "0"], ["GET", "k"]]
    compare(*raw, commands)


# -- RANDOMKEY ----------------------------------------------------------------------------------


def test_randomkey(raw: Pair) -> None:
    oracle, subject = raw
    compare(oracle, subject, [["RANDOMKEY"], ["SET", "only", "1"], ["RANDOMKEY"]])
    for conn in raw:
        execute(conn, "MSET", "a", "1", "b", "2", "c", "3")
    seen = {execute(subject, "RANDOMKEY") for _ in range(200)}
    assert seen == {b"only", b"a", b"b", b"c"}


def test_randomkey_skips_expired_keys_unit() -> None:
    load_all()
    ctx = Ctx(Keyspace(), 0, 10_000, 0, random.Random(5))
    for i in range(50):
        ctx.db.set(b"dead%d" % i, b"v", 1)
        ctx.db.set_expiry(b"dead%d" % i, 5_000, 1)
    assert run(ctx, [b"RANDOMKEY"]) is None
    ctx.db.set(b"alive", b"v", 2)
    assert {run(ctx, [b"RANDOMKEY"]) for _ in range(20)} == {b"alive"}
    # Inside apply the pick depends only on the seed (the log index).
    picks = set()
    for _ in range(3):
        ctx.rng = random.Random(99)
        picks.add(run(ctx, [b"RANDOMKEY"]))
    assert len(picks) == 1


# -- OBJECT --------------------------------------------------------------------------------------


def test_object(raw: Pair) -> None:
    compare(*raw, [
        ["OBJECT"], ["OBJECT", "HELP"], ["OBJECT", "help"], ["OBJECT", "HELP", "x"],
        ["OBJECT", "FOO"], ["OBJECT", "FOO", "k"], ["OBJECT", "ENCODING"],
        ["OBJECT", "ENCODING", "k", "x"], ["OBJECT", "ENCODING", "missing"],
        ["OBJECT", "REFCOUNT", "missing"], ["OBJECT", "IDLETIME", "missing"],
        ["OBJECT", "FREQ", "missing"], ["SET", "k", "v"], ["OBJECT", "encoding", "k"],
        ["OBJECT", "REFCOUNT", "k"], ["OBJECT", "IDLETIME", "k"], ["OBJECT", "FREQ", "k"],
    ])  # fmt: skip


# -- arity and the command table ----------------------------------------------------------------

_KEY_COMMANDS = [
    "del", "unlink", "exists", "type", "expire", "pexpire", "expireat", "pexpireat", "ttl",
    "pttl", "expiretime", "pexpiretime", "persist", "rename", "renamenx", "copy", "move", "keys",
    "scan", "randomkey", "touch",
]  # fmt: skip


def test_wrong_number_of_arguments(raw: Pair) -> None:
    commands = arity_probes(_KEY_COMMANDS)
    commands += [["OBJECT", "ENCODING"], ["OBJECT", "REFCOUNT", "a", "b"], ["OBJECT", "FREQ"],
                 ["OBJECT", "IDLETIME"], ["OBJECT", "HELP", "extra"]]  # fmt: skip
    compare(*raw, commands)


def _declared_by_issue_4() -> list[Command]:
    load_all()
    specs: list[Command] = []
    for spec in COMMANDS.values():
        modules = {getattr(spec.handler, "__module__", "")} | {
            getattr(sub.handler, "__module__", "") for sub in spec.subcommands.values()
        }
        if modules & {"cacheshim.commands.keys", "cacheshim.commands.strings"}:
            specs.append(spec)
            specs.extend(spec.subcommands.values())
    return specs


def test_command_table_matches_redis_command_info(raw: Pair) -> None:
    """Arity, flags, key positions and ACL categories equal redis-server's COMMAND INFO."""
    oracle, _ = raw
    specs = _declared_by_issue_4()
    assert len(specs) == 49
    for spec in specs:
        reply = execute(oracle, "COMMAND", "INFO", spec.full_name)
        assert isinstance(reply, list) and reply[0] is not None, spec.full_name
        info = reply[0]
        want = {
            "name": info[0].decode(),
            "arity": info[1],
            "flags": [f.decode() for f in info[2]],
            "keys": (info[3], info[4], info[5]),
            "acl": [c.decode() for c in info[6]],
        }
        got = {
            "name": spec.full_name,
            "arity": spec.arity,
            "flags": list(spec.flags),
            "keys": (spec.first_key, spec.last_key, spec.key_step),
            "acl": list(spec.acl_categories),
        }
        assert got == want, spec.full_name
        assert spec.summary and spec.since and spec.group and spec.complexity, spec.full_name


# -- other types, at the unit level ---------------------------------------------------------------


class StandInList(list[bytes]):
    """A value of another Redis type, until memlog has lists."""


register_kind(
    StandInList,
    ValueKind("list", lambda v: "quicklist", lambda v: 1, lambda v: StandInList(v)),
)


def test_generic_commands_on_other_types_match_redis(oracle_server: RedisServer) -> None:
    oracle = RawConnection(oracle_server.port)
    load_all()
    ctx = Ctx(Keyspace(), 0, now_ms(), 1, random.Random(1))
    try:
        oracle.call("FLUSHALL")
        oracle.call("RPUSH", "l", "x")
        ctx.db.set(b"l", StandInList([b"x"]), 1)  # type: ignore[arg-type]
        for args in (
            ["TYPE", "l"], ["OBJECT", "ENCODING", "l"], ["OBJECT", "REFCOUNT", "l"],
            ["EXISTS", "l"], ["SCAN", "0", "TYPE", "list"], ["SCAN", "0", "TYPE", "string"],
            ["COPY", "l", "l2"], ["TYPE", "l2"], ["RENAME", "l2", "l3"], ["TYPE", "l3"],
            ["MOVE", "l3", "1"], ["EXPIRE", "l", "100"], ["PERSIST", "l"], ["DEL", "l"],
            ["TYPE", "l"],
        ):  # fmt: skip
            want = oracle.call(*args)
            ctx.index += 1
            got = encode(run(ctx, [str(a).encode() for a in args]))
            assert got == want, f"{args}: redis-server sent {want!r}, memlog sent {got!r}"
        copied = ctx.keyspace.dbs[1].get(b"l3", ctx.now_ms)
        assert isinstance(copied, StandInList)
    finally:
        oracle.close()


def test_copy_duplicates_values(oracle_server: RedisServer) -> None:
    load_all()
    ctx = Ctx(Keyspace(), 0, now_ms(), 1, random.Random(1))
    original = StandInList([b"x"])
    ctx.db.set(b"l", original, 1)  # type: ignore[arg-type]
    assert run(ctx, [b"COPY", b"l", b"m"]) == 1
    copied: object = ctx.db.get(b"m", ctx.now_ms)
    assert copied == original and copied is not original


def test_resp3_key_replies(oracle_server: RedisServer, memlog: Memlog, raw: Pair) -> None:
    oracle = RawConnection(oracle_server.port, protocol=3)
    subject = RawConnection(memlog.shim_ports[0], protocol=3)
    try:
        for args in (
            ["SET", "k", "v"], ["TYPE", "k"], ["TTL", "k"], ["OBJECT", "HELP"],
            ["OBJECT", "FREQ", "k"], ["RENAME", "nokey", "x"], ["COPY", "k", "k2"],
            ["KEYS", "k2"], ["SCAN", "0", "MATCH", "k2"], ["EXISTS", "k", "k2"],
        ):  # fmt: skip
            assert subject.call(*args) == oracle.call(*args), args
        # And through redis-py's own RESP3 parsing and reply callbacks.
        oracle3 = client(oracle_server.port, protocol=3)
        subject3 = client(memlog.shim_ports[0], protocol=3)
        for conn in (oracle3, subject3):
            conn.mset({"key1": "ohmytext", "key2": "mynewtext", "n": "10"})
            conn.expire("key1", 1000)
        for call in (
            lambda c: c.get("key1"), lambda c: c.mget("key1", "nope", "n"),
            lambda c: c.set("n", "11", get=True), lambda c: c.incrbyfloat("n", 0.5),
            lambda c: c.lcs("key1", "key2", idx=True, withmatchlen=True),
            lambda c: c.lcs("key1", "key2", len=True), lambda c: c.type("key1"),
            lambda c: c.object("encoding", "n"), lambda c: c.exists("key1", "nope"),
            lambda c: c.expiretime("n"), lambda c: c.copy("key1", "key3"),
            lambda c: sorted(c.keys("key*")), lambda c: sorted(c.scan_iter(match="key*")),
            lambda c: c.getex("key2", persist=True), lambda c: c.randomkey() is not None,
            lambda c: c.rename("key3", "key4"), lambda c: c.getrange("key4", 0, 3),
        ):  # fmt: skip
            assert call(subject3) == call(oracle3)
        oracle3.close()
        subject3.close()
    finally:
        oracle.close()
        subject.close()


def test_patterns_nested_past_redis_limit_match_nothing(
    pair: Pair, oracle_server: RedisServer, memlog: Memlog
) -> None:
    """Redis's matcher recurses once per run of stars and gives up past 1,000 levels: a
    pattern needing more matches nothing, in KEYS, SCAN MATCH and PSUBSCRIBE alike (a last
    run of stars needs no recursion)."""
    oracle, subject = (without_callbacks(c) for c in pair)
    key = b"a" * 1200
    patterns = [b"*a" * 1000, b"*a" * 1001, b"*a" * 1000 + b"*", b"*a" * 1001 + b"*",
                b"?*" * 1001, b"a*" * 1001 + b"a", b"*" * 3000 + b"a"]  # fmt: skip
    for conn in (oracle, subject):
        execute(conn, "SET", key, "v")
    matched = []
    for pattern in patterns:
        compare(oracle, subject, [["KEYS", pattern], ["SCAN", 0, "MATCH", pattern, "COUNT", 100]])
        matched.append(execute(subject, "KEYS", pattern) == [key])
    assert matched == [True, False, True, False, True, False, True]
    for conn, port in ((oracle, oracle_server.port), (subject, memlog.shim_ports[0])):
        listener = RawConnection(port)
        try:
            for pattern in (b"*a" * 1001, b"*a" * 1000):
                listener.call("PSUBSCRIBE", pattern)
            assert execute(conn, "PUBLISH", key, "m") == 1  # the second pattern only
        finally:
            listener.close()
