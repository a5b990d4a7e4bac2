"""PeerSender's batches: heartbeats and answers go first, log messages keep their order, and
a batch carries at most BATCH_BYTES_MAX of entries (at least one message)."""

from __future__ import annotations

from logsvc.raft import Entry, Message, MessageType
from logsvc.transport import BATCH_BYTES_MAX, BATCH_MESSAGES_MAX, PeerSender

MT = MessageType
MIB = 1 << 20


def sender() -> PeerSender:
    s = PeerSender("memlog", "a", "b", "127.0.0.1:1", on_unreachable=lambda peer: None)
    s.connected = True  # no stream: take_batch is what the stream would be fed
    return s


def append(index: int, data_bytes: int) -> Message:
    entry = Entry(term=1, index=index, data=b"x" * data_bytes)
    return Message(MT.APPEND, "b", "a", term=1, index=index - 1, entries=(entry,))


def heartbeat(commit: int) -> Message:
    return Message(MT.HEARTBEAT, "b", "a", term=1, commit=commit)


def test_heartbeats_overtake_queued_appends_and_batches_are_bounded_in_bytes() -> None:
    s = sender()
    appends = [append(i, MIB) for i in range(1, 31)]  # 30 MiB of catch-up data
    for m in appends:
        s.send(m)
    s.send(heartbeat(7))
    s.send(Message(MT.VOTE_RESPONSE, "b", "a", term=1))
    first = s.take_batch()
    # Both small messages first, then appends up to the byte budget.
    assert [m.type for m in first[:2]] == [MT.HEARTBEAT, MT.VOTE_RESPONSE]
    carried = first[2:]
    assert carried == appends[: len(carried)]
    assert len(carried) >= 1 and sum(len(m.entries[0].data) for m in carried) <= BATCH_BYTES_MAX
    # A heartbeat sent now waits for no more than the batch on the wire.
    s.send(heartbeat(8))
    second = s.take_batch()
    assert second[0] == heartbeat(8)
    taken = carried + second[1:]
    while rest := s.take_batch():
        taken.extend(rest)
    assert taken == appends  # the appends kept their order, none lost


def test_a_message_over_the_budget_still_goes_alone() -> None:
    s = sender()
    big = append(1, BATCH_BYTES_MAX + 1)
    s.send(big)
    s.send(append(2, 10))
    assert s.take_batch() == [big]
    assert [m.index for m in s.take_batch()] == [1]


def test_batches_count_at_most_batch_messages_max() -> None:
    s = sender()
    for i in range(BATCH_MESSAGES_MAX + 10):
        s.send(heartbeat(i))
    assert len(s.take_batch()) == BATCH_MESSAGES_MAX
    assert len(s.take_batch()) == 10
