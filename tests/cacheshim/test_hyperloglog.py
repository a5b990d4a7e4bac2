"""HyperLogLog commands (issue 20) against redis-server 7.0: the same counts, errors, and the
same bytes in the key (GET) after the same commands, in RESP2 and RESP3.

The HLL is Redis's own representation, so the randomized tests compare GET after every
write: sparse opcodes as they split and merge, the promotion to dense past 3000 bytes or a
register above 32. PFCOUNT is a read here and does not cache the count in the header as
redis-server does: where PFCOUNT ran, those 8 bytes are left out of the comparison. Seeds
are printed.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from cacheshim.apply import run
from cacheshim.commands import Ctx, load_all
from cacheshim.protocol.resp import encode
from cacheshim.snapshot.rdb import read_rdb, write_rdb
from cacheshim.snapshot.redisdigest import redis_digest
from cacheshim.types import hll
from cacheshim.types.hll import Hll
from cacheshim.types.keyspace import Keyspace
from tests.cacheshim.applydiff import ApplyDiff
from tests.cacheshim.harness import Memlog, RedisServer, arity_probes
from tests.cacheshim.rawresp import RawConnection, compare_raw, flushed_pair

Command = Sequence[bytes | str | int]
RawPair = tuple[RawConnection, RawConnection]

HEADER = b"HYLL\x01\x00\x00\x00" + bytes(8)


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def raw(
    oracle_server: RedisServer, memlog: Memlog, request: pytest.FixtureRequest
) -> Iterator[RawPair]:
    """(redis-server, memlog) byte-level connections in RESP2 or RESP3, keyspaces flushed."""
    yield from flushed_pair(oracle_server.port, memlog.shim_ports[0], request.param)


BASICS: list[Command] = [
    ["PFADD", "h"], ["GET", "h"], ["PFCOUNT", "h"], ["GET", "h"], ["PFADD", "h", "a", "b", "c"],
    ["GET", "h"], ["PFCOUNT", "h"], ["GET", "h"], ["PFADD", "h", "a"], ["GET", "h"],
    ["PFADD", "h", ""], ["PFCOUNT", "h"], ["PFCOUNT", "nokey"], ["PFCOUNT", "h", "nokey"],
    ["PFMERGE", "m"], ["GET", "m"], ["PFMERGE", "m2", "nokey"], ["GET", "m2"],
    ["PFMERGE", "m3", "h"], ["GET", "m3"], ["PFCOUNT", "m3"], ["GET", "m3"],
    ["SET", "t", "x"], ["EXPIRE", "t", "100"], ["DEL", "t"], ["PFADD", "t", "z"], ["TTL", "t"],
    ["EXPIRE", "t", "100"], ["PFADD", "t", "y"], ["PFCOUNT", "t"], ["PFMERGE", "t", "h"],
    ["TTL", "t"], ["GETRANGE", "t", "15", "15"],
    ["PFDEBUG", "ENCODING", "h"], ["PFDEBUG", "DECODE", "h"], ["PFDEBUG", "FOO", "h"],
    ["PFDEBUG", "ENCODING", "nokey"], ["PFDEBUG", "TODENSE", "h"], ["PFDEBUG", "TODENSE", "h"],
    ["GET", "h"], ["PFDEBUG", "DECODE", "h"], ["PFDEBUG", "encoding", "h"], ["PFCOUNT", "h"],
    ["GET", "h"], ["PFMERGE", "m3", "h"], ["GET", "m3"], ["PFDEBUG", "ENCODING", "m3"],
]  # fmt: skip

ERRORS: list[Command] = [
    ["SET", "s", "hello"], ["PFADD", "s", "a"], ["PFCOUNT", "s"], ["PFMERGE", "s", "h"],
    ["PFADD", "h", "a"], ["PFMERGE", "h", "s"], ["PFCOUNT", "h", "s"], ["PFDEBUG", "ENCODING", "s"],
    ["LPUSH", "l", "a"], ["PFADD", "l", "x"], ["PFCOUNT", "l"], ["PFCOUNT", "h", "l"],
    ["PFMERGE", "d", "l"], ["EXISTS", "d"], ["SET", "i", "12345678901234567"], ["PFCOUNT", "i"],
    ["PFADD", "c", "a"], ["APPEND", "c", "hello"], ["PFCOUNT", "c"], ["PFADD", "c", "zzz"],
    ["PFCOUNT", "c", "h"], ["PFMERGE", "c2", "c"],
    ["SET", "short", HEADER + b"\x7f\xfe"], ["PFCOUNT", "short"], ["PFADD", "short", "x"],
    ["PFADD", "short", "x", "y", "z", "w"], ["GET", "short"], ["PFDEBUG", "GETREG", "short"],
    ["SET", "enc", b"HYLL\x02" + bytes(11) + b"\x7f\xff"], ["PFCOUNT", "enc"],
    ["SET", "magic", b"HYLX\x01" + bytes(11) + b"\x7f\xff"], ["PFCOUNT", "magic"],
    ["SET", "dense", b"HYLL\x00" + bytes(11) + b"\x7f\xff"], ["PFCOUNT", "dense"],
    ["SET", "empty", HEADER], ["PFCOUNT", "empty"], ["PFADD", "empty", "q"],
    ["PFMERGE", "x", "empty"], ["SET", "over", HEADER + b"\x7f\xff\x7f\xff"],
    ["PFCOUNT", "over"], ["PFADD", "over", "a"], ["PFDEBUG", "TODENSE", "over"],
    ["SET", "val", HEADER + b"\xfc\x7f\xfe"], ["PFCOUNT", "val"], ["GET", "val"],
    ["PFADD", "val", "a", "b"], ["GET", "val"],
]  # fmt: skip


@pytest.mark.parametrize("commands", [BASICS, ERRORS], ids=["basics", "errors"])
def test_hll_commands_match_redis(raw: RawPair, commands: list[Command]) -> None:
    """Replies byte for byte, but for the count PFCOUNT caches in redis-server's header."""
    oracle, subject = raw
    for args in commands:
        want, got = oracle.call(*args), subject.call(*args)
        assert _without_cache(got) == _without_cache(want), f"{args!r}: {want!r} / {got!r}"


def test_hll_arity_matches_redis(raw: RawPair) -> None:
    compare_raw(*raw, arity_probes(["pfadd", "pfcount", "pfmerge", "pfdebug", "pfselftest"]))  # type: ignore[arg-type]


def test_pfselftest_is_declared_as_redis_declares_it_and_refused(raw: RawPair) -> None:
    """PFSELFTEST tests Redis's C code (redis-server answers OK after about a second; here
    minutes of Python): memlog lists it as Redis does and refuses it with the reason, never an
    OK for a test it did not run."""
    oracle, subject = raw
    compare_raw(oracle, subject, [["COMMAND", "INFO", "pfselftest"]])
    got = subject.call("PFSELFTEST")
    assert got.startswith(b"-ERR memlog: PFSELFTEST (Redis's internal self test"), got


def test_pfcount_never_writes_the_cache(raw: RawPair) -> None:
    """PFCOUNT is a read here: where redis-server caches the count in the header (bytes 8 to
    15), memlog leaves the header marked stale; the counts and every other byte are the same.
    A PFADD that changes no register leaves the header as it was, one that does marks it."""
    oracle, subject = raw
    compare_raw(oracle, subject, [["PFADD", "hll", "a", "b", "c"], ["GET", "hll"]])
    for args in (["PFCOUNT", "hll"], ["PFADD", "hll", "a"], ["PFADD", "hll", "1", "2", "3"]):
        compare_raw(oracle, subject, [args])
        want, got = oracle.call("GET", "hll"), subject.call("GET", "hll")
        assert _without_cache(got) == _without_cache(want)
        assert _header_of(got)[8:] == b"\x00" * 7 + b"\x80"
    assert _header_of(oracle.call("GET", "hll"))[15] == 0x80  # stale again: redis too
    compare_raw(oracle, subject, [["PFCOUNT", "hll"], ["PFCOUNT", "hll", "nokey"]])


def _header_of(reply: bytes) -> bytes:
    """The HLL header inside a bulk reply ($N CR LF, then the string)."""
    return reply[reply.index(b"\r\n") + 2 :][:16]


def _without_cache(reply: bytes) -> bytes:
    """A GET reply with an HLL's cached-cardinality bytes left out (PFCOUNT writes them in
    redis-server, never here); anything else as it is."""
    start = reply.index(b"\r\n") + 2 if reply[:1] in (b"$", b"=") else 0
    if reply[start : start + 4] != hll.MAGIC:
        return reply
    return reply[: start + 8] + reply[start + 16 :]


def _random_hll_command(rng: random.Random, keys: Sequence[str]) -> list[str]:
    key = rng.choice(keys)
    r = rng.random()
    if r < 0.6:
        n = rng.choice([1, 3, 10, 50, 200, 1000])
        base = rng.randrange(10**6)
        return ["PFADD", key, *[f"e{base + rng.randrange(n * 3)}" for _ in range(n)]]
    if r < 0.75:
        return ["PFMERGE", key, *rng.sample([*keys, "nokey"], rng.randint(0, 3))]
    if r < 0.9:
        return ["PFCOUNT", *rng.sample(list(keys), rng.randint(1, len(keys)))]
    if r < 0.95:
        return ["PFDEBUG", rng.choice(["TODENSE", "ENCODING", "DECODE"]), key]
    return ["DEL", key]


def test_random_hll_writes_leave_redis_bytes(oracle_server: RedisServer) -> None:
    """Random PFADD/PFMERGE/PFCOUNT in apply and on redis-server: every reply and the bytes
    of the key after every command are equal (rerun: HLL_SEED)."""
    seed = int(os.environ.get("HLL_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun: HLL_SEED={seed})")
    rng = random.Random(seed)
    keys = ["h1", "h2", "h3"]
    diff = ApplyDiff(oracle_server.port, rng.choice([2, 3]))
    try:
        for _ in range(250):
            args = _random_hll_command(rng, keys)
            diff.check(*args)
            for key in keys:  # byte for byte but the count PFCOUNT caches in redis-server
                want, got = diff.oracle.call("GET", key), diff.apply(["GET", key])
                assert _without_cache(got) == _without_cache(want), key
    finally:
        diff.close()


def test_slow_growth_from_sparse_to_dense_leaves_redis_bytes(oracle_server: RedisServer) -> None:
    """A few elements at a time, so the sparse form goes through many splits and merges and
    turns dense at Redis's moment; merges into a second HLL on the way (rerun: HLL_SEED)."""
    seed = int(os.environ.get("HLL_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun: HLL_SEED={seed})")
    rng = random.Random(seed)
    diff = ApplyDiff(oracle_server.port)
    try:
        for _ in range(700):
            diff.check("PFADD", "g", *[str(rng.random()) for _ in range(rng.randint(1, 8))])
            diff.check("GET", "g")
            if rng.random() < 0.05:
                diff.check("PFADD", "g2", *[str(rng.random()) for _ in range(rng.randint(1, 30))])
                diff.check("PFMERGE", "g2", "g")
                diff.check("GET", "g2")
        diff.check("PFDEBUG", "ENCODING", "g")
        diff.check("PFCOUNT", "g")
        diff.check("PFCOUNT", "g", "g2")
    finally:
        diff.close()


def test_random_hll_writes_through_the_log_leave_redis_bytes(raw: RawPair) -> None:
    """The same through a real deployment, shorter (rerun: HLL_SEED)."""
    seed = int(os.environ.get("HLL_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun: HLL_SEED={seed})")
    rng = random.Random(seed)
    keys = ["h1", "h2"]
    oracle, subject = raw
    for _ in range(40):
        compare_raw(oracle, subject, [_random_hll_command(rng, keys)])
        for key in keys:
            want, got = oracle.call("GET", key), subject.call("GET", key)
            assert _without_cache(got) == _without_cache(want), key


def test_representation_units() -> None:
    """Packing registers round-trips; the bytewise maximum is the registers' maximum; a
    register above 32 turns a sparse HLL dense at once."""
    rng = random.Random(7)
    registers = bytearray(rng.randrange(64) for _ in range(hll.REGISTERS))
    assert hll.unpack_dense(hll.pack_dense(registers)) == registers
    other = bytes(rng.randrange(64) for _ in range(hll.REGISTERS))
    assert hll.merge_max(registers, other) == bytearray(map(max, registers, other))
    sketch = Hll(hll.empty())
    assert sketch.set(5, 33) == 1 and sketch.encoding == hll.DENSE
    assert sketch.registers()[5] == 33 and len(sketch.to_bytes()) == hll.DENSE_BYTES


def test_rdb_export_of_bitmaps_hlls_and_geo_loads_in_redis_server(tmp_path: Path) -> None:
    """An RDB written from a keyspace holding bitmaps, sparse and dense HLLs and a geo set
    loads in redis-server with the same digest, and redis-server answers the same PFCOUNT,
    BITCOUNT and GEOPOS there; read back, the keyspace has the same digest."""
    diff_commands: list[list[str]] = [
        ["SETBIT", "bits", "100001", "1"],
        ["BITFIELD", "bits", "SET", "i13", "#7", "-5"],
        ["PFADD", "sparse", *[str(i) for i in range(50)]],
        ["PFADD", "dense", *[str(i) for i in range(5000)]],
        ["GEOADD", "geo", "13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "C"],
    ]
    load_all()
    keyspace = Keyspace()
    for index, args in enumerate(diff_commands, 1):
        ctx = Ctx(keyspace, 0, 1_700_000_000_000, index=index)
        run(ctx, [a.encode() for a in args])
    digest = redis_digest(keyspace)
    root = tmp_path / "redis"
    root.mkdir()
    with open(root / "memlog.rdb", "wb") as out:
        write_rdb(keyspace, out, None)
    server = RedisServer(root)
    server.start(["--enable-debug-command", "yes", "--dbfilename", "memlog.rdb"])
    try:
        conn = RawConnection(server.port)
        assert conn.call("DEBUG", "DIGEST") == b"+" + digest.encode() + b"\r\n"
        queries: list[list[str]] = [  # GET first: redis-server's PFCOUNT caches the count
            ["GET", "sparse"], ["GET", "dense"], ["GET", "bits"], ["PFCOUNT", "sparse"],
            ["PFCOUNT", "dense"], ["BITCOUNT", "bits"], ["GEOPOS", "geo", "Palermo", "C"],
        ]  # fmt: skip
        for args in queries:
            ctx = Ctx(keyspace, 0, 1_700_000_000_000, index=100)
            assert conn.call(*args) == encode(run(ctx, [a.encode() for a in args]), 2), args
        conn.close()
    finally:
        server.stop()
    with open(root / "memlog.rdb", "rb") as inp:
        assert redis_digest(read_rdb(inp).keyspace) == digest
