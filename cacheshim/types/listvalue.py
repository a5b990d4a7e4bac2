"""The list type's value (the data side of Redis's t_list.c): a deque of byte strings.

Encoding (OBJECT ENCODING): Redis 7.0 keeps every list as a ``quicklist`` (a linked list of
listpack nodes, each up to ``list-max-listpack-size`` -2, i.e. 8 KB); the ``listpack``
encoding for small lists arrived only in Redis 7.2. So OBJECT ENCODING answers
``quicklist`` for any list, as redis-server 7.0 does (checked against 7.0.15), whatever the
shim's configuration says: apply must give the same answer on every shim.

Costs: a deque is O(1) at both ends (pushes, pops, LINDEX 0 / -1) and walks from the nearer
end for an index in the middle, as a quicklist does; LRANGE walks from the nearer end too.

Determinism: a list has one order, head to tail, and every write keeps it; nothing here
depends on hashing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, Final

from cacheshim.commands.args import index_span
from cacheshim.types.keyspace import ValueKind, register_kind

__all__ = ["ENCODING", "ListValue", "index_range"]

ENCODING: Final = "quicklist"


class ListValue(deque[bytes]):
    """A Redis list, head (index 0) to tail. Never empty while stored at a key: the
    handlers delete the key when its last element goes, as Redis does."""

    __slots__ = ()

    def span(self, start: int, stop: int) -> list[bytes]:
        """Elements start..stop-1 (0 <= start <= stop <= len), walking from the nearer end."""
        size = len(self)
        if start >= size - stop:  # closer to the tail: walk back from it
            tail = list(islice(reversed(self), size - stop, size - start))
            tail.reverse()
            return tail
        return list(islice(self, start, stop))

    def iter_from(self, tail_first: bool) -> Iterator[bytes]:
        return reversed(self) if tail_first else iter(self)


def index_range(size: int, start: int, end: int) -> tuple[int, int] | None:
    """LRANGE/LTRIM's [start, end] (inclusive, negatives from the tail) as a half-open
    [first, stop) within a list of size elements, or None when it is empty (Redis's rules:
    a start past the end, or a start after the end, selects nothing)."""
    span = index_span(size, start, end)
    return None if span is None else (span[0], span[1] + 1)


def new_list(items: Iterable[bytes] = ()) -> ListValue:
    return ListValue(items)


def _digest(value: ListValue, h: Any) -> None:
    for element in value:
        h.update(len(element).to_bytes(8, "big"))
        h.update(element)


register_kind(
    ListValue,
    ValueKind(
        "list",
        lambda value: ENCODING,
        lambda value: 1,
        lambda value: value.copy(),
        _digest,
    ),
)
