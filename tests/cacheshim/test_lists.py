"""List commands (issue 5) against redis-server 7.0: replies and errors must be the same bytes.

Every command goes through the real write path (log + apply) of a memlog deployment and to a
redis-server beside it, on raw connections, so a null bulk, a null array and an empty array
stay apart, in RESP2 and RESP3. The blocking commands appear here where they do not block
(a list has elements, a bad argument, inside MULTI); waiting, waking and timeouts are in
test_blocking.py.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence

import pytest

from cacheshim.commands import COMMANDS, load_all
from cacheshim.types.listvalue import ListValue, index_range
from tests.cacheshim.harness import Memlog, RedisServer
from tests.cacheshim.rawresp import Pair, RawConnection, compare_raw

LLONG_MAX = 2**63 - 1
LLONG_MIN = -(2**63)
BIG = [str(LLONG_MAX), str(LLONG_MIN), "9223372036854775808", "-9223372036854775809"]

Command = Sequence[bytes | str | int]
RawPair = tuple[RawConnection, RawConnection]


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def raw(
    request: pytest.FixtureRequest, pair: Pair, oracle_server: RedisServer, memlog: Memlog
) -> Iterator[RawPair]:
    """(redis-server, memlog) raw connections in one protocol, both keyspaces empty."""
    protocol: int = request.param
    oracle = RawConnection(oracle_server.port, protocol)
    subject = RawConnection(memlog.shim_ports[0], protocol)
    try:
        yield oracle, subject
    finally:
        oracle.close()
        subject.close()


def check(raw: RawPair, commands: Sequence[Command]) -> None:
    compare_raw(raw[0], raw[1], commands)


# -- push, pop, length -----------------------------------------------------------------------


def test_push_and_pop(raw: RawPair) -> None:
    check(raw, [
        ["LPUSH", "l", "a"], ["LPUSH", "l", "b", "c", "d"], ["RPUSH", "l", "e", "f"],
        ["LRANGE", "l", "0", "-1"], ["LLEN", "l"], ["LLEN", "missing"],
        ["LPUSHX", "l", "x", "y"], ["RPUSHX", "l", "z"], ["LPUSHX", "nol", "x"],
        ["RPUSHX", "nol", "x", "y"], ["EXISTS", "nol"], ["LRANGE", "l", "0", "-1"],
        ["LPOP", "l"], ["RPOP", "l"], ["LPOP", "l", "2"], ["RPOP", "l", "2"],
        ["LPOP", "l", "0"], ["RPOP", "l", "0"], ["LRANGE", "l", "0", "-1"],
        ["LPOP", "missing"], ["RPOP", "missing"], ["LPOP", "missing", "0"],
        ["RPOP", "missing", "3"], ["LPOP", "missing", "-1"], ["LPOP", "missing", "x"],
        ["LPOP", "l", "-1"], ["LPOP", "l", "abc"], ["LPOP", "l", "1.5"], ["LPOP", "l", ""],
        ["LPOP", "l", " 1"], ["LPOP", "l", "+1"], ["LPOP", "l", "01"],
        *(["RPOP", "l", big] for big in BIG),
        ["LPOP", "l", "1", "2"], ["RPOP", "l", "1", "2"],
        ["RPUSH", "big", *[str(i) for i in range(300)]], ["LPOP", "big", "100"],
        ["RPOP", "big", str(LLONG_MAX)], ["EXISTS", "big"], ["LPOP", "big"],
        ["RPUSH", "one", "x"], ["LPOP", "one", "5"], ["EXISTS", "one"],
        ["RPUSH", "one", "x"], ["RPOP", "one"], ["EXISTS", "one"],
        ["RPUSH", "l", "", "\x00\xff", "x" * 10000], ["LRANGE", "l", "-3", "-1"],
        ["LPUSH", "ll", "1", "2", "1"], ["LRANGE", "ll", "0", "-1"],
    ])  # fmt: skip


def test_wrong_type_and_arity(raw: RawPair) -> None:
    raw[0].call("SET", "s", "text")
    raw[1].call("SET", "s", "text")
    check(raw, [
        ["LPUSH", "s", "x"], ["RPUSH", "s", "x"], ["LPUSHX", "s", "x"], ["RPUSHX", "s", "x"],
        ["LPOP", "s"], ["RPOP", "s", "2"], ["LPOP", "s", "0"], ["LPOP", "s", "x"],
        ["LLEN", "s"], ["LRANGE", "s", "0", "-1"], ["LRANGE", "s", "x", "1"],
        ["LINDEX", "s", "0"], ["LINDEX", "s", "x"], ["LSET", "s", "0", "x"],
        ["LSET", "s", "x", "x"],
        ["LINSERT", "s", "BEFORE", "a", "b"], ["LINSERT", "s", "MIDDLE", "a", "b"],
        ["LREM", "s", "0", "a"], ["LREM", "s", "x", "a"], ["LTRIM", "s", "0", "1"],
        ["LTRIM", "s", "x", "1"], ["LPOS", "s", "a"], ["LPOS", "s", "a", "BOGUS"],
        ["LMOVE", "s", "d", "LEFT", "LEFT"], ["LMOVE", "s", "d", "UP", "LEFT"],
        ["RPOPLPUSH", "s", "d"], ["LMPOP", "1", "s", "LEFT"], ["LMPOP", "2", "nol", "s", "LEFT"],
        ["BLPOP", "s", "0"], ["BLPOP", "nol", "s", "0"], ["BRPOP", "s", "x"],
        ["BLMOVE", "s", "d", "LEFT", "LEFT", "0"], ["BRPOPLPUSH", "s", "d", "0"],
        ["BLMPOP", "0", "1", "s", "LEFT"], ["TYPE", "s"], ["GET", "s"],
        ["RPUSH", "l", "a"], ["LMOVE", "l", "s", "LEFT", "LEFT"], ["RPOPLPUSH", "l", "s"],
        ["BLMOVE", "l", "s", "LEFT", "RIGHT", "0"], ["LRANGE", "l", "0", "-1"],
        ["LMOVE", "nol", "s", "LEFT", "LEFT"], ["GET", "l"], ["INCR", "l"], ["APPEND", "l", "x"],
    ])  # fmt: skip
    arity = [
        ["LPUSH"], ["LPUSH", "l"], ["RPUSH", "l"], ["LPUSHX", "l"], ["RPUSHX", "l"], ["LPOP"],
        ["RPOP"], ["LLEN"], ["LLEN", "a", "b"], ["LRANGE", "l", "0"],
        ["LRANGE", "l", "0", "1", "2"], ["LINDEX", "l"], ["LSET", "l", "0"],
        ["LINSERT", "l", "BEFORE", "a"], ["LREM", "l", "0"], ["LTRIM", "l", "0"], ["LPOS", "l"],
        ["LMOVE", "a", "b", "LEFT"], ["RPOPLPUSH", "a"], ["LMPOP", "1", "a"], ["BLPOP", "a"],
        ["BRPOP", "a"], ["BLMOVE", "a", "b", "LEFT", "LEFT"], ["BRPOPLPUSH", "a", "b"],
        ["BLMPOP", "0", "1", "a"], ["blpop"], ["LpUsH", "x"],
    ]  # fmt: skip
    check(raw, arity)


# -- indexes and ranges ------------------------------------------------------------------------


def test_lrange_lindex_lset(raw: RawPair) -> None:
    indexes = ["0", "1", "4", "5", "6", "-1", "-5", "-6", "-100", "100", *BIG]
    commands: list[Command] = [["RPUSH", "l", "a", "b", "c", "d", "e"]]
    for start in indexes:
        commands.append(["LINDEX", "l", start])
        for end in indexes:
            commands.append(["LRANGE", "l", start, end])
    commands += [
        ["LRANGE", "l", "x", "1"], ["LRANGE", "l", "0", "1.0"], ["LRANGE", "missing", "0", "-1"],
        ["LRANGE", "missing", "x", "-1"], ["LINDEX", "missing", "0"], ["LINDEX", "missing", "x"],
        ["LINDEX", "l", "x"], ["LINDEX", "l", " 1"],
        ["LSET", "l", "0", "A"], ["LSET", "l", "-1", "E"], ["LSET", "l", "2", ""],
        ["LSET", "l", "5", "x"], ["LSET", "l", "-6", "x"], ["LSET", "l", str(LLONG_MAX), "x"],
        ["LSET", "l", "x", "y"], ["LSET", "missing", "0", "x"], ["LSET", "missing", "x", "x"],
        ["LRANGE", "l", "0", "-1"], ["EXISTS", "missing"],
    ]  # fmt: skip
    check(raw, commands)


def test_linsert_lrem_ltrim(raw: RawPair) -> None:
    check(raw, [
        ["RPUSH", "l", "a", "b", "a", "c", "a"],
        ["LINSERT", "l", "BEFORE", "a", "x"], ["LINSERT", "l", "after", "a", "y"],
        ["LINSERT", "l", "AFTER", "c", "z"], ["LINSERT", "l", "BEFORE", "nope", "q"],
        ["LINSERT", "l", "SIDEWAYS", "a", "q"], ["LINSERT", "l", "BEFORE\x00x", "a", "w"],
        ["LINSERT", "missing", "BEFORE", "a", "x"], ["LINSERT", "missing", "BOGUS", "a", "x"],
        ["LRANGE", "l", "0", "-1"],
        ["LREM", "l", "1", "a"], ["LRANGE", "l", "0", "-1"], ["LREM", "l", "-1", "a"],
        ["LRANGE", "l", "0", "-1"], ["LREM", "l", "0", "nothing"], ["LREM", "l", "0", "a"],
        ["LRANGE", "l", "0", "-1"], ["LREM", "l", "x", "a"], ["LREM", "missing", "1", "a"],
        ["LREM", "missing", "x", "a"], ["RPUSH", "r", "v", "w", "v", "v", "w", "v"],
        ["LREM", "r", str(LLONG_MIN), "v"], ["LRANGE", "r", "0", "-1"],
        ["LREM", "r", str(LLONG_MAX), "w"], ["EXISTS", "r"],
        ["RPUSH", "r", "v", "w", "v", "v", "w", "v"], ["LREM", "r", "-2", "v"],
        ["LRANGE", "r", "0", "-1"], ["LREM", "r", "2", "v"], ["LRANGE", "r", "0", "-1"],
        ["LTRIM", "missing", "0", "1"], ["LTRIM", "missing", "x", "1"], ["LTRIM", "l", "x", "1"],
        ["LTRIM", "l", "0", "y"], ["RPUSH", "t", *"abcdefghij"], ["LTRIM", "t", "1", "-2"],
        ["LRANGE", "t", "0", "-1"], ["LTRIM", "t", "-3", "100"], ["LRANGE", "t", "0", "-1"],
        ["LTRIM", "t", "0", "0"], ["LRANGE", "t", "0", "-1"], ["LTRIM", "t", "1", "0"],
        ["EXISTS", "t"], ["RPUSH", "t", *"abcdefghij"], ["LTRIM", "t", "5", "2"], ["EXISTS", "t"],
        ["RPUSH", "t", *"abcdefghij"], ["LTRIM", "t", str(LLONG_MIN), str(LLONG_MAX)],
        ["LLEN", "t"], ["LTRIM", "t", "-100", "-8"], ["LRANGE", "t", "0", "-1"],
        ["LTRIM", "t", "100", "200"], ["EXISTS", "t"],
    ])  # fmt: skip


def test_lpos(raw: RawPair) -> None:
    check(raw, [
        ["RPUSH", "l", "a", "b", "c", "1", "2", "3", "c", "c"],
        ["LPOS", "l", "c"], ["LPOS", "l", "x"], ["LPOS", "missing", "c"],
        ["LPOS", "missing", "c", "COUNT", "0"], ["LPOS", "missing", "c", "RANK", "0"],
        ["LPOS", "l", "c", "RANK", "2"], ["LPOS", "l", "c", "RANK", "-1"],
        ["LPOS", "l", "c", "RANK", "-3"], ["LPOS", "l", "c", "RANK", "-4"],
        ["LPOS", "l", "c", "RANK", "4"], ["LPOS", "l", "c", "COUNT", "0"],
        ["LPOS", "l", "c", "COUNT", "2"], ["LPOS", "l", "c", "COUNT", "2", "RANK", "2"],
        ["LPOS", "l", "c", "COUNT", "0", "RANK", "-1"],
        ["LPOS", "l", "c", "COUNT", "1", "RANK", "-2"],
        ["LPOS", "l", "x", "COUNT", "3"], ["LPOS", "l", "c", "MAXLEN", "3"],
        ["LPOS", "l", "c", "MAXLEN", "2"], ["LPOS", "l", "c", "COUNT", "0", "MAXLEN", "7"],
        ["LPOS", "l", "c", "RANK", "-1", "MAXLEN", "1"], ["LPOS", "l", "c", "RANK", "0"],
        ["LPOS", "l", "c", "RANK", "x"], ["LPOS", "l", "c", "COUNT", "-1"],
        ["LPOS", "l", "c", "COUNT", "x"], ["LPOS", "l", "c", "MAXLEN", "-1"],
        ["LPOS", "l", "c", "MAXLEN", "1.5"], ["LPOS", "l", "c", "RANK"],
        ["LPOS", "l", "c", "BOGUS"], ["LPOS", "l", "c", "COUNT", "1", "BOGUS", "1"],
        ["LPOS", "l", "c", "count", "1", "rank", "1"],
        ["LPOS", "l", "c", "RANK", str(LLONG_MIN)], ["LPOS", "l", "c", "RANK", str(LLONG_MAX)],
        ["LPOS", "l", "c", "RANK", str(LLONG_MIN), "COUNT", "2"],
        ["LPOS", "l", "c", "RANK", str(LLONG_MIN), "COUNT", "0"],
        ["LPOS", "l", "c", "COUNT", str(LLONG_MAX)],
        ["LPOS", "l", "c", "RANK", "1", "RANK", "-1"],
        ["LPOS", "l", "c", "RANK", "0", "COUNT", "-1"],
        ["LPOS", "l", "c", "COUNT", "-1", "RANK", "0"],
        ["LPOS", "missing", "c", "RANK", "0"], ["LPOS", "missing", "c", "BOGUS"],
    ])  # fmt: skip


# -- moving between lists --------------------------------------------------------------------------


def test_lmove_rpoplpush_lmpop(raw: RawPair) -> None:
    check(raw, [
        ["RPUSH", "a", "1", "2", "3"],
        ["LMOVE", "a", "b", "LEFT", "RIGHT"], ["LMOVE", "a", "b", "right", "left"],
        ["LRANGE", "a", "0", "-1"], ["LRANGE", "b", "0", "-1"],
        ["LMOVE", "a", "a", "LEFT", "RIGHT"], ["LRANGE", "a", "0", "-1"],
        ["LMOVE", "a", "b", "LEFT", "LEFT"], ["EXISTS", "a"], ["LRANGE", "b", "0", "-1"],
        ["LMOVE", "missing", "b", "LEFT", "LEFT"], ["LMOVE", "b", "c", "UP", "LEFT"],
        ["LMOVE", "b", "c", "LEFT", "DOWN"], ["LMOVE", "missing", "c", "UP", "LEFT"],
        ["RPOPLPUSH", "b", "c"], ["RPOPLPUSH", "b", "b"], ["LRANGE", "b", "0", "-1"],
        ["RPOPLPUSH", "missing", "c"], ["RPUSH", "one", "x"], ["RPOPLPUSH", "one", "one"],
        ["LRANGE", "one", "0", "-1"],
        ["RPUSH", "m1", "a", "b", "c"], ["RPUSH", "m2", "x", "y"],
        ["LMPOP", "2", "nol", "m1", "LEFT"], ["LMPOP", "2", "m1", "m2", "RIGHT", "COUNT", "10"],
        ["EXISTS", "m1"], ["LMPOP", "3", "m1", "nol", "m2", "left", "count", "1"],
        ["LMPOP", "1", "nol", "LEFT"], ["LMPOP", "1", "m2", "LEFT", "COUNT", str(LLONG_MAX)],
        ["LMPOP", "0", "m2", "LEFT"], ["LMPOP", "-1", "m2", "LEFT"], ["LMPOP", "x", "m2", "LEFT"],
        ["LMPOP", "2", "m2", "LEFT"], ["LMPOP", "3", "m2", "LEFT"], ["LMPOP", "1", "m2", "UP"],
        ["LMPOP", "1", "m2", "LEFT", "COUNT"], ["LMPOP", "1", "m2", "LEFT", "COUNT", "0"],
        ["LMPOP", "1", "m2", "LEFT", "COUNT", "-1"], ["LMPOP", "1", "m2", "LEFT", "COUNT", "x"],
        ["LMPOP", "1", "m2", "LEFT", "COUNT", "1", "COUNT", "1"],
        ["LMPOP", "1", "m2", "LEFT", "BOGUS"], ["LMPOP", "1", "m2", "LEFT", "COUNT", "0", "BOGUS"],
        ["LMPOP", "2147483648", "m2", "LEFT"], ["LMPOP", "1", "m2", "LEFT\x00x"],
    ])  # fmt: skip


# -- the blocking commands where they do not block -------------------------------------------------


def test_blocking_commands_with_elements_and_bad_arguments(raw: RawPair) -> None:
    check(raw, [
        ["RPUSH", "l", "a", "b", "c", "d", "e"], ["RPUSH", "m", "x"],
        ["BLPOP", "nol", "l", "0"], ["BRPOP", "nol", "l", "m", "1.5"], ["BLPOP", "m", "l", "0"],
        ["EXISTS", "m"], ["BLMOVE", "l", "m", "LEFT", "RIGHT", "0"],
        ["BRPOPLPUSH", "l", "m", "0"], ["LRANGE", "m", "0", "-1"],
        ["BLMPOP", "0", "2", "nol", "l", "RIGHT", "COUNT", "5"], ["EXISTS", "l"],
        ["BLMPOP", "0.5", "1", "m", "LEFT"], ["RPUSH", "m", "1", "2", "3", "4"],
        ["LRANGE", "m", "0", "-1"],
        ["BLPOP", "m", "-1"], ["BLPOP", "m", "abc"], ["BLPOP", "m", ""], ["BLPOP", "m", " 1"],
        ["BLPOP", "m", "nan"], ["BLPOP", "m", "inf"], ["BLPOP", "m", "-inf"],
        ["BLPOP", "m", "1e30"], ["BLPOP", "m", "9223372036854776"], ["BLPOP", "m", "1e16"],
        ["BLPOP", "m", "0x10"], ["BLPOP", "m", "1e-400"], ["BLPOP", "m", "-0.0001"],
        ["BRPOP", "m", "-1"], ["BLMOVE", "m", "n", "LEFT", "LEFT", "-1"],
        ["BLMOVE", "m", "n", "UP", "LEFT", "-1"], ["BLMOVE", "m", "n", "LEFT", "UP", "x"],
        ["BLMOVE", "m", "n", "LEFT", "LEFT", "x"], ["BRPOPLPUSH", "m", "n", "x"],
        ["BLMPOP", "x", "1", "m", "LEFT"], ["BLMPOP", "-1", "1", "m", "LEFT"],
        ["BLMPOP", "-1", "0", "m", "LEFT"], ["BLMPOP", "-1", "1", "m", "UP"],
        ["BLMPOP", "-1", "2", "m", "LEFT"], ["BLMPOP", "-1", "1", "m", "LEFT", "COUNT", "0"],
        ["BLMPOP", "0", "1", "m", "LEFT", "COUNT", "x"], ["BLMPOP", "0", "x", "m", "LEFT"],
        ["LRANGE", "m", "0", "-1"],
    ])  # fmt: skip


def test_blocking_commands_inside_multi_answer_at_once(raw: RawPair) -> None:
    """Inside MULTI/EXEC a blocking command on empty keys answers its nil (a null bulk for
    BLMOVE/BRPOPLPUSH, a null array for the others), and serves a list that has elements."""
    check(raw, [
        ["MULTI"], ["BLPOP", "nol", "0"], ["BRPOP", "nol", "nol2", "10"],
        ["BLMOVE", "nol", "d", "LEFT", "LEFT", "0"], ["BRPOPLPUSH", "nol", "d", "0"],
        ["BLMPOP", "0", "1", "nol", "LEFT"], ["RPUSH", "q", "1", "2", "3"], ["BLPOP", "q", "0"],
        ["BLMOVE", "q", "d", "LEFT", "LEFT", "0"], ["BLMPOP", "0", "1", "q", "RIGHT", "COUNT", "3"],
        ["BLPOP", "q", "0"], ["LRANGE", "d", "0", "-1"], ["EXEC"],
        ["MULTI"], ["BLPOP", "nol", "-1"], ["EXEC"],
        ["MULTI"], ["BLPOP", "nol", "0"], ["BLMOVE", "nol", "d", "LEFT", "LEFT", "0"], ["EXEC"],
    ])  # fmt: skip


# -- encodings, WATCH, the command table ----------------------------------------------------------


def test_type_encoding_refcount_and_copy(raw: RawPair) -> None:
    check(raw, [
        ["RPUSH", "l", "a", "b"], ["TYPE", "l"], ["OBJECT", "ENCODING", "l"],
        ["OBJECT", "REFCOUNT", "l"], ["RPUSH", "big", *[str(i) * 50 for i in range(300)]],
        ["OBJECT", "ENCODING", "big"], ["RPUSH", "long", "x" * 100000],
        ["OBJECT", "ENCODING", "long"], ["COPY", "l", "c"], ["RPUSH", "c", "z"],
        ["LRANGE", "l", "0", "-1"], ["LRANGE", "c", "0", "-1"], ["RENAME", "c", "r"],
        ["LRANGE", "r", "0", "-1"], ["SCAN", "0", "TYPE", "list", "MATCH", "lon*"],
        ["SCAN", "0", "TYPE", "string", "MATCH", "lon*"],
        ["SET", "l", "string now"], ["TYPE", "l"], ["DEL", "r", "big", "long"],
    ])  # fmt: skip


def test_watch_sees_list_changes(raw: RawPair, oracle_server: RedisServer, memlog: Memlog) -> None:
    """A change in place (LPUSH, LSET, even an LTRIM that trims nothing, as Redis signals it)
    aborts the EXEC of a client watching the key."""
    for change in (["RPUSH", "w", "x"], ["LSET", "w", "0", "y"], ["LTRIM", "w", "0", "-1"],
                   ["LPOP", "w"]):  # fmt: skip
        others = [RawConnection(port) for port in (oracle_server.port, memlog.shim_ports[0])]
        try:
            check(raw, [["RPUSH", "w", "seed"], ["WATCH", "w"]])
            compare_raw(others[0], others[1], [change])
            check(raw, [["MULTI"], ["LLEN", "w"], ["EXEC"], ["DEL", "w"]])
        finally:
            for conn in others:
                conn.close()


def test_command_docs_of_list_commands_match_redis(raw: RawPair) -> None:
    """Group and since as Redis declares them (COMMAND INFO is compared for every command in
    test_server_commands.py); summaries and complexities are our own words."""
    load_all()
    names = [name for name, spec in COMMANDS.items() if spec.group == "list"]
    assert len(names) == 22, names
    for name in names:
        want, got = (conn.call("COMMAND", "DOCS", name) for conn in raw)
        for field in (b"group", b"since"):
            assert _doc_field(got, field) == _doc_field(want, field), (name, field)


def _doc_field(reply: bytes, field: bytes) -> bytes:
    """The value after a field name in a raw COMMAND DOCS reply (a bulk string)."""
    rest = reply.split(b"$%d\r\n%s\r\n" % (len(field), field), 1)[1]
    return rest.split(b"\r\n")[1]


# -- a random walk --------------------------------------------------------------------------------


def test_random_list_commands_match_redis(raw: RawPair) -> None:
    seed = int(os.environ.get("LISTS_SEED", random.randrange(2**32)))
    print(f"test_random_list_commands_match_redis seed {seed} (rerun: LISTS_SEED={seed})")
    rng = random.Random(seed)
    keys = ["r0", "r1", "r2"]
    values = ["a", "b", "c", "", "1", "-2", "x" * 70]
    index = ["0", "1", "2", "-1", "-2", "-3", "5", "-9", "x"]

    def step() -> list[Command]:
        k, v = rng.choice(keys), rng.choice(values)
        if rng.random() < 0.1:  # only where it cannot block: inside MULTI
            return [["MULTI"], ["BLPOP", k, rng.choice(keys), "0"], ["EXEC"]]
        return [rng.choice([
            ["LPUSH", k, v, rng.choice(values)], ["RPUSH", k, v], ["LPUSHX", k, v],
            ["RPUSHX", k, v, v], ["LPOP", k], ["RPOP", k, rng.choice(["0", "1", "3"])],
            ["LLEN", k], ["LRANGE", k, rng.choice(index), rng.choice(index)],
            ["LINDEX", k, rng.choice(index)], ["LSET", k, rng.choice(index), v],
            ["LINSERT", k, rng.choice(["BEFORE", "AFTER"]), rng.choice(values), v],
            ["LREM", k, rng.choice(["0", "1", "-1", "2"]), v],
            ["LTRIM", k, rng.choice(index), rng.choice(index)],
            ["LPOS", k, v, "RANK", rng.choice(["1", "-1", "2"]), "COUNT", rng.choice(["0", "2"])],
            ["LMOVE", k, rng.choice(keys), rng.choice(["LEFT", "RIGHT"]),
             rng.choice(["LEFT", "RIGHT"])],
            ["RPOPLPUSH", k, rng.choice(keys)],
            ["LMPOP", "2", k, rng.choice(keys), rng.choice(["LEFT", "RIGHT"]), "COUNT", "2"],
            ["SET", k, v] if rng.random() < 0.05 else ["TYPE", k],
        ])]  # fmt: skip

    commands: list[Command] = []
    for _ in range(250):
        commands += step()
    commands += [["LRANGE", k, "0", "-1"] for k in keys]
    check(raw, commands)


# -- units ----------------------------------------------------------------------------------------


def test_index_range_unit() -> None:
    value = ListValue(b"%d" % i for i in range(10))
    for start in range(-12, 12):
        for end in range(-12, 12):
            bounds = index_range(len(value), start, end)
            first = start + 10 if start < 0 else start
            last = end + 10 if end < 0 else end
            want = [b"%d" % i for i in range(10) if max(first, 0) <= i <= last]
            got = value.span(*bounds) if bounds is not None else []
            assert got == want, (start, end)
