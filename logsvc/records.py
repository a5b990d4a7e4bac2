"""The applied state of the log: where each record lives, and who already appended what.

Built only from committed entries in log order (on every node, and again on restart), so
every node at the same applied index holds the same state: this is what lets a retry
that reaches a new leader be recognised as a duplicate.
"""

from __future__ import annotations

import bisect
from array import array
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from logsvc.raft import Entry, EntryType, InvariantViolation
from logsvc.snapshots import SnapshotCatalog
from logsvc.v1 import entry_pb2


@dataclass(frozen=True, slots=True)
class AppliedBatch:
    raft_index: int
    first_index: int
    last_index: int


class PayloadCache:
    """Decoded payloads of recent entries (apply decodes each once, readers of the tail
    again), bounded by the bytes of the payloads it holds, not only by their number: a
    count alone would let big batches hold gigabytes."""

    def __init__(self, bytes_max: int = 16 << 20, entries_max: int = 4096) -> None:
        self.bytes_max = bytes_max
        self.entries_max = entries_max
        self._items: OrderedDict[bytes, entry_pb2.EntryPayload] = OrderedDict()
        self._bytes = 0

    def __call__(self, data: bytes) -> entry_pb2.EntryPayload:
        payload = self._items.get(data)
        if payload is not None:
            self._items.move_to_end(data)
            return payload
        payload = entry_pb2.EntryPayload.FromString(data)
        if len(data) <= self.bytes_max:
            self._items[data] = payload
            self._bytes += len(data)
            while self._bytes > self.bytes_max or len(self._items) > self.entries_max:
                old, _ = self._items.popitem(last=False)
                self._bytes -= len(old)
        return payload

    def bytes_held(self) -> int:
        return self._bytes


decode_payload = PayloadCache()


class RecordState:
    def __init__(self, dedup_sequences_max: int = 256, producers_max: int = 10_000) -> None:
        self.dedup_sequences_max = dedup_sequences_max
        # Retained batches in log order (parallel arrays for bisect): 32 bytes per batch,
        # the one part of a node's memory that grows with the retained log (trim bounds it).
        self._raft_indexes = array("q")
        self._first_indexes = array("q")
        self._counts = array("q")
        # When the leader proposed each batch (ms since the epoch; 0: unknown, counted old).
        self._appended_ms = array("q")
        # The next record index; None until known (a node whose log restarted at a trim
        # boundary learns it from the first batch it applies).
        self.next_index: int | None = 1
        self.applied_raft_index = 0
        # producer -> its dedup state; least recently appending producers first, and at
        # most producers_max of them (evicted in log order, so identically everywhere).
        self.producers_max = producers_max
        self._producers: OrderedDict[str, ProducerWindow] = OrderedDict()
        # The durable snapshots (applied SnapshotDurable entries, and trims' copies).
        self.snapshots = SnapshotCatalog()

    # -- apply ---------------------------------------------------------------------

    def restart_at_boundary(self, raft_index: int) -> None:
        """The log was restarted at a trim boundary: nothing before it is known."""
        del self._raft_indexes[:]
        del self._first_indexes[:]
        del self._counts[:]
        del self._appended_ms[:]
        self.next_index = None
        self.applied_raft_index = raft_index

    def apply(self, entry: Entry) -> AppliedBatch | int | bool | None:
        """Apply one committed entry; returns the batch it added, the raft index up to which
        a trim compacts, True when the snapshot catalog changed, or None."""
        if entry.index != self.applied_raft_index + 1:
            raise InvariantViolation(
                f"applied entry {entry.index} right after {self.applied_raft_index}"
            )
        self.applied_raft_index = entry.index
        if entry.type is not EntryType.NORMAL or not entry.data:
            return None  # a no-op, or a membership change (the node applies those)
        payload = decode_payload(entry.data)
        kind = payload.WhichOneof("kind")
        if kind == "batch":
            return self._apply_batch(entry.index, payload.batch)
        if kind == "trim":
            trim = payload.trim
            self.merge_producers(trim.producers)
            self.snapshots.merge(trim.snapshots)
            return self.apply_trim(trim.before_index, trim.carried_through_raft_index)
        if kind == "snapshot":
            return self.snapshots.add(payload.snapshot)
        return None

    def _apply_batch(self, raft_index: int, batch: entry_pb2.RecordBatch) -> AppliedBatch:
        count = len(batch.records)
        if self.next_index is not None and batch.first_index != self.next_index:
            raise InvariantViolation(
                f"batch at raft index {raft_index} starts at record {batch.first_index}, "
                f"expected {self.next_index}"
            )
        self._raft_indexes.append(raft_index)
        self._first_indexes.append(batch.first_index)
        self._counts.append(count)
        self._appended_ms.append(batch.appended_at_ms)
        self.next_index = batch.first_index + count
        applied = AppliedBatch(raft_index, batch.first_index, batch.first_index + count - 1)
        if batch.producer_id:
            self._remember(
                batch.producer_id, batch.sequence, applied.first_index, applied.last_index
            )
        return applied

    def apply_trim(self, before_index: int, carried_through: int = 0) -> int | None:
        """The raft index to compact to so that records before before_index go.

        The batch holding the newest trimmed record stays, so that the log always starts
        with a batch that tells a restarted node where record numbering stands. The
        compaction never passes `carried_through` (when set): entries after it are not in
        the producer table and catalog that the trim carries, so they must stay in the log.
        """
        pos = bisect.bisect_right(self._first_indexes, before_index - 1) - 1
        # Keep batch `pos` if it reaches before_index - 1; everything before it goes.
        if pos < 1:
            return None
        target = self._raft_indexes[pos] - 1
        if carried_through and target > carried_through:
            target = carried_through
            pos = bisect.bisect_right(self._raft_indexes, target)
            if pos < 1:
                return None
        del self._raft_indexes[:pos]
        del self._first_indexes[:pos]
        del self._counts[:pos]
        del self._appended_ms[:pos]
        return target

    # -- queries ---------------------------------------------------------------------

    def first_index(self) -> int:
        """First retained record index (next_index when nothing is retained)."""
        if self._first_indexes:
            return self._first_indexes[0]
        return self.next_index or 1

    def last_index(self) -> int:
        return (self.next_index or 1) - 1

    def first_index_appended_after(self, cutoff_ms: int, limit: int) -> int:
        """The first index of the oldest retained batch appended after cutoff_ms, or limit
        if none before limit is (leaders' clocks may differ: the first young batch counts,
        whatever older stamps follow it)."""
        end = bisect.bisect_left(self._first_indexes, limit)
        for pos in range(end):
            if self._appended_ms[pos] > cutoff_ms:
                return self._first_indexes[pos]
        return limit

    def locate(self, record_index: int) -> tuple[int, int] | None:
        """(raft index of the batch holding record_index, position in it), or None."""
        pos = bisect.bisect_right(self._first_indexes, record_index) - 1
        if pos < 0:
            return None
        offset = record_index - self._first_indexes[pos]
        if offset >= self._counts[pos]:
            return None
        return self._raft_indexes[pos], offset

    def last_record_at(self, raft_index: int) -> int:
        """The last record index committed by raft index raft_index (applied)."""
        pos = bisect.bisect_right(self._raft_indexes, raft_index) - 1
        if pos < 0:
            return self.first_index() - 1
        return self._first_indexes[pos] + self._counts[pos] - 1

    def duplicate(self, producer_id: str, sequence: int) -> tuple[int, int] | None:
        state = self._producers.get(producer_id)
        return None if state is None else state.sequences.get(sequence)

    def producer_high(self, producer_id: str) -> int:
        state = self._producers.get(producer_id)
        return 0 if state is None else state.high

    def too_old(self, producer_id: str, sequence: int) -> bool:
        """Is sequence older than everything the producer's full window remembers?

        Then a retry of it could not be recognised. (A producer may have several appends
        in flight, so a sequence below the highest one seen is not by itself a retry.)
        """
        state = self._producers.get(producer_id)
        if state is None or len(state.sequences) < self.dedup_sequences_max:
            return False
        return sequence < min(state.sequences)

    # -- the dedup table -----------------------------------------------------------------

    def _remember(self, producer_id: str, sequence: int, first: int, last: int) -> None:
        state = self._producers.get(producer_id)
        if state is None:
            state = self._producers[producer_id] = ProducerWindow()
        else:
            self._producers.move_to_end(producer_id)
        state.sequences[sequence] = (first, last)
        state.sequences.move_to_end(sequence)
        while len(state.sequences) > self.dedup_sequences_max:
            state.sequences.popitem(last=False)
        state.high = max(state.high, sequence)
        while len(self._producers) > self.producers_max:
            self._producers.popitem(last=False)

    def producers_snapshot(self) -> list[entry_pb2.ProducerState]:
        """The dedup table, for a trim command to carry past the trim boundary."""
        return [
            entry_pb2.ProducerState(
                producer_id=producer_id,
                high_sequence=state.high,
                sequences=list(state.sequences),
                first_indexes=[f for f, _ in state.sequences.values()],
                last_indexes=[last for _, last in state.sequences.values()],
            )
            for producer_id, state in self._producers.items()
        ]

    def merge_producers(self, producers: Iterable[entry_pb2.ProducerState]) -> None:
        """Fold in a trim's copy of the table (what a replay from the boundary lacks)."""
        for ps in producers:
            state = self._producers.get(ps.producer_id)
            if state is None:
                state = ProducerWindow()
                # Producers known only from the copy rank as the least recent.
                self._producers[ps.producer_id] = state
                self._producers.move_to_end(ps.producer_id, last=False)
            known = state.sequences
            merged = OrderedDict(
                (seq, (first, last))
                for seq, first, last in zip(
                    ps.sequences, ps.first_indexes, ps.last_indexes, strict=True
                )
                if seq not in known
            )
            merged.update(known)
            state.sequences = merged
            while len(state.sequences) > self.dedup_sequences_max:
                state.sequences.popitem(last=False)
            state.high = max(state.high, ps.high_sequence)
        while len(self._producers) > self.producers_max:
            self._producers.popitem(last=False)


@dataclass(slots=True)
class ProducerWindow:
    high: int = 0
    # sequence -> (first, last) record indexes, oldest first
    sequences: OrderedDict[int, tuple[int, int]] = field(default_factory=OrderedDict)
