"""RecordState: deterministic apply of committed entries into record indexes and dedup."""

from __future__ import annotations

import pytest

from logsvc.raft import Entry, EntryType, InvariantViolation
from logsvc.records import AppliedBatch, RecordState
from logsvc.v1 import entry_pb2


def batch(
    raft_index: int, first: int, records: list[bytes], producer: str = "", seq: int = 0
) -> Entry:
    payload = entry_pb2.EntryPayload(
        batch=entry_pb2.RecordBatch(
            first_index=first, records=records, producer_id=producer, sequence=seq
        )
    )
    return Entry(term=1, index=raft_index, data=payload.SerializeToString())


def trim(raft_index: int, before: int) -> Entry:
    payload = entry_pb2.EntryPayload(trim=entry_pb2.TrimCommand(before_index=before))
    return Entry(term=1, index=raft_index, data=payload.SerializeToString())


def noop(raft_index: int) -> Entry:
    return Entry(term=1, index=raft_index, type=EntryType.NOOP)


def test_batches_get_dense_record_indexes_and_can_be_located() -> None:
    state = RecordState()
    assert state.apply(noop(1)) is None
    assert state.apply(batch(2, 1, [b"a", b"b"])) == AppliedBatch(2, 1, 2)
    assert state.apply(noop(3)) is None
    assert state.apply(batch(4, 3, [b"c"])) == AppliedBatch(4, 3, 3)
    assert (state.first_index(), state.last_index()) == (1, 3)
    assert state.locate(2) == (2, 1)
    assert state.locate(3) == (4, 0)
    assert state.locate(4) is None
    assert state.last_record_at(3) == 2
    assert state.last_record_at(4) == 3


def test_apply_rejects_gaps_and_misnumbered_batches() -> None:
    state = RecordState()
    with pytest.raises(InvariantViolation, match="right after 0"):
        state.apply(noop(2))
    state.apply(batch(1, 1, [b"a"]))
    with pytest.raises(InvariantViolation, match="expected 2"):
        state.apply(batch(2, 5, [b"b"]))


def test_dedup_window_remembers_recent_sequences_per_producer() -> None:
    state = RecordState(dedup_sequences_max=2)
    state.apply(batch(1, 1, [b"a"], "p", 1))
    state.apply(batch(2, 2, [b"b", b"c"], "p", 2))
    state.apply(batch(3, 4, [b"d"], "p", 3))
    assert state.duplicate("p", 2) == (2, 3)
    assert state.duplicate("p", 1) is None  # fell out of the window
    assert state.producer_high("p") == 3
    assert state.duplicate("q", 1) is None


def test_trim_keeps_the_batch_holding_the_last_trimmed_record() -> None:
    state = RecordState()
    for i in range(5):
        state.apply(batch(i + 1, 2 * i + 1, [b"x", b"y"]))  # records 1..10
    # Records before 6 go: batches [1,2] [3,4] are dropped, [5,6] is kept whole.
    assert state.apply(trim(6, 6)) == 2
    assert state.first_index() == 5
    assert state.locate(4) is None
    assert state.locate(5) == (3, 0)
    # Nothing to drop: the first kept batch already holds the newest trimmed record.
    assert state.apply(trim(7, 6)) is None


def test_restart_at_boundary_learns_numbering_from_the_next_batch() -> None:
    state = RecordState()
    state.restart_at_boundary(10)
    assert state.next_index is None
    state.apply(batch(11, 41, [b"z"]))
    assert (state.first_index(), state.last_index()) == (41, 41)


def test_a_sequence_is_too_old_only_below_a_full_window() -> None:
    state = RecordState(dedup_sequences_max=2)
    state.apply(batch(1, 1, [b"a"], "p", 1))
    assert not state.too_old("p", 0)  # window not full yet
    state.apply(batch(2, 2, [b"b"], "p", 2))
    state.apply(batch(3, 3, [b"c"], "p", 5))  # appends in flight may commit out of order
    assert state.too_old("p", 1)  # forgotten: a retry of it could not be recognised
    assert not state.too_old("p", 3) and not state.too_old("p", 4)  # in flight, not retries
    assert not state.too_old("q", 1)
