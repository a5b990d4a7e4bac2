"""The Raft state machine (Ongaro's thesis), pure: ticks and messages in, messages out.

Shape and verbs follow etcd-io/raft: `become_*` changes role, `step_*` handles a message
in a role, `handle_*` handles one message kind, `maybe_*` acts only if a condition holds.
Nothing here does I/O or reads a clock; randomness comes from the injected generator.

Over 500 lines: one state machine, every role's handling of every message, as in etcd's
raft.go; the types, log and progress tracking are in modules of their own.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from logsvc.raft import quorum
from logsvc.raft.config import Config
from logsvc.raft.log import RaftLog
from logsvc.raft.progress import Progress, ProgressState
from logsvc.raft.storage import Compacted, LogTemporarilyUnavailable, Storage, StorageError
from logsvc.raft.types import (
    CAMPAIGN_TRANSFER,
    PERSISTED_MESSAGE_TYPES,
    ConfChange,
    ConfChangeRefused,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    InvariantViolation,
    Message,
    MessageType,
    NodeId,
    ProposalDropped,
    ReadState,
    Role,
    SnapshotMeta,
    SoftState,
)

MT = MessageType

# Heartbeat rounds answered without an append acknowledged before in-flight appends are
# presumed lost (the transport may also say so at once: `report_unreachable`).
STALLED_HEARTBEATS_MAX = 3


@dataclass(slots=True)
class _ReadRequest:
    index: int
    context: bytes
    requester: NodeId
    acks: dict[NodeId, bool]


class Raft:
    def __init__(self, config: Config, storage: Storage, rng: random.Random) -> None:
        config.validate()
        self.config = config
        self.id = config.id
        self.rng = rng
        self.log = RaftLog(storage, config.applied_index)
        # The membership as of applying the entry at conf_index: from the configuration, or
        # from the trim boundary when that is newer (the entries that made it are trimmed).
        conf = ConfState(tuple(sorted(config.voters)), tuple(sorted(config.learners)),
                         config.conf_index)  # fmt: skip
        stored = storage.snapshot().conf
        if stored is not None and stored.index >= conf.index:
            conf = stored
        self.voters: tuple[NodeId, ...] = conf.voters
        self.learners: tuple[NodeId, ...] = conf.learners
        self.conf_index = conf.index
        # The index of the newest membership change in the log this leader may not have
        # applied yet: no other change is proposed until it is applied (one at a time).
        self.pending_conf_index = 0

        hard_state = storage.initial_state()
        if not self.log.first_index() - 1 <= hard_state.commit <= self.log.last_index():
            raise InvariantViolation(
                f"stored commit {hard_state.commit} is outside the stored log "
                f"[{self.log.first_index() - 1}, {self.log.last_index()}]"
            )
        self.term = hard_state.term
        self.vote: NodeId | None = hard_state.vote
        self.log.committed = max(self.log.committed, hard_state.commit)
        self.log.applied = min(self.log.applied, self.log.committed)

        self.role = Role.FOLLOWER
        self.leader: NodeId | None = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_ticks = config.election_ticks
        self.lead_transferee: NodeId | None = None
        # A TIMEOUT_NOW arrived while membership changes were committed but not applied.
        self.campaign_after_apply = False
        self.votes: dict[NodeId, bool] = {}
        self.progress: dict[NodeId, Progress] = {}
        # Outgoing messages: those that may leave at once, and those that may leave only
        # after the Ready carrying them has been persisted.
        self.messages: list[Message] = []
        self.persisted_messages: list[Message] = []
        self.read_states: list[ReadState] = []
        self._read_requests: dict[bytes, _ReadRequest] = {}
        # Read requests that arrived before this leader committed an entry of its term.
        self._reads_waiting_for_commit: list[tuple[NodeId, bytes]] = []
        # Peers whose next append waits for entries the storage is fetching from disk.
        self.awaiting_entries: set[NodeId] = set()

        self.become_follower(self.term, None)

    # -- state summaries ----------------------------------------------------------------

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.log.committed)

    def soft_state(self) -> SoftState:
        return SoftState(leader=self.leader, role=self.role)

    def promotable(self) -> bool:
        return self.id in self.voters

    def peers(self) -> list[NodeId]:
        """Every other member, voters and learners: the leader replicates to all of them."""
        return [v for v in sorted(self.voters + self.learners) if v != self.id]

    def voting_peers(self) -> list[NodeId]:
        return [v for v in self.voters if v != self.id]

    def conf_state(self) -> ConfState:
        return ConfState(self.voters, self.learners, self.conf_index)

    # -- sending --------------------------------------------------------------------------

    def needs_persist_before_send(self, message: Message) -> bool:
        return message.type in PERSISTED_MESSAGE_TYPES

    def send(self, message: Message) -> None:
        if self.needs_persist_before_send(message):
            self.persisted_messages.append(message)
        else:
            self.messages.append(message)

    def _message(
        self,
        type: MessageType,
        to: NodeId,
        *,
        term: int | None = None,
        log_term: int = 0,
        index: int = 0,
        entries: tuple[Entry, ...] = (),
        commit: int = 0,
        reject: bool = False,
        reject_hint: int = 0,
        context: bytes = b"",
        snapshot: SnapshotMeta | None = None,
    ) -> Message:
        return Message(
            type=type,
            to=to,
            frm=self.id,
            term=self.term if term is None else term,
            log_term=log_term,
            index=index,
            entries=entries,
            commit=commit,
            reject=reject,
            reject_hint=reject_hint,
            context=context,
            snapshot=snapshot,
        )

    def send_append(self, to: NodeId) -> None:
        self.maybe_send_append(to, send_if_empty=True)

    def maybe_send_append(self, to: NodeId, send_if_empty: bool) -> bool:
        pr = self.progress[to]
        if pr.is_paused():
            return False
        prev_index = pr.next - 1
        prev_term = self.log.term(prev_index)
        entries: list[Entry] = []
        if prev_term is not None:
            try:
                entries = self.log.entries_from(pr.next, self.config.append_bytes_max)
            except Compacted:
                prev_term = None
            except LogTemporarilyUnavailable:
                # Old entries are being read from disk: send once they are (entries_fetched).
                self.awaiting_entries.add(to)
                return False
        if prev_term is None:
            return self.maybe_send_snapshot(to, pr)
        if not entries and not send_if_empty:
            return False
        self.send(
            self._message(
                MT.APPEND,
                to,
                index=prev_index,
                log_term=prev_term,
                entries=tuple(entries),
                commit=self.log.committed,
            )
        )
        pr.sent_entries(len(entries), entries[-1].index if entries else prev_index)
        return True

    def maybe_send_snapshot(self, to: NodeId, pr: Progress) -> bool:
        """The follower needs entries we trimmed: tell it where our log starts."""
        if not pr.recent_active:
            return False
        boundary = self.log.snapshot_boundary()
        pr.become_snapshot(boundary.index)
        # The membership as of our applied index (at or past the boundary): the follower
        # restarts its log after the boundary and needs it, as the changes before are gone.
        boundary = SnapshotMeta(boundary.index, boundary.term, self.conf_state())
        self.send(self._message(MT.SNAPSHOT, to, snapshot=boundary))
        return True

    def bcast_append(self) -> None:
        for peer in self.peers():
            self.send_append(peer)

    def bcast_heartbeat(self, context: bytes = b"") -> None:
        for peer in self.peers():
            commit = min(self.progress[peer].match, self.log.committed)
            self.send(self._message(MT.HEARTBEAT, peer, commit=commit, context=context))

    # -- role changes -----------------------------------------------------------------

    def reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.leader = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.reset_randomized_election_timeout()
        self.lead_transferee = None
        self.campaign_after_apply = False
        self.votes = {}
        last = self.log.last_index()
        self.progress = {}
        for v in sorted(self.voters + self.learners):
            pr = Progress(last + 1, self.config.inflight_messages_max)
            if v == self.id:
                pr.match = self.log.persisted_index()
            self.progress[v] = pr
        self._read_requests = {}
        self._reads_waiting_for_commit = []

    def reset_randomized_election_timeout(self) -> None:
        ticks = self.config.election_ticks
        self.randomized_election_ticks = ticks + self.rng.randrange(ticks)

    def become_follower(self, term: int, leader: NodeId | None) -> None:
        self.reset(term)
        self.leader = leader
        self.role = Role.FOLLOWER

    def become_pre_candidate(self) -> None:
        if self.role is Role.LEADER:
            raise InvariantViolation("a leader cannot become a pre-candidate")
        # Pre-vote changes neither term nor vote (thesis 9.6).
        self.votes = {}
        self.leader = None
        self.role = Role.PRE_CANDIDATE

    def become_candidate(self) -> None:
        if self.role is Role.LEADER:
            raise InvariantViolation("a leader cannot become a candidate")
        self.reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def become_leader(self) -> None:
        if self.role is Role.FOLLOWER:
            raise InvariantViolation("a follower cannot become leader without an election")
        self.reset(self.term)
        self.leader = self.id
        self.role = Role.LEADER
        self.progress[self.id].become_replicate()
        self.progress[self.id].recent_active = True
        # The no-op of the new term: committing it commits everything before (thesis 6.4).
        self.append_entries([Entry(term=self.term, index=0, type=EntryType.NOOP)])
        # No membership change until the no-op is applied: changes in the log of an earlier
        # term may still be unapplied here, and a leader that changed the membership before
        # committing an entry of its own term could lose a change to a competing one (the
        # single-server change bug of Ongaro's raft-dev post of 2015, fixed this way).
        self.pending_conf_index = self.log.last_index()

    # -- ticks --------------------------------------------------------------------------

    def tick(self) -> None:
        if self.role is Role.LEADER:
            self.tick_heartbeat()
        else:
            self.tick_election()

    def tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_election_ticks:
            self.election_elapsed = 0
            self.hup(transfer=False)

    def tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_ticks:
            self.election_elapsed = 0
            if self.config.check_quorum and not self.check_quorum_active():
                self.become_follower(self.term, None)
                return
            # A transfer that did not finish within an election timeout is abandoned.
            self.lead_transferee = None
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self.bcast_heartbeat(self._last_pending_read_context())

    def check_quorum_active(self) -> bool:
        active = {v: (v == self.id or self.progress[v].recent_active) for v in self.voters}
        for v in self.peers():
            self.progress[v].recent_active = False
        return quorum.has_quorum(self.voters, active)

    # -- elections --------------------------------------------------------------------

    def hup(self, transfer: bool) -> None:
        if self.role is Role.LEADER or not self.promotable():
            return
        if self.has_unapplied_conf_changes():
            # Our membership may be older than the log we know committed: wait for the
            # application to catch up, then count votes in the right membership.
            return
        if self.config.pre_vote and not transfer:
            self.campaign(pre_vote=True, transfer=False)
        else:
            self.campaign(pre_vote=False, transfer=transfer)

    def campaign(self, pre_vote: bool, transfer: bool) -> None:
        if pre_vote:
            self.become_pre_candidate()
            vote_type = MT.PRE_VOTE
            term = self.term + 1
        else:
            self.become_candidate()
            vote_type = MT.VOTE
            term = self.term
        if self.poll(self.id, granted=True) is quorum.VoteResult.WON:
            # A single-voter cluster wins at once.
            if pre_vote:
                self.campaign(pre_vote=False, transfer=False)
            else:
                self.become_leader()
            return
        context = CAMPAIGN_TRANSFER if transfer else b""
        for peer in self.voting_peers():
            self.send(
                self._message(
                    vote_type,
                    peer,
                    term=term,
                    index=self.log.last_index(),
                    log_term=self.log.last_term(),
                    context=context,
                )
            )

    def has_unapplied_conf_changes(self) -> bool:
        log = self.log
        if log.applied >= log.committed:
            return False
        try:
            pending = log.slice(log.applied + 1, log.committed + 1)
        except StorageError:
            return True  # cannot tell now: do not campaign on a maybe stale membership
        return any(e.type is EntryType.CONF_CHANGE for e in pending)

    def maybe_learn_commit(self, index: int, term: int) -> None:
        """Another node knows the entry (index, term) committed: if our log holds it, the
        whole prefix up to it is the committed one (Log Matching), so commit it here."""
        if term and index > self.log.committed and self.log.match_term(index, term):
            self.log.commit_to(index)

    def poll(self, voter: NodeId, granted: bool) -> quorum.VoteResult:
        self.votes.setdefault(voter, granted)
        return quorum.vote_result(self.voters, self.votes)

    # -- proposals and reads (local requests) -----------------------------------------

    def propose(self, datas: Sequence[bytes]) -> list[int]:
        if self.role is not Role.LEADER:
            raise ProposalDropped(f"{self.id} is not the leader (leader: {self.leader})")
        if self.lead_transferee is not None:
            raise ProposalDropped(f"leadership is being transferred to {self.lead_transferee}")
        if not datas:
            return []
        entries = [Entry(term=self.term, index=0, data=d) for d in datas]
        first = self.log.last_index() + 1
        self.append_entries(entries)
        self.bcast_append()
        return list(range(first, first + len(entries)))

    def append_entries(self, entries: Sequence[Entry]) -> None:
        """Give entries their indexes and append them to the leader's log.

        The leader does not count itself toward commit here: only once the entries are
        synced (`on_persisted`).
        """
        last = self.log.last_index()
        numbered = [
            Entry(term=self.term, index=last + 1 + i, data=e.data, type=e.type)
            for i, e in enumerate(entries)
        ]
        self.log.append(numbered)

    def on_persisted(self, index: int, term: int) -> None:
        """The driver synced entries up to (index, term)."""
        self.log.stable_to(index, term)
        if (
            self.role is Role.LEADER
            and self.log.term(index) == term
            and self.progress[self.id].maybe_update(index)
            and self.maybe_commit()
        ):
            self.on_leader_commit()

    def maybe_commit(self) -> bool:
        match = {v: pr.match for v, pr in self.progress.items()}
        return self.log.maybe_commit(quorum.committed_index(self.voters, match), self.term)

    def on_leader_commit(self) -> None:
        self.release_reads_waiting_for_commit()
        self.bcast_append()

    def committed_entry_in_current_term(self) -> bool:
        return self.log.term(self.log.committed) == self.term

    def read_index(self, context: bytes) -> None:
        """Ask for a ReadIndex; the answer arrives as a ReadState with the same context."""
        if self.role is Role.LEADER:
            self.handle_read_index_request(self.id, context)
        elif self.leader is not None:
            self.send(self._message(MT.READ_INDEX, self.leader, context=context))
        else:
            raise ProposalDropped(f"{self.id} knows no leader to confirm a read index")

    def handle_read_index_request(self, requester: NodeId, context: bytes) -> None:
        if not self.committed_entry_in_current_term():
            # Our commit index may be behind the previous leader's until our no-op commits
            # (also alone: a restarted single voter's stored commit index may be behind
            # what it committed before, as the commit index is stored without a sync).
            self._reads_waiting_for_commit.append((requester, context))
            return
        if self.voters == (self.id,):
            self.answer_read(requester, self.log.committed, context)
            return
        if context in self._read_requests:
            return
        self._read_requests[context] = _ReadRequest(
            index=self.log.committed, context=context, requester=requester, acks={self.id: True}
        )
        self.bcast_heartbeat(context)

    def release_reads_waiting_for_commit(self) -> None:
        if not self._reads_waiting_for_commit or not self.committed_entry_in_current_term():
            return
        waiting, self._reads_waiting_for_commit = self._reads_waiting_for_commit, []
        for requester, context in waiting:
            self.handle_read_index_request(requester, context)

    def answer_read(self, requester: NodeId, index: int, context: bytes) -> None:
        if requester == self.id:
            self.read_states.append(ReadState(index=index, context=context))
        else:
            self.send(
                self._message(MT.READ_INDEX_RESPONSE, requester, index=index, context=context)
            )

    def _last_pending_read_context(self) -> bytes:
        if not self._read_requests:
            return b""
        return next(reversed(self._read_requests))

    def handle_read_ack(self, voter: NodeId, context: bytes) -> None:
        request = self._read_requests.get(context)
        if request is None:
            return
        request.acks[voter] = True
        if not quorum.has_quorum(self.voters, request.acks):
            return
        # A confirmed round also confirms every request queued before it.
        released: list[_ReadRequest] = []
        for ctx in list(self._read_requests):
            released.append(self._read_requests.pop(ctx))
            if ctx == context:
                break
        for r in released:
            self.answer_read(r.requester, r.index, r.context)

    # -- membership changes (one server at a time, applied when applied) ------------------

    def propose_conf_change(self, change: ConfChange) -> int:
        """Append a membership change; returns its index. It takes effect on each node when
        that node applies it (RawNode.advance), as in etcd-io/raft."""
        if self.role is not Role.LEADER:
            raise ProposalDropped(f"{self.id} is not the leader (leader: {self.leader})")
        if self.lead_transferee is not None:
            raise ProposalDropped(f"leadership is being transferred to {self.lead_transferee}")
        if self.pending_conf_index > self.log.applied:
            raise ProposalDropped(
                f"a membership change (or this leader's first entry) at index "
                f"{self.pending_conf_index} is not applied yet (applied {self.log.applied}); "
                "one change at a time"
            )
        after = self.conf_after(change)
        entry = Entry(
            term=self.term, index=0, data=change.encode(after), type=EntryType.CONF_CHANGE
        )
        self.append_entries([entry])
        self.pending_conf_index = self.log.last_index()
        self.bcast_append()
        return self.pending_conf_index

    def conf_after(self, change: ConfChange) -> ConfState:
        """The membership `change` leads to from the current one, or ConfChangeRefused."""
        node = change.node
        if not node or any(c.isspace() for c in node):
            raise ConfChangeRefused(f"node id {node!r} must be non-empty and without spaces")
        voters, learners = set(self.voters), set(self.learners)
        if change.type is ConfChangeType.ADD_LEARNER:
            if node in voters or node in learners:
                what = "a voter" if node in voters else "a learner"
                raise ConfChangeRefused(f"{node} is already {what}")
            learners.add(node)
        elif change.type is ConfChangeType.PROMOTE:
            if node in voters:
                raise ConfChangeRefused(f"{node} is already a voter")
            if node not in learners:
                raise ConfChangeRefused(f"{node} is not a learner: add it as a learner first")
            match = self.progress[node].match
            behind = self.log.committed - match
            if behind > self.config.promote_lag_entries_max:
                raise ConfChangeRefused(
                    f"learner {node} is {behind} entries behind the commit index "
                    f"{self.log.committed} (match {match}); promote it once it has caught up"
                )
            learners.discard(node)
            voters.add(node)
        else:
            if node not in voters and node not in learners:
                raise ConfChangeRefused(f"{node} is not a member")
            if voters == {node}:
                raise ConfChangeRefused(f"{node} is the last voter and cannot be removed")
            voters.discard(node)
            learners.discard(node)
        return ConfState(tuple(sorted(voters)), tuple(sorted(learners)))

    def apply_conf_entry(self, entry: Entry) -> None:
        """The application applied a CONF_CHANGE entry: its membership takes effect here.
        Entries at or before the membership we hold (a replay after a restart) are skipped."""
        if entry.index <= self.conf_index:
            return
        _, after = ConfChange.decode(entry.data)
        self.switch_to_conf(ConfState(after.voters, after.learners, entry.index))

    def maybe_campaign_after_apply(self) -> None:
        if (
            self.campaign_after_apply
            and self.role is Role.FOLLOWER
            and not self.has_unapplied_conf_changes()
        ):
            self.campaign_after_apply = False
            self.hup(transfer=True)

    def switch_to_conf(self, conf: ConfState) -> None:
        old_members = set(self.voters) | set(self.learners)
        self.voters, self.learners, self.conf_index = conf.voters, conf.learners, conf.index
        if self.role is not Role.LEADER:
            if self.role is not Role.FOLLOWER and not self.promotable():
                self.become_follower(self.term, None)  # a removed candidate gives up
            return
        if not self.promotable():
            # Removed (the change committed without counting us any longer, and is applied):
            # tell the others the commit index that includes it, hand over to the most
            # caught-up voter left, and step down (thesis 4.2.2). The handover saves the
            # others an election timeout and the lease they would wait out first.
            self.bcast_append()
            heir = max(self.voters, key=lambda v: (self.progress[v].match, v))
            if self.progress[heir].match == self.log.last_index():
                self.send(self._message(MT.TIMEOUT_NOW, heir))
            self.become_follower(self.term, None)
            return
        members = set(self.voters) | set(self.learners)
        last = self.log.last_index()
        for gone in sorted(old_members - members):
            self.progress.pop(gone, None)
        for new in sorted(members - old_members):
            self.progress[new] = Progress(last + 1, self.config.inflight_messages_max)
        if self.lead_transferee is not None and self.lead_transferee not in self.voters:
            self.lead_transferee = None
        if self.maybe_commit():
            self.on_leader_commit()  # fewer voters may commit more at once
        else:
            for peer in self.peers():
                self.maybe_send_append(peer, send_if_empty=False)
        for peer in sorted(members - old_members):
            self.send_append(peer)

    def report_unreachable(self, peer: NodeId) -> None:
        """The transport lost messages to peer: stop streaming and probe it again."""
        pr = self.progress.get(peer)
        if self.role is Role.LEADER and pr is not None and pr.state is ProgressState.REPLICATE:
            pr.become_probe()

    def entries_fetched(self) -> None:
        """The storage fetched entries it lacked: send the appends that waited for them."""
        waiting, self.awaiting_entries = self.awaiting_entries, set()
        if self.role is not Role.LEADER:
            return
        for peer in sorted(waiting):
            if peer in self.progress and peer != self.id:
                while self.maybe_send_append(peer, send_if_empty=False):
                    pass

    def report_log_lost(self, peer: NodeId) -> None:
        """The peer restarted with an empty log (its data was lost) under its old id.

        What this leader knew of its match is void. Left as it was, heartbeats would carry
        a commit index past the peer's last entry (an invariant violation there), and the
        peer's rejections of appends at or below the old match would count as stale, so it
        could never catch up. Committed entries stay committed: the commit index never
        goes back. The peer is probed again from the start of the log.
        """
        pr = self.progress.get(peer)
        if self.role is Role.LEADER and pr is not None and peer != self.id:
            pr.forget_match()

    def transfer_leader(self, to: NodeId) -> None:
        if self.role is not Role.LEADER:
            raise ProposalDropped(f"{self.id} is not the leader and cannot transfer leadership")
        if to not in self.voters:
            raise ValueError(f"cannot transfer leadership to {to!r}: not a voter")
        if to == self.id or self.lead_transferee == to:
            return
        self.lead_transferee = to
        self.election_elapsed = 0
        if self.progress[to].match == self.log.last_index():
            self.send(self._message(MT.TIMEOUT_NOW, to))
        else:
            self.send_append(to)

    # -- stepping messages ------------------------------------------------------------

    def step(self, m: Message) -> None:
        if m.to != self.id:
            raise ValueError(f"message for {m.to} stepped into {self.id}")
        if m.term > self.term:
            if m.type in (MT.VOTE, MT.PRE_VOTE):
                forced = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.config.check_quorum
                    and self.leader is not None
                    and self.election_elapsed < self.config.election_ticks
                )
                if in_lease and not forced:
                    # We heard from a leader recently: ignore disruptive candidates (4.2.3).
                    return
            if m.type is MT.PRE_VOTE:
                pass  # a pre-vote never changes our term
            elif m.type is MT.PRE_VOTE_RESPONSE and not m.reject:
                pass  # the future term we asked about; we move there when we win
            elif m.type in (MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT):
                self.become_follower(m.term, m.frm)
            else:
                self.become_follower(m.term, None)
        elif m.term < self.term:
            if m.type in (MT.APPEND, MT.HEARTBEAT) and (
                self.config.check_quorum or self.config.pre_vote
            ):
                # A stale leader (maybe partitioned away) learns our term and steps down.
                self.send(self._message(MT.APPEND_RESPONSE, m.frm))
            elif m.type is MT.PRE_VOTE:
                self.send(self._message(MT.PRE_VOTE_RESPONSE, m.frm, reject=True))
            return

        if m.type in (MT.VOTE, MT.PRE_VOTE):
            self.handle_vote_request(m)
        elif self.role is Role.LEADER:
            self.step_leader(m)
        elif self.role is Role.FOLLOWER:
            self.step_follower(m)
        else:
            self.step_candidate(m)

    def handle_vote_request(self, m: Message) -> None:
        can_vote = (
            self.vote == m.frm
            or (self.vote is None and self.leader is None)
            or (m.type is MT.PRE_VOTE and m.term > self.term)
        )
        response = MT.VOTE_RESPONSE if m.type is MT.VOTE else MT.PRE_VOTE_RESPONSE
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            self.send(self._message(response, m.frm, term=m.term))
            if m.type is MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.frm
        else:
            # The rejection tells what we know committed (index and term): a candidate
            # whose log holds that entry may take it as committed. Without this, a voter
            # that missed the commit of a change removing the old leader counts votes in
            # the old membership, which may need that removed node's vote, which it never
            # gets while its log is behind the removed node's (two voters, one removed).
            committed = self.log.committed
            self.send(
                self._message(
                    response,
                    m.frm,
                    reject=True,
                    reject_hint=committed,
                    log_term=self.log.term(committed) or 0,
                )
            )

    def step_leader(self, m: Message) -> None:
        if m.type is MT.READ_INDEX:
            self.handle_read_index_request(m.frm, m.context)
            return
        pr = self.progress.get(m.frm)
        if pr is None:
            return
        if m.type is MT.APPEND_RESPONSE:
            pr.recent_active = True
            self.handle_append_response(m, pr)
        elif m.type is MT.HEARTBEAT_RESPONSE:
            pr.recent_active = True
            pr.probe_sent = False
            if pr.state is ProgressState.SNAPSHOT or pr.replication_stalled(STALLED_HEARTBEATS_MAX):
                # The boundary message or the appends in flight were lost: probe again.
                pr.become_probe()
            if pr.match < self.log.last_index():
                self.send_append(m.frm)
            if m.context:
                self.handle_read_ack(m.frm, m.context)

    def handle_append_response(self, m: Message, pr: Progress) -> None:
        if m.reject:
            hint = m.reject_hint
            if m.log_term > 0:
                # Fast backtracking: skip every entry of terms the follower cannot have.
                hint, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decrease_to(m.index, hint):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self.send_append(m.frm)
            return
        was_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
            pr.become_probe()
            pr.become_replicate()
        elif pr.state is ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self.maybe_commit():
            self.on_leader_commit()
        elif was_paused:
            self.send_append(m.frm)
        while self.maybe_send_append(m.frm, send_if_empty=False):
            pass
        if m.frm == self.lead_transferee and pr.match == self.log.last_index():
            self.send(self._message(MT.TIMEOUT_NOW, m.frm))

    def step_candidate(self, m: Message) -> None:
        own = MT.PRE_VOTE_RESPONSE if self.role is Role.PRE_CANDIDATE else MT.VOTE_RESPONSE
        if m.type is MT.APPEND:
            self.become_follower(m.term, m.frm)
            self.handle_append(m)
        elif m.type is MT.HEARTBEAT:
            self.become_follower(m.term, m.frm)
            self.handle_heartbeat(m)
        elif m.type is MT.SNAPSHOT:
            self.become_follower(m.term, m.frm)
            self.handle_snapshot(m)
        elif m.type is own:
            if m.reject:
                self.maybe_learn_commit(m.reject_hint, m.log_term)
            result = self.poll(m.frm, granted=not m.reject)
            if result is quorum.VoteResult.WON:
                if self.role is Role.PRE_CANDIDATE:
                    self.campaign(pre_vote=False, transfer=False)
                else:
                    self.become_leader()
                    self.bcast_append()
            elif result is quorum.VoteResult.LOST:
                self.become_follower(self.term, None)

    def step_follower(self, m: Message) -> None:
        if m.type in (MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT):
            self.election_elapsed = 0
            self.leader = m.frm
            if m.type is MT.APPEND:
                self.handle_append(m)
            elif m.type is MT.HEARTBEAT:
                self.handle_heartbeat(m)
            else:
                self.handle_snapshot(m)
        elif m.type is MT.TIMEOUT_NOW:
            # The leader hands over: campaign at once, without pre-vote (thesis 3.10), or
            # as soon as the membership changes we know committed are applied (a leader
            # that removed itself hands over right after the change commits).
            if self.has_unapplied_conf_changes():
                self.campaign_after_apply = True
            else:
                self.hup(transfer=True)
        elif m.type is MT.READ_INDEX_RESPONSE:
            self.read_states.append(ReadState(index=m.index, context=m.context))

    def handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            self.send(self._message(MT.APPEND_RESPONSE, m.frm, index=self.log.committed))
            return
        last_new = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self.send(self._message(MT.APPEND_RESPONSE, m.frm, index=last_new))
            return
        hint_index, hint_term = self.log.find_conflict_by_term(
            min(m.index, self.log.last_index()), m.log_term
        )
        self.send(
            self._message(
                MT.APPEND_RESPONSE,
                m.frm,
                index=m.index,
                reject=True,
                reject_hint=hint_index,
                log_term=hint_term,
            )
        )

    def handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(m.commit)
        self.send(self._message(MT.HEARTBEAT_RESPONSE, m.frm, context=m.context))

    def handle_snapshot(self, m: Message) -> None:
        meta = m.snapshot
        if meta is None:
            raise InvariantViolation("snapshot message without a boundary")
        if meta.index <= self.log.committed:
            pass
        elif self.log.match_term(meta.index, meta.term):
            # We have the boundary entry: just fast-forward the commit index.
            self.log.commit_to(meta.index)
        else:
            # Our log cannot meet the leader's: restart it at the boundary.
            self.log.restore(meta)
            if meta.conf is not None and meta.conf.index >= self.conf_index:
                # The boundary is persisted with its membership, as our newest applied one.
                self.switch_to_conf(meta.conf)
        self.send(self._message(MT.APPEND_RESPONSE, m.frm, index=self.log.committed))
