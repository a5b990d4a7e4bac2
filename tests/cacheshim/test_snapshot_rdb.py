"""RDB in and out (cacheshim/snapshot): memlog keyspaces to RDB files that Debian's
redis-server loads with the DEBUG DIGEST it had, RDB files that redis-server SAVEs read back
into keyspaces with that digest, memlog snapshots that restore every bit of apply state (a
restored applier goes on exactly as the one it was taken from), and corrupt files refused.

Keyspaces here are built by a real `Applier` from records, as a shim builds them; Redis's
own digest of a keyspace is `redisdigest.redis_digest` (memlog's DEBUG DIGEST is another
function), checked first against redis-server for the same commands.

Over 500 lines: every type and encoding, both ways, and the corrupt files share the helpers
that build keyspaces and files.
"""

from __future__ import annotations

import asyncio
import io
import math
import os
import random
import struct
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from cacheshim.apply import Applier
from cacheshim.blocking import unblock_record
from cacheshim.commands import load_all
from cacheshim.protocol.resp import NULL_ARRAY, OK
from cacheshim.server.writer import _Write, encode_command_record
from cacheshim.snapshot import lzf, model, packed
from cacheshim.snapshot.crc64 import HAVE_C, crc64, crc64_py
from cacheshim.snapshot.rdb import (
    FORMAT_VERSION,
    HAVE_C_LOADER,
    ChecksumError,
    LoadResult,
    RdbError,
    SnapshotState,
    read_rdb,
    restore,
    snapshot_state,
    write_rdb,
)
from cacheshim.snapshot.redisdigest import redis_digest
from cacheshim.types.keyspace import Keyspace, kind_of
from cacheshim.v1 import record_pb2
from tests.cacheshim.harness import RedisServer, execute

load_all()  # the command table, as a shim fills it at start

Command = Sequence[bytes | str | int]
FAR_MS = 10**9  # a TTL no run outlives (about 11 days)


# -- helpers ------------------------------------------------------------------------------------


def record(
    commands: Sequence[Command],
    db: int,
    time_ms: int,
    transaction: bool = False,
    watched: Sequence[tuple[int, bytes]] = (),
    watch_index: int = 0,
) -> bytes:
    rec = record_pb2.Record(db=db, time_ms=time_ms, transaction=transaction)
    for args in commands:
        rec.commands.add(args=[a if isinstance(a, bytes) else str(a).encode() for a in args])
    for wdb, key in watched:
        rec.watched.add(db=wdb, key=key)
    rec.watch_index = watch_index
    return rec.SerializeToString()


def apply(applier: Applier, payload: bytes) -> object:
    return applier.apply(applier.applied_index + 1, payload)[1]


def run(applier: Applier, commands: Sequence[tuple[int, Command]], time_ms: int) -> None:
    for db, args in commands:
        apply(applier, record([args], db, time_ms))


def dump(keyspace: Keyspace, state: SnapshotState | None = None, **kw: Any) -> bytes:
    out = io.BytesIO()
    write_rdb(keyspace, out, state, **kw)
    return out.getvalue()


def load(data: bytes, chunk_bytes: int = 1 << 20) -> LoadResult:
    return read_rdb(io.BytesIO(data), chunk_bytes=chunk_bytes)


def describe(value: object) -> object:
    """Everything about a value that apply or a reply can see, -0 apart from 0."""
    encoding = kind_of(value).encoding(value)
    if isinstance(value, bytes):
        return (type(value).__name__, bytes(value), encoding)
    if isinstance(value, model.ListValue):
        return ("list", list(value))
    if isinstance(value, model.SetValue):
        return ("set", list(model.set_members(value)), value.ordered(), encoding)
    if isinstance(value, model.HashValue):
        return ("hash", list(value.items()), list(value.fields_for_picks()), encoding)
    assert isinstance(value, model.ZSet)
    entries = [(s, math.copysign(1, s), m) for s, m in value]
    return ("zset", entries, dict(value.scores) == {m: s for s, _, m in entries}, encoding)


def internals(keyspace: Keyspace) -> list[object]:
    """The whole state a snapshot must keep, in comparable form."""
    out: list[object] = [keyspace.expired_keys]
    for db in keyspace.dbs:
        keys = list(model.keys_in_scan_order(db))
        out.append((db.index, model.scan_bits(db), keys, list(db.data)))
        out.append((dict(db.expires), dict(db.changed_at), dict(db.expired_at)))
        out.append((sorted(db.blocked_keys), list(db.ready_keys)))
        out.extend((key, describe(db.data[key])) for key in keys)
        # The expiry heap pops the same keys at the same times. A live pair may stand in it
        # twice (a key given the same expiry again): the second pop finds the key gone and
        # skips it, so only the set of live pairs is state (a restore rebuilds the heap).
        out.append(sorted({(w, k) for w, k in db._expiry_heap if db.expires.get(k) == w}))
    return out


def applier_internals(applier: Applier) -> list[object]:
    """The whole state of an applier a snapshot must keep: its keyspace's, its position,
    its blocked clients (each key's queue in order, the databases' order), its pieces."""
    blocked = applier.blocked
    entries = [
        (e.shim_id, e.proposal_id, e.db, e.args, e.keys, e.kind, e.deadline_ms)
        for e in blocked._by_owner.values()
    ]
    queues = {
        slot: [(e.shim_id, e.proposal_id) for e in queue] for slot, queue in blocked.queues.items()
    }
    pieces = [
        (owner, p.parts, p.record_bytes, p.first_index, bytes(p.data), p.next_part,
         p.last_index, p.last_time_ms)
        for owner, p in applier._pieces.items()
    ]  # fmt: skip
    assert blocked._keyspace is applier.keyspace
    return [
        applier.applied_index, applier.time_ms, entries, queues, list(blocked._keys_per_db.items()),
        pieces, applier._pieces_bytes, *internals(applier.keyspace),
    ]  # fmt: skip


def oracle(tmp: Path, *extra: str) -> RedisServer:
    server = RedisServer(tmp)
    server.start(["--enable-debug-command", "yes", *extra])
    return server


def redis_client(server: RedisServer) -> redis.Redis:
    return redis.Redis(port=server.port, socket_timeout=60)


def at(keyspace: Keyspace, db: int, key: bytes) -> Any:
    """A stored value, untyped (the keyspace types every value as bytes)."""
    return keyspace.dbs[db].data[key]


def cmd(conn: redis.Redis, *args: object) -> object:
    return execute(conn, *args)


def text(reply: object) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


# -- the data set: every type, both encodings of each, TTLs, binary, all 16 dbs ------------------

BINARY_KEY = b"bin\x00\xff\r\nkey"
BINARY_VALUE = bytes(range(256)) * 3


def dataset(rng: random.Random, now_ms: int) -> list[tuple[int, Command]]:
    """Commands (db, args) that redis-server and memlog both accept, building small and
    large values of every type (so both of Redis's encodings of each), some with TTLs."""
    out: list[tuple[int, Command]] = []
    for db in range(16):
        p = f"d{db}:"
        noise = [rng.randbytes(rng.randint(0, 80)) for _ in range(300)]
        hash_pairs = [x for i in range(600) for x in (f"f{i}", f"v{i}" * (i % 9))]
        ranks = [x for i in range(130) for x in (str(i), f"n{i}")]
        out += [
            (db, ["SET", p + "s", "hello"]),
            (db, ["SET", p + "int", str(rng.randint(-(2**40), 2**40))]),
            (db, ["SET", p + "small", "7"]),
            (db, ["SET", p + "i32", "-2147483648"]),
            (db, ["SET", p + "i64", str(2**63 - 1)]),
            (db, ["SET", p + "lead0", "007"]),
            (db, ["SET", p + "big", "ab" * 3000]),  # compressible: LZF in Redis's file
            (db, ["SET", p + "rand", rng.randbytes(5000)]),
            (db, ["SET", p + "empty", ""]),
            (db, ["APPEND", p + "appended", "12"]),  # raw in Redis, though it reads as 12
            (db, ["INCRBYFLOAT", p + "float", "1.5"]),
            (db, ["SET", p + "ttl", "soon", "PX", FAR_MS]),
            (db, ["RPUSH", p + "list", "a", "1", "-7", "x" * 100, "4096", "-70000"]),
            (db, ["RPUSH", p + "biglist", *[str(i) for i in range(3000)], "y" * 20000, "z"]),
            (db, ["LPUSH", p + "biglist", *noise]),
            (db, ["SADD", p + "intset", "1", "2", "3", "-100", str(2**62)]),
            (db, ["SADD", p + "set", "a", "b", "c", "1"]),
            (db, ["SADD", p + "bigset", *[str(i * 3) for i in range(700)]]),
            (db, ["SADD", p + "shrunk", *[str(i) for i in range(5)], "word"]),
            (db, ["SREM", p + "shrunk", "word"]),  # a hashtable of integers now
            (db, ["HSET", p + "hash", "f1", "v1", "f2", "2", "f3", ""]),
            (db, ["HSET", p + "bighash", *hash_pairs]),
            (db, ["HSET", p + "longhash", "f", "v" * 65, "g", "1"]),
            (db, ["HDEL", p + "bighash", "f3", "f100", "f7"]),  # picks order != reply order
            (db, ["ZADD", p + "zset", "1", "a", "2.5", "b", "-3", "c", "inf", "hi", "-inf", "lo"]),
            (db, ["ZADD", p + "bigzset", *[x for i in range(200) for x in (str(i / 7), f"m{i}")]]),
            (db, ["ZADD", p + "negzero", "-0", "z", *ranks]),
            (db, ["ZADD", p + "longzset", "1", "m" * 70]),
            (db, ["ZADD", p + "lpzero", "-0", "zero"]),  # a listpack holds it as 0
            (db, ["HSET", BINARY_KEY + p.encode(), BINARY_VALUE, BINARY_VALUE[:10]]),
            (db, ["SET", BINARY_KEY + p.encode() + b"s", BINARY_VALUE]),
            (db, ["SADD", p + "binset", BINARY_VALUE, b"\x00", b""]),
        ]  # fmt: skip
        for key in ("list", "bigset", "hash", "bigzset", "intset", "biglist", "bighash"):
            if rng.random() < 0.5 or db == 0:
                out.append((db, ["PEXPIRE", p + key, FAR_MS + rng.randint(0, 1000)]))
        out.append((db, ["COPY", p + "small", p + "smallcopy"]))  # an int of its own
        out.append((db, ["SET", f"{p}gone", "x"]))
        out.append((db, ["DEL", f"{p}gone"]))
    # Many keys, then most of them gone: the SCAN table shrinks and merges buckets out of
    # insertion order.
    out.append((12, ["MSET", *[x for i in range(300) for x in (f"many{i}", str(i))]]))
    out.append((12, ["DEL", *[f"many{i}" for i in range(300) if i % 37]]))
    out.append((9, ["FLUSHDB"]))
    out.append((9, ["SET", "after-flush", "1"]))
    out.append((14, ["FLUSHDB"]))  # an empty database with a flush index
    return out


@pytest.fixture
def now_ms() -> int:
    return time.time_ns() // 1_000_000  # record times near the clock: TTLs stay in the future


def built(commands: Sequence[tuple[int, Command]], now_ms: int) -> Applier:
    applier = Applier()
    run(applier, commands, now_ms)
    return applier


# -- pieces -------------------------------------------------------------------------------------


def test_crc64_is_redis_crc64_jones_in_python_and_c() -> None:
    assert crc64(0, b"123456789") == 0xE9C6D914C4B8D9CA  # Redis's crc64 self test
    assert crc64_py(0, b"123456789") == 0xE9C6D914C4B8D9CA
    if os.environ.get("MEMLOG_PURE_PYTHON") != "1":  # else left out on purpose (setup.py)
        assert HAVE_C, "the C extension was not built (make setup)"
    data = random.Random(1).randbytes(100_003)
    whole = crc64_py(0, data)
    assert crc64(0, data) == whole
    for cut in (0, 1, 7, 8, 9, 50_000, 100_003):  # continued over pieces, any alignment
        assert crc64(crc64(0, data[:cut]), data[cut:]) == whole
        assert crc64_py(crc64_py(0, data[:cut]), memoryview(data)[cut:]) == whole


def test_the_c_loader_is_built() -> None:
    """Without it a restart takes several times as long, and nobody would notice. (Here, not
    in test_snapshot_native.py, whose tests are all skipped without the loader.)"""
    assert HAVE_C_LOADER or os.environ.get("MEMLOG_PURE_PYTHON") == "1"


def test_listpack_entries_of_every_width_round_trip() -> None:
    items = [
        b"0", b"127", b"128", b"-1", b"4095", b"-4096", b"4096", b"32767", b"-32768",
        b"8388607", b"-8388608", b"2147483647", b"-2147483648", b"9223372036854775807",
        b"-9223372036854775808", b"9223372036854775808", b"01", b"-0", b"+1", b" 1", b"",
        b"x" * 63, b"x" * 64, b"y" * 4095, b"y" * 4096, b"z" * 20000, b"w" * 16383,
    ]  # fmt: skip
    blob = packed.encode_listpack(items)
    assert packed.decode_listpack(blob) == items
    # Integers in the strict spelling are stored as integers (Redis's choice), others as text.
    assert packed.listpack_entry(b"5") == b"\x05\x01"
    assert packed.listpack_entry(b"-1") == b"\xdf\xff\x02"
    assert packed.listpack_entry(b"01") == b"\x8201\x03"
    with pytest.raises(packed.PackedError):
        packed.decode_listpack(blob[:-1] + b"\x00")


def _ziplist(entries: Sequence[bytes]) -> bytes:
    """A ziplist as Redis 3.2-6.2 wrote one (for the reader's test only)."""
    body = bytearray()
    previous = 0
    for raw in entries:
        prevlen = bytes((previous,)) if previous < 254 else b"\xfe" + struct.pack("<I", previous)
        number = model.strict_int(raw)
        if number is not None and 0 <= number <= 12:
            enc = bytes((0xF1 + number,))
        elif number is not None and -128 <= number <= 127:
            enc = b"\xfe" + struct.pack("<b", number)
        elif number is not None and -(2**15) <= number < 2**15:
            enc = b"\xc0" + struct.pack("<h", number)
        elif number is not None and -(2**23) <= number < 2**23:
            enc = b"\xf0" + (number & 0xFFFFFF).to_bytes(3, "little")
        elif number is not None and -(2**31) <= number < 2**31:
            enc = b"\xd0" + struct.pack("<i", number)
        elif number is not None:
            enc = b"\xe0" + struct.pack("<q", number)
        elif len(raw) < 64:
            enc = bytes((len(raw),)) + raw
        elif len(raw) < 16384:
            enc = bytes((0x40 | (len(raw) >> 8), len(raw) & 0xFF)) + raw
        else:
            enc = b"\x80" + struct.pack(">I", len(raw)) + raw
        entry = prevlen + enc
        body += entry
        previous = len(entry)
    total = 10 + len(body) + 1
    return struct.pack("<IIH", total, 10 + len(body) - previous, len(entries)) + body + b"\xff"


def test_old_packed_forms_decode() -> None:
    items = [b"3", b"12", b"13", b"-5", b"300", b"-70000", b"2147483647", b"2147483648",
             b"abc", b"q" * 300, b"r" * 17000, b""]  # fmt: skip
    assert packed.decode_ziplist(_ziplist(items)) == items
    intset = struct.pack("<II", 4, 3) + struct.pack("<3i", -5, 7, 100000)
    assert packed.decode_intset(intset) == [b"-5", b"7", b"100000"]
    zipmap = b"\x02" + b"\x01a\x02\x00vv" + b"\x02bb\x01\x03x\x00\x00\x00" + b"\xff"
    assert packed.decode_zipmap(zipmap) == [b"a", b"vv", b"bb", b"x"]


def _old_rdb(version: int, body: bytes) -> bytes:
    data = b"REDIS%04d" % version + body + b"\xff"
    return data + struct.pack("<Q", crc64(0, data)) if version >= 5 else data


def test_old_rdb_value_types_load() -> None:
    """Types Redis 7 no longer writes but still reads: ziplist lists, hashes and sorted
    sets, quicklist 1, zipmap, plain ZSET with text scores, EXPIRETIME in seconds."""

    def s(raw: bytes) -> bytes:
        return bytes((len(raw),)) + raw

    body = b"\xfe\x00"
    body += b"\x0a" + s(b"zl") + s(_ziplist([b"a", b"1", b"b"]))
    body += b"\x0d" + s(b"zh") + s(_ziplist([b"f", b"v", b"g", b"7"]))
    body += b"\x0c" + s(b"zz") + s(_ziplist([b"m", b"1.5", b"n", b"3"]))
    body += b"\x0e" + s(b"ql") + b"\x02" + s(_ziplist([b"x"])) + s(_ziplist([b"y", b"9"]))
    body += b"\x09" + s(b"zm") + s(b"\x01\x01a\x01\x00b\xff")
    body += b"\xfd" + struct.pack("<i", 2_000_000_000)
    body += b"\x03" + s(b"tz") + b"\x02" + s(b"p") + b"\xfe" + s(b"q") + s(b"2.25")
    body += b"\x01" + s(b"pl") + b"\x02" + s(b"u") + b"\xc0\x05"
    result = load(_old_rdb(6, body))
    ks = result.keyspace
    assert list(at(ks, 0, b"zl")) == [b"a", b"1", b"b"]
    assert dict(at(ks, 0, b"zh").items()) == {b"f": b"v", b"g": b"7"}
    assert list(at(ks, 0, b"zz")) == [(1.5, b"m"), (3.0, b"n")]
    assert list(at(ks, 0, b"ql")) == [b"x", b"y", b"9"]
    assert dict(at(ks, 0, b"zm").items()) == {b"a": b"b"}
    assert list(at(ks, 0, b"tz")) == [(2.25, b"q"), (math.inf, b"p")]
    assert ks.dbs[0].expires == {b"tz": 2_000_000_000_000}
    assert list(at(ks, 0, b"pl")) == [b"u", b"5"]
    assert result.state is None and result.rdb_version == 6


# -- memlog -> RDB -> redis-server, and redis-server -> RDB -> memlog ---------------------------


def test_redis_digest_of_memlog_data_equals_redis_servers(tmp_path: Path, now_ms: int) -> None:
    """The same commands on redis-server and on memlog's apply give one Redis digest (so
    the digest comparisons below compare the data, not two hash functions)."""
    commands = dataset(random.Random(3), now_ms)
    server = oracle(tmp_path / "redis")
    try:
        conn = redis_client(server)
        for db, args in commands:
            cmd(conn, "SELECT", db)
            cmd(conn, *args)
        expected = text(cmd(conn, "DEBUG", "DIGEST"))
    finally:
        server.stop()
    applier = built(commands, now_ms)
    assert redis_digest(applier.keyspace) == expected
    assert expected != "0" * 40


def test_memlog_rdb_loads_in_redis_server_with_the_same_digest(tmp_path: Path, now_ms: int) -> None:
    applier = built(dataset(random.Random(4), now_ms), now_ms)
    keyspace = applier.keyspace
    root = tmp_path / "redis"
    root.mkdir()
    for state in (None, snapshot_state(applier)):  # a plain export, and a memlog snapshot
        with open(root / "memlog.rdb", "wb") as out:
            write_rdb(keyspace, out, state)
        checked = subprocess.run(
            ["redis-check-rdb", str(root / "memlog.rdb")], capture_output=True, timeout=300
        )
        assert checked.returncode == 0 and b"RDB looks OK" in checked.stdout, checked.stdout
        server = oracle(root, "--dbfilename", "memlog.rdb")
        try:
            conn = redis_client(server)
            assert text(cmd(conn, "DEBUG", "DIGEST")) == redis_digest(keyspace)
            for db in keyspace.dbs:
                cmd(conn, "SELECT", db.index)
                assert conn.dbsize() == len(db.data)
                for key, when in list(db.expires.items())[:5]:
                    assert cmd(conn, "PEXPIRETIME", key) == when
                assert conn.object("encoding", "d0:bigzset") in (None, b"skiplist")
            cmd(conn, "SELECT", 0)
            assert conn.get(BINARY_KEY + b"d0:s") == BINARY_VALUE
            assert conn.object("encoding", "d0:intset") == b"intset"
            assert conn.object("encoding", "d0:hash") == b"listpack"
        finally:
            server.stop()


def test_redis_server_rdb_reads_into_the_same_digest(tmp_path: Path, now_ms: int) -> None:
    """redis-server's own SAVE (LZF strings, int strings, intsets, listpacks, quicklists
    with packed and plain nodes, hashtables, skiplists, expiries in all dbs) read back."""
    commands = dataset(random.Random(5), now_ms)
    root = tmp_path / "redis"
    server = oracle(root)
    try:
        conn = redis_client(server)
        # Elements over 1000 bytes go into plain quicklist nodes (a 7.0 node kind).
        cmd(conn, "DEBUG", "QUICKLIST-PACKED-THRESHOLD", "1000")
        for db, args in commands:
            cmd(conn, "SELECT", db)
            cmd(conn, *args)
        cmd(conn, "SELECT", 0)
        conn.rpush("plainlist", "p" * 5000, "small", "q" * 3000)
        cmd(conn, "SAVE")
        expected = text(cmd(conn, "DEBUG", "DIGEST"))
        expiries = {}
        for db in range(16):
            cmd(conn, "SELECT", db)
            for key in conn.scan_iter(count=1000):
                if int(cmd(conn, "PTTL", key)) > 0:  # type: ignore[call-overload]
                    expiries[(db, key)] = cmd(conn, "PEXPIRETIME", key)
        cmd(conn, "SELECT", 0)
        assert conn.object("encoding", "d0:intset") == b"intset"
    finally:
        server.stop()
    with open(root / "dump.rdb", "rb") as inp:
        result = read_rdb(inp, chunk_bytes=4096)  # small chunks: values span refills
    assert result.state is None and result.rdb_version == 10
    assert result.aux[b"redis-ver"] == b"7.0.15"
    assert redis_digest(result.keyspace) == expected
    found = {(db.index, k): w for db in result.keyspace.dbs for k, w in db.expires.items()}
    assert found == expiries
    # Values rebuilt as redis-server would on loading: its encodings.
    db0 = result.keyspace.dbs[0]
    assert kind_of(db0.data[b"d0:intset"]).encoding(db0.data[b"d0:intset"]) == "intset"
    assert kind_of(db0.data[b"d0:bigset"]).encoding(db0.data[b"d0:bigset"]) == "hashtable"
    assert kind_of(db0.data[b"d0:zset"]).encoding(db0.data[b"d0:zset"]) == "listpack"
    assert kind_of(db0.data[b"d0:bigzset"]).encoding(db0.data[b"d0:bigzset"]) == "skiplist"
    assert list(at(result.keyspace, 0, b"plainlist")) == [b"p" * 5000, b"small", b"q" * 3000]
    # And that keyspace written again loads in Redis with the same digest.
    assert redis_digest(load(dump(result.keyspace)).keyspace) == expected


# -- memlog snapshots ---------------------------------------------------------------------------


def test_snapshot_restores_every_bit_of_apply_state(now_ms: int) -> None:
    applier = built(dataset(random.Random(6), now_ms), now_ms)
    keyspace = applier.keyspace
    assert model.scan_order_positions(keyspace.dbs[12]) is not None  # the case is there
    keyspace.expired_keys = 17
    state = snapshot_state(applier)
    data = dump(keyspace, state)
    assert data == dump(keyspace, state)  # a function of the keyspace and the state
    result = load(data)
    assert result.state == state
    assert result.keyspace.digest() == keyspace.digest()
    assert internals(result.keyspace) == internals(keyspace)
    # Small chunks both ways: the same file, the same load.
    assert dump(keyspace, state, chunk_bytes=100) == data
    assert internals(load(data, chunk_bytes=7).keyspace) == internals(keyspace)


def test_export_without_state_is_plain_rdb(now_ms: int) -> None:
    applier = built(dataset(random.Random(7), now_ms), now_ms)
    result = load(dump(applier.keyspace, ctime_s=1))
    assert result.state is None
    assert not any(k.startswith(b"memlog-") for k in result.aux)
    assert result.keyspace.digest() == applier.keyspace.digest()
    assert redis_digest(result.keyspace) == redis_digest(applier.keyspace)
    with pytest.raises(RdbError, match="not a memlog snapshot"):
        restore(Applier(), result)


class _Recorder(io.RawIOBase):
    """A file that records the size of every write."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        size = len(memoryview(data))  # type: ignore[arg-type]
        self.sizes.append(size)
        return size


def test_writes_stream_in_chunks(now_ms: int) -> None:
    applier = built(dataset(random.Random(8), now_ms), now_ms)
    sink = _Recorder()
    result = write_rdb(applier.keyspace, sink, snapshot_state(applier), chunk_bytes=64 * 1024)  # type: ignore[arg-type]
    assert sum(sink.sizes) == result.bytes_written > 2 * 64 * 1024
    assert len(sink.sizes) > 3
    assert max(sink.sizes) < 2 * 64 * 1024 + 25_000  # a chunk plus at most one value


def test_corrupt_file_is_refused_with_a_clear_message(now_ms: int) -> None:
    applier = built(dataset(random.Random(9), now_ms), now_ms)
    data = dump(applier.keyspace, snapshot_state(applier))
    rng = random.Random(10)
    for _ in range(20):  # flips in values, in lengths, in the header: never loaded silently
        position = rng.randrange(9, len(data))
        flipped = bytearray(data)
        flipped[position] ^= 1 << rng.randrange(8)
        with pytest.raises(RdbError) as info:
            load(bytes(flipped))
        message = str(info.value)
        if isinstance(info.value, ChecksumError):
            assert "checksum mismatch" in message and "corrupt" in message
    # A flip inside a string's bytes parses fine; only the checksum can tell.
    position = data.index(b"abababab") + 100
    flipped = bytearray(data)
    flipped[position] ^= 0x10
    with pytest.raises(ChecksumError, match="RDB checksum mismatch"):
        load(bytes(flipped))
    with pytest.raises(ChecksumError, match="without its checksum"):
        load(data[:-8] + bytes(8))
    assert load(dump(applier.keyspace)[:-8] + bytes(8)).keys > 0  # Redis's "no checksum"
    with pytest.raises(RdbError, match="unexpected end of file"):
        load(data[: len(data) // 2])
    with pytest.raises(RdbError, match="not an RDB file"):
        load(b"RADIS0010" + data[9:])


# -- a seeded randomized run: snapshots taken and restored in the middle of it ------------------

WORDS = [b"w%d" % i for i in range(30)] + [b"1", b"2", b"30", b"-4", b"x" * 70, b"\x00\xff"]


def _random_commands(rng: random.Random, db_keys: list[bytes]) -> list[Command]:
    key, other = rng.choice(db_keys), rng.choice(db_keys)
    word = rng.choice(WORDS)
    words = rng.sample(WORDS, rng.randint(1, 12))
    count = rng.randint(-6, 6)
    fields = [x for _ in range(rng.randint(1, 700)) for x in (f"f{rng.randint(0, 999)}", "v")]
    numbers = [str(rng.randint(0, 900)) for _ in range(rng.randint(1, 300))]
    ranked = [x for i in range(rng.randint(1, 150)) for x in (str(i % 7), f"m{i}")]
    choices: list[list[Command]] = [
        [["SET", key, word]], [["APPEND", key, word]], [["INCR", key]],
        [["INCRBYFLOAT", key, "0.5"]], [["RPUSH", key, *words]], [["LPOP", key, rng.randint(1, 3)]],
        [["LMOVE", key, other, "LEFT", "RIGHT"]], [["SADD", key, *words]],
        [["SADD", key, *numbers]], [["SPOP", key]], [["SPOP", key, rng.randint(1, 4)]],
        [["SRANDMEMBER", key, count]], [["SREM", key, *words[:3]]], [["SMOVE", key, other, word]],
        [["SSCAN", key, "0", "COUNT", "5"]],
        [["HSET", key, word, rng.choice(WORDS), rng.choice(WORDS), word]], [["HSET", key, *fields]],
        [["HDEL", key, *words[:4]]], [["HDEL", key, *fields[: rng.randint(1, 120)]]],
        [["HRANDFIELD", key, count, "WITHVALUES"]], [["HRANDFIELD", key]],
        [["HSCAN", key, "0", "COUNT", "5"]],
        [["ZADD", key, str(rng.choice([-1, 0, 1, 2.5])), word, "-0", rng.choice(WORDS)]],
        [["ZADD", key, *ranked]], [["ZRANDMEMBER", key, count, "WITHSCORES"]],
        [["ZPOPMIN", key, rng.randint(1, 3)]], [["ZUNIONSTORE", key, "2", key, other]],
        [["SUNIONSTORE", key, key, other]], [["PEXPIRE", key, rng.randint(1, 300)]],
        [["EXPIRE", key, rng.randint(100, 1000)]], [["PERSIST", key]], [["DEL", key]],
        [["RENAME", key, other]], [["COPY", key, other, "REPLACE"]],
        [["MOVE", key, str(rng.randint(0, 15))]], [["RANDOMKEY"]], [["KEYS", "*"]],
        [["SCAN", str(rng.randint(0, 64)), "COUNT", "4"]],
        [["FLUSHDB"]] if rng.random() < 0.05 else [["DBSIZE"]],
        [["SELECT", str(rng.randint(0, 15))], ["SET", key, word], ["SADD", other, word]],
    ]  # fmt: skip
    return rng.choice(choices)


HOT_KEYS = [b"k%d" % i for i in range(4)]  # where clients block and pushes serve them
SHIMS = ["shim-a", "shim-b", "shim-c"]


def _blocking_command(rng: random.Random) -> Command:
    key, other = rng.choice(HOT_KEYS), rng.choice(HOT_KEYS)
    timeout = rng.choice(["0", "0", "0.2", "1", "3.5"])  # deadlines pass in the run too
    return rng.choice(
        [
            ["BLPOP", key, other, timeout],
            ["BRPOP", key, timeout],
            ["BLMOVE", key, other, "LEFT", "RIGHT", timeout],
            ["BZPOPMIN", key, other, timeout],
            ["BZPOPMAX", key, timeout],
        ]
    )


def _serving_command(rng: random.Random) -> Command:
    key = rng.choice(HOT_KEYS)
    return rng.choice(
        [
            ["RPUSH", key, *rng.sample(WORDS, rng.randint(1, 3))],
            ["LPUSH", key, rng.choice(WORDS)],
            ["ZADD", key, str(rng.randint(0, 9)), rng.choice(WORDS)],
            ["SET", key, "x"],  # the wrong type: wakes nobody
            ["DEL", key],
        ]
    )


_LOOP = asyncio.new_event_loop()  # only to make the futures `_Write` holds


class _LargeWrite:
    """A write sent the way a shim sends one over PIECE_BYTES: encoded by the server's
    `encode_command_record` and cut by its `_Write` (into small pieces here)."""

    def __init__(self, rng: random.Random, shim: str, proposal: int, time_ms: int) -> None:
        args = [b"SET", rng.choice([*HOT_KEYS, b"big"]), rng.randbytes(rng.randint(3000, 9000))]
        if rng.random() < 0.3:
            args = [b"RPUSH", rng.choice(HOT_KEYS), rng.randbytes(5000), b"tail"]
        data = encode_command_record(rng.choice([0, 0, 1]), time_ms, shim, proposal, args)
        self.piece_bytes = rng.randint(700, 2500)
        self.write = _Write(proposal, _LOOP.create_future(), None, data, time_ms)
        self.write.parts = -(-len(data) // self.piece_bytes)
        self.shim = shim

    def next_piece(self) -> bytes:
        return self.write.take(self.shim, self.piece_bytes)

    @property
    def done(self) -> bool:
        return self.write.sent == self.write.parts


def _random_records(rng: random.Random, count: int, time_ms: int) -> Iterator[bytes]:
    """Records as shims write them from index 1: random commands, transactions with WATCH
    (each key from its own index, some watched already expired), clients blocking and the
    pushes that serve them, timeouts and unblocks, FLUSHDB, and large writes in pieces
    between the rest (a few never finished)."""
    db_keys = [b"k%d" % i for i in range(25)] + [b"\x00bin"]
    proposals = dict.fromkeys(SHIMS, 0)
    waiting: list[tuple[str, int]] = []  # blocking proposals, maybe still blocked
    large: list[_LargeWrite] = []
    for i in range(count):
        time_ms += rng.randint(0, 40)
        shim = rng.choice(SHIMS)
        proposals[shim] += 1
        proposal = proposals[shim]
        if large and rng.random() < 0.25:
            write = rng.choice(large)
            yield write.next_piece()
            if write.done:
                large.remove(write)
            continue
        roll = rng.random()
        if roll < 0.02:
            write = _LargeWrite(rng, shim, proposal, time_ms)
            if rng.random() >= 0.1:  # else a shim that dies mid-transfer: its pieces stay
                large.append(write)
            yield write.next_piece()
            continue
        if roll < 0.10:
            rec = record_pb2.Record(db=rng.choice([0, 0, 1]), time_ms=time_ms)
            rec.commands.add(args=[str(a).encode() for a in _blocking_command(rng)])
            waiting.append((shim, proposal))
        elif roll < 0.18:
            rec = record_pb2.Record(db=rng.choice([0, 0, 1]), time_ms=time_ms)
            rec.commands.add(args=[str(a).encode() for a in _serving_command(rng)])
        elif roll < 0.20 and waiting:  # a timeout, CLIENT UNBLOCK or a closed connection
            shim, blocked = waiting.pop(rng.randrange(len(waiting)))
            rec = unblock_record(time_ms, proposal_id=blocked)
        elif roll < 0.205:  # a shim restarting: its earlier life's clients go
            rec = unblock_record(time_ms, every=True)
            waiting = [w for w in waiting if w[0] != shim]
        elif roll < 0.22:
            rec = record_pb2.Record(db=rng.choice([0, 1]), time_ms=time_ms)
            rec.commands.add(args=[b"FLUSHDB"])
        else:
            rec = record_pb2.Record(db=rng.choice([0, 0, 0, 1, 2, 15]), time_ms=time_ms)
            commands = _random_commands(rng, db_keys)
            if rng.random() < 0.1:  # an expiry that passes within a few records
                commands = [["PEXPIRE", rng.choice(db_keys[:8]), rng.randint(1, 60)], *commands]
            for args in commands:
                rec.commands.add(
                    args=[a if isinstance(a, bytes) else str(a).encode() for a in args]
                )
            rec.transaction = len(commands) > 1 or rng.random() < 0.15
            if rec.transaction and rng.random() < 0.8:
                for _ in range(rng.randint(1, 3)):  # each key WATCHed at its own index
                    watched = rec.watched.add(db=rng.choice([0, 0, 1]))
                    watched.key = rng.choice(db_keys[:8])
                    watched.index = max(0, i + 1 - rng.randint(0, 40))
                    watched.stale = rng.random() < 0.2
        rec.shim_id, rec.proposal_id = shim, proposal
        yield rec.SerializeToString()


def test_restored_applier_goes_on_like_the_original() -> None:
    """One applier applies every record; another is snapshotted and restored into a fresh
    one many times along the way (also while clients are blocked and while a large record
    is half-arrived): the replies, the clients served, the keyspace and every bit of apply
    state stay those of the original."""
    seed = int(os.environ.get("SNAPSHOT_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun: SNAPSHOT_SEED={seed})")
    rng = random.Random(seed)
    original = Applier()
    copy = Applier()
    records = list(_random_records(rng, 2500, 1_700_000_000_000))
    seen = dict.fromkeys(["restores", "blocked", "pieces", "served", "joined", "aborted"], 0)
    for step, payload in enumerate(records):
        due = step % 150 == 75
        due |= not seen["blocked"] and len(copy.blocked) > 0
        due |= not seen["pieces"] and bool(copy._pieces)
        if due:  # snapshot the copy, restore it into a fresh applier
            state = snapshot_state(copy)
            data = dump(copy.keyspace, state)
            # The same bytes as the original's at this index (it was never restored).
            assert data == dump(original.keyspace, snapshot_state(original)), f"step {step}"
            loaded = load(data, chunk_bytes=4096)
            assert loaded.state == state
            fresh = Applier()
            restore(fresh, loaded)
            assert applier_internals(fresh) == applier_internals(copy), f"step {step}"
            seen["restores"] += 1
            seen["blocked"] += len(copy.blocked) > 0
            seen["pieces"] += bool(copy._pieces)
            copy = fresh
        record_a, expected = original.apply(step + 1, payload)
        record_b, got = copy.apply(step + 1, payload)
        assert record_b == record_a, f"step {step}"
        assert got == expected, f"step {step}: {got!r} != {expected!r}"
        assert copy.served == original.served, f"step {step}"
        seen["served"] += len(original.served)
        if record_a is not None and not record_a.HasField("chunk"):
            seen["joined"] += record_pb2.Record.FromString(payload).HasField("chunk")
            seen["aborted"] += expected is NULL_ARRAY and len(record_a.watched) > 0
        if step % 10 == 0:
            assert applier_internals(copy) == applier_internals(original), f"step {step}"
            assert copy.keyspace.digest() == original.keyspace.digest(), f"step {step}"
    assert applier_internals(copy) == applier_internals(original)
    print(seen)
    kinds = {kind_of(v).name for db in original.keyspace.dbs for v in db.data.values()}
    assert len(kinds) >= 3, kinds  # the run left several types behind
    assert original.keyspace.expired_keys > 0
    assert any(db.expired_at for db in original.keyspace.dbs)
    # The run met what it is for: restores with clients blocked and with pieces held,
    # clients served, large records joined, EXECs aborted by a WATCH.
    assert seen["restores"] >= 10 and seen["blocked"] >= 2 and seen["pieces"] >= 2, seen
    assert seen["served"] > 0 and seen["joined"] > 0 and seen["aborted"] > 0, seen


def test_damaged_bytes_raise_rdb_error_or_load(now_ms: int) -> None:
    """With the checksum turned off (Redis's "rdbchecksum no", zero), the parser itself
    meets the damage: it raises RdbError with a message, never another exception."""
    seed = int(os.environ.get("SNAPSHOT_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun: SNAPSHOT_SEED={seed})")
    rng = random.Random(seed)
    small = [(db, args) for db, args in dataset(random.Random(11), now_ms) if db < 2]
    data = dump(built(small, now_ms).keyspace, ctime_s=1)[:-8] + bytes(8)
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(300):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            damaged[rng.randrange(9, len(data) - 9)] = rng.randrange(256)
        try:
            load(bytes(damaged))
            outcomes["loaded"] += 1
        except RdbError as exc:
            assert str(exc)
            outcomes["refused"] += 1
    print(outcomes)
    assert outcomes["refused"] > 0


def test_what_memlog_cannot_hold_is_refused_by_name(tmp_path: Path, now_ms: int) -> None:
    """A function library: named in the error, not skipped (a stream loads: see
    test_streams.py). A newer memlog format is refused; a memlog field this reader does not
    know is skipped."""
    root = tmp_path / "redis"
    server = oracle(root)
    try:
        conn = redis_client(server)
        cmd(conn, "SET", "plain", "1")
        cmd(conn, "XADD", "events", "*", "field", "value")
        cmd(conn, "SAVE")
        with open(root / "dump.rdb", "rb") as inp:
            assert len(read_rdb(inp).keyspace.dbs[0].value(b"events")) == 1
        cmd(conn, "DEL", "events")
        library = "#!lua name=lib\nredis.register_function('f', function() return 1 end)"
        cmd(conn, "FUNCTION", "LOAD", library)
        cmd(conn, "SAVE")
        functions = r"functions \(FUNCTION LOAD\) at offset \d+: memlog cannot load them"
        with open(root / "dump.rdb", "rb") as inp, pytest.raises(RdbError, match=functions):
            read_rdb(inp)
    finally:
        server.stop()

    applier = built([(0, ["SET", "k", "v"])], now_ms)
    data = dump(applier.keyspace, snapshot_state(applier))

    def with_checksum(body: bytes) -> bytes:
        return body + struct.pack("<Q", crc64(0, body))

    format_field = b"\xfa\x0dmemlog-format\xc0"  # the version as an 8-bit integer
    assert FORMAT_VERSION == 2
    assert data.count(format_field + b"\x02") == 1
    newer = with_checksum(data[:-8].replace(format_field + b"\x02", format_field + b"\x03"))
    with pytest.raises(RdbError, match="memlog snapshot format 3 is newer than this reader"):
        load(newer)
    older = with_checksum(data[:-8].replace(format_field + b"\x02", format_field + b"\x01"))
    with pytest.raises(RdbError, match="memlog snapshot format 1 is older than this reader"):
        load(older)
    extra = b"\xfa\x0cmemlog-later\x03abc"  # a field from a newer writer of format 1
    at = data.index(b"\xfa\x0cmemlog-index")
    later = with_checksum(data[:at] + extra + data[at:-8])
    assert load(later).keyspace.digest() == applier.keyspace.digest()


def test_lzf_c_and_python_agree_on_good_and_bad_input() -> None:
    if os.environ.get("MEMLOG_PURE_PYTHON") == "1":
        pytest.skip("installed with MEMLOG_PURE_PYTHON=1: the C extension was left out on purpose")
    assert lzf.HAVE_C, "the C extension was not built (make setup)"
    # Hand-made: a literal run, a back reference, an overlapping one, a long one (7 + extra).
    blob = (
        b"\x02abc"  # literal "abc"
        + bytes((0x20 * 7 + 0, 7, 2))  # 7+7+2 = 16 bytes from 3 back, overlapping
        + b"\x02XYZ"
        + b"\x00q"
        + bytes((0xE0, 0xFF - 7 + 0 - 0, 0))  # 7 + 248 + 2 = 257 bytes from 1 back
        + bytes((0xE0, 40 - 9, 0))  # 7 + 31 + 2 = 40 more
        + b"\x01qq"
    )
    expected = b"abc" + (b"abc" * 6)[:16] + b"XYZ" + b"q" * (1 + 257 + 40 + 2)
    assert lzf.decompress_py(blob, len(expected)) == expected
    assert lzf.decompress(blob, len(expected)) == expected
    for bad, size in ((blob, len(expected) + 1), (blob, len(expected) - 1), (blob[:-1], 303),
                      (b"\x20\x05", 2), (b"\x05ab", 6)):  # fmt: skip
        for decompress in (lzf.decompress_py, lzf.decompress):
            with pytest.raises(lzf.LzfError):
                decompress(bad, size)


def _blocking(applier: Applier, shim: str, proposal: int, db: int, *args: str) -> object:
    rec = record_pb2.Record(db=db, time_ms=1_700_000_000_000, shim_id=shim, proposal_id=proposal)
    rec.commands.add(args=[a.encode() for a in args])
    return applier.apply(applier.applied_index + 1, rec.SerializeToString())[1]


def _restored(applier: Applier) -> Applier:
    fresh = Applier()
    restore(fresh, load(dump(applier.keyspace, snapshot_state(applier))))
    assert applier_internals(fresh) == applier_internals(applier)
    return fresh


def test_blocked_clients_keep_their_queues_and_databases_order() -> None:
    """The order the blocking machinery visits databases in is not the order a restore
    re-adding the clients would give (a database keeps its place while any of its keys has
    a client), and it decides the order clients in two databases are served in."""
    applier = Applier()
    _blocking(applier, "s", 1, 0, "BLPOP", "a", "0")
    _blocking(applier, "s", 2, 1, "BLPOP", "b", "0")
    _blocking(applier, "s", 3, 0, "BLPOP", "c", "b", "0")
    _blocking(applier, "s", 4, 0, "BZPOPMIN", "c", "2.5")
    unblock = unblock_record(1_700_000_000_000, proposal_id=1)
    unblock.shim_id = "s"
    assert apply(applier, unblock.SerializeToString()) == 1
    assert list(applier.blocked._keys_per_db) == [0, 1]
    fresh = _restored(applier)
    assert list(fresh.blocked._keys_per_db) == [0, 1]
    # Keys made ready but not looked at yet (apply looks after every record today): kept.
    applier.keyspace.dbs[1].ready_keys.append(b"b")
    assert _restored(applier).keyspace.dbs[1].ready_keys == [b"b"]
    applier.keyspace.dbs[1].ready_keys.clear()
    push = [["SELECT", "1"], ["RPUSH", "b", "x"], ["SELECT", "0"], ["RPUSH", "c", "y", "z"]]
    for who in (applier, fresh):
        assert apply(who, record(push, 0, 1_700_000_000_001, transaction=True)) == [OK, 1, OK, 2]
    assert fresh.served == applier.served
    assert [(s, p) for s, p, _ in applier.served] == [("s", 3), ("s", 2)]
    assert applier_internals(fresh) == applier_internals(applier)
    assert len(fresh.blocked) == 1  # the sorted-set client waits on
    with pytest.raises(RdbError, match="restored already"):
        result = load(dump(applier.keyspace, snapshot_state(applier)))
        restore(Applier(), result)
        restore(Applier(), result)
    with pytest.raises(RdbError, match="applied nothing yet"):
        restore(applier, load(dump(applier.keyspace, snapshot_state(applier))))


def test_large_held_pieces_are_written_in_bounded_slices() -> None:
    """Megabytes of an unfinished large record go to the file in slices (no whole copy
    in one write) and come back byte for byte; the record is joined after the restore."""
    rng = random.Random(4)
    value = rng.randbytes(5 << 20)
    data = encode_command_record(0, 1_700_000_000_000, "big-shim", 9, [b"SET", b"v", value])
    write = _Write(9, _LOOP.create_future(), None, data, 1_700_000_000_000)
    write.parts = -(-len(data) // (256 * 1024))
    applier = Applier()
    pieces = [write.take("big-shim", 256 * 1024) for _ in range(write.parts)]
    for piece in pieces[:-1]:
        assert apply(applier, piece) == OK
    assert applier._pieces_bytes > 4 << 20
    sink = _Recorder()
    state = snapshot_state(applier)
    write_rdb(applier.keyspace, sink, state, chunk_bytes=64 * 1024)  # type: ignore[arg-type]
    assert max(sink.sizes) <= (1 << 20)  # one memlog-piece-data slice at most
    fresh = _restored(applier)
    assert apply(fresh, pieces[-1]) == OK
    assert fresh.keyspace.dbs[0].data[b"v"] == value and not fresh._pieces


def test_big_spops_after_a_restore_pick_as_without_it() -> None:
    """SPOP with counts large enough for the C pops (a few of a big set, most of one), SREM
    between them, on an applier restored from a snapshot before each step and on one never
    restored: the same replies, keyspace and digest (the members order a snapshot keeps is
    the one the picks index into)."""
    time_ms = 1_700_000_000_000
    original = Applier()
    words = [b"w%d" % i for i in range(3000)]
    run(original, [(0, ["SADD", "s", *words]), (0, ["SADD", "n", *range(2000)])], time_ms)
    copy = _restored(original)
    steps: list[Command] = [
        ["SPOP", "s", 250], ["SREM", "s", *words[:40:3]], ["SPOP", "n", 1700],
        ["SPOP", "s", 2500], ["SADD", "s", *words[:100]], ["SRANDMEMBER", "s", 40],
        ["SPOP", "s", 120], ["SPOP", "n", 30], ["SPOP", "s"], ["SMEMBERS", "n"],
    ]  # fmt: skip
    for step, args in enumerate(steps):
        copy = _restored(copy)
        payload = record([args], 0, time_ms)
        want = original.apply(original.applied_index + 1, payload)[1]
        got = copy.apply(copy.applied_index + 1, payload)[1]
        assert got == want, (step, args[:3])
        assert applier_internals(copy) == applier_internals(original), (step, args[:3])
        assert copy.keyspace.digest() == original.keyspace.digest()
    assert len(at(original.keyspace, 0, b"s")) > 0 and len(at(original.keyspace, 0, b"n")) > 0
