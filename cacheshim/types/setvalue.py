"""The set type's value (the data side of Redis's t_set.c), and the cursor order that SSCAN
and HSCAN walk.

Encoding (OBJECT ENCODING), as Redis 7.0 decides it:

- ``intset`` while every member is an integer in Redis's strict spelling (``string2ll``:
  ``"1"`` is one, ``"01"``, ``"+1"`` and ``" 1"`` are not) and there are at most
  ``set-max-intset-entries`` of them;
- ``hashtable`` from the first member that breaks either rule on, for good: removing that
  member does not convert back (Redis 7.0 has no listpack sets). Only a set built anew (by
  the STORE commands, or from what stays after an SPOP that takes most of the set) starts as
  an intset again; COPY's duplicate keeps the encoding.

Redis reads the threshold from its configuration; here apply must give the same encoding on
every shim whatever one shim's configuration says, so it is Redis's default, fixed
(:data:`INTSET_ENTRIES_MAX`).

Order: Redis keeps an intset sorted by value, and everything that walks one (SMEMBERS, SSCAN,
SINTER over it, the result of SUNION) answers in that order; so does iterating a
:class:`SetValue` while it is an intset. A hashtable walks in its hash table's order in
Redis, an order no client can rely on; here it is the members list's.

Determinism: the members list (the order random picks index into) changes only by appends
and swap-removals made in apply, so it is a function of the log; Python's ``set`` or hash of
``bytes`` (randomised per process by PYTHONHASHSEED) never decides an order or a pick. A
snapshot of a set must keep that list order.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from typing import Any, Final, cast

from cacheshim.types.keyindex import key_hash
from cacheshim.types.keyspace import ValueKind, register_kind, string_as_int, unordered_digest

__all__ = [
    "INTSET_ENTRIES_MAX",
    "ScanOrder",
    "SetValue",
    "is_intset_member",
    "pop_many",
    "pop_many_py",
]

INTSET_ENTRIES_MAX: Final = 512  # set-max-intset-entries (Redis's default)


def is_intset_member(member: bytes) -> bool:
    """Whether an intset can hold member (Redis's isSdsRepresentableAsLongLong)."""
    return string_as_int(member) is not None


# -- popping many at once ---------------------------------------------------------------------

PopMany = Callable[[list[bytes], "dict[bytes, int] | None", random.Random, int], list[bytes]]
_UINT32_END: Final = 1 << 32


def pop_many_py(
    members: list[bytes], positions: dict[bytes, int] | None, rng: random.Random, count: int
) -> list[bytes]:
    """Pops count members (count <= len) off members, each picked as rng.randrange(len)
    would and swap-removed (the last member takes its place), and brings positions (the
    member -> position index, unless None) up to date: the popped leave it, the moved get
    their new positions. Answers the popped in pick order. The specification of the C twin
    (cacheshim/types/_setpop.c)."""
    getrandbits = rng.getrandbits
    popped: list[bytes] = []
    keep = popped.append
    refilled: list[int] = []  # positions that took the last member's place
    refill = refilled.append
    for _ in range(count):
        # rng.randrange(size), inlined: CPython draws bit_length() bits until one is
        # below size (test_random_members checks that the picks stay randrange's).
        size = len(members)
        bits = size.bit_length()
        position = getrandbits(bits)
        while position >= size:
            position = getrandbits(bits)
        keep(members[position])
        last = members.pop()
        if position < len(members):
            members[position] = last
            refill(position)
    if positions is not None:
        # Two bulk passes over the index instead of two updates per pick.
        deque(map(positions.__delitem__, popped), maxlen=0)
        size = len(members)
        moved = [p for p in refilled if p < size]
        positions.update(zip(map(members.__getitem__, moved), moved, strict=True))
    return popped


def _native_pop_many() -> PopMany | None:
    """The C twin of pop_many_py, wrapped to take and give back the generator's state; None
    without the extension (MEMLOG_PURE_PYTHON=1)."""
    try:
        from cacheshim.types import _setpop  # type: ignore[attr-defined]
    except ImportError:
        return None
    native = _setpop.pop_many

    def pop_many_c(
        members: list[bytes], positions: dict[bytes, int] | None, rng: random.Random, count: int
    ) -> list[bytes]:
        if type(rng) is not random.Random or len(members) >= _UINT32_END:
            return pop_many_py(members, positions, rng, count)
        version, words, gauss = rng.getstate()
        popped, words = native(members, positions, words, count)
        rng.setstate((version, words, gauss))
        return cast(list[bytes], popped)

    return pop_many_c


pop_many_native: Final = _native_pop_many()
pop_many: Final[PopMany] = pop_many_native or pop_many_py


class SetValue(AbstractSet[bytes]):
    """A Redis set: members in a list (for O(1) random picks) with their positions.

    Iteration follows Redis's order where Redis has one (sorted while an intset).
    """

    __slots__ = ("_members", "_positions", "_scan", "_sorted", "hashtable")

    def __init__(self, members: Iterable[bytes] = ()) -> None:
        self._members: list[bytes] = []
        self._positions: dict[bytes, int] = {}
        self.hashtable = False
        self._scan: ScanOrder | None = None
        self._sorted: list[bytes] | None = None
        for member in members:
            self.add(member)

    # -- reading -----------------------------------------------------------------------

    def __contains__(self, member: object) -> bool:
        return member in self._positions

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.ordered())

    def __repr__(self) -> str:
        return f"SetValue({self.ordered()!r})"

    @property
    def encoding(self) -> str:
        return "hashtable" if self.hashtable else "intset"

    def ordered(self) -> list[bytes]:
        """The members in reply order: by value while an intset, else the list's order."""
        if self.hashtable:
            return list(self._members)
        if self._sorted is None:
            self._sorted = sorted(self._members, key=int)
        return list(self._sorted)

    def member_at(self, position: int) -> bytes:
        """The member at a position of the members list (0 <= position < len)."""
        return self._members[position]

    def members_for_picks(self) -> list[bytes]:
        """The members list random picks index into (do not change it)."""
        return self._members

    def random_member(self, rng: random.Random) -> bytes:
        return self._members[rng.randrange(len(self._members))]

    def scan(self, cursor: int, count: int) -> tuple[int, list[bytes]]:
        """One SSCAN step: everything at once (cursor 0) while an intset, as Redis; else
        about count members from cursor on, in :class:`ScanOrder`."""
        if not self.hashtable:
            return 0, self.ordered()
        if self._scan is None:  # built on first use, then kept up to date
            self._scan = ScanOrder(self._members)
        return self._scan.scan(cursor, count)

    # -- changing (apply only) ----------------------------------------------------------

    def add(self, member: bytes) -> bool:
        """Add member; False if it was there. Converts to a hashtable when it must."""
        if member in self._positions:
            return False
        self._positions[member] = len(self._members)
        self._members.append(member)
        if not self.hashtable:
            if len(self._members) > INTSET_ENTRIES_MAX or not is_intset_member(member):
                self.hashtable = True
                self._sorted = None
            elif self._sorted is not None:
                self._sorted = None
        if self._scan is not None:
            self._scan.add(member)
        return True

    def remove(self, member: bytes) -> bool:
        """Remove member; False if it was not there. The last member takes its place."""
        position = self._positions.pop(member, None)
        if position is None:
            return False
        last = self._members.pop()
        if last != member:
            self._members[position] = last
            self._positions[last] = position
        self._sorted = None
        if self._scan is not None:
            self._scan.discard(member)
        return True

    def pop_random(self, rng: random.Random) -> bytes:
        member = self.random_member(rng)
        self.remove(member)
        return member

    def pop_random_many(self, rng: random.Random, count: int) -> list[bytes]:
        """count members popped one at a time (count < len): the same picks, members list
        and index after as count calls of pop_random (:func:`pop_many`)."""
        popped = pop_many(self._members, self._positions, rng, count)
        self._sorted = None
        if self._scan is not None:
            for member in popped:
                self._scan.discard(member)
        return popped

    def split_random(self, rng: random.Random, count: int) -> tuple[list[bytes], list[bytes]]:
        """For a set about to be dropped (SPOP taking most of it): pops count members as
        pop_random_many would, without keeping the positions index, and hands over the
        rest; answers (the popped, the rest in reply order), and leaves this set empty."""
        popped = pop_many(self._members, None, rng, count)
        rest = self._members if self.hashtable else sorted(self._members, key=int)
        self._members, self._positions = [], {}
        self._sorted = self._scan = None
        return popped, rest

    @classmethod
    def from_distinct(cls, members: list[bytes]) -> SetValue:
        """A set built anew from distinct members, in this order (the list is kept): what
        SetValue(members) builds, without the per-member bookkeeping. Adding one by one
        turns an intset into a hashtable for good at the first non-integer or past
        INTSET_ENTRIES_MAX, so the encoding depends on the whole list only."""
        value = cls()
        value._members = members
        value._positions = dict(zip(members, range(len(members)), strict=True))
        if len(value._positions) != len(members):
            raise ValueError("members are not distinct")
        value.hashtable = len(members) > INTSET_ENTRIES_MAX or not all(
            map(is_intset_member, members)
        )
        return value

    def copy(self) -> SetValue:
        """A duplicate with the same encoding and members order (COPY)."""
        twin = SetValue()
        twin._members = list(self._members)
        twin._positions = dict(self._positions)
        twin.hashtable = self.hashtable
        return twin


def _digest(value: SetValue, h: Any) -> None:
    h.update(len(value).to_bytes(8, "big"))
    h.update(unordered_digest(value._members))


register_kind(
    SetValue,
    ValueKind(
        "set",
        lambda value: value.encoding,
        lambda value: 1,
        lambda value: value.copy(),
        _digest,
    ),
)


# -- SSCAN / HSCAN order ------------------------------------------------------------------------

# 63 bits, so that a cursor fits a signed 64-bit integer (what some clients parse it as).
_HASH_BITS: Final = 63
_BITS_MIN: Final = 2
_SHRINK_RATIO: Final = 8


def _hash(member: bytes) -> int:
    return key_hash(member) >> (64 - _HASH_BITS)


class ScanOrder:
    """The members of a big set (or fields of a big hash) in the order of a stable 64-bit
    hash (63 bits of BLAKE2b, the same in every process), for SSCAN and HSCAN cursors.

    A cursor is a hash value: a call answers the members whose hash is at least the cursor,
    in hash order, about count of them (never splitting members of equal hash), and the
    hash of the next member as the cursor to continue from (0 after the last). A member
    present from the first call to the last is returned exactly once, whatever is added or
    removed in between, as Redis promises for its own cursors; and a call's answer depends
    only on the members and the cursor, not on when this index was built, so every shim
    answers the same.

    Members sit in 2**bits buckets by the top bits of their hash (a bucket is a range of
    hashes); the table doubles past one member per bucket and halves below one per
    eight, so a call sorts only the few members of the buckets it visits.
    """

    __slots__ = ("_bits", "_buckets", "_count")

    def __init__(self, members: Iterable[bytes] = ()) -> None:
        self._bits = _BITS_MIN
        self._buckets: list[dict[bytes, int]] = [{} for _ in range(1 << _BITS_MIN)]
        self._count = 0
        for member in members:
            self.add(member)

    def __len__(self) -> int:
        return self._count

    def _bucket(self, h: int) -> dict[bytes, int]:
        return self._buckets[h >> (_HASH_BITS - self._bits)]

    def add(self, member: bytes) -> None:
        h = _hash(member)
        bucket = self._bucket(h)
        if member in bucket:
            return
        bucket[member] = h
        self._count += 1
        if self._count > len(self._buckets):
            self._resize(self._bits + 1)

    def discard(self, member: bytes) -> None:
        bucket = self._bucket(_hash(member))
        if bucket.pop(member, None) is None:
            return
        self._count -= 1
        if self._bits > _BITS_MIN and self._count * _SHRINK_RATIO < len(self._buckets):
            self._resize(max(_BITS_MIN, self._count.bit_length()))

    def _resize(self, bits: int) -> None:
        buckets: list[dict[bytes, int]] = [{} for _ in range(1 << bits)]
        shift = _HASH_BITS - bits
        for bucket in self._buckets:
            for member, h in bucket.items():
                buckets[h >> shift][member] = h
        self._bits = bits
        self._buckets = buckets

    def scan(self, cursor: int, count: int) -> tuple[int, list[bytes]]:
        """Members with hash >= cursor, in hash order, about count; and the next cursor."""
        out: list[bytes] = []
        last = -1
        position = cursor >> (_HASH_BITS - self._bits)
        while position < len(self._buckets):
            bucket = self._buckets[position]
            if bucket:
                for h, member in sorted((h, m) for m, h in bucket.items() if h >= cursor):
                    if len(out) >= count and h != last:
                        return h, out
                    out.append(member)
                    last = h
            position += 1
        return 0, out
