"""memlog's keyspace as a Redis RDB file, and back (see docs/snapshot-format.md).

`write_rdb` streams a `Keyspace` to a binary file object as Redis 7.0 writes RDB version
10: the magic, AUX fields, then per database SELECTDB, RESIZEDB and its keys (an
EXPIRETIME_MS before a key that has one), EOF and the CRC-64 of everything before it.
Values take forms redis-server 7.0 loads: strings (integers in the integer encodings),
lists as QUICKLIST_2 of listpack nodes, sets as SET, hashes as HASH, sorted sets as ZSET_2
(binary scores). Given a `SnapshotState`, the file is also a memlog snapshot: AUX fields
named ``memlog-*`` (which Redis skips, as it skips any AUX field it does not know) carry the
log index it covers, the apply time, and what apply needs to go on exactly as before (per
key: the index of its last change, for WATCH, and its encoding shape; per database: the
SCAN table's size, the changes of removed keys and the removals by expiry; the clients
blocked in BLPOP & co.; the large records still arriving in pieces). The file is a function
of the keyspace and the state: two snapshotters at one index write the same bytes.
The loop over a database's keys (and its SCAN order and removed keys) has a C twin,
cacheshim/snapshot/_native_write.c, used when built: this module's loop is its specification
and the fallback, and tests/cacheshim/test_snapshot_native_write.py holds them to the same
bytes.

`read_rdb` reads such a file incrementally, or any RDB file Redis 2.6 to 7.2 writes for the
types memlog holds: every string encoding (integers, LZF), lists as plain, ziplist,
quicklist and quicklist 2, sets as plain, intset and listpack, hashes as plain, zipmap,
ziplist and listpack, sorted sets as plain (text scores), ZSET_2, ziplist and listpack, with
EXPIRETIME and EXPIRETIME_MS. A file from Redis builds values the way redis-server would
on loading it (its encoding thresholds); a memlog snapshot rebuilds them exactly. A wrong
checksum raises `ChecksumError` before anything is returned.

Over 1000 lines: the writer and the reader of one file format, with the memlog-* state both
carry; kept together so each field's encoding and decoding read side by side, as in Redis's
rdb.c.
"""

from __future__ import annotations

import gc
import heapq
import io
import os
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Final, cast

from cacheshim.config.defaults import REDIS_VERSION as _REDIS_VERSION
from cacheshim.snapshot import model, packed, streamrdb
from cacheshim.snapshot.crc64 import crc64
from cacheshim.snapshot.lzf import LzfError, decompress

if TYPE_CHECKING:
    from cacheshim.apply import Applier

RDB_VERSION: Final = 10  # what Redis 7.0 writes
RDB_VERSION_READ_MAX: Final = 11  # Redis 7.2's, read too
FORMAT_VERSION: Final = 2  # memlog's fields; see docs/snapshot-format.md
REDIS_VERSION: Final = _REDIS_VERSION.encode()

# Opcodes.
OP_FUNCTION2: Final = 245
OP_FUNCTION_PRE_GA: Final = 246
OP_MODULE_AUX: Final = 247
OP_IDLE: Final = 248
OP_FREQ: Final = 249
OP_AUX: Final = 250
OP_RESIZEDB: Final = 251
OP_EXPIRETIME_MS: Final = 252
OP_EXPIRETIME: Final = 253
OP_SELECTDB: Final = 254
OP_EOF: Final = 255

# Value types.
T_STRING: Final = 0
T_LIST: Final = 1
T_SET: Final = 2
T_ZSET: Final = 3
T_HASH: Final = 4
T_ZSET_2: Final = 5
T_MODULE_PRE_GA: Final = 6
T_MODULE_2: Final = 7
T_HASH_ZIPMAP: Final = 9
T_LIST_ZIPLIST: Final = 10
T_SET_INTSET: Final = 11
T_ZSET_ZIPLIST: Final = 12
T_HASH_ZIPLIST: Final = 13
T_LIST_QUICKLIST: Final = 14
T_STREAM_LISTPACKS: Final = 15
T_HASH_LISTPACK: Final = 16
T_ZSET_LISTPACK: Final = 17
T_LIST_QUICKLIST_2: Final = 18
T_STREAM_LISTPACKS_2: Final = 19
T_SET_LISTPACK: Final = 20
T_STREAM_LISTPACKS_3: Final = 21

QUICKLIST_PLAIN: Final = 1
QUICKLIST_PACKED: Final = 2
LIST_NODE_BYTES_MAX: Final = 8192  # list-max-listpack-size -2, Redis's default
KEYS_PER_META: Final = 1024  # keys covered by one memlog-keys field
GONE_BYTES_MAX: Final = 64 * 1024  # bytes of one memlog-gone, -expired or -blocked field
PIECE_DATA_BYTES: Final = 1 << 20  # bytes of one memlog-piece-data field
FIELD_LAYOUT: Final = 1  # the first number of memlog-blocked, -blocked-dbs and -pieces

AUX_FORMAT: Final = b"memlog-format"
AUX_INDEX: Final = b"memlog-index"
AUX_TIME: Final = b"memlog-time-ms"
AUX_EXPIRED: Final = b"memlog-expired-keys"
AUX_DB: Final = b"memlog-db"
AUX_KEYS: Final = b"memlog-keys"
AUX_GONE: Final = b"memlog-gone"
AUX_EXPIRED_AT: Final = b"memlog-expired"
AUX_BLOCKED: Final = b"memlog-blocked"
AUX_BLOCKED_DBS: Final = b"memlog-blocked-dbs"
AUX_PIECES: Final = b"memlog-pieces"
AUX_PIECE_DATA: Final = b"memlog-piece-data"
AUX_SCAN: Final = b"memlog-scan"
# The ACL users (cacheshim.acl.state.Users.dump: versioned JSON of ACL LIST lines, hashes
# only), written once ACL records were applied; absent: the default user alone.
AUX_ACL: Final = b"memlog-acl"
# One script of the script cache (EVAL, SCRIPT LOAD; cacheshim.scripting), its body as the
# value, in cache order. Versioned by its name: a reader that does not know it skips it.
AUX_SCRIPT: Final = b"memlog-script-v1"
# One function library (FUNCTION LOAD), its code as the value, in load order.
AUX_FUNCTION: Final = b"memlog-function-v1"
# stream-node-max-bytes and -entries as apply uses them (replicated by CONFIG SET records),
# "bytes entries", written when they are not Redis's defaults.
AUX_STREAM_NODE: Final = b"memlog-stream-node"
# notify-keyspace-events as apply holds it (Keyspace.notify_flags, cacheshim.notify), when set.
AUX_NOTIFY: Final = b"memlog-notify-flags"
STREAM_NODE_MAX_BYTES: Final = 4096
STREAM_NODE_MAX_ENTRIES: Final = 100
SCAN_POSITIONS_PER_FIELD: Final = 16384
# A string value of this many bytes or more goes to the file as it is, not copied (C writer).
BIG_VALUE_BYTES: Final = 1 << 16

_I64: Final = struct.Struct("<q")
_U64: Final = struct.Struct("<Q")
_DOUBLE: Final = struct.Struct("<d")


class RdbError(ValueError):
    """The file is not an RDB file this reader can load; the message says why and where."""


class ChecksumError(RdbError):
    pass


@dataclass(frozen=True, slots=True)
class SnapshotState:
    """What a memlog snapshot records beside the keyspace, all from an
    `cacheshim.apply.Applier` (`snapshot_state`): the log index it covers, the apply time
    (the newest record time applied), the clients blocked in BLPOP & co., and the pieces of
    large records still arriving. It does not change as that applier goes on (the blocked
    clients are copied, the pieces are prefixes of buffers apply only appends to); the
    keyspace does, so apply must wait while `write_rdb` runs."""

    index: int
    time_ms: int
    blocked: model.BlockedState = field(default_factory=model.BlockedState)
    pieces: tuple[model.PendingPieces, ...] = ()
    acl: bytes = b""  # the ACL users' dump; empty: never changed (the default user alone)
    # The script cache's bodies, in cache order, and the function libraries' code, in load
    # order (issue 19).
    scripts: tuple[bytes, ...] = ()
    libraries: tuple[bytes, ...] = ()


@dataclass(slots=True)
class WriteResult:
    bytes_written: int
    keys: int
    checksum: int


@dataclass(slots=True)
class LoadResult:
    keyspace: model.Keyspace
    state: SnapshotState | None  # None: not a memlog snapshot (a file from Redis)
    rdb_version: int
    keys: int
    # Every AUX field that is not memlog's (redis-ver, ctime, ...), as found.
    aux: dict[bytes, bytes] = field(default_factory=dict)
    # Set by `restore`, which hands the keyspace and the pieces' buffers to the applier.
    restored: bool = False


# -- small encodings -------------------------------------------------------------------------


def encode_length(n: int) -> bytes:
    if n < 0x40:
        return bytes((n,))
    if n < 0x4000:
        return bytes((0x40 | (n >> 8), n & 0xFF))
    if n <= 0xFFFFFFFF:
        return b"\x80" + n.to_bytes(4, "big")
    return b"\x81" + n.to_bytes(8, "big")


_SMALL_LENGTHS: Final = [bytes((n,)) for n in range(0x40)]
_SMALL_VARINTS: Final = [bytes((n,)) for n in range(0x80)]
# An 8-bit integer encoding's byte -> the integer's text (two's complement).
_INT8_TEXT: Final = [b"%d" % (n - 256 if n > 127 else n) for n in range(256)]


def encode_string(data: bytes) -> bytes:
    """An RDB string: in an integer encoding when Redis would use one (a strict integer of
    at most 11 bytes that fits 32 bits), else length-prefixed."""
    size = len(data)
    # Cheap tests first: an integer ends in a digit and starts with one or "-".
    if size <= 11 and size and 0x30 <= data[-1] <= 0x39 and 0x2D <= data[0] <= 0x39:
        number = model.strict_int(data)
        if number is not None:
            if -128 <= number <= 127:
                return b"\xc0" + (number & 0xFF).to_bytes(1, "little")
            if -32768 <= number <= 32767:
                return b"\xc1" + (number & 0xFFFF).to_bytes(2, "little")
            if -(2**31) <= number < 2**31:
                return b"\xc2" + (number & 0xFFFFFFFF).to_bytes(4, "little")
    if size < 0x40:
        return _SMALL_LENGTHS[size] + data
    return encode_length(size) + data


def encode_blob(data: bytes) -> bytes:
    """A string written as its bytes (never an integer encoding): packed nodes."""
    return encode_length(len(data)) + data


def varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return _SMALL_VARINTS[n]
    if n < 0:
        raise ValueError(f"a negative number {n} in a memlog field")
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _aux(key: bytes, value: bytes) -> bytes:
    return bytes((OP_AUX,)) + encode_string(key) + encode_string(value)


# -- writing ---------------------------------------------------------------------------------


class _Sink:
    """Bytes to the file in chunks, checksummed on the way."""

    __slots__ = ("buffer", "chunk_bytes", "crc", "out", "written")

    def __init__(self, out: BinaryIO, chunk_bytes: int) -> None:
        self.out = out
        self.chunk_bytes = chunk_bytes
        self.buffer = bytearray()
        self.crc = 0
        self.written = 0

    def write(self, data: bytes) -> None:
        if len(data) >= self.chunk_bytes:  # a big value: straight through, not copied
            self.flush()
            self._emit(data)
            return
        self.buffer += data
        if len(self.buffer) >= self.chunk_bytes:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self._emit(self.buffer)
            self.buffer = bytearray()

    def _emit(self, data: bytes | bytearray) -> None:
        self.crc = crc64(self.crc, data)
        self.out.write(data)
        self.written += len(data)


def write_rdb(
    keyspace: model.Keyspace,
    out: BinaryIO,
    state: SnapshotState | None = None,
    *,
    ctime_s: int | None = None,
    chunk_bytes: int = 1 << 20,
    native: bool = True,
) -> WriteResult:
    """Write keyspace to out as an RDB file; a memlog snapshot too when state is given.
    native=False: the keys by this module's own loop even when the C one is built (the
    specification the C loop is tested against).

    ctime (the file's creation time, informational) is the state's apply time when there
    is a state, so the bytes depend on nothing else; else ctime_s or the clock.
    """
    sink = _Sink(out, chunk_bytes)
    write = sink.write
    write(b"REDIS%04d" % RDB_VERSION)
    if ctime_s is None:
        ctime_s = state.time_ms // 1000 if state is not None else int(time.time())
    write(_aux(b"redis-ver", REDIS_VERSION))
    write(_aux(b"redis-bits", b"64"))
    write(_aux(b"ctime", b"%d" % ctime_s))
    write(_aux(b"used-mem", b"0"))
    write(_aux(b"aof-base", b"0"))
    if state is not None:
        write(_aux(AUX_FORMAT, b"%d" % FORMAT_VERSION))
        write(_aux(AUX_INDEX, b"%d" % state.index))
        write(_aux(AUX_TIME, b"%d" % state.time_ms))
        write(_aux(AUX_EXPIRED, b"%d" % keyspace.expired_keys))
        if state.acl:
            write(_aux(AUX_ACL, state.acl))
        limits = (keyspace.stream_node_max_bytes, keyspace.stream_node_max_entries)
        if limits != (STREAM_NODE_MAX_BYTES, STREAM_NODE_MAX_ENTRIES):
            write(_aux(AUX_STREAM_NODE, b"%d %d" % limits))
        if keyspace.notify_flags:
            write(_aux(AUX_NOTIFY, b"%d" % keyspace.notify_flags))
    keys_written = 0
    for db in keyspace.dbs:
        memlog = state is not None
        if memlog and (db.data or db.changed_at or db.expired_at):
            bits = model.scan_bits(db)
            write(_aux(AUX_DB, b"%d %d" % (db.index, bits)))
        if db.data:
            write(bytes((OP_SELECTDB,)) + encode_length(db.index))
            write(bytes((OP_RESIZEDB,)) + encode_length(len(db.data)))
            write(encode_length(len(db.expires)))
            if _writer is not None and native:
                # The same bytes from C (_native_write.c), which hands the values it does not
                # know to _key_meta and encode_value below.
                keys_written += _writer.write_keys(
                    write, db.index, db.data, db.expires, db.changed_at, memlog,
                    KEYS_PER_META, BIG_VALUE_BYTES, chunk_bytes,
                )  # fmt: skip
            else:
                keys = list(db.data)  # insertion order, which KEYS and others answer in
                for start in range(0, len(keys), KEYS_PER_META):
                    batch = keys[start : start + KEYS_PER_META]
                    if memlog:
                        write(_aux(AUX_KEYS, _meta_blob(db, batch)))
                    for key in batch:
                        _write_key(write, db, key)
                keys_written += len(keys)
        if memlog:
            if not db.data:
                positions = None
            elif _writer is not None and native:
                positions = _writer.scan_positions(model.scan_buckets(db), db.data)
            else:
                positions = model.scan_order_positions(db)
            if positions is not None:
                for start in range(0, len(positions), SCAN_POSITIONS_PER_FIELD):
                    chunk = positions[start : start + SCAN_POSITIONS_PER_FIELD]
                    write(_aux(AUX_SCAN, varint(db.index) + b"".join(map(varint, chunk))))
            data = db.data
            # Sorted after the filter: the same pairs, without sorting every live key's.
            if _writer is not None and native:
                gone = sorted(_writer.gone_pairs(db.changed_at, data))
            else:
                gone = sorted((k, c) for k, c in db.changed_at.items() if k not in data)
            for blob in _pair_blobs(db.index, gone):
                write(_aux(AUX_GONE, blob))
            for blob in _pair_blobs(db.index, sorted(db.expired_at.items())):
                write(_aux(AUX_EXPIRED_AT, blob))
    if state is not None:
        _write_applier_state(write, state)
        for body in state.scripts:
            write(_aux(AUX_SCRIPT, body))
        for code in state.libraries:
            write(_aux(AUX_FUNCTION, code))
    write(bytes((OP_EOF,)))
    sink.flush()
    checksum = sink.crc
    out.write(_U64.pack(checksum))
    return WriteResult(sink.written + 8, keys_written, checksum)


def _meta_blob(db: model.Database, keys: Sequence[bytes]) -> bytes:
    """memlog-keys: the db, how many keys follow, then per key its last change (+1; 0 for
    none) and shape (model.shape), and a hash's pick order when it has its own."""
    parts = [varint(db.index), varint(len(keys))]
    changed_at = db.changed_at
    data = db.data
    for key in keys:
        changed = changed_at.get(key)
        parts.append(varint(0 if changed is None else changed + 1))
        parts.append(_key_meta(data[key]))
    return b"".join(parts)


def _key_meta(value: object) -> bytes:
    """A key's part of memlog-keys after its last change: its shape, then a hash's pick
    order when it has its own (also what the C writer asks for a value it does not know)."""
    shape = model.shape(value)
    picks = model.hash_pick_order(value) if isinstance(value, model.HashValue) else None
    if picks is None:
        return varint(shape)
    return b"".join([varint(shape | model.HASH_PICKS), varint(len(picks)), *map(varint, picks)])


def _pair_blobs(db_index: int, pairs: Iterable[tuple[bytes, int]]) -> Iterator[bytes]:
    """memlog-gone and memlog-expired: the db, then (key length, key, index) per key. The
    caller gives the pairs by key, so the bytes do not depend on the order of changes."""
    parts = [varint(db_index)]
    size = 0
    for key, index in pairs:
        entry = varint(len(key)) + key + varint(index)
        parts.append(entry)
        size += len(entry)
        if size >= GONE_BYTES_MAX:
            yield b"".join(parts)
            parts, size = [varint(db_index)], 0
    if size:
        yield b"".join(parts)


def _blob(data: bytes) -> bytes:
    return varint(len(data)) + data


def _write_applier_state(write: Callable[[bytes], None], state: SnapshotState) -> None:
    """memlog-blocked (the blocked clients, in the order they blocked), memlog-blocked-dbs
    (the databases in the blocking machinery's order, with their ready keys), then per held
    large record memlog-pieces and its bytes in memlog-piece-data fields."""
    blocked = state.blocked
    parts = [varint(FIELD_LAYOUT)]
    size = 0
    for client in blocked.clients:
        entry = [
            _blob(client.shim_id.encode()), varint(client.proposal_id), varint(client.db),
            varint(client.kind),
            varint(0 if client.deadline_ms is None else client.deadline_ms + 1),
            varint(len(client.args)), *map(_blob, client.args),
            varint(len(client.keys)), *map(_blob, client.keys),
        ]  # fmt: skip
        parts.extend(entry)
        size += sum(map(len, entry))
        if size >= GONE_BYTES_MAX:
            write(_aux(AUX_BLOCKED, b"".join(parts)))
            parts, size = [varint(FIELD_LAYOUT)], 0
    if size:
        write(_aux(AUX_BLOCKED, b"".join(parts)))
    if blocked.db_order:
        parts = [varint(FIELD_LAYOUT), varint(len(blocked.db_order))]
        for db, ready in zip(blocked.db_order, blocked.ready, strict=True):
            parts += [varint(db), varint(len(ready)), *map(_blob, ready)]
        write(_aux(AUX_BLOCKED_DBS, b"".join(parts)))
    for p in state.pieces:
        head = [FIELD_LAYOUT, p.proposal_id, p.parts, p.record_bytes, p.first_index]
        head += [p.next_part, p.last_index, p.last_time_ms, p.size]
        shim = _blob(p.shim_id.encode())
        write(_aux(AUX_PIECES, varint(head[0]) + shim + b"".join(map(varint, head[1:]))))
        for chunk in p.chunks(PIECE_DATA_BYTES):
            # The AUX opcode, the name, then the chunk as a string, never copied whole.
            write(bytes((OP_AUX,)) + encode_string(AUX_PIECE_DATA) + encode_length(len(chunk)))
            write(chunk)


def _write_key(write: Callable[[bytes], None], db: model.Database, key: bytes) -> None:
    value: object = db.data[key]
    when = db.expires.get(key)
    head = b"" if when is None else bytes((OP_EXPIRETIME_MS,)) + _I64.pack(when)
    kind, body = encode_value(value)
    if len(body) == 1:
        write(head + bytes((kind,)) + encode_string(key) + body[0])
    else:  # a long string: its bytes go out as they are, not copied into one piece
        write(head + bytes((kind,)) + encode_string(key) + b"".join(body[:-1]))
        write(body[-1])


def encode_value(value: object) -> tuple[int, list[bytes]]:
    """A value's RDB type and serialization (what follows the key in a file, and DUMP's
    payload after the type byte), in pieces that join into it."""
    kind = model.KIND_BY_TYPE.get(type(value))
    if kind is None:
        if type(value) is model.PackedValue:  # untouched since a load: its bytes as they were
            return value.rdb_type, [value.payload]
        kind = model.kind(value)
    if kind == model.STRING:
        assert isinstance(value, bytes)
        if len(value) < 1024:
            return T_STRING, [encode_string(value)]
        return T_STRING, [encode_length(len(value)), bytes(value)]
    if kind == model.LIST:
        assert isinstance(value, model.ListValue)
        nodes = list(_list_nodes(value))
        parts = [encode_length(len(nodes))]
        for node in nodes:
            parts.append(b"\x02")  # QUICKLIST_PACKED
            parts.append(encode_blob(node))
        return T_LIST_QUICKLIST_2, [b"".join(parts)]
    if kind == model.SET:
        assert isinstance(value, model.SetValue)
        members = model.set_members(value)
        return T_SET, [encode_length(len(members)) + b"".join([encode_string(m) for m in members])]
    if kind == model.HASH:
        assert isinstance(value, model.HashValue)
        parts = [encode_length(len(value))]
        for name, item in model.hash_pairs(value):
            parts.append(encode_string(name))
            parts.append(encode_string(item))
        return T_HASH, [b"".join(parts)]
    if kind == model.STREAM:
        assert isinstance(value, model.Stream)
        return T_STREAM_LISTPACKS_2, [streamrdb.encode_stream(value, encode_length, encode_blob)]
    assert isinstance(value, model.ZSet)
    # Highest score first, as Redis writes a skiplist (each loads in at the head).
    parts = [encode_length(len(value))]
    pack = _DOUBLE.pack
    for score, member in model.zset_entries(value, descending=True):
        parts.append(encode_string(member))
        parts.append(pack(score))
    return T_ZSET_2, [b"".join(parts)]


def dump_payload(value: object) -> bytes:
    """DUMP's serialization: the type byte and the value as in an RDB file, then the RDB
    version (2 bytes) and the CRC-64 of all that (8 bytes), both little-endian."""
    kind, body = encode_value(value)
    data = bytes((kind,)) + b"".join(body) + RDB_VERSION.to_bytes(2, "little")
    return data + _U64.pack(crc64(0, data))


def payload_is_valid(payload: bytes) -> bool:
    """verifyDumpPayload: a version this server writes or older, and a matching CRC-64."""
    if len(payload) < 10:
        return False
    if int.from_bytes(payload[-10:-8], "little") > RDB_VERSION:
        return False
    return _U64.pack(crc64(0, payload[:-8])) == payload[-8:]


def load_payload(payload: bytes, key: bytes) -> object:
    """The value of a DUMP payload that passed payload_is_valid; RdbError if it does not
    hold a value memlog can load."""
    body = payload[:-10]
    if not body:
        raise RdbError("an empty payload")
    src = _Source(io.BytesIO(body), len(body))
    return _read_value(src, src.byte(), key, 0, None, None)


def _list_nodes(value: model.ListValue) -> Iterator[bytes]:
    """The list as listpack nodes of at most LIST_NODE_BYTES_MAX bytes (an element bigger
    than that gets a node of its own), as a quicklist of Redis's default size holds it."""
    entries: list[bytes] = []
    size = packed.LISTPACK_HEADER_BYTES + 1
    for item in value:
        entry = packed.listpack_entry(item)
        if entries and (size + len(entry) > LIST_NODE_BYTES_MAX or len(entries) >= 65535):
            yield packed.join_listpack(entries)
            entries, size = [], packed.LISTPACK_HEADER_BYTES + 1
        entries.append(entry)
        size += len(entry)
    if entries:
        yield packed.join_listpack(entries)


# -- reading ---------------------------------------------------------------------------------


class _Source:
    """Bytes from the file in chunks, checksummed as they are consumed."""

    __slots__ = ("buffer", "chunk_bytes", "crc", "inp", "offset", "position", "size")

    def __init__(self, inp: BinaryIO, chunk_bytes: int) -> None:
        self.inp = inp
        self.chunk_bytes = chunk_bytes
        self.buffer = b""
        self.size = 0  # len(buffer)
        self.position = 0
        self.offset = 0  # file offset of buffer[0]
        self.crc = 0  # of everything before buffer[0]

    def take(self, n: int) -> bytes:
        end = self.position + n
        if end <= self.size:
            data = self.buffer[self.position : end]
            self.position = end
            return data
        self._refill(n)
        data = self.buffer[:n]
        self.position = n
        return data

    def byte(self) -> int:
        position = self.position
        if position < self.size:
            self.position = position + 1
            return self.buffer[position]
        return self.take(1)[0]

    def _refill(self, n: int) -> None:
        consumed = memoryview(self.buffer)[: self.position]
        self.crc = crc64(self.crc, consumed)
        consumed.release()
        self.offset += self.position
        parts = [self.buffer[self.position :]]
        have = len(parts[0])
        while have < n:
            # Never ask for more than 64 MiB at once: a corrupt length may be huge.
            chunk = self.inp.read(min(max(self.chunk_bytes, n - have), 1 << 26))
            if not chunk:
                raise RdbError(f"unexpected end of file at offset {self.offset + have}")
            parts.append(chunk)
            have += len(chunk)
        self.buffer = b"".join(parts)
        self.size = len(self.buffer)
        self.position = 0

    def checksum(self) -> int:
        """The CRC of everything consumed so far."""
        return crc64(self.crc, memoryview(self.buffer)[: self.position])

    def tell(self) -> int:
        return self.offset + self.position

    # RDB's own encodings

    def length(self) -> int:
        first = self.byte()
        kind = first >> 6
        if kind == 0:
            return first & 0x3F
        if kind == 1:
            return ((first & 0x3F) << 8) | self.byte()
        if first == 0x80:
            return int.from_bytes(self.take(4), "big")
        if first == 0x81:
            return int.from_bytes(self.take(8), "big")
        raise RdbError(f"bad length byte 0x{first:02x} at offset {self.tell() - 1}")

    def string(self) -> bytes:
        # The common cases inline: a length under 16384, or an 8-bit integer, in the buffer.
        buffer = self.buffer
        position = self.position
        size = self.size
        if position + 2 <= size:
            first = buffer[position]
            if first < 0x40:
                end = position + 1 + first
                if end <= size:
                    self.position = end
                    return buffer[position + 1 : end]
            elif first < 0x80:
                start = position + 2
                end = start + (((first & 0x3F) << 8) | buffer[position + 1])
                if end <= size:
                    self.position = end
                    return buffer[start:end]
            elif first == 0xC0:
                self.position = position + 2
                return _INT8_TEXT[buffer[position + 1]]
        return self._string_slow()

    def strings(self, count: int) -> list[bytes]:
        """count strings in a row (string() unrolled into one loop)."""
        out: list[bytes] = []
        append = out.append
        buffer, size, position = self.buffer, self.size, self.position
        for _ in range(count):
            if position + 2 <= size:
                first = buffer[position]
                if first < 0x40:
                    end = position + 1 + first
                    if end <= size:
                        append(buffer[position + 1 : end])
                        position = end
                        continue
                elif first < 0x80:
                    start = position + 2
                    end = start + (((first & 0x3F) << 8) | buffer[position + 1])
                    if end <= size:
                        append(buffer[start:end])
                        position = end
                        continue
                elif first == 0xC0:
                    append(_INT8_TEXT[buffer[position + 1]])
                    position += 2
                    continue
            self.position = position
            append(self._string_slow())
            buffer, size, position = self.buffer, self.size, self.position
        self.position = position
        return out

    def _string_slow(self) -> bytes:
        first = self.byte()
        kind = first >> 6
        if kind == 0:
            return self.take(first & 0x3F)
        if kind == 1:
            return self.take(((first & 0x3F) << 8) | self.byte())
        if kind == 2:
            if first == 0x80:
                return self.take(int.from_bytes(self.take(4), "big"))
            if first == 0x81:
                return self.take(int.from_bytes(self.take(8), "big"))
            raise RdbError(f"bad length byte 0x{first:02x} at offset {self.tell() - 1}")
        encoding = first & 0x3F
        if encoding == 0:
            return b"%d" % int.from_bytes(self.take(1), "little", signed=True)
        if encoding == 1:
            return b"%d" % int.from_bytes(self.take(2), "little", signed=True)
        if encoding == 2:
            return b"%d" % int.from_bytes(self.take(4), "little", signed=True)
        if encoding == 3:
            at = self.tell() - 1
            compressed = self.length()
            size = self.length()
            try:
                return decompress(self.take(compressed), size)
            except LzfError as exc:
                raise RdbError(f"bad LZF string at offset {at}: {exc}") from None
        raise RdbError(f"unknown string encoding {encoding} at offset {self.tell() - 1}")

    def text_double(self) -> float:
        size = self.byte()
        if size == 255:
            return float("-inf")
        if size == 254:
            return float("inf")
        if size == 253:
            raise RdbError(f"a NaN score at offset {self.tell() - 1}")
        return _score(self.take(size), self.tell())

    def binary_double(self) -> float:
        value: float = _DOUBLE.unpack(self.take(8))[0]
        if value != value:
            raise RdbError(f"a NaN score at offset {self.tell() - 8}")
        return value


def _score(text: bytes, offset: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RdbError(f"bad score {text[:40]!r} near offset {offset}") from None
    if value != value:
        raise RdbError(f"a NaN score near offset {offset}")
    return value


@dataclass(slots=True)
class _Meta:
    """A memlog-keys field being consumed: `left` entries from blob[position:] (checked
    whole by `_read_meta`; `pop` and the C loader take entries from the same cursor)."""

    db: int
    blob: bytes
    position: int
    left: int

    def pop(self) -> tuple[int | None, int, list[int] | None]:
        """The next key's (last change, shape, hash pick order)."""
        blob = self.blob
        values: list[int] = []
        position = self.position
        want = 2
        while len(values) < want:
            number = shift = 0
            while True:
                byte = blob[position]
                position += 1
                number |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
            values.append(number)
            if len(values) == 2 and values[1] & model.HASH_PICKS:
                want = 3
            elif len(values) == 3:
                want = 3 + values[2]
        self.position = position
        self.left -= 1
        changed, shape = values[0], values[1]
        picks = None
        if shape & model.HASH_PICKS:
            picks = values[3:]
            shape &= ~model.HASH_PICKS
        return (changed - 1 if changed else None), shape, picks


def _load_native() -> Any:
    """The C key loader (cacheshim/snapshot/_native.c: load_keys), configured with the value
    classes; None without the extension, with MEMLOG_PURE_PYTHON=1, or when the value
    classes no longer have the slots it fills."""
    if os.environ.get("MEMLOG_PURE_PYTHON") == "1":
        return None
    try:
        from cacheshim.snapshot import _native  # type: ignore[attr-defined]
    except ImportError:
        return None
    classes = model.native_classes()
    if classes is None:
        return None
    try:
        _native.configure(*classes, heapq.heappush, model.ZSet.from_sorted)
        _native.configure_packed(model.PackedValue)
    except (TypeError, AttributeError):  # a slot is no longer a plain slot
        return None
    return _native


_native: Final = _load_native()
HAVE_C_LOADER: Final = _native is not None


def _load_writer() -> Any:
    """The C key writer (cacheshim/snapshot/_native_write.c: write_keys), configured with the
    value classes and this module's fallbacks for any other value; None without the
    extension or with MEMLOG_PURE_PYTHON=1. It reads a value's insides where they are what it
    expects and hands any other value to _key_meta and encode_value, key by key."""
    if os.environ.get("MEMLOG_PURE_PYTHON") == "1":
        return None
    try:
        from cacheshim.snapshot import _native_write  # type: ignore[attr-defined]
    except ImportError:
        return None
    _native_write.configure(
        model.STRING_CLASSES, model.ListValue, model.SetValue, model.HashValue, model.ZSet,
        _key_meta, encode_value,
    )  # fmt: skip
    return _native_write


_writer: Final = _load_writer()
HAVE_C_WRITER: Final = _writer is not None


def read_rdb(
    inp: BinaryIO, *, chunk_bytes: int = 1 << 20, native: bool = True, lazy: bool = False
) -> LoadResult:
    """Load the RDB file inp into a new keyspace (see the module doc). native: let the C
    loader take the key records it can (the result is the same; False: this code alone).
    lazy: with the C loader, keep a memlog snapshot's lists, sets, hashes and sorted sets
    packed until first touched (keyspace.PackedValue; the keyspace decodes them with
    `unpack_value`): what a restart wants. Once every value is decoded the keyspace is the
    one an eager load builds; a value malformed in a way only its decoding sees (a member
    twice) raises RdbError at its first touch instead of here (the CRC-64 checked here
    guards against damage; only a faulty writer could make one).

    The cyclic garbage collector is paused meanwhile: the load makes millions of objects
    and no cycles, and each collection would walk them all again. After a load they are
    moved out of its reach for good (gc.freeze), or the first collections after it would
    walk them all the same (reference counting still frees them when they go). With the C
    loader, the allocator's new arenas are mapped populated meanwhile (_native.c:
    populate_arenas), sparing a page fault per page of the keyspace."""
    paused = gc.isenabled()
    gc.disable()
    fast: Any = _native if native else None
    populating = fast is not None and not fast.populate_arenas(True)
    try:
        result = _read_rdb(inp, chunk_bytes, fast, lazy)
        gc.freeze()
        return result
    finally:
        if populating:
            fast.populate_arenas(False)
        if paused:
            gc.enable()


def _read_rdb(inp: BinaryIO, chunk_bytes: int, fast: Any, lazy: bool) -> LoadResult:
    src = _Source(inp, chunk_bytes)
    magic = src.take(9)
    if magic[:5] != b"REDIS" or not magic[5:].isdigit():
        raise RdbError("not an RDB file (no REDIS magic at the start)")
    version = int(magic[5:])
    if not 1 <= version <= RDB_VERSION_READ_MAX:
        raise RdbError(f"RDB version {version} is not one this reader knows (1 to 11)")
    keyspace = model.new_keyspace()
    result = LoadResult(keyspace, None, version, 0)
    db = keyspace.dbs[0]
    expire: int | None = None
    memlog = False
    index: int | None = None
    time_ms: int | None = None
    meta: _Meta | None = None
    scan_orders: dict[int, list[int]] = {}  # db -> memlog-scan positions
    clients: list[model.BlockedClient] = []
    blocked_dbs: model.BlockedState | None = None
    pieces: list[_PiecesRead] = []
    acl = b""
    scripts: list[bytes] = []  # memlog-script-v1 bodies, in cache order
    libraries: list[bytes] = []  # memlog-function-v1 code, in load order
    while True:
        if fast is not None and expire is None and (meta is not None or not memlog):
            # The C loader takes the run of key records from here that it can (maybe none);
            # this loop goes on from the first it leaves (see _native.c: load_keys).
            src.position, loaded = fast.load_keys(
                src.buffer, src.position, db, meta if memlog else None, lazy
            )
            result.keys += loaded
        at = src.offset + src.position
        op = src.byte()
        if op < OP_FUNCTION2:  # a key and its value (the common case first)
            key = src.string()
            shape: int | None = None
            picks: list[int] | None = None
            changed: int | None = None
            if memlog:
                if meta is None or not meta.left or meta.db != db.index:
                    raise RdbError(f"key {key[:60]!r} at offset {at} has no memlog-keys entry")
                changed, shape, picks = meta.pop()
            loaded = _read_value(src, op, key, at, shape, picks)
            if key in db.data:
                raise RdbError(f"duplicate key {key[:60]!r} in db {db.index} at offset {at}")
            db.set(key, cast(model.Value, loaded), 0)
            if expire is not None:
                db.set_expiry(key, expire, 0)
                expire = None
            if changed is None:
                db.changed_at.pop(key, None)
            else:
                db.changed_at[key] = changed
            result.keys += 1
            continue
        if op == OP_EXPIRETIME_MS:
            expire = _I64.unpack(src.take(8))[0]
            continue
        if op == OP_EXPIRETIME:
            expire = int.from_bytes(src.take(4), "little", signed=True) * 1000
            continue
        if op == OP_SELECTDB:
            number = src.length()
            if number >= model.DATABASES:
                raise RdbError(f"database {number} at offset {at}: memlog has 16 (0 to 15)")
            db = keyspace.dbs[number]
            continue
        if op == OP_RESIZEDB:
            src.length()
            src.length()
            continue
        if op == OP_IDLE:
            src.length()
            continue
        if op == OP_FREQ:
            src.byte()
            continue
        if op == OP_AUX:
            name = src.string()
            value = src.string()
            if not name.startswith(b"memlog-"):
                result.aux[name] = value
                continue
            if name == AUX_FORMAT:
                fmt = _int(value, name)
                if fmt > FORMAT_VERSION:
                    raise RdbError(
                        f"memlog snapshot format {fmt} is newer than this reader ({FORMAT_VERSION})"
                    )
                if fmt < FORMAT_VERSION:
                    raise RdbError(
                        f"memlog snapshot format {fmt} is older than this reader "
                        f"({FORMAT_VERSION}) and lacks state apply needs: replay the log instead"
                    )
                memlog = True
            elif name == AUX_INDEX:
                index = _int(value, name)
            elif name == AUX_TIME:
                time_ms = _int(value, name)
            elif name == AUX_EXPIRED:
                keyspace.expired_keys = _int(value, name)
            elif name == AUX_DB:
                _read_db_field(keyspace, value)
            elif name == AUX_KEYS:
                if meta is not None and meta.left:
                    raise RdbError(f"memlog-keys at offset {at} before its keys all came")
                meta = _read_meta(value, at, fast)
            elif name == AUX_GONE:
                _read_pairs(keyspace, value, at, "changed_at")
            elif name == AUX_EXPIRED_AT:
                _read_pairs(keyspace, value, at, "expired_at")
            elif name == AUX_BLOCKED:
                clients.extend(_read_blocked(value, at))
            elif name == AUX_BLOCKED_DBS:
                blocked_dbs = _read_blocked_dbs(value, at)
            elif name == AUX_PIECES:
                if pieces and len(pieces[-1].data) != pieces[-1].size:
                    raise RdbError(f"memlog-pieces at offset {at} before the last one's bytes")
                pieces.append(_read_pieces(value, at))
            elif name == AUX_PIECE_DATA:
                if not pieces or len(pieces[-1].data) + len(value) > pieces[-1].size:
                    raise RdbError(f"memlog-piece-data at offset {at} without room for it")
                pieces[-1].data += value
            elif name == AUX_ACL:
                acl = value
            elif name == AUX_STREAM_NODE:
                node_bytes, _, node_entries = value.partition(b" ")
                keyspace.stream_node_max_bytes = _int(node_bytes, name)
                keyspace.stream_node_max_entries = _int(node_entries, name)
            elif name == AUX_NOTIFY:
                keyspace.notify_flags = _int(value, name)
            elif name == AUX_SCRIPT:
                scripts.append(value)
            elif name == AUX_FUNCTION:
                libraries.append(value)
            elif name == AUX_SCAN:
                numbers = list(_varints(value, at))
                if not numbers or numbers[0] >= model.DATABASES:
                    raise RdbError(f"bad memlog-scan field at offset {at}")
                scan_orders.setdefault(numbers[0], []).extend(numbers[1:])
            # other memlog- fields: from a newer writer of the same format, skipped
            continue
        if op == OP_EOF:
            break
        if op in (OP_MODULE_AUX, OP_FUNCTION2, OP_FUNCTION_PRE_GA):
            what = "module data" if op == OP_MODULE_AUX else "functions (FUNCTION LOAD)"
            raise RdbError(f"the file holds {what} at offset {at}: memlog cannot load them")
    expected = src.checksum()
    if version >= 5:
        stored = _U64.unpack(src.take(8))[0]
        if stored == 0 and memlog:  # Redis's "rdbchecksum no"; memlog always writes one
            raise ChecksumError("a memlog snapshot without its checksum (the file is corrupt)")
        if stored != 0 and stored != expected:
            raise ChecksumError(
                f"RDB checksum mismatch: the file says {stored:016x}, its contents give "
                f"{expected:016x} (the file is corrupt or truncated)"
            )
    if memlog:
        if meta is not None and meta.left:
            raise RdbError("memlog-keys lists more keys than the file holds")
        if index is None or time_ms is None:
            raise RdbError("a memlog snapshot without memlog-index or memlog-time-ms")
        for number, positions in scan_orders.items():
            db = keyspace.dbs[number]
            try:
                model.restore_scan_order(db, model.scan_bits(db), positions)
            except ValueError as exc:
                raise RdbError(f"database {number}: {exc}") from None
        if pieces and len(pieces[-1].data) != pieces[-1].size:
            raise RdbError("memlog-pieces without all of its bytes")
        order = blocked_dbs or model.BlockedState()
        result.state = SnapshotState(
            index,
            time_ms,
            model.BlockedState(tuple(clients), order.db_order, order.ready),
            tuple(p.done() for p in pieces),
            acl,
            tuple(scripts),
            tuple(libraries),
        )
    return result


def _int(value: bytes, name: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        raise RdbError(f"AUX field {name.decode()} is not a number: {value[:40]!r}") from None


def _varints(blob: bytes, at: int) -> Iterator[int]:
    """The unsigned LEB128 numbers of blob, one at a time (raises at a truncated one)."""
    number = shift = 0
    for byte in blob:
        number |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
        else:
            yield number
            number = shift = 0
    if shift:
        raise RdbError(f"truncated number in a memlog field at offset {at}")


def _read_db_field(keyspace: model.Keyspace, value: bytes) -> None:
    try:
        number, bits = (int(part) for part in value.split(b" "))
        model.prepare_scan_table(keyspace.dbs[number], bits)
    except (ValueError, IndexError):
        raise RdbError(f"bad memlog-db field {value[:60]!r}") from None


def _read_meta(blob: bytes, at: int, fast: Any = None) -> _Meta:
    """A memlog-keys field, its structure checked whole (in C when it can say it is good)."""
    found = fast.meta_check(blob) if fast is not None else None
    if isinstance(found, tuple):
        db, count = found
    else:
        db, count = _check_meta(blob, at)
    start = 0
    for _ in range(2):  # the entries start after the db and the count
        while blob[start] & 0x80:
            start += 1
        start += 1
    return _Meta(db, bytes(blob), start, count)


def _check_meta(blob: bytes, at: int) -> tuple[int, int]:
    numbers = _varints(blob, at)
    try:
        db = next(numbers)
        count = next(numbers)
        for _ in range(count):
            next(numbers)
            shape = next(numbers)
            if shape & model.HASH_PICKS:
                for _ in range(next(numbers)):
                    next(numbers)
    except StopIteration:
        raise RdbError(f"truncated memlog-keys field at offset {at}") from None
    if next(numbers, None) is not None:
        raise RdbError(f"trailing bytes in the memlog-keys field at offset {at}")
    return db, count


class _Cursor:
    """Reads a binary memlog field: varints and length-prefixed byte strings."""

    __slots__ = ("at", "blob", "name", "position")

    def __init__(self, blob: bytes, at: int, name: str) -> None:
        self.blob = blob
        self.at = at
        self.name = name
        self.position = 0

    def more(self) -> bool:
        return self.position < len(self.blob)

    def number(self) -> int:
        blob = self.blob
        value = shift = 0
        while True:
            if self.position >= len(blob):
                raise RdbError(f"truncated {self.name} field at offset {self.at}")
            byte = blob[self.position]
            self.position += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def bytes(self) -> bytes:
        size = self.number()
        end = self.position + size
        if end > len(self.blob):
            raise RdbError(f"truncated {self.name} field at offset {self.at}")
        data = self.blob[self.position : end]
        self.position = end
        return data

    def text(self) -> str:
        try:
            return self.bytes().decode()
        except UnicodeDecodeError:
            raise RdbError(f"a name that is not UTF-8 in {self.name} at offset {self.at}") from None

    def layout(self) -> None:
        found = self.number()
        if found != FIELD_LAYOUT:
            raise RdbError(
                f"{self.name} field at offset {self.at} has layout {found}, this reader knows "
                f"{FIELD_LAYOUT}"
            )

    def end(self) -> None:
        if self.more():
            raise RdbError(f"trailing bytes in the {self.name} field at offset {self.at}")


def _read_pairs(keyspace: model.Keyspace, blob: bytes, at: int, which: str) -> None:
    """memlog-gone into changed_at, memlog-expired into expired_at."""
    cur = _Cursor(blob, at, "memlog-gone" if which == "changed_at" else "memlog-expired")
    db_number = cur.number()
    if db_number >= model.DATABASES:
        raise RdbError(f"{cur.name} field at offset {at} names database {db_number}")
    db = keyspace.dbs[db_number]
    target = db.changed_at if which == "changed_at" else db.expired_at
    while cur.more():
        key = cur.bytes()
        target[key] = cur.number()


def _read_blocked(blob: bytes, at: int) -> Iterator[model.BlockedClient]:
    cur = _Cursor(blob, at, "memlog-blocked")
    cur.layout()
    while cur.more():
        shim_id = cur.text()
        proposal_id, db, kind, deadline = (cur.number() for _ in range(4))
        args = tuple(cur.bytes() for _ in range(cur.number()))
        keys = tuple(cur.bytes() for _ in range(cur.number()))
        yield model.BlockedClient(
            shim_id, proposal_id, db, args, keys, kind, deadline - 1 if deadline else None
        )


def _read_blocked_dbs(blob: bytes, at: int) -> model.BlockedState:
    cur = _Cursor(blob, at, "memlog-blocked-dbs")
    cur.layout()
    order: list[int] = []
    ready: list[tuple[bytes, ...]] = []
    for _ in range(cur.number()):
        order.append(cur.number())
        ready.append(tuple(cur.bytes() for _ in range(cur.number())))
    cur.end()
    return model.BlockedState((), tuple(order), tuple(ready))


@dataclass(slots=True)
class _PiecesRead:
    head: tuple[str, int, int, int, int, int, int, int]
    size: int
    data: bytearray

    def done(self) -> model.PendingPieces:
        return model.PendingPieces(*self.head, self.data, self.size)


def _read_pieces(blob: bytes, at: int) -> _PiecesRead:
    cur = _Cursor(blob, at, "memlog-pieces")
    cur.layout()
    shim_id = cur.text()
    p, parts, record_bytes, first, next_part, last, last_ms, size = (cur.number() for _ in range(8))
    cur.end()
    return _PiecesRead(
        (shim_id, p, parts, record_bytes, first, next_part, last, last_ms), size, bytearray()
    )


def _read_value(
    src: _Source, kind: int, key: bytes, at: int, shape: int | None, picks: list[int] | None
) -> object:
    try:
        return _read_value_unchecked(src, kind, key, at, shape, picks)
    except (packed.PackedError, struct.error, IndexError, streamrdb.StreamFormatError) as exc:
        raise RdbError(f"key {key[:60]!r} at offset {at}: {exc}") from None
    except ValueError as exc:
        if isinstance(exc, RdbError):
            raise
        raise RdbError(f"key {key[:60]!r} at offset {at}: {exc}") from None


def _pairs(items: list[bytes]) -> list[tuple[bytes, bytes]]:
    if len(items) % 2:
        raise packed.PackedError("an odd number of entries for pairs")
    return list(zip(items[0::2], items[1::2], strict=True))


def _read_value_unchecked(
    src: _Source, kind: int, key: bytes, at: int, shape: int | None, picks: list[int] | None
) -> object:
    string = src.string
    if kind == T_STRING:
        return model.make_string(string(), shape)
    encoded = None if shape is None else bool(shape & 1)
    if kind == T_LIST_QUICKLIST_2:
        items: list[bytes] = []
        for _ in range(src.length()):
            container = src.length()
            node = string()
            if container == QUICKLIST_PACKED:
                items.extend(packed.decode_listpack(node))
            elif container == QUICKLIST_PLAIN:
                items.append(node)
            else:
                raise RdbError(f"key {key[:60]!r}: unknown quicklist node kind {container}")
        return model.make_list(items)
    if kind == T_SET:
        return model.make_set(src.strings(src.length()), encoded)
    if kind == T_HASH:
        flat = src.strings(2 * src.length())
        return model.make_hash(list(zip(flat[0::2], flat[1::2], strict=True)), encoded, picks)
    if kind == T_ZSET_2:
        count = src.length()
        return model.make_zset([(s, m) for m, s in _zset2(src, count)], encoded)
    if kind == T_LIST:
        return model.make_list(src.strings(src.length()))
    if kind == T_ZSET:
        count = src.length()
        entries = []
        for _ in range(count):
            member = string()
            entries.append((src.text_double(), member))
        return model.make_zset(entries, encoded)
    if kind == T_SET_INTSET:
        return model.make_set(packed.decode_intset(string()), encoded)
    if kind == T_SET_LISTPACK:
        return model.make_set(packed.decode_listpack(string()), encoded)
    if kind in (T_HASH_LISTPACK, T_HASH_ZIPLIST, T_HASH_ZIPMAP):
        blob = string()
        decode = {
            T_HASH_LISTPACK: packed.decode_listpack,
            T_HASH_ZIPLIST: packed.decode_ziplist,
            T_HASH_ZIPMAP: packed.decode_zipmap,
        }[kind]
        return model.make_hash(_pairs(decode(blob)), encoded, picks)
    if kind in (T_ZSET_LISTPACK, T_ZSET_ZIPLIST):
        blob = string()
        flat = (packed.decode_listpack if kind == T_ZSET_LISTPACK else packed.decode_ziplist)(blob)
        return model.make_zset([(_score(s, at), m) for m, s in _pairs(flat)], encoded)
    if kind == T_LIST_ZIPLIST:
        return model.make_list(packed.decode_ziplist(string()))
    if kind == T_LIST_QUICKLIST:
        items = []
        for _ in range(src.length()):
            items.extend(packed.decode_ziplist(string()))
        return model.make_list(items)
    if kind in (T_STREAM_LISTPACKS, T_STREAM_LISTPACKS_2, T_STREAM_LISTPACKS_3):
        return streamrdb.read_stream(kind, src.length, string, src.take)
    if kind in (T_MODULE_PRE_GA, T_MODULE_2):
        raise RdbError(f"key {key[:60]!r} at offset {at} is a module type: memlog cannot load it")
    raise RdbError(f"unknown value type {kind} at offset {at}")


def unpack_value(value: model.PackedValue) -> model.Value:
    """A value kept packed by a lazy load, decoded: by the C decoder, or by this module's
    reader where it declines (the same value either way; the fuzz of
    tests/cacheshim/test_snapshot_native.py compares them)."""
    payload = value.payload
    if _native is not None:
        decoded = _native.decode_value(value.rdb_type, value.shape, payload)
        if decoded is not None:
            return cast(model.Value, decoded)
    src = _Source(io.BytesIO(payload), max(len(payload), 1))
    loaded = _read_value(src, value.rdb_type, b"(packed)", 0, value.shape, None)
    if src.tell() != len(payload):
        raise RdbError(f"a packed value of {len(payload)} bytes has {src.tell()} of value")
    return cast(model.Value, loaded)


model.set_unpacker(unpack_value)


def _zset2(src: _Source, count: int) -> Iterator[tuple[bytes, float]]:
    for _ in range(count):
        member = src.string()
        yield member, src.binary_double()


# -- an applier in and out -------------------------------------------------------------------


def snapshot_state(applier: Applier) -> SnapshotState:
    """What `write_rdb` needs of an applier beside its keyspace (see `SnapshotState`)."""
    index, time_ms = model.applier_position(applier)
    acl = applier.acl.dump() if applier.acl.seeded else b""
    return SnapshotState(
        index,
        time_ms,
        model.applier_blocked(applier),
        model.applier_pieces(applier),
        acl,
        tuple(applier.scripts.dump()),
        tuple(applier.scripts.dump_libraries()),
    )


def restore(applier: Applier, result: LoadResult) -> None:
    """Make a fresh applier go on from a loaded memlog snapshot, as the applier it was
    taken from would: the same replies and the same keyspace after every later record."""
    if result.state is None:
        raise RdbError("not a memlog snapshot (no memlog-index): import it through the log")
    if result.restored:
        raise RdbError("this loaded snapshot was restored already (its state is the applier's)")
    state = result.state
    try:
        model.restore_applier(
            applier, result.keyspace, state.index, state.time_ms, state.blocked, state.pieces
        )
        if state.acl:
            applier.acl.load_dump(state.acl)
    except ValueError as exc:
        raise RdbError(f"cannot restore the snapshot: {exc}") from None
    applier.scripts.load(list(state.scripts))
    applier.scripts.load_libraries(list(state.libraries))
    result.restored = True
