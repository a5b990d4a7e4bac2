"""What a log node holds of its log in memory: a window of the newest entries, a compact
index of terms, and a bounded cache of older entries fetched from disk.

`WindowStorage` is the Storage the Raft core reads (logsvc.raft.storage). Its memory does not
grow with the log's length:

- the window keeps the newest entries, at most `entries_max` of them and `bytes_max` bytes
  (Entry.size_bytes), except that entries past `pinned_index` (not yet handed to the
  application: committed-but-unapplied and uncommitted ones) are never dropped, so that the
  core's `next_committed_entries` always finds them;
- `TermRuns` answers `term(i)` for every retained index from one (start index, term) pair
  per run of equal terms; terms change only at elections, so it stays tiny;
- entries older than the window are read from RocksDB by the driver, off the event loop:
  `entries` raises LogTemporarilyUnavailable and notes the index; the driver takes the
  request (`take_fetch`), reads the disk on a thread, hands the entries back (`fill`) and
  tells the core (`RawNode.entries_fetched`). The cache holds at most `cache_bytes_max`
  (or one entry, when a single entry is larger).

A cached entry is served only while its term matches the term index at its position: a
new leader's entries that replace an uncommitted suffix always differ in term there (the
Log Matching Property), so a fetch that raced with such a truncation is never served.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Sequence

from logsvc.raft import (
    Compacted,
    ConfState,
    Entry,
    HardState,
    LogTemporarilyUnavailable,
    SnapshotMeta,
    StorageError,
    Unavailable,
)
from logsvc.raft.storage import entries_to_append, limit_size

# The window list drops its evicted head once that is this many slots long (and at least
# half the list); until then an evicted slot holds _GONE, so only its pointer stays.
_HEAD_SLACK_MIN = 1024
_GONE = Entry(term=0, index=0)


class TermRuns:
    """The term of every index in (boundary, last], as runs: starts[k] is the first index
    of the k-th run of equal terms, terms[k] its term."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.terms: list[int] = []

    def __len__(self) -> int:
        return len(self.starts)

    def term(self, index: int) -> int:
        """The term at index; the caller checks that index is retained."""
        pos = bisect.bisect_right(self.starts, index) - 1
        if pos < 0:
            raise StorageError(f"no term known for index {index}")
        return self.terms[pos]

    def truncate_from(self, index: int) -> None:
        """Forget the terms of index and everything after it."""
        pos = bisect.bisect_left(self.starts, index)
        del self.starts[pos:]
        del self.terms[pos:]

    def extend(self, entries: Sequence[Entry]) -> None:
        """Add entries that follow the last one known, in order."""
        for entry in entries:
            if not self.terms or self.terms[-1] != entry.term:
                self.starts.append(entry.index)
                self.terms.append(entry.term)

    def drop_through(self, index: int) -> None:
        """Forget runs that end at or before index (the run holding index + 1 stays)."""
        pos = bisect.bisect_right(self.starts, index + 1) - 1
        if pos > 0:
            del self.starts[:pos]
            del self.terms[:pos]

    def clear(self) -> None:
        self.starts.clear()
        self.terms.clear()


class WindowStorage:
    """The Storage protocol over a window of recent entries; see the module docstring."""

    def __init__(
        self, entries_max: int = 10_000, bytes_max: int = 64 << 20, cache_bytes_max: int = 16 << 20
    ) -> None:
        if entries_max < 1 or bytes_max < 1 or cache_bytes_max < 1:
            raise ValueError("window and cache limits must be positive")
        self.entries_max = entries_max
        self.bytes_max = bytes_max
        self.cache_bytes_max = cache_bytes_max
        self._hard_state = HardState()
        self._snapshot = SnapshotMeta()
        self._last = 0
        self.terms = TermRuns()
        # The window: _entries[_head:] are the entries [window_first(), last_index()].
        self._entries: list[Entry] = []
        self._head = 0
        self._window_bytes = 0
        # Entries with an index above this are never dropped from the window.
        self.pinned_index = 0
        # Older entries read from disk: index -> entry, oldest fill first.
        self._cache: OrderedDict[int, Entry] = OrderedDict()
        self._cache_bytes = 0
        # Indexes the core asked for and found missing, for the driver to fetch, in order.
        self._fetch: list[int] = []
        # Counters, for Status and tests.
        self.fetches = 0
        self.cache_hits = 0

    # -- reads (the Storage protocol) ---------------------------------------------------

    def initial_state(self) -> HardState:
        return self._hard_state

    def entries(self, lo: int, hi: int, bytes_max: int | None = None) -> list[Entry]:
        if lo <= self._snapshot.index:
            raise Compacted(f"index {lo} is at or before the trim boundary {self._snapshot.index}")
        if hi > self._last + 1:
            raise Unavailable(f"entries up to {hi - 1} requested, last is {self._last}")
        if lo >= hi:
            return []
        first = self.window_first()
        if lo >= first:
            offset = self._head - first
            return limit_size(self._entries[lo + offset : hi + offset], bytes_max)
        end = min(hi, first)
        cached = self._cached_run(lo, end, bytes_max)
        if not cached:
            self._want(lo)
            raise LogTemporarilyUnavailable(f"entries from {lo} are being read from disk")
        self.cache_hits += 1
        after = cached[-1].index + 1
        if after < end and (bytes_max is None or self._bytes(cached) < bytes_max // 2):
            self._want(after)  # the cache runs out early: read on while these go out
        return cached

    def _want(self, lo: int) -> None:
        if lo not in self._fetch:
            self._fetch.append(lo)

    @staticmethod
    def _bytes(entries: Sequence[Entry]) -> int:
        return sum(e.size_bytes() for e in entries)

    def _cached_run(self, lo: int, hi: int, bytes_max: int | None) -> list[Entry]:
        """The longest valid run of cached entries [lo, ...) below hi, within bytes_max."""
        out: list[Entry] = []
        total = 0
        for index in range(lo, hi):
            entry = self._cache.get(index)
            if entry is None or entry.term != self.terms.term(index):
                break
            total += entry.size_bytes()
            if out and bytes_max is not None and total > bytes_max:
                break
            out.append(entry)
        return out

    def term(self, index: int) -> int:
        if index < self._snapshot.index:
            raise Compacted(f"index {index} is before the trim boundary {self._snapshot.index}")
        if index == self._snapshot.index:
            return self._snapshot.term
        if index > self._last:
            raise Unavailable(f"index {index} is past the last entry {self._last}")
        return self.terms.term(index)

    def first_index(self) -> int:
        return self._snapshot.index + 1

    def last_index(self) -> int:
        return self._last

    def snapshot(self) -> SnapshotMeta:
        return self._snapshot

    # -- what the node asks ---------------------------------------------------------------

    def window_first(self) -> int:
        """The first index held in the window (last_index() + 1 when it is empty)."""
        return self._last + 1 - (len(self._entries) - self._head)

    def window_len(self) -> int:
        return len(self._entries) - self._head

    def window_bytes(self) -> int:
        return self._window_bytes

    def cache_bytes(self) -> int:
        return self._cache_bytes

    def entry_in_memory(self, index: int) -> Entry | None:
        """The entry at index from the window or a valid cache slot, else None."""
        if self._snapshot.index < index <= self._last:
            first = self.window_first()
            if index >= first:
                return self._entries[self._head + index - first]
            entry = self._cache.get(index)
            if entry is not None and entry.term == self.terms.term(index):
                return entry
        return None

    def take_fetch(self) -> int | None:
        """The oldest index the core found missing (and still needs), or None."""
        while self._fetch:
            lo = self._fetch.pop(0)
            if self._snapshot.index < lo < self.window_first():
                return lo
        return None

    def fill(self, entries: Sequence[Entry]) -> None:
        """Entries read from disk for a fetch: cached (those now in the window are not).

        Older fills make room first; the first entry of this one always stays, even alone
        over the limit (an entry larger than the cache), so that every fetch lets the core
        send at least one entry more.
        """
        first = self.window_first()
        added: list[int] = []
        for entry in entries:
            index = entry.index
            if index <= self._snapshot.index or index >= first:
                continue
            if entry.term != self.terms.term(index):
                continue  # replaced since it was read
            old = self._cache.pop(index, None)
            if old is not None:
                self._cache_bytes -= old.size_bytes()
            self._cache[index] = entry
            self._cache_bytes += entry.size_bytes()
            added.append(index)
        self.fetches += 1
        keep = set(added)
        while self._cache_bytes > self.cache_bytes_max and next(iter(self._cache)) not in keep:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= old.size_bytes()
        while self._cache_bytes > self.cache_bytes_max and len(added) > 1:
            self._cache_bytes -= self._cache.pop(added.pop()).size_bytes()

    # -- writes (the driver, after they are synced) --------------------------------------

    def set_hard_state(self, hard_state: HardState) -> None:
        self._hard_state = hard_state

    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries, replacing any existing suffix from the first one's index."""
        entries = entries_to_append(entries, self._snapshot.index, self._last)
        if not entries:
            return
        first = entries[0].index
        if first <= self._last:
            self._truncate_from(first)
        self.terms.extend(entries)
        self._entries.extend(entries)
        self._window_bytes += sum(e.size_bytes() for e in entries)
        self._last = entries[-1].index
        self._evict()

    def _truncate_from(self, index: int) -> None:
        first = self.window_first()
        if index >= first:
            cut = self._head + index - first
            self._window_bytes -= sum(e.size_bytes() for e in self._entries[cut:])
            del self._entries[cut:]
        else:
            # The whole window goes, and cached entries from index on: the new ones follow.
            self._entries = []
            self._head = 0
            self._window_bytes = 0
            for stale in [i for i in self._cache if i >= index]:
                self._cache_bytes -= self._cache.pop(stale).size_bytes()
        self.terms.truncate_from(index)
        self._last = index - 1

    def set_pinned(self, index: int) -> None:
        """Entries up to index were handed to the application: they may leave the window."""
        if index > self.pinned_index:
            self.pinned_index = index
            self._evict()

    def _evict(self) -> None:
        entries = self._entries
        head = self._head
        end = len(entries)
        while head < end and (end - head > self.entries_max or self._window_bytes > self.bytes_max):
            entry = entries[head]
            if entry.index > self.pinned_index:
                break
            self._window_bytes -= entry.size_bytes()
            entries[head] = _GONE
            head += 1
        if head > _HEAD_SLACK_MIN and head * 2 > end:
            del entries[:head]
            head = 0
        self._head = head

    def apply_snapshot(self, meta: SnapshotMeta) -> None:
        """Restart the log at a boundary: everything before and at it is dropped."""
        if meta.index < self._snapshot.index:
            raise StorageError(f"boundary {meta.index} is older than {self._snapshot.index}")
        self._snapshot = meta
        self._last = meta.index
        self._entries = []
        self._head = 0
        self._window_bytes = 0
        self._cache.clear()
        self._cache_bytes = 0
        self._fetch.clear()
        self.terms.clear()
        self.pinned_index = max(self.pinned_index, meta.index)

    def compact(self, index: int, conf: ConfState | None = None) -> None:
        """Drop entries up to and including index (they must exist). `conf` is the
        membership as of an applied index at or past it; None keeps the stored one."""
        if index <= self._snapshot.index:
            return
        if index > self._last:
            raise Unavailable(f"cannot trim to {index}, last is {self._last}")
        term = self.term(index)
        first = self.window_first()
        if index >= first:
            end = self._head + index - first + 1
            for pos in range(self._head, end):
                self._window_bytes -= self._entries[pos].size_bytes()
                self._entries[pos] = _GONE
            self._head = end
        for old in [i for i in self._cache if i <= index]:
            self._cache_bytes -= self._cache.pop(old).size_bytes()
        self.terms.drop_through(index)
        self._snapshot = SnapshotMeta(index=index, term=term, conf=conf or self._snapshot.conf)
        self.pinned_index = max(self.pinned_index, index)
        self._evict()

    def restore(
        self,
        boundary: SnapshotMeta,
        hard_state: HardState,
        last_index: int,
        terms: TermRuns,
        newest: Sequence[Entry],
        applied_index: int | None = None,
    ) -> None:
        """Set what a load read from disk: the boundary, the term runs of (boundary, last],
        and the newest entries (contiguous, ending at last_index), which must include every
        entry past applied_index (default: the commit index, which the node replays)."""
        if newest and (newest[-1].index != last_index):
            raise StorageError(f"the newest entries end at {newest[-1].index}, not {last_index}")
        self._snapshot = boundary
        self._hard_state = hard_state
        self._last = last_index
        self.terms = terms
        self._entries = list(newest)
        self._head = 0
        self._window_bytes = sum(e.size_bytes() for e in newest)
        self._cache.clear()
        self._cache_bytes = 0
        self._fetch.clear()
        applied = hard_state.commit if applied_index is None else applied_index
        first_held = newest[0].index if newest else last_index + 1
        if first_held > max(applied, boundary.index) + 1:
            raise StorageError(f"entries after the applied index {applied} must be in memory")
        self.pinned_index = max(boundary.index, applied)
        self._evict()
