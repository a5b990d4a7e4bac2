"""The in-memory keyspace: 16 databases of keys with absolute expiry times.

Values are plain Python objects by Redis type: `bytes` for strings (later: lists, hashes,
sets, sorted sets). Expiry times are absolute unix milliseconds. Reads hide keys expired by
the reader's clock without touching the keyspace; apply (`expire_due`) deletes keys expired
as of the record's time, in a deterministic order, so every shim reclaims the same memory.

Every change to a key records the log index that made it, for WATCH: `changed_at` for the
changes commands make (a flush included, for the keys it removed), `expired_at` for the
removal of a key whose time had come (see `Database.last_change`).
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.types.keyindex import KeyIndex

DATABASES = 16

if TYPE_CHECKING:
    from cacheshim.types.hashvalue import HashValue
    from cacheshim.types.listvalue import ListValue
    from cacheshim.types.setvalue import SetValue
    from cacheshim.types.streamvalue import Stream
    from cacheshim.types.zsetvalue import ZSet

# What a key holds: a string (bytes and its subclasses below) or one of the value types.
Value: TypeAlias = "bytes | ListValue | SetValue | HashValue | ZSet | Stream"
# What `Database.data` may hold: a value, or a collection still packed as a snapshot stored
# it (see PackedValue). Only the keyspace's lookups below see the second: they decode it.
Stored: TypeAlias = "Value | PackedValue"

T = TypeVar("T")


# -- strings: plain bytes, and marks of how Redis would have encoded them -------------------
#
# Redis keeps a string as "int" when it was stored through tryObjectEncoding and reads as a
# 64-bit integer, "embstr" up to 44 bytes, "raw" above; but a string grown in place (APPEND,
# SETRANGE) stays raw, and INCRBYFLOAT's result is never int-encoded. These subclasses carry
# that history (they are bytes everywhere else), so OBJECT ENCODING answers as Redis does.

EMBSTR_BYTES_MAX: Final = 44  # OBJ_ENCODING_EMBSTR_SIZE_LIMIT
SHARED_INTEGERS: Final = 10000  # OBJ_SHARED_INTEGERS: 0..9999 are shared objects
SHARED_REFCOUNT: Final = 2**31 - 1  # OBJ_SHARED_REFCOUNT (INT_MAX)


class RawString(bytes):
    """A string Redis keeps raw whatever it holds: one grown or patched in place."""

    __slots__ = ()


class PlainString(bytes):
    """A string made without the int encoding (INCRBYFLOAT): embstr or raw by length."""

    __slots__ = ()


class PrivateInt(bytes):
    """An int-encoded string in an object of its own, never a shared integer (COPY's)."""

    __slots__ = ()


def string_as_int(value: bytes) -> int | None:
    """The 64-bit integer value spells in Redis's strict form (string2ll), or None: ASCII
    digits, an optional '-', no '+', no leading zero, no "-0", at most 20 bytes."""
    if not 0 < len(value) <= 20:
        return None
    digits = value[1:] if value[0] == 0x2D else value
    if not digits.isdigit() or (digits[0] == 0x30 and len(value) > 1):
        return None
    number = int(value)
    return number if -(2**63) <= number < 2**63 else None


def string_encoding(value: bytes) -> str:
    if isinstance(value, RawString):
        return "raw"
    if not isinstance(value, PlainString) and string_as_int(value) is not None:
        return "int"
    return "embstr" if len(value) <= EMBSTR_BYTES_MAX else "raw"


def string_refcount(value: bytes) -> int:
    if type(value) is bytes:
        number = string_as_int(value)
        if number is not None and 0 <= number < SHARED_INTEGERS:
            return SHARED_REFCOUNT
    return 1


def string_duplicate(value: bytes) -> bytes:
    # dupStringObject: same encoding, but an int gets an object of its own.
    if type(value) is bytes and string_refcount(value) == SHARED_REFCOUNT:
        return PrivateInt(value)
    return value


# -- what each type of value answers to TYPE, OBJECT and COPY -------------------------------


@dataclass(frozen=True, slots=True)
class ValueKind:
    name: str  # TYPE's answer, SCAN's TYPE filter
    encoding: Callable[[Any], str]  # OBJECT ENCODING
    refcount: Callable[[Any], int]  # OBJECT REFCOUNT
    duplicate: Callable[[Any], Any]  # COPY: a value that shares nothing mutable
    # DEBUG DIGEST(-VALUE): feed the value's content to a hash, the same on every shim
    # (an unordered type must feed an order-independent summary; see `unordered_digest`).
    digest: Callable[[Any, Any], None] = lambda value, h: h.update(value)


KINDS: dict[type, ValueKind] = {}


def register_kind(python_type: type, kind: ValueKind) -> None:
    """Declare the Python type that holds one Redis type (subclasses included)."""
    KINDS[python_type] = kind


def kind_of(value: object) -> ValueKind:
    for cls in type(value).__mro__:
        kind = KINDS.get(cls)
        if kind is not None:
            return kind
    raise TypeError(f"no Redis type registered for {type(value).__name__}")


register_kind(bytes, ValueKind("string", string_encoding, string_refcount, string_duplicate))


# -- values kept packed until first touched ----------------------------------------------


class PackedValue:
    """A hash, list, set or sorted set as a memlog snapshot stored it, not decoded yet.

    A restart loads a snapshot's collections as these (cacheshim/snapshot/_native.c:
    load_keys, lazily), and the keyspace decodes one into its real value type the first time
    a lookup reaches its key (`Database.get`, `Database.value`), putting the value in its
    place: the key keeps its position in `data` (a dict keeps the order of its keys when a
    value is replaced) and in the SCAN table, so no order, random draw or digest can tell
    whether a key was ever packed. Nothing but the keyspace's lookups and the snapshot
    writer may see one; a command handler never does.

    The writer's API (a snapshot or RDB writer may copy an untouched value as it is):
    - `rdb_type`: the RDB value type byte: 18 (QUICKLIST_2), 2 (SET), 4 (HASH), 5 (ZSET_2);
    - `payload`: the bytes that follow the key in the file, exactly those the writer
      (`cacheshim.snapshot.rdb.encode_value`) writes for the decoded value; a copy of the
      snapshot's bytes, so the snapshot's buffer is not kept;
    - `shape`: the value's memlog-keys shape (`cacheshim.snapshot.model.shape` of the
      decoded value). Never with a hash's own pick order: such a hash is decoded at load.
    So `bytes((rdb_type,)) + encode_string(key) + payload` is the record, and the meta is
    (changed_at, shape), as for the decoded value.
    """

    __slots__ = ("payload", "rdb_type", "shape")

    def __init__(self, rdb_type: int, payload: bytes, shape: int) -> None:
        self.rdb_type = rdb_type
        self.payload = payload
        self.shape = shape

    def __repr__(self) -> str:
        return f"PackedValue({self.rdb_type}, <{len(self.payload)} bytes>, {self.shape})"


# The decoder of packed values, installed by the only module that makes them
# (cacheshim.snapshot.rdb, which the types must not import).
_unpack: Callable[[PackedValue], Value] | None = None


def set_unpacker(unpack: Callable[[PackedValue], Value]) -> None:
    global _unpack
    _unpack = unpack


def unpack(packed: PackedValue) -> Value:
    assert _unpack is not None, "a packed value without cacheshim.snapshot.rdb loaded"
    return _unpack(packed)


# Lookups of keys by value, [found, not found], over every keyspace of the process: the
# read path adds what one read moved to INFO's keyspace_hits and keyspace_misses (Redis
# counts reads only; apply's lookups move these too and are never added). Counting here
# keeps one implementation of what a read looks up.
LOOKUPS: list[int] = [0, 0]


class _Flushed:
    """The change a flush makes: every key (client-side caching drops them all)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "FLUSHED"


FLUSHED: Final = _Flushed()


class Database:
    def __init__(self, index: int) -> None:
        self.index = index
        self.data: dict[bytes, Stored] = {}
        self.expires: dict[bytes, int] = {}
        # (when, key) for every expiry ever set; stale pairs are skipped when popped.
        self._expiry_heap: list[tuple[int, bytes]] = []
        # key -> log index of its last change by a command (a flush of it included), and of
        # its last removal by expiry. Kept for removed keys too: a WATCH from before the
        # removal must see it (so they grow with the keys ever written; see last_change).
        self.changed_at: dict[bytes, int] = {}
        self.expired_at: dict[bytes, int] = {}
        # Every key of data in hash buckets: SCAN's cursor order and RANDOMKEY's pick.
        self.key_index = KeyIndex()
        # Keys that clients blocked in BLPOP & co. wait for (kept by cacheshim.blocking), and
        # those of them set or changed in place since the blocking machinery last looked.
        self.blocked_keys: set[bytes] = set()
        self.ready_keys: list[bytes] = []
        # The keyspace's change feed (`Keyspace.feed_changes`): every key a write or an
        # expiry changes is appended, and FLUSHED for a flush; None while nobody listens.
        self.changes: list[object] | None = None

    # -- reads (never change anything) -------------------------------------------------

    def is_expired(self, key: bytes, now_ms: int) -> bool:
        when = self.expires.get(key)
        return when is not None and when <= now_ms

    def get(self, key: bytes, now_ms: int) -> Value | None:
        value = self.data.get(key)
        if value is None or self.is_expired(key, now_ms):
            LOOKUPS[1] += 1
            return None
        LOOKUPS[0] += 1
        if type(value) is PackedValue:
            return self._unpacked(key, value)
        return value  # type: ignore[return-value]  # not packed: a Value

    def value(self, key: bytes) -> Value:
        """The key's value whether or not it expired (KeyError when absent), decoded."""
        value = self.data[key]
        if type(value) is PackedValue:
            return self._unpacked(key, value)
        return value  # type: ignore[return-value]  # not packed: a Value

    def items(self) -> Iterator[tuple[bytes, Value]]:
        """Every (key, value) in insertion order, expired ones included, each decoded."""
        for key in list(self.data):
            yield key, self.value(key)

    def unpack_all(self) -> None:
        """Decode every packed value (in insertion order)."""
        for key, value in self.data.items():
            if type(value) is PackedValue:
                self.data[key] = unpack(value)  # a value replaced: no change of size

    def _unpacked(self, key: bytes, packed: PackedValue) -> Value:
        # The first touch: the decoded value takes the packed one's place (same key, same
        # position). Not a change of the key: WATCH, blocked clients and changed_at do not
        # hear of it.
        value = unpack(packed)
        self.data[key] = value
        return value

    def get_typed(self, key: bytes, now_ms: int, kind: type[T]) -> T | None:
        """The live value of key if it is a `kind`; None if none; else raise WRONGTYPE."""
        value = self.get(key, now_ms)
        if value is None:
            return None
        if not isinstance(value, kind):
            raise CommandError(errors.WRONGTYPE)
        return value

    def contains(self, key: bytes, now_ms: int) -> bool:
        found = key in self.data and not self.is_expired(key, now_ms)
        LOOKUPS[0 if found else 1] += 1
        return found

    def ttl_ms(self, key: bytes) -> int | None:
        return self.expires.get(key)

    def live_keys(self, now_ms: int) -> list[bytes]:
        return [k for k in self.data if not self.is_expired(k, now_ms)]

    def size(self, now_ms: int) -> int:
        expired = sum(1 for when in self.expires.values() if when <= now_ms)
        return len(self.data) - expired

    def last_change(self, key: bytes, stale_when_watched: bool = False) -> int:
        """The log index of the key's last change, as a WATCH sees it (Redis 7.0's rules).

        Every change counts, its removal once it expired too; but for a key that had
        expired (not yet removed) when it was watched (stale_when_watched), that removal is
        no change: Redis 7.0 treats the watched key as already gone.
        """
        changed = self.changed_at.get(key, 0)
        if stale_when_watched:
            return changed
        return max(changed, self.expired_at.get(key, 0))

    def scan(self, cursor: int, count: int) -> tuple[int, list[bytes]]:
        """One SCAN step over all keys, expired ones included (see KeyIndex.scan)."""
        self._check_key_index()
        return self.key_index.scan(cursor, count)

    def random_key(self, now_ms: int, rng: random.Random) -> bytes | None:
        """A live key at random, or None if there is none."""
        self._check_key_index()
        for _ in range(100):
            key = self.key_index.random_key(rng)
            if key is None:
                return None
            if not self.is_expired(key, now_ms):
                return key
        live = self.live_keys(now_ms)  # mostly expired keys: pick among the live ones
        return live[rng.randrange(len(live))] if live else None

    def _check_key_index(self) -> None:
        # Only set/delete/flush keep the index; rebuild it if data was changed around them.
        if len(self.key_index) != len(self.data):
            self.key_index.rebuild(self.data)

    # -- writes (apply only) ---------------------------------------------------------

    def set(self, key: bytes, value: Value, index: int, keep_ttl: bool = False) -> None:
        if key not in self.data:
            self.key_index.add(key)
        self.data[key] = value
        if not keep_ttl:
            self.expires.pop(key, None)
        self.changed_at[key] = index
        if key in self.blocked_keys:
            self.ready_keys.append(key)
        if self.changes is not None:
            self.changes.append(key)

    def delete(self, key: bytes, index: int) -> bool:
        if self.data.pop(key, None) is None:
            return False
        self.key_index.discard(key)
        self.expires.pop(key, None)
        self.changed_at[key] = index
        if key in self.blocked_keys:  # a client in XREADGROUP hears its stream is gone
            self.ready_keys.append(key)
        if self.changes is not None:
            self.changes.append(key)
        return True

    def set_expiry(self, key: bytes, when_ms: int, index: int) -> None:
        self.expires[key] = when_ms
        heapq.heappush(self._expiry_heap, (when_ms, key))
        if len(self._expiry_heap) > 2 * len(self.expires) + 64:
            # Re-set expiries leave stale pairs behind: rebuild from the live ones (the
            # same way on every shim, so apply stays deterministic).
            self._expiry_heap = sorted((w, k) for k, w in self.expires.items())
        self.changed_at[key] = index
        if self.changes is not None:
            self.changes.append(key)

    def persist(self, key: bytes, index: int) -> bool:
        if self.expires.pop(key, None) is None:
            return False
        self.changed_at[key] = index
        if self.changes is not None:
            self.changes.append(key)
        return True

    def touch_changed(self, key: bytes, index: int) -> None:
        self.changed_at[key] = index
        if key in self.blocked_keys:
            self.ready_keys.append(key)
        if self.changes is not None:
            self.changes.append(key)

    def signal_ready(self, key: bytes) -> None:
        """Wake the clients waiting for key without counting a change (XGROUP DESTROY: its
        readers hear that their group is gone; a WATCH of the key does not break)."""
        if key in self.blocked_keys:
            self.ready_keys.append(key)

    def expire_due(self, now_ms: int, index: int) -> int:
        """Delete every key whose expiry is <= now_ms (apply only); returns how many."""
        removed = 0
        heap = self._expiry_heap
        while heap and heap[0][0] <= now_ms:
            when, key = heapq.heappop(heap)
            if self.expires.get(key) == when:
                changed = self.changed_at.get(key)
                self.delete(key, index)
                # A removal by expiry, not a change by a command (see last_change).
                if changed is None:
                    del self.changed_at[key]
                else:
                    self.changed_at[key] = changed
                self.expired_at[key] = index
                removed += 1
        return removed

    def flush(self, index: int, tell: bool = True) -> None:
        """Remove every key (FLUSHDB; FLUSHALL, which tells the change feed once itself)."""
        # A flush changes the keys it removes, and only those: a WATCH of a key that did not
        # exist survives it (Redis 7.0's touchAllWatchedKeysInDb).
        for key in self.data:
            self.changed_at[key] = index
        self.ready_keys.extend(key for key in self.data if key in self.blocked_keys)
        if tell and self.changes is not None:
            self.changes.append(FLUSHED)
        self.data.clear()
        self.key_index.clear()
        self.expires.clear()
        self._expiry_heap.clear()


class Keyspace:
    def __init__(self) -> None:
        self.dbs = [Database(i) for i in range(DATABASES)]
        # Keys apply removed because they expired (INFO's expired_keys).
        self.expired_keys = 0
        # stream-node-max-bytes and stream-node-max-entries as apply uses them: they shape
        # a stream's nodes, which decide what a "~" trim removes, so they are replicated
        # state (Redis's defaults until a CONFIG SET record changes them).
        self.stream_node_max_bytes = 4096
        self.stream_node_max_entries = 100

    def unpack_all(self) -> None:
        """Decode every value still packed (see PackedValue), database by database."""
        for db in self.dbs:
            db.unpack_all()

    @property
    def changes(self) -> list[object] | None:
        return self.dbs[0].changes

    def flush(self, index: int) -> None:
        """FLUSHALL: every database emptied, one flush in the change feed."""
        for db in self.dbs:
            db.flush(index, tell=False)
        if self.changes is not None:
            self.changes.append(FLUSHED)

    def feed_changes(self, changes: list[object] | None) -> None:
        """Append every key changed from now on (set, deleted, expired, its TTL or value
        changed in place) to `changes`, FLUSHED for a flush; None stops it. A side channel
        for client-side caching (cacheshim.tracking): it changes nothing apply computes."""
        for db in self.dbs:
            db.changes = changes

    def expire_due(self, now_ms: int, index: int) -> None:
        for db in self.dbs:
            if db.expires:
                self.expired_keys += db.expire_due(now_ms, index)

    def next_expiry_ms(self) -> int | None:
        """The earliest expiry time pending removal (perhaps of an expiry since re-set or
        removed: then the next record's apply just drops it), or None."""
        due = [db._expiry_heap[0][0] for db in self.dbs if db._expiry_heap]
        return min(due) if due else None

    def swap(self, first: int, second: int, index: int) -> None:
        """SWAPDB: the two databases trade their keys (and expiries); clients blocked or
        watching stay with the database number, as in Redis 7.0. Every key either one holds
        counts as changed in both (a WATCH of it breaks), and keys that clients wait for and
        that exist now become ready, in key order (the same on every shim)."""
        if first == second:
            return
        one, two = self.dbs[first], self.dbs[second]
        for key in (*one.data, *two.data):
            one.changed_at[key] = index
            two.changed_at[key] = index
        one.data, two.data = two.data, one.data
        one.expires, two.expires = two.expires, one.expires
        one._expiry_heap, two._expiry_heap = two._expiry_heap, one._expiry_heap
        one.key_index, two.key_index = two.key_index, one.key_index
        for db in (one, two):
            # Every waited-for key: those that exist now may serve their clients, those
            # gone wake the clients of XREADGROUP that waited for a stream there.
            db.ready_keys.extend(sorted(db.blocked_keys))

    def digest(self) -> str:
        """A digest of every database's keys, values and expiry times (as DEBUG DIGEST).

        Order-independent (XOR of per-key hashes), so it needs no sorting; all zeros for
        an empty keyspace, as in Redis.
        """
        acc = 0
        for db in self.dbs:
            for key in db.data:
                acc ^= int.from_bytes(key_digest(db, key), "big")
        return f"{acc:040x}"


def unordered_digest(items: Iterable[bytes]) -> bytes:
    """A digest of a collection whose order means nothing (a set's members, a hash's
    field-value pairs pre-joined by the caller): XOR of each item's SHA-1, as Redis's
    DEBUG DIGEST does for unordered types."""
    acc = 0
    for item in items:
        acc ^= int.from_bytes(hashlib.sha1(item).digest(), "big")
    return acc.to_bytes(20, "big")


def key_digest(db: Database, key: bytes) -> bytes:
    h = hashlib.sha1()
    h.update(db.index.to_bytes(4, "big"))
    h.update(len(key).to_bytes(8, "big"))
    h.update(key)
    h.update(value_digest(db.value(key), db.expires.get(key)))
    return h.digest()


def value_digest(value: Value, expires_ms: int | None) -> bytes:
    kind = kind_of(value)
    h = hashlib.sha1()
    h.update(kind.name.encode())
    kind.digest(value, h)
    h.update(b"" if expires_ms is None else expires_ms.to_bytes(8, "big", signed=True))
    return h.digest()
