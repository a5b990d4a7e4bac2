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


# -- the snapshot catalog, trims that carry it, and append times ------------------------------


def durable(raft_index: int, index: int, retain: int = 2, sha: bytes = b"") -> Entry:
    payload = entry_pb2.EntryPayload(
        snapshot=entry_pb2.SnapshotDurable(
            index=index, term=1, size_bytes=10, sha256=sha or bytes([index % 256]) * 32,
            created_at_ms=1000 + index, retain=retain,
        )
    )  # fmt: skip
    return Entry(term=1, index=raft_index, data=payload.SerializeToString())


def stamped(raft_index: int, first: int, count: int, at_ms: int) -> Entry:
    payload = entry_pb2.EntryPayload(
        batch=entry_pb2.RecordBatch(first_index=first, records=[b"r"] * count, appended_at_ms=at_ms)
    )
    return Entry(term=1, index=raft_index, data=payload.SerializeToString())


def carrying_trim(raft_index: int, before: int, state: RecordState, through: int) -> Entry:
    payload = entry_pb2.EntryPayload(
        trim=entry_pb2.TrimCommand(
            before_index=before,
            producers=state.producers_snapshot(),
            snapshots=state.snapshots.carry(),
            carried_through_raft_index=through,
        )
    )
    return Entry(term=1, index=raft_index, data=payload.SerializeToString())


def test_catalog_keeps_the_newest_retained_snapshots_and_ignores_older_ones() -> None:
    state = RecordState()
    state.apply(batch(1, 1, [b"a"] * 10))
    assert state.apply(durable(2, 3)) is True
    assert state.apply(durable(3, 5)) is True
    # A put that lost the race with a newer one changes nothing.
    assert state.apply(durable(4, 4)) is False
    assert state.apply(durable(5, 5, sha=b"x" * 32)) is False
    assert state.apply(durable(6, 8)) is True
    assert [e.index for e in state.snapshots.entries] == [5, 8]
    # The newest entry's retain count rules, on every node alike.
    state.apply(durable(7, 9, retain=1))
    assert [e.index for e in state.snapshots.entries] == [9]


def test_a_trim_carries_the_catalog_to_a_node_that_restarts_at_its_boundary() -> None:
    leader = RecordState()
    leader.apply(batch(1, 1, [b"a"] * 5))
    leader.apply(durable(2, 5))
    leader.apply(batch(3, 6, [b"b"] * 5))
    leader.apply(durable(4, 10))
    leader.apply(batch(5, 11, [b"c"] * 5))
    entry = carrying_trim(6, 12, leader, through=5)
    assert leader.apply(entry) == 4  # compacts through the second snapshot's entry
    # A node that restarts at the boundary and replays from raft index 5 on.
    behind = RecordState()
    behind.restart_at_boundary(4)
    behind.apply(batch(5, 11, [b"c"] * 5))
    behind.apply(entry)
    assert behind.snapshots.entries == leader.snapshots.entries
    assert [e.index for e in behind.snapshots.entries] == [5, 10]


def test_a_trim_never_compacts_past_what_it_carries() -> None:
    """An entry applied after the leader built the trim's copies is not in them: it stays."""
    leader = RecordState()
    leader.apply(batch(1, 1, [b"a"] * 5))
    entry = carrying_trim(5, 11, leader, through=1)  # built when the leader had applied 1
    leader.apply(durable(2, 5))  # not in the copy
    leader.apply(batch(3, 6, [b"b"] * 5))
    leader.apply(batch(4, 11, [b"c"] * 5))
    assert leader.apply(entry) == 1  # not 2: the snapshot's entry at 2 stays in the log
    assert leader.first_index() == 6
    # Without the limit (a trim of an older release), it would compact through 2.
    older = RecordState()
    older.apply(batch(1, 1, [b"a"] * 5))
    older.apply(durable(2, 5))
    older.apply(batch(3, 6, [b"b"] * 5))
    older.apply(batch(4, 11, [b"c"] * 5))
    assert older.apply(carrying_trim(5, 11, RecordState(), through=0)) == 2


def test_first_index_appended_after_a_cutoff() -> None:
    state = RecordState()
    state.apply(stamped(1, 1, 3, at_ms=0))  # no stamp: counted as old
    state.apply(stamped(2, 4, 3, at_ms=1_000))
    state.apply(stamped(3, 7, 3, at_ms=5_000))
    state.apply(stamped(4, 10, 3, at_ms=4_000))  # another leader's clock, behind
    assert state.first_index_appended_after(500, limit=13) == 4
    assert state.first_index_appended_after(2_000, limit=13) == 7
    assert state.first_index_appended_after(2_000, limit=5) == 5
    assert state.first_index_appended_after(9_000, limit=13) == 13
    state.apply(trim(5, 8))
    assert state.first_index() == 7
    assert state.first_index_appended_after(500, limit=13) == 7
