"""The one place the snapshot code touches memlog's keyspace and value types.

Everything the serializer needs from `cacheshim.types.keyspace` and the value modules goes
through the names below, so when those modules move or change their insides only this file
follows. Some of what a snapshot must keep is not public state of those types, because only
apply uses it, but a shim restored from a snapshot must go on exactly as one that never
stopped: a set's members list (the order SPOP and SRANDMEMBER index into), a hash's pick
order once it is a hashtable, the encoding flags (OBJECT ENCODING, and a listpack sorted
set's -0), a string's history subclass (OBJECT ENCODING), a database's SCAN table size, and
the applier's blocked clients (cacheshim.blocking) and pieces of large records
(cacheshim.apply). Reading and restoring those reaches into private attributes here and
nowhere else;
`tests/cacheshim/test_snapshot_rdb.py` checks them after every round trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from cacheshim.apply import _Pieces
from cacheshim.blocking import BlockedClients, BlockedEntry
from cacheshim.types.hashvalue import LISTPACK_ENTRIES_MAX as HASH_LISTPACK_ENTRIES_MAX
from cacheshim.types.hashvalue import LISTPACK_VALUE_BYTES_MAX as HASH_LISTPACK_VALUE_BYTES_MAX
from cacheshim.types.hashvalue import HashValue
from cacheshim.types.keyindex import KeyIndex
from cacheshim.types.keyspace import (
    DATABASES,
    Database,
    Keyspace,
    PlainString,
    PrivateInt,
    RawString,
    Value,
    string_as_int,
)
from cacheshim.types.listvalue import ListValue
from cacheshim.types.setvalue import INTSET_ENTRIES_MAX, SetValue, is_intset_member
from cacheshim.types.streamvalue import Stream
from cacheshim.types.zsetvalue import ZSet, _SortedPairs

if TYPE_CHECKING:
    from cacheshim.apply import Applier

__all__ = [
    "DATABASES",
    "Database",
    "HashValue",
    "Keyspace",
    "ListValue",
    "SetValue",
    "Stream",
    "Value",
    "ZSet",
    "strict_int",
]

# The Redis type of a value, as the serializer dispatches on it.
STRING: Final = 0
LIST: Final = 1
SET: Final = 2
ZSET: Final = 3
HASH: Final = 4
STREAM: Final = 6  # Redis's OBJ_STREAM (5 is modules)


def strict_int(data: bytes) -> int | None:
    """The 64-bit integer data spells in Redis's strict form (string2ll), or None."""
    return string_as_int(data)


KIND_BY_TYPE: Final[dict[type, int]] = {
    bytes: STRING, RawString: STRING, PlainString: STRING, PrivateInt: STRING,
    ListValue: LIST, SetValue: SET, HashValue: HASH, ZSet: ZSET, Stream: STREAM,
}  # fmt: skip


def kind(value: object) -> int:
    found = KIND_BY_TYPE.get(type(value))
    if found is not None:
        return found
    if isinstance(value, bytes):
        return STRING
    if isinstance(value, ListValue):
        return LIST
    if isinstance(value, SetValue):
        return SET
    if isinstance(value, HashValue):
        return HASH
    if isinstance(value, ZSet):
        return ZSET
    if isinstance(value, Stream):
        return STREAM
    raise TypeError(f"no RDB form for a {type(value).__name__}")


# -- shape: what a value's content does not say (one small integer per key) --------------------
#
# string: 0 plain bytes, 1 RawString, 2 PlainString, 3 PrivateInt (how Redis would encode it)
# set:    1 when a hashtable (else an intset)
# hash:   bit 0 when a hashtable; bit 2 when its pick order follows (see hash_pick_order)
# zset:   1 when a listpack (else a skiplist)

_STRING_CLASSES: Final[tuple[type[bytes], ...]] = (bytes, RawString, PlainString, PrivateInt)
HASH_HASHTABLE: Final = 1
HASH_PICKS: Final = 4  # a bit no other shape uses (the meta is read before the type)


def shape(value: object) -> int:
    if isinstance(value, bytes):
        if type(value) not in _STRING_CLASSES:  # a new kind of string: say how to keep it
            raise TypeError(f"no snapshot shape for strings of type {type(value).__name__}")
        return _STRING_CLASSES.index(type(value))
    if isinstance(value, SetValue):
        return int(value.hashtable)
    if isinstance(value, HashValue):
        return int(value.hashtable)
    if isinstance(value, ZSet):
        return int(value.listpack)
    return 0


def make_string(data: bytes, shape_code: int | None) -> bytes:
    if not shape_code:
        return data
    if not 0 < shape_code < len(_STRING_CLASSES):
        raise ValueError(f"unknown string shape {shape_code}")
    return _STRING_CLASSES[shape_code](data)


# -- lists ------------------------------------------------------------------------------------


def make_list(items: Iterable[bytes]) -> ListValue:
    return ListValue(items)


# -- sets -------------------------------------------------------------------------------------


def set_members(value: SetValue) -> list[bytes]:
    """The members in the order random picks index into (the order to restore)."""
    return value._members


def make_set(members: Sequence[bytes], hashtable: bool | None) -> SetValue:
    """A set holding members in this order. hashtable None: Redis's rule when it loads an
    RDB file (an intset while every member is an integer and there are at most 512)."""
    # What SetValue(members) builds, without its per-member bookkeeping: adding members
    # one by one turns an intset into a hashtable for good at the first non-integer or
    # past INTSET_ENTRIES_MAX, so the end state depends only on the whole list.
    value = SetValue()
    value._members = list(members)
    value._positions = {member: i for i, member in enumerate(value._members)}
    if len(value._positions) != len(value._members):
        raise ValueError("a set names a member twice")
    natural = len(members) > INTSET_ENTRIES_MAX or not all(map(is_intset_member, members))
    if hashtable is False and natural:
        raise ValueError("a set that cannot be an intset is marked as one")
    value.hashtable = natural if hashtable is None else hashtable
    return value


# -- hashes -----------------------------------------------------------------------------------


def hash_pairs(value: HashValue) -> Iterator[tuple[bytes, bytes]]:
    """Field-value pairs in reply order (the order fields were first set)."""
    return iter(value.items())


def hash_pick_order(value: HashValue) -> list[int] | None:
    """Where a hashtable's pick order differs from its reply order: for each field in pick
    order, its position in reply order. None when they agree (always, for a listpack)."""
    if not value.hashtable:
        return None
    picks = value._order
    fields = list(value._fields)
    if picks == fields:
        return None
    position = {field: i for i, field in enumerate(fields)}
    return [position[field] for field in picks]


def make_hash(
    pairs: Sequence[tuple[bytes, bytes]], hashtable: bool | None, picks: Sequence[int] | None
) -> HashValue:
    """A hash with fields in this reply order. hashtable None: Redis's loading rule (a
    listpack up to 512 fields of at most 64 bytes)."""
    # What HashValue(pairs) builds, without its per-field bookkeeping (a listpack turns
    # into a hashtable for good at the first long field or value, or past the entry limit).
    value = HashValue()
    value._fields = dict(pairs)
    if len(value._fields) != len(pairs):
        raise ValueError("a hash names a field twice")
    if len(pairs) > HASH_LISTPACK_ENTRIES_MAX or any(
        len(field) > HASH_LISTPACK_VALUE_BYTES_MAX or len(item) > HASH_LISTPACK_VALUE_BYTES_MAX
        for field, item in pairs
    ):
        value.convert()
    if hashtable is None:
        return value
    if hashtable:
        value.convert()
    elif value.hashtable:
        raise ValueError("a hash that cannot be a listpack is marked as one")
    if picks is not None:
        if not hashtable or sorted(picks) != list(range(len(pairs))):
            raise ValueError("a hash's pick order is not a permutation of its fields")
        order = [pairs[i][0] for i in picks]
        value._order = order
        value._positions = {field: i for i, field in enumerate(order)}
    return value


# -- sorted sets ------------------------------------------------------------------------------


def zset_entries(value: ZSet, descending: bool = False) -> Iterator[tuple[float, bytes]]:
    return reversed(value) if descending else iter(value)


def make_zset(entries: Iterable[tuple[float, bytes]], listpack: bool | None) -> ZSet:
    """A sorted set of these (score, member) pairs, members distinct. listpack None: Redis's
    loading rule (a listpack up to 128 members of at most 64 bytes; there a -0 score is 0);
    else that encoding, the scores kept exactly."""
    ordered = sorted(entries)
    scores = {member: score for score, member in ordered}
    if len(scores) != len(ordered):
        raise ValueError("a sorted set names a member twice")
    if listpack is None:
        return ZSet.from_sorted(ordered)
    value = ZSet(listpack=False)
    value.scores = scores
    value._order = type(value._order)(ordered)
    value.listpack = listpack
    return value


# -- the C key loader ---------------------------------------------------------------------------
#
# cacheshim/snapshot/_native.c (load_keys) builds sets, hashes and sorted sets of a snapshot
# without their __init__, filling these slots itself, as make_set, make_hash and make_zset
# above do. If a value class gains or loses a slot the loader is not used (rdb.py reads
# every key itself) rather than build objects that lack one.

_NATIVE_SLOTS: Final[dict[type, frozenset[str]]] = {
    SetValue: frozenset({"_members", "_positions", "hashtable", "_scan", "_sorted"}),
    HashValue: frozenset({"_fields", "hashtable", "_order", "_positions", "_scan"}),
    ZSet: frozenset({"scores", "_order", "listpack", "_scan_index"}),
}


def native_classes() -> tuple[object, ...] | None:
    """What the C loader's configure() takes (but heappush and ZSet.from_sorted), or None
    when a value class's slots are not the ones it fills."""
    for cls, slots in _NATIVE_SLOTS.items():
        if frozenset(getattr(cls, "__slots__", ())) != slots:
            return None
    return (ListValue, SetValue, HashValue, ZSet, _SortedPairs, _STRING_CLASSES)


# -- databases --------------------------------------------------------------------------------


def new_keyspace() -> Keyspace:
    return Keyspace()


def scan_bits(db: Database) -> int:
    """log2 of the size of the database's SCAN table."""
    db._check_key_index()
    return db.key_index._bits


def keys_in_scan_order(db: Database) -> Iterator[bytes]:
    """Every key of the database, bucket by bucket of its SCAN table."""
    db._check_key_index()
    for chain in db.key_index.chains():
        yield from chain


def scan_order_positions(db: Database) -> list[int] | None:
    """Where the SCAN table's order is not implied by the database's insertion order: for
    each key in SCAN order, its position in insertion order (`db.data`'s). None when every
    bucket lists its keys in insertion order (then adding the keys in insertion order to a
    table of the same size rebuilds it); a shrink of the table can merge buckets out of
    that order."""
    db._check_key_index()
    position = {key: i for i, key in enumerate(db.data)}
    out: list[int] = []
    ordered = True
    for chain in db.key_index.chains():
        last = -1
        for key in chain:
            here = position[key]
            if here < last:
                ordered = False
            last = here
            out.append(here)
    return None if ordered else out


def restore_scan_order(db: Database, bits: int, positions: Sequence[int]) -> None:
    """Rebuild the database's SCAN table at 2**bits buckets, adding its keys in this order
    (positions in insertion order, as `scan_order_positions` gave them)."""
    keys = list(db.data)
    if sorted(positions) != list(range(len(keys))):
        raise ValueError("the SCAN order is not a permutation of the keys")
    index = KeyIndex(bits)
    for i in positions:
        index.add(keys[i])
    if index._bits != bits:
        raise ValueError("the SCAN table outgrew its recorded size")
    db.key_index = index


def prepare_scan_table(db: Database, bits: int) -> None:
    """Give an empty database a SCAN table of 2**bits buckets, to be filled by `db.set` (it
    never holds more keys than buckets, so it will not grow)."""
    if db.data or not 0 < bits < 64:
        raise ValueError(f"cannot restore a SCAN table of {bits} bits here")
    db.key_index = KeyIndex(bits)


# -- the apply loop's own state -------------------------------------------------------------
#
# Beside the keyspace, an applier holds the clients blocked in BLPOP & co. (cacheshim.blocking)
# and the pieces of large records still arriving (cacheshim.apply, docs/large-values.md). The
# snapshot carries them as the plain records below, so that rdb.py needs neither module.

# What wakes a blocked client (BlockedEntry.kind), as a number: 0 any change.
_BLOCK_KINDS: Final[tuple[type | None, ...]] = (
    None, bytes, ListValue, SetValue, ZSet, HashValue, Stream,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class BlockedClient:
    """One blocked client of the applied state (`cacheshim.blocking.BlockedEntry`)."""

    shim_id: str
    proposal_id: int
    db: int
    args: tuple[bytes, ...]
    keys: tuple[bytes, ...]
    kind: int  # an index into _BLOCK_KINDS
    deadline_ms: int | None


@dataclass(frozen=True, slots=True)
class BlockedState:
    """Every blocked client in the order they blocked (which is each key's queue order), the
    databases in the order the blocking machinery visits them for ready keys, and each such
    database's keys made ready but not looked at yet."""

    clients: tuple[BlockedClient, ...] = ()
    db_order: tuple[int, ...] = ()
    ready: tuple[tuple[bytes, ...], ...] = ()  # per database of db_order


@dataclass(frozen=True, slots=True, eq=False)
class PendingPieces:
    """The pieces so far of one large record (`cacheshim.apply._Pieces`). data: its bytes
    are the first `size` bytes of this buffer (apply only ever appends to it, so a state
    taken while apply goes on stays true without a copy)."""

    shim_id: str
    proposal_id: int
    parts: int
    record_bytes: int
    first_index: int
    next_part: int
    last_index: int
    last_time_ms: int
    data: bytes | bytearray
    size: int

    def _head(self) -> tuple[object, ...]:
        return (self.shim_id, self.proposal_id, self.parts, self.record_bytes, self.first_index,
                self.next_part, self.last_index, self.last_time_ms, self.size)  # fmt: skip

    def __eq__(self, other: object) -> bool:  # the held bytes, not what apply added since
        if not isinstance(other, PendingPieces):
            return NotImplemented
        if self._head() != other._head():
            return False
        pairs = zip(self.chunks(1 << 20), other.chunks(1 << 20), strict=True)  # same size
        return all(a == b for a, b in pairs)

    __hash__ = None  # type: ignore[assignment]

    def chunks(self, chunk_bytes: int) -> Iterator[bytes]:
        """The held bytes in slices of at most chunk_bytes (copies of the slices only)."""
        for start in range(0, self.size, chunk_bytes):
            yield bytes(self.data[start : min(start + chunk_bytes, self.size)])


def applier_position(applier: Applier) -> tuple[int, int]:
    """(the last applied log index, the apply time): what a snapshot of it records."""
    return applier.applied_index, applier.time_ms


def applier_blocked(applier: Applier) -> BlockedState:
    blocked = applier.blocked
    clients = []
    for entry in blocked._by_owner.values():
        if entry.kind not in _BLOCK_KINDS:
            raise TypeError(f"no snapshot code for blocked clients waiting for {entry.kind}")
        clients.append(
            BlockedClient(
                entry.shim_id, entry.proposal_id, entry.db, tuple(entry.args), tuple(entry.keys),
                _BLOCK_KINDS.index(entry.kind), entry.deadline_ms,
            )
        )  # fmt: skip
    order = tuple(blocked._keys_per_db)
    ready = tuple(tuple(applier.keyspace.dbs[db].ready_keys) for db in order)
    return BlockedState(tuple(clients), order, ready)


def applier_pieces(applier: Applier) -> tuple[PendingPieces, ...]:
    return tuple(
        PendingPieces(
            shim_id,
            proposal_id,
            p.parts,
            p.record_bytes,
            p.first_index,
            p.next_part,
            p.last_index,
            p.last_time_ms,
            p.data,
            len(p.data),
        )
        for (shim_id, proposal_id), p in applier._pieces.items()
    )


def restore_applier(
    applier: Applier,
    keyspace: Keyspace,
    index: int,
    time_ms: int,
    blocked: BlockedState,
    pieces: Sequence[PendingPieces],
) -> None:
    """Make a fresh applier continue from a snapshot: its next record is index + 1. The
    pieces' buffers are taken over, not copied (they must not be used elsewhere)."""
    if applier.applied_index != 0 or applier._pieces or len(applier.blocked):
        raise ValueError("restore into an applier that has applied nothing yet")
    clients = BlockedClients(keyspace)
    for client in blocked.clients:
        if not 0 <= client.db < DATABASES or not 0 <= client.kind < len(_BLOCK_KINDS):
            raise ValueError(f"a blocked client in database {client.db} of kind {client.kind}")
        if clients.owner_known(client.shim_id, client.proposal_id) or not client.keys:
            raise ValueError("a blocked client twice, or waiting for no key")
        entry = BlockedEntry(
            client.shim_id, client.proposal_id, client.db, list(client.args), client.keys,
            _BLOCK_KINDS[client.kind], client.deadline_ms,
        )  # fmt: skip
        clients.add(entry)
    if sorted(blocked.db_order) != sorted(clients._keys_per_db) or len(blocked.ready) != len(
        blocked.db_order
    ):
        raise ValueError("the blocked clients' databases do not match their order")
    clients._keys_per_db = {db: clients._keys_per_db[db] for db in blocked.db_order}
    for db, ready in zip(blocked.db_order, blocked.ready, strict=True):
        keyspace.dbs[db].ready_keys = list(ready)
    held: dict[tuple[str, int], _Pieces] = {}
    held_bytes = 0
    for p in pieces:
        data = p.data if isinstance(p.data, bytearray) else bytearray(p.data)
        del data[p.size :]
        if (p.shim_id, p.proposal_id) in held or not 0 < p.next_part < p.parts:
            raise ValueError("pieces of a large record twice, or none, or all")
        if len(data) > p.record_bytes:
            raise ValueError("pieces of a large record longer than the record")
        held[(p.shim_id, p.proposal_id)] = _Pieces(
            p.parts, p.record_bytes, p.first_index, data, p.next_part, p.last_index,
            p.last_time_ms,
        )  # fmt: skip
        held_bytes += len(data)
    applier.keyspace = keyspace
    applier.blocked = clients
    applier._pieces = held
    applier._pieces_bytes = held_bytes
    applier.applied_index = index
    applier.time_ms = time_ms
