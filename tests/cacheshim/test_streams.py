"""Streams (issue 20) against redis-server 7.0: replies and errors of every stream command,
byte for byte, in RESP2 and RESP3; blocked XREAD/XREADGROUP woken through another shim;
two shims under a random stream workload ending at one digest that equals redis-server's;
RDB and DUMP both ways with redis-server (the same node listpacks, so DUMP is the same bytes).

Replies that show times (idle times, delivery and seen times) are left out of the byte
comparisons: they depend on each server's clock. Randomized tests print their seed
(rerun: STREAM_SEED=<seed>).
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import subprocess
import threading
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import pytest
import redis

from cacheshim.apply import Applier, run
from cacheshim.commands import Ctx, load_all
from cacheshim.protocol.resp import Error
from cacheshim.snapshot import model
from cacheshim.snapshot.rdb import (
    dump_payload,
    load_payload,
    read_rdb,
    restore,
    snapshot_state,
    write_rdb,
)
from cacheshim.snapshot.redisdigest import redis_digest
from cacheshim.snapshot.tools import import_commands
from cacheshim.types.keyspace import Keyspace
from cacheshim.v1 import record_pb2
from tests.cacheshim.applydiff import ApplyDiff
from tests.cacheshim.harness import (
    Memlog,
    RedisServer,
    arity_probes,
    client,
    execute,
    play_beside_redis,
    wait_until,
)
from tests.cacheshim.rawresp import RawConnection, compare_raw, flushed_pair, without_callbacks

Command = Sequence[bytes | str | int]
RawPair = tuple[RawConnection, RawConnection]


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def raw(
    oracle_server: RedisServer, memlog: Memlog, request: pytest.FixtureRequest
) -> Iterator[RawPair]:
    yield from flushed_pair(oracle_server.port, memlog.shim_ports[0], request.param)


def _commands(text: str) -> list[Command]:
    return [line.split() for line in text.strip().splitlines() if line.strip()]


ENTRIES = _commands("""
XADD s 1-1 a 1 b 2
XADD s 1-2 a 3 b 4
XADD s 1-* a 5
XADD s 5 c 6
XADD s 5-* c 7
XADD s 0-0 a 1
XADD s 0-* a 1
XADD s 1-1 a 1
XADD s 9 a
XADD s MAXLEN
XADD s MAXLEN ~ 10 20-1 x y
XADD s MAXLEN = 10 21-1 x y
XADD s MAXLEN -1 22-1 x y
XADD s MAXLEN x 22-1 x y
XADD s MINID 1 MAXLEN 2 30 x y
XADD s LIMIT 10 30 x y
XADD s MAXLEN 3 LIMIT 10 30 x y
XADD s MAXLEN ~ 3 LIMIT -1 30 x y
XADD s NOMKSTREAM 40 x y
XADD nokey NOMKSTREAM 40 x y
XADD s 1-abc x y
XADD s + x y
XADD s 18446744073709551615-18446744073709551615 x y
XADD s 18446744073709551615-* x y
XLEN s
XLEN nokey
XRANGE s - +
XRANGE s - + COUNT 2
XRANGE s - + COUNT 0
XRANGE s - + COUNT -1
XRANGE nokey - + COUNT 0
XRANGE s (1-1 +
XRANGE s (1 (5
XRANGE s 5 1
XRANGE s - + COUNT
XRANGE s - + FOO 1
XRANGE s (- +
XRANGE s abc +
XRANGE s (18446744073709551615-18446744073709551615 +
XRANGE s - (0-0
XREVRANGE s + -
XREVRANGE s + - COUNT 1
XREVRANGE s (5 -
XDEL s 1-2
XDEL s 1-2 1-1 99
XDEL s abc
XDEL nokey 1
XRANGE s - +
XTRIM s MAXLEN 1
XTRIM s
XTRIM s LIMIT 1
XTRIM s MAXLEN ~ 0 LIMIT 1
XTRIM s MAXLEN 0 LIMIT 1
XTRIM s FOO 1
XTRIM nokey MAXLEN 0
XTRIM s MINID 1
XRANGE s - +
SET str x
XADD str 1 a b
XRANGE str - +
XLEN str
XDEL str 1
XTRIM str MAXLEN 1
XSETID s 1
XSETID s 100-5
XSETID s 200 ENTRIESADDED 1
XSETID s 200 ENTRIESADDED 100 MAXDELETEDID 300
XSETID s 200 ENTRIESADDED 100 MAXDELETEDID 150
XSETID nokey 5
XSETID str 5
XSETID s 200 FOO
XSETID s 200 ENTRIESADDED -1
XADD s 200-5 a b
XINFO STREAM s
TYPE s
OBJECT ENCODING s
XADD e MAXLEN 0 1 a b
XLEN e
EXISTS e
XINFO STREAM e
XADD n 1-1 12 -5 99999999999 x
XRANGE n - +
""")

READS = _commands("""
XADD s 1-1 a 1 b 2
XADD s 2-1 a 3 b 4
XADD s 3-1 c 5
XADD t 1-5 x y
XREAD STREAMS s 0
XREAD COUNT 1 STREAMS s t 0 0
XREAD STREAMS s t $ 1-4
XREAD STREAMS s t 0
XREAD STREAMS s t > >
XREAD GROUP g c STREAMS s 0
XREAD NOACK STREAMS s 0
XREAD STREAMS
XREAD STREAMS s
XREAD COUNT x STREAMS s 0
XREAD FOO STREAMS s 0
XREAD STREAMS nokey 0
XREAD STREAMS s abc
XREAD STREAMS s 3-1
XREAD BLOCK x STREAMS s 0
XREAD BLOCK -1 STREAMS s 0
XREAD BLOCK 10 STREAMS s 0
XREADGROUP STREAMS s >
XREADGROUP GROUP g c STREAMS s >
SET str x
XREAD STREAMS str 0
XREADGROUP GROUP g c STREAMS str >
""")
SCRIPT_READS: list[Command] = [
    ["EVAL", "return redis.call('xread', 'BLOCK', '0', 'STREAMS', 's', '$')", "0"],
    ["EVAL", "return redis.call('xread', 'COUNT', '1', 'STREAMS', 's', '0')", "0"],
    ["EVAL_RO", "return redis.call('xread', 'COUNT', '1', 'STREAMS', 's', '0')", "0"],
    ["EVAL_RO", "return redis.call('xread', 'BLOCK', '0', 'STREAMS', 's', '$')", "0"],
]

GROUPS = _commands("""
XADD s 1-1 a 1 b 2
XADD s 2-1 a 3 b 4
XADD s 3-1 c 5
XGROUP CREATE s g 0
XGROUP CREATE s g 0
XGROUP CREATE nokey g 0
XGROUP CREATE nokey g2 $ MKSTREAM
XGROUP CREATE s g2 $ ENTRIESREAD 2
XGROUP CREATE s g3 $ ENTRIESREAD -2
XGROUP CREATE s g3 $ ENTRIESREAD x
XGROUP CREATE s g3 $ FOO
XGROUP CREATE s g3 abc
XGROUP CREATE s g4 -
XINFO GROUPS s
XREADGROUP GROUP g c STREAMS s >
XREADGROUP GROUP g c COUNT 1 STREAMS s 0
XREADGROUP GROUP g c STREAMS s $
XREADGROUP GROUP g c2 STREAMS s 0
XREADGROUP GROUP nog c STREAMS s >
XREADGROUP GROUP g c STREAMS s nokey > >
XPENDING s g
XPENDING s g - + 0
XPENDING s g - + 10 nobody
XPENDING s g IDLE 0 - +
XPENDING s g - +
XPENDING s g - + x
XPENDING s g IDLE x - + 1
XPENDING s nog
XPENDING nokey g
XPENDING s g - + 1 c a b c
XACK s g 1-1
XACK s g 1-1 2-1 9-9
XACK s g abc
XACK s nog abc
XACK nokey g abc
XPENDING s g
XINFO GROUPS s
XINFO CONSUMERS s nog
XINFO CONSUMERS nokey g
XINFO STREAM nokey
XINFO STREAM s FOO
XINFO STREAM s FULL COUNT
XINFO STREAM s FULL COUNT x
XINFO FOO s
XINFO
XGROUP SETID s g 0
XGROUP SETID s g $ ENTRIESREAD 3
XGROUP SETID s g +
XGROUP SETID s nog 0
XGROUP SETID nokey g 0
XGROUP SETID s g 0 FOO
XGROUP SETID s g 0 MKSTREAM
XINFO GROUPS s
XGROUP CREATECONSUMER s g c9
XGROUP CREATECONSUMER s g c9
XGROUP CREATECONSUMER s nog c9
XGROUP DELCONSUMER s g c
XGROUP DELCONSUMER s g nobody
XGROUP DESTROY s g2
XGROUP DESTROY s g2
XGROUP DESTROY nokey g2
XGROUP FOO s g
XGROUP CREATE s
XINFO GROUPS s
XREADGROUP GROUP g c NOACK STREAMS s >
XGROUP SETID s g 0
XREADGROUP GROUP g c NOACK COUNT 2 STREAMS s >
XINFO GROUPS s
XDEL s 2-1
XINFO GROUPS s
XREADGROUP GROUP g c STREAMS s 0
XGROUP SETID s g 0
XREADGROUP GROUP g d STREAMS s >
XREADGROUP GROUP g d STREAMS s 0
XCLAIM s g e 0 1-1
XCLAIM s g e 0 1-1 2-1 3-1 JUSTID
XCLAIM s g e 0 1-1 FORCE RETRYCOUNT 5
XCLAIM s g e 0 1-1 FOO
XCLAIM s g e x 1-1
XCLAIM s g e 0 1-1 IDLE x
XCLAIM s g e 0 1-1 TIME x
XCLAIM s g e 0 1-1 RETRYCOUNT x
XCLAIM s g e 0 1-1 LASTID x
XCLAIM s g e 0 1-1 LASTID 50
XCLAIM s g e 3600000 1-1
XINFO GROUPS s
XCLAIM s nog e 0 1-1
XCLAIM nokey g e 0 1-1
XAUTOCLAIM s g f 0 0
XAUTOCLAIM s g f 0 0 COUNT 1
XAUTOCLAIM s g f 0 0 COUNT 0
XAUTOCLAIM s g f 0 0 COUNT x
XAUTOCLAIM s g f 0 0 JUSTID
XAUTOCLAIM s g f 0 0 FOO
XAUTOCLAIM s g f x 0
XAUTOCLAIM s g f 0 (18446744073709551615-18446744073709551615
XAUTOCLAIM s nog f 0 0
XAUTOCLAIM s g f 0 0 COUNT 8070450532247928833
XAUTOCLAIM s g f 3600000 0
XDEL s 1-1
XAUTOCLAIM s g f 0 0 COUNT 1
XAUTOCLAIM s g f 0 0
XLEN s
SET str x
XGROUP CREATE str g 0
XINFO STREAM str
XACK str g 1
XPENDING str g
XCLAIM str g c 0 1
XAUTOCLAIM str g c 0 0
XINFO GROUPS str
""")


@pytest.mark.parametrize(
    "commands", [ENTRIES, READS + SCRIPT_READS, GROUPS], ids=["entries", "reads", "groups"]
)
def test_stream_commands_match_redis(raw: RawPair, commands: list[Command]) -> None:
    compare_raw(*raw, commands)


def test_stream_arity_matches_redis(raw: RawPair) -> None:
    names = [
        "xadd", "xrange", "xrevrange", "xlen", "xdel", "xtrim", "xsetid", "xread",
        "xreadgroup", "xack", "xpending", "xclaim", "xautoclaim",
    ]  # fmt: skip
    compare_raw(*raw, arity_probes(names))  # type: ignore[arg-type]
    subcommands = _commands("""
XGROUP CREATE s g
XGROUP SETID s g
XGROUP DESTROY s
XGROUP DESTROY s g x
XGROUP CREATECONSUMER s g
XGROUP DELCONSUMER s g
XINFO STREAM
XINFO GROUPS
XINFO GROUPS s x
XINFO CONSUMERS s
COMMAND GETKEYS XREAD COUNT 2 STREAMS a b 1 2
COMMAND GETKEYS XREADGROUP GROUP g c STREAMS a >
COMMAND GETKEYS XREAD STREAMS a
COMMAND GETKEYS XGROUP CREATE s g $
""")
    compare_raw(*raw, subcommands)


def test_node_layout_decides_approximate_trims_as_in_redis(raw: RawPair) -> None:
    """ "~" trims remove whole nodes; the node size is a replicated setting."""
    commands: list[Command] = [["CONFIG", "SET", "stream-node-max-entries", "10"]]
    commands += [["XADD", "s", f"{i + 1}-1", "xitem", "v"] for i in range(100)]
    commands += _commands("""
XADD s MAXLEN ~ 55 LIMIT 30 200-1 xitem v
XLEN s
XADD s MAXLEN ~ 55 LIMIT 30 201-1 xitem v
XLEN s
XTRIM s MAXLEN ~ 0 LIMIT 1
XTRIM s MINID ~ 150
XINFO STREAM s
CONFIG GET stream-node-max-entries
CONFIG SET stream-node-max-entries 100
""")
    commands += [["XADD", "b", f"{i + 1}-1", "f", "x" * (i % 90)] for i in range(160)]
    commands += _commands("""
XTRIM b MAXLEN ~ 70
XINFO STREAM b
""")
    try:
        compare_raw(*raw, commands)
    finally:
        for conn in raw:
            conn.call("CONFIG", "SET", "stream-node-max-entries", "100")


# -- blocking reads, woken through another shim -------------------------------------------------


def _in_thread(port: int, *args: object) -> tuple[threading.Thread, list[object]]:
    """Run a command on a connection of its own in a thread; its outcome lands in the list."""
    out: list[object] = []

    def run() -> None:
        conn = client(port)
        try:
            out.append(execute(conn, *args))
        except redis.ResponseError as exc:
            out.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _blocked_count(conn: redis.Redis) -> int:
    info = execute(conn, "INFO", "clients")
    assert isinstance(info, dict)
    count = info["blocked_clients"]
    assert isinstance(count, int)
    return count


def _after_blocked(conn: redis.Redis, count: int = 1) -> None:
    wait_until(lambda: _blocked_count(conn) >= count, 20, "a client blocked")


def test_blocked_readers_are_woken_through_another_shim(two_shims: Memlog) -> None:
    one, two = client(two_shims.shim_ports[0]), client(two_shims.shim_ports[1])
    execute(one, "FLUSHALL")
    execute(one, "XADD", "s", "1-1", "f", "v")
    thread, got = _in_thread(two_shims.shim_ports[0], "XREAD", "BLOCK", "0", "STREAMS", "s", "$")
    _after_blocked(one)
    execute(two, "XADD", "s", "2-1", "g", "w")
    thread.join(20)
    assert got == [[[b"s", [(b"2-1", {b"g": b"w"})]]]]

    execute(two, "XGROUP", "CREATE", "s", "grp", "$")
    args = ("XREADGROUP", "GROUP", "grp", "alice", "BLOCK", "0", "STREAMS", "s", ">")
    thread, got = _in_thread(two_shims.shim_ports[0], *args)
    _after_blocked(one)
    execute(two, "XADD", "s", "3-1", "h", "x")
    thread.join(20)
    assert got == [[[b"s", [(b"3-1", {b"h": b"x"})]]]]
    summary = execute(two, "XPENDING", "s", "grp")
    assert isinstance(summary, dict) and summary["pending"] == 1

    # The stream deleted, or the group destroyed: the reader hears it, on any shim.
    thread, got = _in_thread(two_shims.shim_ports[0], *args)
    _after_blocked(one)
    execute(two, "DEL", "s")
    thread.join(20)
    assert len(got) == 1 and str(got[0]) == "UNBLOCKED the stream key no longer exists"
    execute(two, "XGROUP", "CREATE", "s2", "grp", "$", "MKSTREAM")
    execute(one, "CONFIG", "RESETSTAT")
    args = ("XREADGROUP", "GROUP", "grp", "alice", "BLOCK", "0", "STREAMS", "s2", ">")
    thread, got = _in_thread(two_shims.shim_ports[0], *args)
    _after_blocked(one)
    execute(two, "XGROUP", "DESTROY", "s2", "grp")
    thread.join(20)
    assert len(got) == 1 and "no longer exists" in str(got[0])
    # As Redis counts it: the blocked call failed, and its NOGROUP is an error reply.
    assert one.info("errorstats")["errorstat_NOGROUP"] == {"count": 1}
    assert one.info("commandstats")["cmdstat_xreadgroup"]["failed_calls"] == 1

    # A timeout answers nil; an XADD that does not go past the waiting ID serves nobody.
    execute(two, "XADD", "s3", "5-1", "f", "v")
    raw_one = RawConnection(two_shims.shim_ports[0])
    assert raw_one.call("XREAD", "BLOCK", "50", "STREAMS", "s3", "$") == b"*-1\r\n"
    raw_one.close()
    one.close()
    two.close()


# -- a random workload on two shims, beside redis-server ----------------------------------------


def _ids(rng: random.Random, ms: int, count: int) -> list[str]:
    return [f"{rng.randint(1000, ms)}-{rng.randint(0, 3)}" for _ in range(count)]


def _random_stream_log(rng: random.Random, length: int) -> list[list[list[str]]]:
    """Stream writes with explicit IDs (automatic ones take each server's clock) over a few
    keys: adds with trims, deletes, groups, reads by groups, acks, claims; some records are
    MULTI/EXEC transactions."""
    log: list[list[list[str]]] = []
    ms = 1000
    for _ in range(length):
        key = rng.choice(["s1", "s2", "s3"])
        r = rng.random()
        if r < 0.5:
            ms += rng.choice([0, 1, 3])
            args = ["XADD", key]
            if rng.random() < 0.15:
                args += [rng.choice(["MAXLEN", "MINID"]), rng.choice(["~", "="])]
                args.append(str(rng.randint(20, 200)) if args[-2] == "MAXLEN" else str(ms - 50))
            args.append(f"{ms}-*" if rng.random() < 0.7 else f"{ms}-{rng.randint(0, 5)}")
            for field in rng.choice([["a"], ["a", "b"], ["x", "y", "z"], [str(rng.random())]]):
                args += [field, rng.choice(["v", "12", "-7", "x" * rng.randint(0, 80)])]
        elif r < 0.6:
            args = [
                "XDEL",
                key,
                *(f"{rng.randint(1000, ms)}-{rng.randint(0, 3)}" for _ in range(3)),
            ]
        elif r < 0.65:
            args = ["XTRIM", key, "MAXLEN", rng.choice(["~", "="]), str(rng.randint(0, 150))]
        elif r < 0.7:
            args = ["XGROUP", "CREATE", key, rng.choice(["g1", "g2"]), rng.choice(["0", "$"]),
                    "MKSTREAM"]  # fmt: skip
        elif r < 0.82:
            args = ["XREADGROUP", "GROUP", rng.choice(["g1", "g2"]), rng.choice(["c1", "c2"]),
                    "COUNT", str(rng.randint(1, 20)), "STREAMS", key,
                    rng.choice([">", ">", "0"])]  # fmt: skip
            if rng.random() < 0.2:
                args.insert(-3, "NOACK")
        elif r < 0.9:
            args = ["XACK", key, rng.choice(["g1", "g2"]), *_ids(rng, ms, 4)]
        elif r < 0.95:
            args = ["XAUTOCLAIM", key, rng.choice(["g1", "g2"]), rng.choice(["c1", "c3"]), "0",
                    "0", "COUNT", str(rng.randint(1, 10)), "JUSTID"]  # fmt: skip
        else:
            args = ["XCLAIM", key, rng.choice(["g1", "g2"]), "c3", "0",
                    *_ids(rng, ms, 3),
                    "JUSTID"]  # fmt: skip
        if rng.random() < 0.1:
            log.append([args, ["XLEN", key]])
        else:
            log.append([args])
    return log


def _state(conn: redis.Redis) -> list[object]:
    """What a stream holds that both servers must agree on (no times)."""
    state: list[object] = []
    for key in ("s1", "s2", "s3"):
        state.append(execute(conn, "XRANGE", key, "-", "+"))
        if execute(conn, "EXISTS", key):
            info = execute(conn, "XINFO", "STREAM", key)
            assert isinstance(info, list)
            pairs = dict(zip(info[::2], info[1::2], strict=True))
            del pairs[b"radix-tree-nodes"]  # an estimate here (streaminfo's doc)
            state.append(pairs)
            groups = execute(conn, "XINFO", "GROUPS", key)
            assert isinstance(groups, list)
            state.append(groups)
            for group in groups:
                name = group[1]
                state.append(execute(conn, "XPENDING", key, name))
                pending = execute(conn, "XPENDING", key, name, "-", "+", "1000")
                assert isinstance(pending, list)
                state.append([[p[0], p[1], p[3]] for p in pending])
    return state


def _redis_digest_of(conn: redis.Redis) -> str:
    """Redis's DEBUG DIGEST of what conn's server holds in db 0, from DUMP payloads."""
    keyspace = Keyspace()
    db = keyspace.dbs[0]
    keys = execute(conn, "KEYS", "*")
    assert isinstance(keys, list)
    for key in keys:
        payload = execute(conn, "DUMP", key)
        assert isinstance(key, bytes) and isinstance(payload, bytes)
        db.set(key, load_payload(payload, key), 0)  # type: ignore[arg-type]
    return redis_digest(keyspace)


def test_random_stream_workload_on_two_shims_ends_at_redis_servers_digest(
    two_shims: Memlog, oracle_server: RedisServer
) -> None:
    seed = int(os.environ.get("STREAM_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun: STREAM_SEED={seed})")
    rng = random.Random(seed)
    shims = [without_callbacks(client(p)) for p in two_shims.shim_ports[:2]]
    oracle = without_callbacks(client(oracle_server.port))
    log = _random_stream_log(rng, 400)
    play_beside_redis(shims, oracle, log, lambda conns: rng.choice(conns))
    expected = _redis_digest_of(oracle)
    assert expected != "0" * 40
    for conn in shims:
        assert _state(conn) == _state(oracle)
        assert _redis_digest_of(conn) == expected
    for conn in (*shims, oracle):
        conn.close()


# -- RDB and DUMP both ways with redis-server ----------------------------------------------------


DEBUG_ON = ("--enable-debug-command", "local")


def test_rdb_and_dump_round_trip_with_redis_server(tmp_path: Path) -> None:
    """The same writes on redis-server and in apply: DUMP is the same bytes (uncompressed),
    redis-server's RDB reads into the same Redis digest, memlog's RDB loads in
    redis-server with that digest and the same groups."""
    seed = int(os.environ.get("STREAM_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun: STREAM_SEED={seed})")
    log = [args for record in _random_stream_log(random.Random(seed), 600) for args in record]
    load_all()
    server = RedisServer(tmp_path / "a")
    server.start(DEBUG_ON)
    try:
        conn = without_callbacks(client(server.port))
        execute(conn, "CONFIG", "SET", "rdbcompression", "no")
        diff = ApplyDiff(server.port)
        for args in log:
            with contextlib.suppress(redis.ResponseError):
                execute(conn, *args)
            reply = diff.apply(args)
            assert not reply.startswith(b"-ERR memlog"), (args, reply)
        db = diff.keyspace.dbs[0]
        for key in (b"s1", b"s2", b"s3"):
            value = db.data.get(key)
            if value is not None and not value.groups:  # type: ignore[union-attr]
                assert execute(conn, "DUMP", key) == dump_payload(value)
        expected = execute(conn, "DEBUG", "DIGEST")
        assert isinstance(expected, bytes)
        assert redis_digest(diff.keyspace) == expected.decode()
        groups = {k: execute(conn, "XINFO", "GROUPS", k) for k in ("s1", "s2", "s3")}
        execute(conn, "SAVE")
        diff.close()
    finally:
        server.stop()
    with open(server.root / "dump.rdb", "rb") as inp:
        loaded = read_rdb(inp)
    assert redis_digest(loaded.keyspace) == expected.decode()
    for key in (b"s1", b"s2", b"s3"):
        mine, theirs = db.data.get(key), loaded.keyspace.dbs[0].data.get(key)
        if mine is not None:
            assert isinstance(theirs, model.Stream)
            assert sorted(theirs.groups) == sorted(mine.groups)  # type: ignore[union-attr]
    root = tmp_path / "b"
    root.mkdir()
    with open(root / "memlog.rdb", "wb") as out:
        write_rdb(diff.keyspace, out)
    checked = subprocess.run(["redis-check-rdb", str(root / "memlog.rdb")], capture_output=True)
    assert b"RDB looks OK" in checked.stdout, checked.stdout
    other = RedisServer(root)
    other.start((*DEBUG_ON, "--dbfilename", "memlog.rdb"))
    try:
        conn = without_callbacks(client(other.port))
        assert execute(conn, "DEBUG", "DIGEST") == expected
        for name, want in groups.items():
            assert execute(conn, "XINFO", "GROUPS", name) == want, name
    finally:
        other.stop()


def test_restore_refuses_nothing_redis_dumps(pair: tuple[redis.Redis, redis.Redis]) -> None:
    """DUMP from redis-server RESTOREs into memlog and back, groups and all."""
    oracle, subject = pair
    for args in _commands("""
XADD s 1-1 a 1
XADD s 2-1 a 2 b 3
XGROUP CREATE s g 0
XREADGROUP GROUP g c STREAMS s >
XDEL s 1-1
"""):
        execute(oracle, *args)
    payload = execute(oracle, "DUMP", "s")
    assert execute(subject, "RESTORE", "s", "0", payload) == b"OK"
    assert execute(subject, "XRANGE", "s", "-", "+") == execute(oracle, "XRANGE", "s", "-", "+")
    assert execute(subject, "XINFO", "GROUPS", "s") == execute(oracle, "XINFO", "GROUPS", "s")
    back = execute(subject, "DUMP", "s")
    assert execute(oracle, "RESTORE", "s2", "0", back) == b"OK"
    assert execute(oracle, "XPENDING", "s2", "g") == execute(oracle, "XPENDING", "s", "g")


# -- memlog snapshots: a restored shim goes on as the one it was taken from ---------------------


def _stream_record(args: Sequence[str], time_ms: int, proposal: int = 0) -> bytes:
    rec = record_pb2.Record(db=0, time_ms=time_ms, shim_id="s", proposal_id=proposal)
    rec.commands.add(args=[a.encode() for a in args])
    return rec.SerializeToString()


def test_snapshot_restores_streams_groups_node_limits_and_waiting_readers() -> None:
    """Apply a stream workload, snapshot it, restore into a fresh applier; then both apply
    the same records (trims, reads by groups, a served blocked reader) with the same
    replies and end at the same digest (which covers nodes, groups and PELs)."""
    seed = int(os.environ.get("STREAM_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun: STREAM_SEED={seed})")
    records = [args for record in _random_stream_log(random.Random(seed), 500) for args in record]
    load_all()
    applier = Applier()
    time_ms = 1_700_000_000_000
    applier.apply(1, _stream_record(["CONFIG", "SET", "stream-node-max-entries", "7"], time_ms))
    for args in records[:300]:
        time_ms += 3
        applier.apply(applier.applied_index + 1, _stream_record(args, time_ms))
    blocked = ["XREADGROUP", "GROUP", "g1", "w", "BLOCK", "0", "STREAMS", "s1", ">"]
    applier.apply(applier.applied_index + 1, _stream_record(["XGROUP", "CREATE", "s1", "g1", "$",
                                                             "MKSTREAM"], time_ms))  # fmt: skip
    applier.apply(applier.applied_index + 1, _stream_record(["XGROUP", "SETID", "s1", "g1", "$"],
                                                            time_ms))  # fmt: skip
    applier.apply(applier.applied_index + 1, _stream_record(blocked, time_ms, proposal=7))
    assert len(applier.blocked) == 1
    out = io.BytesIO()
    write_rdb(applier.keyspace, out, snapshot_state(applier))
    fresh = Applier()
    restore(fresh, read_rdb(io.BytesIO(out.getvalue())))
    assert fresh.keyspace.digest() == applier.keyspace.digest()
    assert fresh.keyspace.stream_node_max_entries == 7
    for args in [["XADD", "s1", "*", "new", "entry"], *records[300:]]:
        time_ms += 3
        payload = _stream_record(args, time_ms)
        index = applier.applied_index + 1
        assert fresh.apply(index, payload)[1] == applier.apply(index, payload)[1], args
        assert fresh.served == applier.served
    assert fresh.keyspace.digest() == applier.keyspace.digest()


def test_rdb_import_carries_streams_whole() -> None:
    """`memlog import` turns each key of an RDB file into commands: a stream becomes a
    RESTORE of its payload, so groups and pending entries come too."""
    load_all()
    source = Keyspace()
    for index, args in enumerate(
        [args for record in _random_stream_log(random.Random(5), 200) for args in record], 1
    ):
        run(Ctx(source, 0, 1_700_000_000_000 + index, index=index), [a.encode() for a in args])
    out = io.BytesIO()
    write_rdb(source, out)
    loaded = read_rdb(io.BytesIO(out.getvalue()))
    target = Keyspace()
    for index, (db, command) in enumerate(import_commands(loaded), 1):
        reply = run(Ctx(target, db, 1_700_000_000_000, index=index), command)
        assert not isinstance(reply, Error), (command[:2], reply)
    assert target.digest() == source.digest()


def _one_blocked(conn: RawConnection) -> bool:
    return b"blocked_clients:1" in conn.call("INFO", "clients")


@pytest.mark.parametrize("protocol", [2, 3])
def test_reader_blocked_on_two_streams_is_answered_for_the_first_one_fed(
    oracle_server: RedisServer, memlog: Memlog, protocol: int
) -> None:
    """As Redis 7.0: one MULTI feeds both streams, the reader gets the first one alone."""
    replies = []
    for port in (oracle_server.port, memlog.shim_ports[0]):
        reader, writer = RawConnection(port, protocol), RawConnection(port, protocol)
        writer.call("DEL", "s1", "s2")
        reader.send(["XREAD", "BLOCK", "0", "STREAMS", "s1", "s2", "$", "$"])
        wait_until(partial(_one_blocked, writer), 20, "a blocked reader")
        writer.send(["MULTI"], ["XADD", "s2", "1-1", "a", "b"], ["XADD", "s1", "2-1", "c", "d"])
        writer.send(["EXEC"])
        writer.replies(4)
        replies.append(reader.replies(1)[0])
        reader.close()
        writer.close()
    assert replies[1] == replies[0]
