"""The storage seam: what the core may read, and an in-memory implementation.

The core only reads durable state through `Storage`; writes are the driver's job (it
persists what a `Ready` hands it). `MemoryStorage` is the in-memory twin used by tests
and the simulator; the RocksDB storage of the log service implements the same reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from logsvc.raft.types import ConfState, Entry, HardState, SnapshotMeta


class StorageError(Exception):
    pass


class Compacted(StorageError):
    """The requested index lies before the trim boundary."""


class Unavailable(StorageError):
    """The requested index lies after the last entry."""


class LogTemporarilyUnavailable(StorageError):
    """The entries exist but are not in memory: the storage has asked its driver to fetch
    them from disk. The core skips what needed them and tries again once the driver reports
    them fetched (`RawNode.entries_fetched`). Only `entries` raises it, never `term`."""


class Storage(Protocol):
    def initial_state(self) -> HardState: ...

    def entries(self, lo: int, hi: int, bytes_max: int | None = None) -> list[Entry]:
        """Entries [lo, hi), cut at bytes_max (at least one entry if any).

        Raises Compacted if lo <= snapshot().index, Unavailable if hi > last_index() + 1,
        LogTemporarilyUnavailable when the storage must first fetch [lo, ...) from disk.
        A result shorter than asked (and not cut by bytes_max) is allowed: the core sends
        what it got.
        """
        ...

    def term(self, index: int) -> int:
        """Term of the entry at index; the boundary's term at snapshot().index.

        Raises Compacted below the boundary, Unavailable past the last entry.
        """
        ...

    def first_index(self) -> int:
        """Index of the first entry kept (snapshot().index + 1)."""
        ...

    def last_index(self) -> int:
        """Index of the last entry (snapshot().index when the log is empty)."""
        ...

    def snapshot(self) -> SnapshotMeta:
        """The trim boundary."""
        ...


def limit_size(entries: Sequence[Entry], bytes_max: int | None) -> list[Entry]:
    """The longest prefix within bytes_max, but never fewer than one entry."""
    if bytes_max is None or not entries:
        return list(entries)
    total = entries[0].size_bytes()
    n = 1
    while n < len(entries):
        total += entries[n].size_bytes()
        if total > bytes_max:
            break
        n += 1
    return list(entries[:n])


def entries_to_append(
    entries: Sequence[Entry], boundary_index: int, last_index: int
) -> Sequence[Entry]:
    """What of entries a storage appends: those past its boundary (the ones at or before it
    are already covered), starting at most one past its last index (Unavailable: a gap)."""
    if entries and entries[0].index <= boundary_index:
        entries = [e for e in entries if e.index > boundary_index]
    if entries and entries[0].index > last_index + 1:
        raise Unavailable(f"append at {entries[0].index} leaves a gap after {last_index}")
    return entries


class MemoryStorage:
    """Storage held in memory; the writer methods mirror what a driver persists."""

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot = SnapshotMeta()
        self._entries: list[Entry] = []  # _entries[i].index == _snapshot.index + 1 + i

    # -- reads (the Storage protocol) ---------------------------------------------

    def initial_state(self) -> HardState:
        return self._hard_state

    def entries(self, lo: int, hi: int, bytes_max: int | None = None) -> list[Entry]:
        if lo <= self._snapshot.index:
            raise Compacted(f"index {lo} is at or before the trim boundary {self._snapshot.index}")
        if hi > self.last_index() + 1:
            raise Unavailable(f"entries up to {hi - 1} requested, last is {self.last_index()}")
        offset = self._snapshot.index + 1
        return limit_size(self._entries[lo - offset : hi - offset], bytes_max)

    def term(self, index: int) -> int:
        if index < self._snapshot.index:
            raise Compacted(f"index {index} is before the trim boundary {self._snapshot.index}")
        if index == self._snapshot.index:
            return self._snapshot.term
        if index > self.last_index():
            raise Unavailable(f"index {index} is past the last entry {self.last_index()}")
        return self._entries[index - self._snapshot.index - 1].term

    def first_index(self) -> int:
        return self._snapshot.index + 1

    def last_index(self) -> int:
        return self._snapshot.index + len(self._entries)

    def snapshot(self) -> SnapshotMeta:
        return self._snapshot

    # -- writes (done by the driver) ------------------------------------------------

    def set_hard_state(self, hard_state: HardState) -> None:
        self._hard_state = hard_state

    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries, replacing any existing suffix from the first one's index."""
        entries = entries_to_append(entries, self._snapshot.index, self.last_index())
        if not entries:
            return
        del self._entries[entries[0].index - self._snapshot.index - 1 :]
        self._entries.extend(entries)

    def apply_snapshot(self, meta: SnapshotMeta) -> None:
        """Restart the log at a boundary: everything before and at it is dropped."""
        if meta.index < self._snapshot.index:
            raise StorageError(f"boundary {meta.index} is older than {self._snapshot.index}")
        self._snapshot = meta
        self._entries = []

    def compact(self, index: int, conf: ConfState | None = None) -> None:
        """Drop entries up to and including index (they must exist). `conf` is the
        membership as of an applied index at or past it; None keeps the stored one."""
        if index <= self._snapshot.index:
            return
        if index > self.last_index():
            raise Unavailable(f"cannot trim to {index}, last is {self.last_index()}")
        term = self.term(index)
        del self._entries[: index - self._snapshot.index]
        self._snapshot = SnapshotMeta(index=index, term=term, conf=conf or self._snapshot.conf)

    def clone(self) -> MemoryStorage:
        copy = MemoryStorage()
        copy._hard_state = self._hard_state
        copy._snapshot = self._snapshot
        copy._entries = list(self._entries)
        return copy
