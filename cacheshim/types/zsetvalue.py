"""The sorted set value (Redis t_zset.c's zset): a member->score dict beside an
order-statistic list of (score, member), so lookups are O(1) and every range is
O(log n + m).

Order is Redis's: by score, then by member bytes (memcmp, then length), which is exactly how
Python compares ``(float, bytes)`` tuples; ``-0.0`` and ``0.0`` compare equal, as in C. NaN
never gets in (the commands refuse it). The ordered side is `sortedcontainers.SortedList`
(a list of sorted lists with a positional index: ``O(log n)`` insert, delete, bisect and
access by rank), behind `_SortedPairs`, a typed wrapper, since the package has no stubs.

The encoding OBJECT ENCODING reports is tracked as Redis 7.0 tracks it, with Redis's default
limits (``zset-max-listpack-entries 128``, ``zset-max-listpack-value 64``); they are fixed
here, not configurable, because apply must be deterministic on every shim. A sorted set
starts as a listpack, becomes a skiplist when it would hold a 129th member or a member longer
than 64 bytes, and never goes back (deletions keep the encoding), except that a set built by
ZUNIONSTORE, ZINTERSTORE or ZDIFFSTORE is a listpack whenever it fits (`ZSet.from_sorted`;
ZRANGESTORE inserts into a new listpack one member at a time, like ZADD).

The encoding shows in two answers besides OBJECT ENCODING:

- a listpack stores an integral score as an integer, so a score of ``-0`` reads back as
  ``0`` there (a skiplist keeps ``-0``);
- lexicographic searches on a set whose scores differ (where Redis's answer depends on its
  layout): a listpack is walked from one end, as Redis walks it; a skiplist is
  binary-searched, the answer Redis gives whenever the members in the range share one score
  (the only case Redis documents).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from sortedcontainers import SortedList  # type: ignore[import-untyped]

from cacheshim.protocol.resp import Pairs
from cacheshim.types.keyindex import KeyIndex
from cacheshim.types.keyspace import ValueKind, register_kind

__all__ = [
    "LISTPACK_ENTRIES_MAX",
    "LISTPACK_VALUE_BYTES_MAX",
    "LexBound",
    "Pairs",
    "ScoreRange",
    "ZSet",
]

# zset-max-listpack-entries / zset-max-listpack-value: Redis 7.0's defaults, fixed.
LISTPACK_ENTRIES_MAX: Final = 128
LISTPACK_VALUE_BYTES_MAX: Final = 64

Entry = tuple[float, bytes]  # (score, member): the order of the set


class _SortedPairs:
    """A typed face of `SortedList` holding (score, member) tuples."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Entry] = ()) -> None:
        self._items: Any = SortedList(items)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Entry]:
        iterator: Iterator[Entry] = iter(self._items)
        return iterator

    def __reversed__(self) -> Iterator[Entry]:
        iterator: Iterator[Entry] = reversed(self._items)
        return iterator

    def add(self, entry: Entry) -> None:
        self._items.add(entry)

    def remove(self, entry: Entry) -> None:
        self._items.remove(entry)

    def at(self, index: int) -> Entry:
        entry: Entry = self._items[index]
        return entry

    def bisect_left(self, key: tuple[float] | Entry) -> int:
        """The first position whose entry is >= key ((score,) sorts before any member)."""
        position: int = self._items.bisect_left(key)
        return position

    def slice(self, start: int, stop: int, reverse: bool = False) -> Iterator[Entry]:
        """Entries at positions start..stop-1 (from stop-1 down when reverse)."""
        iterator: Iterator[Entry] = self._items.islice(start, stop, reverse=reverse)
        return iterator

    def delete(self, start: int, stop: int) -> None:
        del self._items[start:stop]


# -- ranges -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScoreRange:
    """A score interval as ZRANGEBYSCORE takes it (zrangespec): "(" makes a bound exclusive."""

    min: float
    max: float
    min_exclusive: bool = False
    max_exclusive: bool = False

    def above_min(self, score: float) -> bool:
        return score > self.min if self.min_exclusive else score >= self.min

    def below_max(self, score: float) -> bool:
        return score < self.max if self.max_exclusive else score <= self.max

    def is_empty(self) -> bool:
        return self.min > self.max or (
            self.min == self.max and (self.min_exclusive or self.max_exclusive)
        )


@dataclass(frozen=True, slots=True)
class LexBound:
    """One end of a ZRANGEBYLEX interval: "-" (below everything), "+" (above everything),
    or a member, "(" exclusive or "[" inclusive."""

    value: bytes = b""
    exclusive: bool = False
    infinity: int = 0  # -1 for "-", +1 for "+", 0 for a member

    def compare(self, member: bytes) -> int:
        """Redis's sdscmplex(member, bound): <0, 0 or >0."""
        if self.infinity:
            return -self.infinity
        if member == self.value:
            return 0
        return -1 if member < self.value else 1


@dataclass(frozen=True, slots=True)
class LexRange:
    min: LexBound
    max: LexBound

    def above_min(self, member: bytes) -> bool:
        cmp = self.min.compare(member)
        return cmp > 0 if self.min.exclusive else cmp >= 0

    def below_max(self, member: bytes) -> bool:
        cmp = self.max.compare(member)
        return cmp < 0 if self.max.exclusive else cmp <= 0

    def is_empty(self) -> bool:
        """Redis's early test: min above max, or equal with either end exclusive."""
        low, high = self.min, self.max
        if low.infinity or high.infinity:
            if low.infinity and low.infinity == high.infinity:
                cmp = 0  # the same shared object in Redis: "-" "-" or "+" "+"
            elif low.infinity:
                cmp = low.infinity
            else:
                cmp = -high.infinity
        else:
            cmp = (low.value > high.value) - (low.value < high.value)
        return cmp > 0 or (cmp == 0 and (low.exclusive or high.exclusive))


# -- the value -----------------------------------------------------------------------------------


class ZSet:
    """A sorted set. Mutate it only through these methods (they keep both sides and the
    encoding in step); the caller marks the key changed and deletes it when empty."""

    __slots__ = ("_order", "_scan_index", "listpack", "scores")

    def __init__(self, listpack: bool = True) -> None:
        self.scores: dict[bytes, float] = {}
        self._order = _SortedPairs()
        self.listpack = listpack
        # Members in hash buckets for ZSCAN's cursor on a skiplist; made on first use.
        self._scan_index: KeyIndex | None = None

    @classmethod
    def from_sorted(cls, entries: Sequence[Entry]) -> ZSet:
        """A new set of distinct members (a STORE command's result): a listpack if it fits."""
        fits = len(entries) <= LISTPACK_ENTRIES_MAX and all(
            len(member) <= LISTPACK_VALUE_BYTES_MAX for _, member in entries
        )
        if fits:  # integral scores go into a listpack as integers: -0 becomes 0
            entries = [(0.0 if score == 0 else score, member) for score, member in entries]
        zset = cls(listpack=fits)
        zset.scores = {member: score for score, member in entries}
        zset._order = _SortedPairs(entries)
        return zset

    def copy(self) -> ZSet:
        """COPY's duplicate: the same members, scores and encoding, nothing shared."""
        twin = ZSet(self.listpack)
        twin.scores = dict(self.scores)
        twin._order = _SortedPairs(self._order)
        return twin

    def __len__(self) -> int:
        return len(self.scores)

    def __repr__(self) -> str:
        return f"ZSet({list(self._order)!r})"

    @property
    def encoding(self) -> str:
        return "listpack" if self.listpack else "skiplist"

    # -- changes --------------------------------------------------------------------------------

    def insert(self, member: bytes, score: float) -> None:
        """Add a member that is not in the set yet (converting to a skiplist if needed)."""
        if self.listpack and (
            len(self.scores) + 1 > LISTPACK_ENTRIES_MAX or len(member) > LISTPACK_VALUE_BYTES_MAX
        ):
            self.listpack = False
        if self.listpack and score == 0:
            score = 0.0  # a listpack stores an integral score as an integer: -0 becomes 0
        self.scores[member] = score
        self._order.add((score, member))
        if self._scan_index is not None:
            self._scan_index.add(member)

    def update(self, member: bytes, score: float) -> None:
        """Give a member that is in the set another score."""
        old = self.scores[member]
        if self.listpack and score == 0:
            score = 0.0
        self._order.remove((old, member))
        self._order.add((score, member))
        self.scores[member] = score

    def remove(self, member: bytes) -> bool:
        score = self.scores.pop(member, None)
        if score is None:
            return False
        self._order.remove((score, member))
        if self._scan_index is not None:
            self._scan_index.discard(member)
        return True

    def remove_positions(self, start: int, stop: int) -> int:
        """Remove the members at positions start..stop-1; returns how many."""
        if start >= stop:
            return 0
        for _, member in self._order.slice(start, stop):
            del self.scores[member]
            if self._scan_index is not None:
                self._scan_index.discard(member)
        self._order.delete(start, stop)
        return stop - start

    # -- reads ------------------------------------------------------------------------------------

    def score(self, member: bytes) -> float | None:
        return self.scores.get(member)

    def rank(self, member: bytes) -> int | None:
        score = self.scores.get(member)
        if score is None:
            return None
        return self._order.bisect_left((score, member))

    def at(self, position: int) -> Entry:
        return self._order.at(position)

    def entries(
        self, start: int = 0, stop: int | None = None, reverse: bool = False
    ) -> Iterator[Entry]:
        """Entries at positions start..stop-1, ascending (descending from stop-1 if reverse)."""
        return self._order.slice(start, len(self._order) if stop is None else stop, reverse)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._order)

    def __reversed__(self) -> Iterator[Entry]:
        return reversed(self._order)

    def members_by_rank(self) -> Iterator[bytes]:
        """The members, lowest score first (SORT's view of a sorted set)."""
        return (member for _, member in self._order)

    # -- score ranges: bisection, the same answer as Redis's walk since scores are sorted ------

    def first_at_or_above(self, score: float, exclusive: bool) -> int:
        """The first position whose score is >= score (> score when exclusive)."""
        if exclusive:
            if score == float("inf"):
                return len(self._order)
            return self._order.bisect_left((_next_up(score),))
        return self._order.bisect_left((score,))

    def score_span(self, spec: ScoreRange) -> tuple[int, int]:
        """Positions lo..hi-1 hold exactly the members whose score is in spec."""
        lo = self.first_at_or_above(spec.min, spec.min_exclusive)
        hi = self.first_at_or_above(spec.max, not spec.max_exclusive)
        return lo, max(lo, hi)

    # -- lexicographic ranges ------------------------------------------------------------------

    def lex_first(self, spec: LexRange) -> int | None:
        """Redis's "first in lex range": the position a forward walk starts from, or None."""
        if not self._lex_possible(spec):
            return None
        n = len(self._order)
        if self.listpack:
            position = next((i for i in range(n) if spec.above_min(self.at(i)[1])), n)
        else:
            lo, hi = 0, n
            while lo < hi:
                mid = (lo + hi) // 2
                if spec.above_min(self.at(mid)[1]):
                    hi = mid
                else:
                    lo = mid + 1
            position = lo
        if position < n and spec.below_max(self.at(position)[1]):
            return position
        return None

    def lex_last(self, spec: LexRange) -> int | None:
        """Redis's "last in lex range": the position a backward walk starts from, or None."""
        if not self._lex_possible(spec):
            return None
        n = len(self._order)
        if self.listpack:
            position = next((i for i in range(n - 1, -1, -1) if spec.below_max(self.at(i)[1])), -1)
        else:
            lo, hi = 0, n  # the first position not below max, minus one
            while lo < hi:
                mid = (lo + hi) // 2
                if spec.below_max(self.at(mid)[1]):
                    lo = mid + 1
                else:
                    hi = mid
            position = lo - 1
        if position >= 0 and spec.above_min(self.at(position)[1]):
            return position
        return None

    def _lex_possible(self, spec: LexRange) -> bool:
        """zslIsInLexRange / zzlIsInLexRange: the cheap tests on the range and both ends."""
        if spec.is_empty() or not self._order:
            return False
        return spec.above_min(self.at(len(self._order) - 1)[1]) and spec.below_max(self.at(0)[1])

    # -- ZSCAN on a skiplist --------------------------------------------------------------------

    def scan(self, cursor: int, count: int) -> tuple[int, list[bytes]]:
        """One ZSCAN step over the members' hash buckets (KeyIndex.scan's guarantees)."""
        if self._scan_index is None:
            self._scan_index = KeyIndex()
            self._scan_index.rebuild(self.scores)
        return self._scan_index.scan(cursor, count)


def _next_up(value: float) -> float:
    return math.nextafter(value, math.inf)


def format_score(score: float) -> bytes:
    """A score as text, as Redis's d2string writes it into a listpack (ZSCAN's values):
    inf/-inf, else %.17g (integers print without an exponent up to 2**53 either way)."""
    if score == float("inf"):
        return b"inf"
    if score == float("-inf"):
        return b"-inf"
    return b"%.17g" % score


# -- TYPE, OBJECT, COPY, DEBUG DIGEST ---------------------------------------------------------

_SCORE: Final = struct.Struct(">d")


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...


def _digest(value: ZSet, h: _Hasher) -> None:
    for score, member in value:
        h.update(len(member).to_bytes(8, "big"))
        h.update(member)
        h.update(_SCORE.pack(score))


register_kind(
    ZSet,
    ValueKind("zset", lambda v: v.encoding, lambda v: 1, lambda v: v.copy(), _digest),
)
