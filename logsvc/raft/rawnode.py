"""RawNode: the driver's handle on the core, in the shape of etcd-io/raft's RawNode.

    node.tick() / node.step(msg) / node.propose(data) / node.read_index(ctx)
    if node.has_ready():
        rd = node.ready()
        persist(rd.snapshot, rd.entries, rd.hard_state)   # one synced write
        send(rd.persisted_messages)                       # rd.messages may go earlier
        publish(rd.committed_entries, rd.read_states)
        node.advance(rd)

While a Ready is being persisted, `take_messages()` may be called to send what needs no
sync (heartbeats, appends) without waiting for the disk.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from logsvc.raft.config import Config
from logsvc.raft.progress import ProgressState
from logsvc.raft.raft import Raft
from logsvc.raft.storage import Storage
from logsvc.raft.types import (
    ConfChange,
    ConfState,
    EntryType,
    HardState,
    Message,
    NodeId,
    Ready,
    Role,
    SoftState,
)


@dataclass(frozen=True, slots=True)
class PeerStatus:
    match: int
    next: int
    state: ProgressState


@dataclass(frozen=True, slots=True)
class Status:
    id: NodeId
    role: Role
    term: int
    vote: NodeId | None
    leader: NodeId | None
    first_index: int
    last_index: int
    commit_index: int
    applied_index: int
    peers: dict[NodeId, PeerStatus] = field(default_factory=dict)
    conf: ConfState = field(default_factory=ConfState)


class ReadyOutstanding(RuntimeError):
    """ready() was called again before advance() for the previous Ready."""


class RawNode:
    def __init__(
        self,
        config: Config,
        storage: Storage,
        rng: random.Random,
        raft_class: type[Raft] = Raft,
    ) -> None:
        self.raft = raft_class(config, storage, rng)
        self._prev_soft_state = self.raft.soft_state()
        self._prev_hard_state = storage.initial_state()
        self._outstanding = False

    # -- inputs ---------------------------------------------------------------------------

    def tick(self) -> None:
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (as if the election timeout had passed)."""
        self.raft.hup(transfer=False)

    def step(self, message: Message) -> None:
        self.raft.step(message)

    def propose(self, data: bytes) -> int:
        """Append one record; returns its index. Raises ProposalDropped off the leader."""
        return self.raft.propose([data])[0]

    def propose_batch(self, datas: Sequence[bytes]) -> list[int]:
        """Append records at consecutive indexes, in order."""
        return self.raft.propose(datas)

    def propose_conf_change(self, change: ConfChange) -> int:
        """Append a single-server membership change (leader only); returns its index.

        Raises ProposalDropped (not the leader, or a change is not applied yet: retry) or
        ConfChangeRefused (it makes no sense against the current membership). The change
        takes effect on each node when the Ready that publishes it is advanced."""
        return self.raft.propose_conf_change(change)

    def conf_state(self) -> ConfState:
        """The membership in effect here (as of the newest change this node applied)."""
        return self.raft.conf_state()

    def read_index(self, context: bytes) -> None:
        """Request a read index; a ReadState with this context answers it."""
        self.raft.read_index(context)

    def transfer_leader(self, to: NodeId) -> None:
        self.raft.transfer_leader(to)

    def report_unreachable(self, peer: NodeId) -> None:
        """The transport failed to deliver to peer (a broken stream): probe it again."""
        self.raft.report_unreachable(peer)

    def entries_fetched(self) -> None:
        """The storage now holds entries it raised LogTemporarilyUnavailable for: the appends
        that needed them go out (to the messages of the next Ready)."""
        self.raft.entries_fetched()

    def report_log_lost(self, peer: NodeId) -> None:
        """The peer restarted with an empty log under its old id: replicate to it anew."""
        self.raft.report_log_lost(peer)

    # -- outputs ----------------------------------------------------------------------------

    def has_ready(self) -> bool:
        if self._outstanding:
            return False
        r = self.raft
        return bool(
            r.soft_state() != self._prev_soft_state
            or self._hard_state_changed()
            or r.log.unstable_snapshot is not None
            or r.log.unstable_entries
            or r.messages
            or r.persisted_messages
            or r.read_states
            or r.log.has_next_committed_entries()
        )

    def _hard_state_changed(self) -> bool:
        return self.raft.hard_state() != self._prev_hard_state

    def take_messages(self) -> list[Message]:
        """Messages that may go out at once, even while a Ready is being persisted.

        A driver calls this while a sync is in flight so that heartbeats and appends keep
        flowing during a slow disk write (thesis 10.2.1: the leader replicates in parallel
        with its own write). Messages that must wait for a sync are never returned here.
        """
        taken, self.raft.messages = self.raft.messages, []
        return taken

    def ready(self) -> Ready:
        if self._outstanding:
            raise ReadyOutstanding("advance() the previous Ready first")
        r = self.raft
        rd = Ready()
        soft = r.soft_state()
        if soft != self._prev_soft_state:
            rd.soft_state = soft
            self._prev_soft_state = soft
        hard = r.hard_state()
        if hard != self._prev_hard_state:
            rd.hard_state = hard
            prev = self._prev_hard_state
            rd.hard_state_must_sync = hard.term != prev.term or hard.vote != prev.vote
        rd.snapshot = r.log.unstable_snapshot
        rd.entries = r.log.unstable_to_persist()
        rd.messages, r.messages = r.messages, []
        rd.persisted_messages, r.persisted_messages = r.persisted_messages, []
        if r.log.has_next_committed_entries():
            rd.committed_entries = r.log.next_committed_entries()
        rd.read_states, r.read_states = r.read_states, []
        self._outstanding = True
        return rd

    def advance(self, rd: Ready) -> None:
        """The Ready was persisted, its messages sent and its entries published."""
        if not self._outstanding:
            raise RuntimeError("advance() without an outstanding Ready")
        self._outstanding = False
        r = self.raft
        if rd.hard_state is not None:
            self._prev_hard_state = rd.hard_state
        if rd.snapshot is not None:
            r.log.stable_snapshot_to(rd.snapshot.index)
        if rd.entries:
            last = rd.entries[-1]
            r.on_persisted(last.index, last.term)
        if rd.committed_entries:
            for entry in rd.committed_entries:
                if entry.type is EntryType.CONF_CHANGE:
                    # Applied by the application now: the membership changes (etcd style).
                    r.log.applied_to(entry.index)
                    r.apply_conf_entry(entry)
            r.log.applied_to(rd.committed_entries[-1].index)
            r.maybe_campaign_after_apply()

    # -- inspection ---------------------------------------------------------------------------

    def status(self) -> Status:
        r = self.raft
        peers: dict[NodeId, PeerStatus] = {}
        if r.role is Role.LEADER:
            peers = {
                v: PeerStatus(match=pr.match, next=pr.next, state=pr.state)
                for v, pr in r.progress.items()
            }
        return Status(
            id=r.id,
            role=r.role,
            term=r.term,
            vote=r.vote,
            leader=r.leader,
            first_index=r.log.first_index(),
            last_index=r.log.last_index(),
            commit_index=r.log.committed,
            applied_index=r.log.applied,
            peers=peers,
            conf=r.conf_state(),
        )

    def soft_state(self) -> SoftState:
        return self.raft.soft_state()

    def hard_state(self) -> HardState:
        return self.raft.hard_state()
