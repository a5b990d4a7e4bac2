"""The Raft log as the core sees it: durable storage plus an unstable tail.

Entries the core has accepted but the driver has not yet persisted live in the unstable
tail; once a Ready is persisted, `stable_to` moves them over to storage's side.
"""

from __future__ import annotations

from collections.abc import Sequence

from logsvc.raft.storage import Compacted, Storage, Unavailable, limit_size
from logsvc.raft.types import Entry, InvariantViolation, SnapshotMeta


class RaftLog:
    def __init__(self, storage: Storage, applied_index: int = 0) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        # Unstable tail: entries with index >= offset not yet known durable.
        self.unstable_offset = last + 1
        self.unstable_entries: list[Entry] = []
        # A boundary to restart the log at, not yet persisted.
        self.unstable_snapshot: SnapshotMeta | None = None
        self.committed = first - 1
        self.applied = max(first - 1, applied_index)

    def __repr__(self) -> str:
        return (
            f"RaftLog(committed={self.committed}, applied={self.applied}, "
            f"unstable_offset={self.unstable_offset}, unstable={len(self.unstable_entries)})"
        )

    # -- boundaries --------------------------------------------------------------------

    def first_index(self) -> int:
        if self.unstable_snapshot is not None:
            return self.unstable_snapshot.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        if self.unstable_entries:
            return self.unstable_offset + len(self.unstable_entries) - 1
        if self.unstable_snapshot is not None:
            return self.unstable_snapshot.index
        return min(self.storage.last_index(), self.unstable_offset - 1)

    def persisted_index(self) -> int:
        """Last index known durable and still part of this log."""
        return min(self.unstable_offset - 1, self.last_index())

    def snapshot_boundary(self) -> SnapshotMeta:
        if self.unstable_snapshot is not None:
            return self.unstable_snapshot
        return self.storage.snapshot()

    # -- reading -----------------------------------------------------------------------

    def term(self, index: int) -> int | None:
        """Term at index, or None when it is trimmed away or past the end."""
        if self.unstable_snapshot is not None and index == self.unstable_snapshot.index:
            return self.unstable_snapshot.term
        if index >= self.unstable_offset:
            pos = index - self.unstable_offset
            if pos < len(self.unstable_entries):
                return self.unstable_entries[pos].term
            return None
        if self.unstable_snapshot is not None:
            return None  # everything before the pending boundary is gone
        try:
            return self.storage.term(index)
        except (Compacted, Unavailable):
            return None

    def last_term(self) -> int:
        term = self.term(self.last_index())
        if term is None:
            raise InvariantViolation(f"no term for the last index {self.last_index()}")
        return term

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Is a candidate's log (last_index, last_term) at least as up to date as ours?"""
        my_term = self.last_term()
        return last_term > my_term or (last_term == my_term and last_index >= self.last_index())

    def slice(self, lo: int, hi: int, bytes_max: int | None = None) -> list[Entry]:
        """Entries [lo, hi); raises Compacted if lo is trimmed away."""
        if lo >= hi:
            return []
        if lo < self.first_index():
            raise Compacted(f"index {lo} is before the first index {self.first_index()}")
        if hi > self.last_index() + 1:
            raise Unavailable(f"entries up to {hi - 1} requested, last is {self.last_index()}")
        result: list[Entry] = []
        if lo < self.unstable_offset:
            result = self.storage.entries(lo, min(hi, self.unstable_offset), bytes_max)
            if len(result) < min(hi, self.unstable_offset) - lo:
                return result  # cut by bytes_max
        if hi > self.unstable_offset:
            start = max(lo, self.unstable_offset) - self.unstable_offset
            result.extend(self.unstable_entries[start : hi - self.unstable_offset])
        return limit_size(result, bytes_max)

    def entries_from(self, lo: int, bytes_max: int | None = None) -> list[Entry]:
        return self.slice(lo, self.last_index() + 1, bytes_max)

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """Index of the first entry whose term differs from ours (or is new); 0 if none."""
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest (i, term(i)) with i <= index and term(i) <= term: the fast-backtrack hint.

        When the term at i is unknown (trimmed), returns (i, 0).
        """
        index = min(index, self.last_index())
        while index > 0:
            t = self.term(index)
            if t is None:
                return index, 0
            if t <= term:
                return index, t
            index -= 1
        return 0, 0

    # -- writing (in memory; the driver persists) -----------------------------------

    def append(self, entries: Sequence[Entry]) -> int:
        if not entries:
            return self.last_index()
        after = entries[0].index - 1
        if after < self.committed:
            raise InvariantViolation(
                f"append after {after} would overwrite committed {self.committed}"
            )
        self._truncate_and_append(entries)
        return self.last_index()

    def _truncate_and_append(self, entries: Sequence[Entry]) -> None:
        first = entries[0].index
        end = self.unstable_offset + len(self.unstable_entries)
        if first == end:
            self.unstable_entries.extend(entries)
        elif first <= self.unstable_offset:
            # Replaces everything unstable (and shadows what storage holds from first on).
            self.unstable_offset = first
            self.unstable_entries = list(entries)
        else:
            keep = first - self.unstable_offset
            self.unstable_entries = self.unstable_entries[:keep] + list(entries)

    def maybe_append(
        self, index: int, log_term: int, committed: int, entries: Sequence[Entry]
    ) -> int | None:
        """Append entries after (index, log_term) if our log matches there.

        Returns the index of the last new entry, or None when the log does not match.
        """
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            if conflict <= self.committed:
                raise InvariantViolation(
                    f"entry {conflict} conflicts with committed entry (committed {self.committed})"
                )
            self.append(entries[conflict - index - 1 :])
        self.commit_to(min(committed, last_new))
        return last_new

    def commit_to(self, index: int) -> None:
        if index <= self.committed:
            return
        if index > self.last_index():
            raise InvariantViolation(
                f"commit {index} is past the last index {self.last_index()}: "
                "was the log corrupted, truncated, or lost?"
            )
        self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """Commit up to index if that entry is of the given (current) term (paper 5.4.2)."""
        if index > self.committed and self.term(index) == term:
            self.commit_to(index)
            return True
        return False

    def restore(self, meta: SnapshotMeta) -> None:
        """Restart the log at a boundary (a follower behind the leader's trim point)."""
        self.unstable_snapshot = meta
        self.unstable_offset = meta.index + 1
        self.unstable_entries = []
        self.committed = meta.index
        self.applied = max(self.applied, meta.index)

    # -- after the driver persisted / applied ----------------------------------------

    def unstable_to_persist(self) -> list[Entry]:
        return list(self.unstable_entries)

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to (index, term) are durable now, unless replaced meanwhile."""
        if index < self.unstable_offset:
            return
        pos = index - self.unstable_offset
        if pos >= len(self.unstable_entries) or self.unstable_entries[pos].term != term:
            return
        self.unstable_entries = self.unstable_entries[pos + 1 :]
        self.unstable_offset = index + 1

    def stable_snapshot_to(self, index: int) -> None:
        if self.unstable_snapshot is not None and self.unstable_snapshot.index == index:
            self.unstable_snapshot = None

    def has_next_committed_entries(self) -> bool:
        return self.committed > self.applied

    def next_committed_entries(self, bytes_max: int | None = None) -> list[Entry]:
        lo = max(self.applied + 1, self.first_index())
        return self.slice(lo, self.committed + 1, bytes_max)

    def applied_to(self, index: int) -> None:
        if index > self.committed:
            raise InvariantViolation(f"applied {index} is past committed {self.committed}")
        self.applied = max(self.applied, index)
