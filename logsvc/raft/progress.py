"""The leader's view of each follower: flow control in probe, replicate, snapshot states."""

from __future__ import annotations

import enum
from collections import deque


class ProgressState(enum.IntEnum):
    # Unknown follower position: one AppendEntries at a time until one is accepted.
    PROBE = 0
    # Known position: stream up to a window of AppendEntries optimistically.
    REPLICATE = 1
    # The follower is behind the trim boundary: a snapshot (boundary) message is out.
    SNAPSHOT = 2


class Inflights:
    """A bounded window of the last index of each AppendEntries not yet acknowledged."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._last_indexes: deque[int] = deque()

    def __len__(self) -> int:
        return len(self._last_indexes)

    def add(self, last_index: int) -> None:
        if self.full():
            raise OverflowError("inflights window is full")
        self._last_indexes.append(last_index)

    def free_le(self, index: int) -> None:
        while self._last_indexes and self._last_indexes[0] <= index:
            self._last_indexes.popleft()

    def full(self) -> bool:
        return len(self._last_indexes) >= self.capacity

    def reset(self) -> None:
        self._last_indexes.clear()


class Progress:
    def __init__(self, next_index: int, inflight_messages_max: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        # In PROBE: an AppendEntries was sent and we wait for its answer (or a heartbeat).
        self.probe_sent = False
        self.pending_snapshot = 0
        # Heard from within the last election timeout (check-quorum).
        self.recent_active = False
        self.inflights = Inflights(inflight_messages_max)
        # Heartbeat answers in a row while appends are in flight and match does not move.
        self.stalled_heartbeats = 0

    def __repr__(self) -> str:
        return f"Progress({self.state.name} match={self.match} next={self.next})"

    def reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.stalled_heartbeats = 0
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self.reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self.reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self.reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self.reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def forget_match(self) -> None:
        """The follower lost its log: nothing is known to be there any more."""
        self.match = 0
        self.reset_state(ProgressState.PROBE)
        self.next = 1

    def maybe_update(self, index: int) -> bool:
        """The follower acknowledged up to index; False if that is old news."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
            self.stalled_heartbeats = 0
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an append after `rejected`; False if the rejection is stale."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1, 1)
        self.probe_sent = False
        return True

    def replication_stalled(self, heartbeats_max: int) -> bool:
        """Called per heartbeat answer: have the appends in flight been lost?

        The follower answers heartbeats but has not acknowledged any append for
        heartbeats_max rounds: the pipeline lost messages, so replication falls back to
        probing from the last acknowledged index.
        """
        if self.state is not ProgressState.REPLICATE or not len(self.inflights):
            self.stalled_heartbeats = 0
            return False
        self.stalled_heartbeats += 1
        return self.stalled_heartbeats >= heartbeats_max

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def sent_entries(self, count: int, last_index: int) -> None:
        if self.state is ProgressState.REPLICATE:
            if count:
                self.next = last_index + 1
                self.inflights.add(last_index)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True
