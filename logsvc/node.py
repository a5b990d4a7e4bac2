"""One logsvc node: the asyncio driver around the Raft core, and the log API it serves.

The driver is the only asyncio part. Its Ready loop does, in order: send what may go at
once, persist (one synced RocksDB batch on the writer thread), send what had to wait for
that sync, publish committed entries (apply them to the record state, answer appends and
wake readers), advance. Ticks, peer messages and client calls are inputs that only step the
core and wake the loop; while a sync is in flight, messages that need none still go out.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from logsvc.config import NodeConfig
from logsvc.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotAppended,
    NotLeader,
    OutcomeUnknown,
    OutOfRange,
    Unavailable,
)
from logsvc.raft import (
    Config,
    Entry,
    HardState,
    Message,
    MessageType,
    ProgressState,
    ProposalDropped,
    RawNode,
    Ready,
    Role,
    SnapshotMeta,
)
from logsvc.records import AppliedBatch, RecordState, decode_payload
from logsvc.storage import DurableLog, WriterThread
from logsvc.transport import PeerSender, probe_terms
from logsvc.v1 import entry_pb2

log = logging.getLogger("logsvc.node")

READ_BATCH_RECORDS_MAX = 1024
READ_INDEX_TIMEOUT_S = 5.0


@dataclass(slots=True)
class PendingAppend:
    term: int
    first_index: int
    last_index: int
    key: tuple[str, int] | None
    # One future per waiting call (the proposer, and retries of the same producer sequence
    # that arrived while it was in flight): a caller that gives up cancels only its own, and
    # the result wakes each caller directly, with no shield or extra task in between.
    waiters: list[asyncio.Future[tuple[int, int]]] = field(default_factory=list)

    def settle(self, result: tuple[int, int] | BaseException) -> None:
        for waiter in self.waiters:
            if waiter.done():
                continue
            if isinstance(result, BaseException):
                waiter.set_exception(result)
            else:
                waiter.set_result(result)
        self.waiters.clear()


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """One peer as this node sees it (a leader's replication progress)."""

    address: str
    match_index: int
    next_index: int
    state: str  # "probe", "replicate", "snapshot"
    messages_sent: int


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """What the Status call answers."""

    id: str
    zone: str
    term: int
    role: str  # "leader", "follower", "candidate", "pre_candidate", or "starting"
    leader_id: str
    leader_address: str
    first_index: int
    last_index: int
    commit_index: int
    raft_first_index: int
    raft_last_index: int
    raft_commit_index: int
    raft_applied_index: int
    peers: dict[str, PeerInfo]


@dataclass(frozen=True, slots=True)
class InFlight:
    pending: PendingAppend
    duplicate: bool  # a retry of an append that was already in flight


def _expire(waiter: asyncio.Future[tuple[int, int]], config: NodeConfig) -> None:
    if not waiter.done():
        waiter.set_exception(
            OutcomeUnknown(
                f"not committed within {config.append_timeout_s}s; retry with the same "
                "producer id and sequence"
            )
        )


class LogNode:
    def __init__(self, config: NodeConfig) -> None:
        config.validate()
        self.config = config
        self.id = config.id
        self.durable = DurableLog(config.data_dir / config.id)
        self.records = RecordState(config.dedup_sequences_max)
        self.node: RawNode | None = None
        self.senders: dict[str, PeerSender] = {}
        self._writer = WriterThread(f"logsvc-writer-{config.id}")
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._syncing = False
        self._unwritten_hard_state: HardState | None = None
        self._pending: dict[int, PendingAppend] = {}  # raft index -> waiting Append
        self._inflight_keys: dict[tuple[str, int], PendingAppend] = {}
        self._reads: dict[bytes, asyncio.Future[int]] = {}
        self._read_ids = itertools.count(1)
        self._applied = asyncio.Event()  # replaced after every publish
        self._proposed_next = 1  # the leader's next record index, counting proposals
        self.fatal: BaseException | None = None
        self._opened = False
        self._commit_hold_s = config.commit_hold_ms / 1000

    # -- lifecycle -----------------------------------------------------------------

    async def open(self) -> None:
        """Load what is synced. From here on `durable_term` answers the peers' probes."""
        await self._writer.run(self.durable.load)
        self._opened = True

    def durable_term(self) -> int:
        """The term this node has synced (0 until `open`, and for an empty data directory)."""
        return self.durable.memory.initial_state().term if self._opened else 0

    async def start(self) -> None:
        """Open (unless done), make an empty data directory safe to vote from, run Raft."""
        if not self._opened:
            await self.open()
        if self._is_empty() and len(self.config.peers) > 1:
            await self._adopt_the_peers_term()
        memory = self.durable.memory
        boundary = memory.snapshot()
        if boundary.index:
            self.records.restart_at_boundary(boundary.index)
        voters = tuple(sorted(self.config.peers))
        raft_config = Config(
            id=self.id,
            voters=voters,
            election_ticks=self.config.election_ticks,
            heartbeat_ticks=self.config.heartbeat_ticks,
            append_bytes_max=self.config.append_bytes_max,
            inflight_messages_max=self.config.inflight_messages_max,
            applied_index=boundary.index,
        )
        # Election timeouts must differ between nodes and runs; the core stays seeded.
        rng = random.Random(random.SystemRandom().getrandbits(64))
        self.node = RawNode(raft_config, memory, rng)
        for peer_id, address in sorted(self.config.peers.items()):
            if peer_id != self.id:
                sender = PeerSender(
                    self.config.cluster_id, self.id, peer_id, address, self._report_unreachable
                )
                sender.start()
                self.senders[peer_id] = sender
        self._tasks = [
            asyncio.create_task(self._ready_loop(), name="ready-loop"),
            asyncio.create_task(self._ticker(), name="ticker"),
        ]
        self._wake.set()

    def _is_empty(self) -> bool:
        memory = self.durable.memory
        return (
            memory.initial_state() == HardState()
            and memory.last_index() == 0
            and memory.snapshot().index == 0
        )

    async def _adopt_the_peers_term(self) -> None:
        """Before an empty node takes part: never vote twice in one term.

        An empty data directory is a new cluster, or a node whose data was lost (a wiped
        disk, a new volume). In the second case the node may have voted in some term T before,
        and a second vote in T could elect a second leader of T. It cannot know T, but T is
        at most the durable term of the peer it voted for (a candidate syncs its term before
        it asks for votes), so it asks every peer for its durable term, takes the highest, M,
        and syncs a vote for itself in M: from then on it can only vote in terms after M. In a
        new cluster every peer answers 0 and nothing is written. It waits for every peer,
        since the one that does not answer may be the one it voted for.
        """
        peers = {p: a for p, a in self.config.peers.items() if p != self.id}
        log.info("%s has an empty data directory: asking %s for their terms", self.id, peers)
        terms = await probe_terms(self.config.cluster_id, self.id, peers)
        top = max(terms.values(), default=0)
        if top == 0:
            return
        hard_state = HardState(term=top, vote=self.id, commit=0)
        await self._writer.run(self.durable.write, None, (), hard_state)
        self.durable.mirror(None, (), hard_state)
        log.warning(
            "%s starts with an empty data directory in a cluster at term %d (%s): it votes "
            "only in later terms and catches up from the leader",
            self.id, top, ", ".join(f"{p}={t}" for p, t in sorted(terms.items())),
        )  # fmt: skip

    async def hand_off(self, timeout_s: float = 2.0) -> None:
        """Before a graceful stop: pass leadership to the most caught-up peer, so that
        appends move on after one round trip instead of an election timeout."""
        node = self.raw()
        raft = node.raft
        if raft.role is not Role.LEADER or len(raft.voters) == 1:
            return
        peers = [p for p in raft.peers() if p in raft.progress]
        target = max(peers, key=lambda p: (raft.progress[p].match, p))
        try:
            node.transfer_leader(target)
        except ProposalDropped:
            return
        self._after_input()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while raft.role is Role.LEADER and loop.time() < deadline:
            await asyncio.sleep(self.config.tick_ms / 1000)
        log.info("%s handed leadership to %s: %s", self.id, target, raft.role.name.lower())

    async def stop(self) -> None:
        self._stopping = True
        # Wake tailing readers so that they see the node stopping and end their streams.
        self._applied.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sender in self.senders.values():
            await sender.stop()
        self._fail_pending(NotAppended("the node is shutting down"), unknown=True)
        await self._writer.run(self.durable.close)
        self._writer.stop()

    def raw(self) -> RawNode:
        if self.node is None:
            raise Unavailable("the node is starting")
        return self.node

    # -- inputs ----------------------------------------------------------------------

    def deliver(self, message: Message) -> None:
        if self._stopping or self.node is None:
            return
        self.node.step(message)
        self._after_input()

    def _after_input(self) -> None:
        if self._syncing and self.node is not None:
            for m in self.node.take_messages():
                self._send(m)
        self._wake.set()

    def peer_started_empty(self, peer_id: str) -> None:
        """A peer probed this node (Peer.Probe): its data directory is empty. If this node
        leads, what it knew of that peer's log is void (RawNode.report_log_lost)."""
        if self._stopping or self.node is None or peer_id not in self.config.peers:
            return
        if self.node.raft.role is Role.LEADER:
            log.warning("%s: peer %s starts with an empty data directory", self.id, peer_id)
        self.node.report_log_lost(peer_id)
        self._after_input()

    def _report_unreachable(self, peer_id: str) -> None:
        if self.node is not None:
            self.node.report_unreachable(peer_id)

    async def _ticker(self) -> None:
        interval = self.config.tick_ms / 1000
        while True:
            await asyncio.sleep(interval)
            self.raw().tick()
            self._after_input()

    # -- the Ready loop ------------------------------------------------------------

    async def _ready_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                node = self.raw()
                while node.has_ready():
                    rd = node.ready()
                    self._observe(rd)
                    if rd.must_sync:
                        for m in rd.messages:
                            self._send(m)
                        # A commit index held back from an earlier Ready rides along.
                        hard_state = rd.hard_state or self._unwritten_hard_state
                        self._unwritten_hard_state = None
                        self._syncing = True
                        try:
                            await self._writer.run(
                                self.durable.write, rd.snapshot, rd.entries, hard_state
                            )
                        finally:
                            self._syncing = False
                        self.durable.mirror(rd.snapshot, rd.entries, hard_state)
                        for m in rd.persisted_messages:
                            self._send(m)
                        await self._publish(rd)
                    else:
                        # Nothing must be durable first: answer the waiting clients before
                        # anything else, then tell the peers. A commit index alone is not
                        # worth a write of its own; it goes with the next synced one.
                        if await self._publish(rd):
                            # One turn of the loop for the callers just answered: their
                            # replies start before the peer streams take the loop.
                            await asyncio.sleep(0)
                        for m in [*rd.messages, *rd.persisted_messages]:
                            self._send(m)
                        if rd.hard_state is not None:
                            self._unwritten_hard_state = rd.hard_state
                            self.durable.mirror(None, (), rd.hard_state)
                    node.advance(rd)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the core or the disk failed: stop serving, loudly
            log.exception("the ready loop died")
            self.fatal = exc
            self._fail_pending(Unavailable(f"node failed: {exc}"), unknown=True)
            raise

    def _send(self, m: Message) -> None:
        sender = self.senders.get(m.to)
        if sender is None:
            return
        if self._commit_hold_s and self._carries_only_commit(m):
            sender.defer(m, self._commit_hold_s)
        else:
            sender.send(m)

    def _carries_only_commit(self, m: Message) -> bool:
        """An append with no entries to a follower in steady replication: it only tells the
        follower that the commit index moved. (In REPLICATE such an append starts after
        everything sent to the follower and takes no place in its in-flight window; the
        follower answers the appends in flight anyway, and the next append carries the
        commit index as well. A probe, in PROBE state, is never held.)"""
        if m.type is not MessageType.APPEND or m.entries:
            return False
        pr = self.raw().raft.progress.get(m.to)
        return pr is not None and pr.state is ProgressState.REPLICATE

    def _observe(self, rd: Ready) -> None:
        if rd.soft_state is None:
            return
        raft = self.raw().raft
        if rd.soft_state.role is Role.LEADER:
            log.info("%s leads term %d", self.id, raft.term)
        else:
            # Appends this node proposed may still commit under the next leader: unknown.
            self._fail_pending(
                OutcomeUnknown(f"{self.id} lost leadership before the append committed"),
                unknown=True,
            )

    async def _publish(self, rd: Ready) -> bool:
        """Apply what committed and answer its callers; True when an Append was answered."""
        if rd.snapshot is not None:
            self.records.restart_at_boundary(rd.snapshot.index)
        answered = False
        for entry in rd.committed_entries:
            answered = self._apply(entry) or answered
        for rs in rd.read_states:
            fut = self._reads.pop(rs.context, None)
            if fut is not None and not fut.done():
                fut.set_result(rs.index)
        if rd.committed_entries or rd.snapshot is not None:
            self._applied.set()
            self._applied = asyncio.Event()
        return answered

    def _apply(self, entry: Entry) -> bool:
        """Apply one committed entry; True when a waiting Append was answered."""
        result = self.records.apply(entry)
        if isinstance(result, int):
            self._compact(result)
        pending = self._pending.pop(entry.index, None)
        if pending is None:
            return False
        if pending.key is not None:
            self._inflight_keys.pop(pending.key, None)
        if (
            isinstance(result, AppliedBatch)
            and entry.term == pending.term
            and result.first_index == pending.first_index
        ):
            pending.settle((result.first_index, result.last_index))
        else:
            pending.settle(NotAppended(f"another entry was committed at raft index {entry.index}"))
        return True

    def _compact(self, raft_index: int) -> None:
        memory = self.durable.memory
        if raft_index < memory.first_index() or raft_index > memory.last_index():
            return
        boundary = SnapshotMeta(index=raft_index, term=memory.term(raft_index))
        memory.compact(raft_index)
        # The disk follows on the writer thread, ordered after every earlier write.
        self._writer.submit(self.durable.trim, boundary)

    def _fail_pending(self, error: Exception, unknown: bool) -> None:
        for pending in self._pending.values():
            pending.settle(error)
        self._pending.clear()
        self._inflight_keys.clear()

    # -- the log API ---------------------------------------------------------------

    def leader_hint(self) -> tuple[str, str]:
        if self.node is None:
            return "", ""
        leader = self.node.raft.leader or ""
        return leader, self.config.peers.get(leader, "")

    def _require_leader(self) -> None:
        if self._stopping:
            raise NotAppended(f"{self.id} is shutting down; retry on another node")
        raft = self.raw().raft
        if raft.role is not Role.LEADER:
            leader, address = self.leader_hint()
            where = f"; the leader is {leader} at {address}" if leader else "; no leader is known"
            raise NotLeader(f"{self.id} is not the leader{where}", leader, address)
        # A new leader serves appends once it has applied the first entry of its own term:
        # then its dedup table holds every append committed before its term.
        if raft.log.term(self.records.applied_raft_index) != raft.term:
            raise NotAppended(f"{self.id} was just elected and is catching up; retry shortly")

    async def append(
        self,
        records: list[bytes],
        producer_id: str,
        sequence: int,
        if_last_index: int | None,
    ) -> tuple[int, int, bool]:
        """Append records; returns (first index, last index, was a duplicate)."""
        started = self.begin_append(records, producer_id, sequence, if_last_index)
        if isinstance(started, tuple):
            return started
        first, last = await self.watch(started.pending)
        return first, last, started.duplicate

    def begin_append(
        self,
        records: list[bytes],
        producer_id: str,
        sequence: int,
        if_last_index: int | None,
    ) -> tuple[int, int, bool] | InFlight:
        """Validate and propose: the finished outcome of a retry (first, last, duplicate), or
        the append in flight, to `watch`. Raises the LogError of a request refused at once."""
        if not records:
            raise InvalidArgument("an append needs at least one record")
        if len(records) > self.config.append_records_max:
            raise InvalidArgument(
                f"{len(records)} records exceed the limit of {self.config.append_records_max}"
            )
        for i, record in enumerate(records):
            if len(record) > self.config.record_bytes_max:
                raise InvalidArgument(
                    f"record {i} has {len(record)} bytes, over the limit of "
                    f"{self.config.record_bytes_max}"
                )
        if producer_id and sequence == 0:
            raise InvalidArgument("sequence must be at least 1 when producer_id is set")
        self._require_leader()
        key = (producer_id, sequence) if producer_id else None
        if key is not None:
            done = self.records.duplicate(producer_id, sequence)
            if done is not None:
                return done[0], done[1], True
            inflight = self._inflight_keys.get(key)
            if inflight is not None:
                return InFlight(inflight, duplicate=True)
            if self.records.too_old(producer_id, sequence):
                raise FailedPrecondition(
                    f"sequence {sequence} of producer {producer_id!r} is older than its "
                    "deduplication window; use a new sequence"
                )
        raft = self.raw().raft
        if self._proposed_next < (self.records.next_index or 1) or not self._pending:
            self._proposed_next = self.records.next_index or 1
        first = self._proposed_next
        if if_last_index is not None and if_last_index != first - 1:
            raise FailedPrecondition(
                f"the log's last index is {first - 1}, not {if_last_index}: nothing appended"
            )
        payload = entry_pb2.EntryPayload(
            batch=entry_pb2.RecordBatch(
                first_index=first, records=records, producer_id=producer_id, sequence=sequence
            )
        )
        try:
            raft_index = self.raw().propose(payload.SerializeToString())
        except ProposalDropped as exc:
            raise NotAppended(str(exc)) from exc
        last = first + len(records) - 1
        self._proposed_next = last + 1
        pending = PendingAppend(raft.term, first, last, key)
        self._pending[raft_index] = pending
        if key is not None:
            self._inflight_keys[key] = pending
        self._after_input()
        return InFlight(pending, duplicate=False)

    def watch(self, pending: PendingAppend) -> asyncio.Future[tuple[int, int]]:
        """A future of (first, last) for one caller of a proposed append: it fails with the
        append's error, or with OutcomeUnknown once the append timeout has passed."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[int, int]] = loop.create_future()
        pending.waiters.append(waiter)
        timer = loop.call_later(self.config.append_timeout_s, _expire, waiter, self.config)
        waiter.add_done_callback(lambda _: timer.cancel())
        return waiter

    async def read(
        self, from_index: int, follow: bool, batch_records_max: int = 0
    ) -> AsyncIterator[list[tuple[int, bytes]]]:
        if from_index < 1:
            raise InvalidArgument("from_index must be at least 1 (record indexes start at 1)")
        batch_max = min(batch_records_max or READ_BATCH_RECORDS_MAX, READ_BATCH_RECORDS_MAX)
        next_index = from_index
        while True:
            if self.fatal is not None:
                raise Unavailable(f"node failed: {self.fatal}")
            if self._stopping:
                raise Unavailable(f"{self.id} is shutting down; read from another node")
            first = self.records.first_index()
            if next_index < first:
                raise OutOfRange(
                    f"index {next_index} was trimmed; the first retained index is {first}", first
                )
            if self.records.next_index is not None and next_index < self.records.next_index:
                chunk = self._records_from(next_index, batch_max)
                next_index += len(chunk)
                yield chunk
                continue
            if not follow:
                return
            await self._applied.wait()

    def _records_from(self, index: int, limit: int) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        memory = self.durable.memory
        while len(out) < limit:
            where = self.records.locate(index)
            if where is None:
                break
            raft_index, offset = where
            (entry,) = memory.entries(raft_index, raft_index + 1)
            batch = decode_payload(entry.data).batch
            take = batch.records[offset : offset + limit - len(out)]
            out.extend(zip(range(index, index + len(take)), take, strict=True))
            index += len(take)
        return out

    async def read_index(self) -> int:
        context = f"{self.id}-{next(self._read_ids)}".encode()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reads[context] = fut
        try:
            self.raw().read_index(context)
        except ProposalDropped as exc:
            self._reads.pop(context, None)
            raise Unavailable(str(exc)) from exc
        self._after_input()
        try:
            raft_index = await asyncio.wait_for(fut, READ_INDEX_TIMEOUT_S)
            while self.records.applied_raft_index < raft_index:
                await asyncio.wait_for(self._applied.wait(), READ_INDEX_TIMEOUT_S)
        except TimeoutError:
            raise Unavailable("no quorum confirmed the read index in time") from None
        finally:
            self._reads.pop(context, None)
        return self.records.last_record_at(raft_index)

    async def trim(self, before_index: int) -> int:
        if before_index < 1:
            raise InvalidArgument("before_index must be at least 1")
        if before_index > self.records.last_index() + 1:
            raise InvalidArgument(
                f"before_index {before_index} is past the last index {self.records.last_index()}"
            )
        self._require_leader()
        payload = entry_pb2.EntryPayload(
            trim=entry_pb2.TrimCommand(
                before_index=before_index, producers=self.records.producers_snapshot()
            )
        )
        try:
            raft_index = self.raw().propose(payload.SerializeToString())
        except ProposalDropped as exc:
            raise NotAppended(str(exc)) from exc
        self._after_input()
        deadline = asyncio.get_running_loop().time() + self.config.append_timeout_s
        while self.records.applied_raft_index < raft_index:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise OutcomeUnknown("the trim did not commit in time")
            try:
                await asyncio.wait_for(self._applied.wait(), remaining)
            except TimeoutError:
                continue
        return self.records.first_index()

    def term(self) -> int:
        """The current term (the synced one while Raft has not started)."""
        return self.node.raft.term if self.node is not None else self.durable_term()

    def status(self) -> NodeStatus:
        """What Status answers. Also before Raft has started (an empty node waiting for its
        peers' terms), from what is synced and with role "starting", so that probes and
        operators see a live process that waits."""
        leader, address = self.leader_hint()
        peers: dict[str, PeerInfo] = {}
        if self.node is None:
            memory = self.durable.memory
            role = "starting"
            raft_first, raft_last = memory.first_index(), memory.last_index()
            raft_commit = memory.initial_state().commit
        else:
            st = self.node.status()
            role = st.role.name.lower()
            raft_first, raft_last, raft_commit = st.first_index, st.last_index, st.commit_index
            peers = {
                peer: PeerInfo(
                    address=self.config.peers.get(peer, ""),
                    match_index=ps.match,
                    next_index=ps.next,
                    state=ps.state.name.lower(),
                    messages_sent=sender.sent if (sender := self.senders.get(peer)) else 0,
                )
                for peer, ps in st.peers.items()
            }
        return NodeStatus(
            id=self.id,
            zone=self.config.zone,
            term=self.term(),
            role=role,
            leader_id=leader,
            leader_address=address,
            first_index=self.records.first_index(),
            last_index=self.records.last_index(),
            commit_index=self.records.last_index(),
            raft_first_index=raft_first,
            raft_last_index=raft_last,
            raft_commit_index=raft_commit,
            raft_applied_index=self.records.applied_raft_index,
            peers=peers,
        )
