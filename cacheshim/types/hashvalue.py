"""The hash type's value (the data side of Redis's t_hash.c).

Encoding (OBJECT ENCODING), as Redis 7.0 decides it:

- ``listpack`` while the hash has at most ``hash-max-listpack-entries`` fields and no field
  or value longer than ``hash-max-listpack-value`` bytes;
- ``hashtable`` from the first write that breaks either rule on, for good: deleting fields
  or shortening values never converts back. A value that a write only looks at (HSETNX on a
  field that exists) converts nothing.

Redis reads both thresholds from its configuration; here apply must give the same encoding on
every shim whatever one shim's configuration says, so they are redis-server 7.0's built-in
defaults, fixed: 512 entries (the value redis-server runs with when no configuration file
lowers it; the sample redis.conf says 128) and 64 bytes.

Order: a listpack keeps fields in the order they were first set, and HGETALL, HKEYS, HSCAN
and friends answer in that order, in Redis and here. A hashtable answers in its hash table's
order in Redis, an order no client can rely on; here it stays insertion order.

Determinism: random picks (HRANDFIELD) index into insertion order while a listpack, and into
a list of fields kept by appends and swap-removals once a hashtable; both change only in
apply, so they are a function of the log. Python's hash of ``bytes`` never decides anything.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from cacheshim.types.keyspace import ValueKind, register_kind, unordered_digest
from cacheshim.types.setvalue import ScanOrder

__all__ = ["LISTPACK_ENTRIES_MAX", "LISTPACK_VALUE_BYTES_MAX", "HashValue"]

LISTPACK_ENTRIES_MAX: Final = 512  # hash-max-listpack-entries (redis-server's default)
LISTPACK_VALUE_BYTES_MAX: Final = 64  # hash-max-listpack-value


class HashValue(Mapping[bytes, bytes]):
    """A Redis hash: field -> value in insertion order, plus, once a hashtable, a list of
    the fields for O(1) random picks."""

    __slots__ = ("_fields", "_order", "_positions", "_scan", "hashtable")

    def __init__(self, pairs: Iterable[tuple[bytes, bytes]] = ()) -> None:
        self._fields: dict[bytes, bytes] = {}
        self.hashtable = False
        self._order: list[bytes] = []  # used only while a hashtable
        self._positions: dict[bytes, int] = {}
        self._scan: ScanOrder | None = None
        for field, value in pairs:
            self.set(field, value)

    # -- reading -----------------------------------------------------------------------

    def __getitem__(self, field: bytes) -> bytes:
        return self._fields[field]

    def __contains__(self, field: object) -> bool:
        return field in self._fields

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"HashValue({self._fields!r})"

    def get_value(self, field: bytes) -> bytes | None:
        return self._fields.get(field)

    @property
    def encoding(self) -> str:
        return "hashtable" if self.hashtable else "listpack"

    def as_dict(self) -> dict[bytes, bytes]:
        """field -> value in reply order (a copy)."""
        return dict(self._fields)

    def fields_for_picks(self) -> list[bytes]:
        """The fields in the order random picks index into (do not change it)."""
        return self._order if self.hashtable else list(self._fields)

    def random_field(self, rng: random.Random) -> bytes:
        fields = self.fields_for_picks()
        return fields[rng.randrange(len(fields))]

    def scan(self, cursor: int, count: int) -> tuple[int, list[bytes]]:
        """One HSCAN step (fields only): everything at once (cursor 0) while a listpack, as
        Redis; else about count fields from cursor on (see ScanOrder)."""
        if not self.hashtable:
            return 0, list(self._fields)
        if self._scan is None:  # built on first use, then kept up to date
            self._scan = ScanOrder(self._order)
        return self._scan.scan(cursor, count)

    # -- changing (apply only) ----------------------------------------------------------

    def set(self, field: bytes, value: bytes) -> bool:
        """Set field to value; True if the field is new. Converts when it must."""
        new = field not in self._fields
        self._fields[field] = value
        if self.hashtable:
            if new:
                self._positions[field] = len(self._order)
                self._order.append(field)
                if self._scan is not None:
                    self._scan.add(field)
        elif (
            len(field) > LISTPACK_VALUE_BYTES_MAX
            or len(value) > LISTPACK_VALUE_BYTES_MAX
            or len(self._fields) > LISTPACK_ENTRIES_MAX
        ):
            self.convert()
        return new

    def convert(self) -> None:
        """Become a hashtable (never undone)."""
        if self.hashtable:
            return
        self.hashtable = True
        self._order = list(self._fields)
        self._positions = {field: i for i, field in enumerate(self._order)}

    def delete(self, field: bytes) -> bool:
        """Remove field; False if it was not there."""
        if self._fields.pop(field, None) is None:
            return False
        if self.hashtable:
            position = self._positions.pop(field)
            last = self._order.pop()
            if last != field:
                self._order[position] = last
                self._positions[last] = position
            if self._scan is not None:
                self._scan.discard(field)
        return True

    def copy(self) -> HashValue:
        """A duplicate with the same encoding and orders (COPY)."""
        twin = HashValue()
        twin._fields = dict(self._fields)
        twin.hashtable = self.hashtable
        twin._order = list(self._order)
        twin._positions = dict(self._positions)
        return twin


def _digest(value: HashValue, h: Any) -> None:
    h.update(len(value).to_bytes(8, "big"))
    h.update(
        unordered_digest(
            len(field).to_bytes(8, "big") + field + item for field, item in value.items()
        )
    )


register_kind(
    HashValue,
    ValueKind(
        "hash",
        lambda value: value.encoding,
        lambda value: 1,
        lambda value: value.copy(),
        _digest,
    ),
)
