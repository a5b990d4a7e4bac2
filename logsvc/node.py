"""One logsvc node: the asyncio driver around the Raft core, and the log API it serves.

The driver is the only asyncio part. Its Ready loop does, in order: send what may go at
once, persist (one synced RocksDB batch on the writer thread), send what had to wait for
that sync, publish committed entries (apply them to the record state, answer appends and
wake readers), advance. Ticks, peer messages and client calls are inputs that only step the
core and wake the loop; while a sync is in flight, messages that need none still go out.

Over 500 lines: the driver and the log API it serves share the node's state (pending
appends, readers, the record state); storage, transport and records are modules of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from logsvc import peerwire
from logsvc.config import NodeConfig
from logsvc.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotAppended,
    NotLeader,
    OutcomeUnknown,
    OutOfRange,
    ResourceExhausted,
    Unavailable,
)
from logsvc.metrics import NodeMetrics
from logsvc.raft import (
    ConfChange,
    ConfChangeRefused,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
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
from logsvc.snapshots import SnapshotEntry, SnapshotManager
from logsvc.storage import CorruptLog, DurableLog, WriterThread
from logsvc.transport import PeerSender, probe_terms
from logsvc.v1 import entry_pb2

log = logging.getLogger("logsvc.node")

READ_BATCH_RECORDS_MAX = 1024
# Entries read from disk per step: replaying the log at start, and per Read chunk that lies
# before the window.
REPLAY_BYTES_MAX = 4 << 20
READ_FETCH_BYTES_MAX = 1 << 20
# Bytes of records per Read message (at least one record): a batch of 1024 records of up to
# 1 MiB each would be larger than any gRPC message a client accepts. 3 MiB and one record
# of up to --record-bytes-max (1 MiB) fit gRPC's default 4 MiB receive limit.
READ_BATCH_BYTES_MAX = 3 << 20
READ_INDEX_TIMEOUT_S = 5.0
# A following Read stream with no new record sends an empty message this often (its header
# carries the commit index and the leader this node knows): a reader tells a node that is
# alive but idle from one that is paused or cut off, and knows how fresh its copy is.
READ_KEEPALIVE_S = 0.25


@dataclass(slots=True)
class PendingAppend:
    term: int
    first_index: int
    last_index: int
    key: tuple[str, int] | None
    record_bytes: int = 0
    proposed_at: float = 0.0  # time.monotonic() when proposed (for the commit histogram)
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
    role: str  # "leader", "follower", "candidate", "pre_candidate", "starting" or "failed"
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
    snapshots: SnapshotStatus


@dataclass(frozen=True, slots=True)
class SnapshotStatus:
    """The snapshot store and automatic trim, as Status shows them."""

    newest_snapshot: SnapshotEntry | None
    newest_snapshot_age_ms: int
    snapshots_durable: int
    snapshots_missing: int
    trim_keep_entries: int
    trim_keep_seconds: int
    auto_trim_before_index: int


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


def _take(
    payload: entry_pb2.EntryPayload,
    offset: int,
    index: int,
    out: list[tuple[int, bytes]],
    limit: int,
    budget_bytes: int,
) -> tuple[int, int, bool]:
    """Add to out the records of a batch from its offset-th on, numbered from index, while out
    holds fewer than limit and within budget_bytes (the first record of a message goes
    whatever its size). Returns the next index, the bytes left, and whether they ran out."""
    for record in payload.batch.records[offset:]:
        if len(out) >= limit:
            break
        if len(record) > budget_bytes and out:
            return index, budget_bytes, True
        budget_bytes -= len(record)
        out.append((index, record))
        index += 1
    return index, budget_bytes, False


class LogNode:
    def __init__(self, config: NodeConfig) -> None:
        config.validate()
        self.config = config
        # Read once: the node's certificate and key, as a client of its peers (mutual TLS).
        self.peer_credentials = config.auth.peer_channel_credentials()
        # The same, for the framed Raft streams to the peers (logsvc/peerwire.py).
        tls = config.auth.tls
        self.peer_ssl_context = peerwire.client_ssl_context(tls) if tls is not None else None
        self.id = config.id
        self.durable = DurableLog(
            config.data_dir / config.id,
            window_entries=config.window_entries,
            window_bytes=config.window_bytes,
            read_cache_bytes=config.read_cache_bytes,
        )
        self.records = RecordState(config.dedup_sequences_max)
        self.node: RawNode | None = None
        self.senders: dict[str, PeerSender] = {}
        self._writer = WriterThread(f"logsvc-writer-{config.id}")
        # Reads of entries older than the window (for lagging peers, readers and the replay
        # at start), beside the writer so that they never delay a sync.
        self._reader = WriterThread(f"logsvc-reader-{config.id}")
        self._fetching = False
        self._fetch_next = 0  # where the last fetch for a follower ended
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._syncing = False
        self._unwritten_hard_state: HardState | None = None
        self._pending: dict[int, PendingAppend] = {}  # raft index -> waiting Append
        self._pending_bytes = 0  # their records' bytes
        self._inflight_keys: dict[tuple[str, int], PendingAppend] = {}
        self._reads: dict[bytes, asyncio.Future[int]] = {}
        self._read_ids = itertools.count(1)
        self._applied = asyncio.Event()  # replaced after every publish
        self._proposed_next = 1  # the leader's next record index, counting proposals
        self.fatal: BaseException | None = None
        self._opened = False
        self._commit_hold_s = config.commit_hold_ms / 1000
        self.snapshots = SnapshotManager(self, config.data_dir / config.id / "snapshots")
        self.auto_trim_before = 0  # the last before_index automatic trim proposed
        self.metrics = NodeMetrics()  # what /metrics shows (logsvc/metrics.py)
        # Every node's (client address, peer address) this node knows: the configured ones,
        # then those the membership changes carry. Replaced, never changed in place (the
        # writer thread copies it into the trim boundary).
        self.addresses: dict[str, tuple[str, str]] = {
            p: (a, config.peer_addresses.get(p, "")) for p, a in config.peers.items()
        }
        # Whom the peer port accepts messages from (a live set: joining members are added).
        self.known_ids: set[str] = set(self.addresses) - {self.id}
        self.durable.addresses = self.addresses
        # The membership this node has applied (the core holds the same once it runs).
        self.conf = ConfState(() if config.join else tuple(sorted(config.peers)))

    # -- lifecycle -----------------------------------------------------------------

    async def open(self) -> None:
        """Load what is synced. From here on `durable_term` answers the peers' probes."""
        await self._writer.run(self.durable.load)
        await self.snapshots.open()
        self._opened = True

    def durable_term(self) -> int:
        """The term this node has synced (0 until `open`, and for an empty data directory)."""
        return self.durable.memory.initial_state().term if self._opened else 0

    async def start(self) -> None:
        """Open (unless done), make an empty data directory safe to vote from, run Raft."""
        if not self._opened:
            await self.open()
        if self._is_empty() and len(self.config.peers) > 1 and not self.config.join:
            await self._adopt_the_peers_term()
        memory = self.durable.memory
        boundary = memory.snapshot()
        if boundary.index:
            self.records.restart_at_boundary(boundary.index)
        stored = self.durable.boundary_membership
        if stored is not None and boundary.conf is not None:
            self._learn_addresses(stored.addresses)
            self.conf = boundary.conf
        await self._replay(memory.initial_state().commit)
        raft_config = Config(
            id=self.id,
            voters=self.conf.voters,
            learners=self.conf.learners,
            conf_index=self.conf.index,
            joining=self.config.join,
            election_ticks=self.config.election_ticks,
            heartbeat_ticks=self.config.heartbeat_ticks,
            append_bytes_max=self.config.append_bytes_max,
            inflight_messages_max=self.config.inflight_messages_max,
            applied_index=self.records.applied_raft_index,
        )
        # Election timeouts must differ between nodes and runs; the core stays seeded.
        rng = random.Random(random.SystemRandom().getrandbits(64))
        self.node = RawNode(raft_config, memory, rng)
        self._start_senders()
        self._tasks = [
            asyncio.create_task(self._ready_loop(), name="ready-loop"),
            asyncio.create_task(self._ticker(), name="ticker"),
        ]
        if self.config.trim_interval_s:
            self._tasks.append(asyncio.create_task(self._auto_trim(), name="auto-trim"))
        self.snapshots.start()
        self._wake.set()

    def _start_senders(self) -> None:
        """A sender to every node with a known peer address (once Raft runs)."""
        if self.node is None or self._stopping:
            return
        for peer_id, (_, address) in sorted(self.addresses.items()):
            if peer_id != self.id and address and peer_id not in self.senders:
                sender = PeerSender(
                    self.config.cluster_id, self.id, peer_id, address,
                    self._report_unreachable, self.peer_ssl_context,
                )  # fmt: skip
                sender.start()
                self.senders[peer_id] = sender

    def _learn_addresses(self, members: Sequence[entry_pb2.MemberAddress]) -> None:
        addresses = dict(self.addresses)
        for m in members:
            if m.id and m.id != self.id:
                addresses[m.id] = (m.address, m.peer_address)
        self.addresses = addresses
        self.durable.addresses = addresses
        self.known_ids.update(a for a in addresses if a != self.id)

    def _apply_conf(self, entry: Entry) -> None:
        """A membership change is applied: note the member's addresses and the membership
        (the core switches to it in advance(), from the same entry)."""
        if entry.index <= self.conf.index:
            return
        change, after = ConfChange.decode(entry.data)
        if change.context:
            member = entry_pb2.MemberAddress.FromString(change.context)
            self._learn_addresses([member])
        self.conf = ConfState(after.voters, after.learners, entry.index)
        log.info(
            "%s applied membership change %d (%s): voters %s, learners %s",
            self.id, entry.index, change.describe(), list(after.voters), list(after.learners),
        )  # fmt: skip
        self._start_senders()

    async def _replay(self, commit: int) -> None:
        """Apply the committed entries on disk, read in bounded steps off the event loop,
        so that the core starts with them applied and never asks for more than the window."""
        while self.records.applied_raft_index < commit:
            lo = self.records.applied_raft_index + 1
            entries = await self._reader.run(
                self.durable.read_entries, lo, commit + 1, REPLAY_BYTES_MAX
            )
            if not entries:
                raise CorruptLog(f"committed entry {lo} is missing from the disk")
            for entry in entries:
                self._apply(entry)
        self.durable.memory.set_pinned(self.records.applied_raft_index)

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
        peers = {p: a for p, a in self.config.peer_addresses.items() if p != self.id}
        log.info("%s has an empty data directory: asking %s for their terms", self.id, peers)
        terms = await probe_terms(self.config.cluster_id, self.id, peers, self.peer_credentials)
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
        if raft.role is not Role.LEADER or len(raft.voters) == 1 or self.fatal is not None:
            return
        peers = [p for p in raft.voting_peers() if p in raft.progress]
        if not peers:
            return
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
            if task.done() and not task.cancelled() and task.exception() is not None:
                continue  # the ready loop that died: its error is logged and in self.fatal
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sender in self.senders.values():
            await sender.stop()
        await self.snapshots.stop()
        self._fail_pending(NotAppended("the node is shutting down"), unknown=True)
        self._reader.stop()
        try:
            await self._writer.run(self.durable.close)
        except Exception as exc:
            if self.fatal is None:
                raise
            # RocksDB repeats the error that failed the node; the synced data is what it was.
            log.warning("%s: closing its failed storage: %s", self.id, exc)
        self._writer.stop()

    def raw(self) -> RawNode:
        if self.node is None:
            raise Unavailable("the node is starting")
        return self.node

    # -- inputs ----------------------------------------------------------------------

    def deliver(self, message: Message) -> None:
        if self._stopping or self.node is None or self.fatal is not None:
            return
        self.node.step(message)
        self._after_input()

    def _after_input(self) -> None:
        if self._syncing and self.node is not None:
            for m in self.node.take_messages():
                self._send(m)
        self._wake.set()
        self._maybe_fetch()

    def _maybe_fetch(self) -> None:
        """Read from disk, off the loop, the oldest entries the core found missing (one
        read at a time); the core sends what waited for them once they are in."""
        if self._fetching or self._stopping:
            return
        memory = self.durable.memory
        lo = memory.take_fetch()
        if lo is None:
            return
        self._fetching = True
        if lo != self._fetch_next:
            log.info(
                "%s: a follower needs entries from %d on, older than the memory window "
                "(from %d): reading them from disk",
                self.id, lo, memory.window_first(),
            )  # fmt: skip
        bytes_max = max(1, self.config.read_cache_bytes // 2)
        future = self._reader.run(self.durable.read_entries, lo, memory.window_first(), bytes_max)
        future.add_done_callback(self._fetched)

    def _fetched(self, future: asyncio.Future[list[Entry]]) -> None:
        self._fetching = False
        if self._stopping or future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.error("%s: reading old entries from disk failed: %s", self.id, exc)
            return
        entries = future.result()
        if entries:
            self._fetch_next = entries[-1].index + 1
        self.durable.memory.fill(entries)
        if self.node is not None:
            self.node.entries_fetched()
        self._after_input()

    def peer_started_empty(self, peer_id: str) -> None:
        """A peer probed this node (Peer.Probe): its data directory is empty. If this node
        leads, what it knew of that peer's log is void (RawNode.report_log_lost)."""
        if (
            self._stopping
            or self.node is None
            or self.fatal is not None
            or peer_id not in self.addresses
        ):
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
        while self.fatal is None:
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
                        sync_started = time.monotonic()
                        try:
                            await self._writer.run(
                                self.durable.write, rd.snapshot, rd.entries, hard_state
                            )
                        finally:
                            self._syncing = False
                        self.metrics.synced(len(rd.entries), time.monotonic() - sync_started)
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
                self._maybe_fetch()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the core or the disk failed: stop serving, loudly
            log.exception("the ready loop died")
            self._fail(exc)
            raise

    def _fail(self, exc: BaseException) -> None:
        """The node can no longer persist (a failed disk, a full one) or run its core.

        Everything that waits on it fails at once, and every later call fails fast, so that
        clients go to another node: appends (their outcome is unknown: proposed, they may
        still commit elsewhere), ReadIndex calls, and Read streams, which would otherwise
        wait for commits that this node will never apply again. Health turns NOT_SERVING and
        Status says role "failed" with no leader hint. The core is neither ticked nor stepped
        any more (nothing it would send or persist could leave, and its outbox would only
        grow); a restart, once the disk has room, brings the node back.
        """
        self.fatal = exc
        self._fail_pending(
            OutcomeUnknown(f"{self.id} failed before the append committed: {exc}"), unknown=True
        )
        for fut in self._reads.values():
            if not fut.done():
                fut.set_exception(self._failed_error())
        self._reads.clear()
        self._applied.set()  # readers wake, see self.fatal and end their streams

    def _failed_error(self) -> Unavailable:
        return Unavailable(
            f"{self.id} failed and serves no reads or appends ({self.fatal}); use another node"
        )

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
        self.metrics.leader_is(rd.soft_state.leader)
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
            conf = rd.snapshot.conf
            if conf is not None and conf.index >= self.conf.index:
                self.conf = conf
        answered = False
        for entry in rd.committed_entries:
            answered = self._apply(entry) or answered
        for rs in rd.read_states:
            fut = self._reads.pop(rs.context, None)
            if fut is not None and not fut.done():
                fut.set_result(rs.index)
        if rd.committed_entries or rd.snapshot is not None:
            # Applied entries may leave the memory window from now on.
            self.durable.memory.set_pinned(self.records.applied_raft_index)
            self._applied.set()
            self._applied = asyncio.Event()
        return answered

    def _apply(self, entry: Entry) -> bool:
        """Apply one committed entry; True when a waiting Append was answered."""
        result = self.records.apply(entry)
        if entry.type is EntryType.CONF_CHANGE:
            self._apply_conf(entry)
        if isinstance(result, bool):
            if result:
                self.snapshots.catalog_changed()
        elif isinstance(result, int):
            self._compact(result)
            self.snapshots.catalog_changed()
        pending = self._pending.pop(entry.index, None)
        if pending is None:
            return False
        self._pending_bytes -= pending.record_bytes
        if pending.key is not None:
            self._inflight_keys.pop(pending.key, None)
        if (
            isinstance(result, AppliedBatch)
            and entry.term == pending.term
            and result.first_index == pending.first_index
        ):
            self.metrics.committed(
                result.last_index - result.first_index + 1, time.monotonic() - pending.proposed_at
            )
            pending.settle((result.first_index, result.last_index))
        else:
            self.metrics.appends_failed += 1
            pending.settle(NotAppended(f"another entry was committed at raft index {entry.index}"))
        return True

    def _compact(self, raft_index: int) -> None:
        memory = self.durable.memory
        if raft_index < memory.first_index() or raft_index > memory.last_index():
            return
        # The membership applied so far: as of this entry, at or past the trim point.
        boundary = SnapshotMeta(index=raft_index, term=memory.term(raft_index), conf=self.conf)
        memory.compact(raft_index, self.conf)
        # The disk follows on the writer thread, ordered after every earlier write.
        self._writer.submit(self.durable.trim, boundary)

    def _fail_pending(self, error: Exception, unknown: bool) -> None:
        self.metrics.appends_failed += len(self._pending)
        for pending in self._pending.values():
            pending.settle(error)
        self._pending.clear()
        self._pending_bytes = 0
        self._inflight_keys.clear()

    # -- the log API ---------------------------------------------------------------

    def leader_hint(self) -> tuple[str, str]:
        if self.node is None or self.fatal is not None:
            return "", ""
        leader = self.node.raft.leader or ""
        return leader, self.addresses.get(leader, ("", ""))[0]

    def require_leader(self) -> None:
        """Raise NotLeader (or NotAppended) unless this node leads and serves appends."""
        self._require_leader()

    def _require_leader(self) -> None:
        if self._stopping:
            raise NotAppended(f"{self.id} is shutting down; retry on another node")
        if self.fatal is not None:
            raise NotAppended(f"{self.id} failed ({self.fatal}); nothing appended, retry elsewhere")
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
        total = 0
        for i, record in enumerate(records):
            if len(record) > self.config.record_bytes_max:
                raise InvalidArgument(
                    f"record {i} has {len(record)} bytes, over the limit of "
                    f"{self.config.record_bytes_max}"
                )
            total += len(record)
        if total > self.config.append_request_bytes_max:
            raise InvalidArgument(
                f"the append carries {total} bytes of records, over the limit of "
                f"{self.config.append_request_bytes_max} bytes per append; split it into "
                "several appends"
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
        self._check_room(total)
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
                first_index=first,
                records=records,
                producer_id=producer_id,
                sequence=sequence,
                appended_at_ms=int(time.time() * 1000),
            )
        )
        try:
            raft_index = self.raw().propose(payload.SerializeToString())
        except ProposalDropped as exc:
            raise NotAppended(str(exc)) from exc
        last = first + len(records) - 1
        self._proposed_next = last + 1
        pending = PendingAppend(
            raft.term, first, last, key, record_bytes=total, proposed_at=time.monotonic()
        )
        self._pending[raft_index] = pending
        self._pending_bytes += total
        if key is not None:
            self._inflight_keys[key] = pending
        self._after_input()
        return InFlight(pending, duplicate=False)

    def pending_totals(self) -> tuple[int, int]:
        """Appends proposed here and waiting to commit, and their records' bytes."""
        return len(self._pending), self._pending_bytes

    def _check_room(self, record_bytes: int) -> None:
        """Refuse a new append while too much waits to commit (one append always fits)."""
        waiting = len(self._pending)
        if waiting >= self.config.pending_appends_max:
            raise ResourceExhausted(
                f"{waiting} appends are waiting to commit on {self.id}, the limit is "
                f"{self.config.pending_appends_max} (--pending-appends-max); nothing "
                "appended, retry shortly"
            )
        if waiting and self._pending_bytes + record_bytes > self.config.pending_bytes_max:
            raise ResourceExhausted(
                f"{self._pending_bytes} bytes of records are waiting to commit on {self.id}; "
                f"{record_bytes} more would pass the limit of {self.config.pending_bytes_max} "
                "(--pending-bytes-max); nothing appended, retry shortly"
            )

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
        """Chunks of records from from_index on; with follow, forever, and an empty chunk
        (a keepalive) after READ_KEEPALIVE_S with nothing new."""
        if from_index < 1:
            raise InvalidArgument("from_index must be at least 1 (record indexes start at 1)")
        batch_max = min(batch_records_max or READ_BATCH_RECORDS_MAX, READ_BATCH_RECORDS_MAX)
        next_index = from_index
        while True:
            if self.fatal is not None:
                raise self._failed_error()
            if self._stopping:
                raise Unavailable(f"{self.id} is shutting down; read from another node")
            first = self.records.first_index()
            if next_index < first:
                raise OutOfRange(
                    f"index {next_index} was trimmed; the first retained index is {first}", first
                )
            if self.records.next_index is not None and next_index < self.records.next_index:
                chunk = self._records_from(next_index, batch_max)
                if not chunk:
                    chunk = await self._records_from_disk(next_index, batch_max)
                if not chunk:
                    if next_index < self.records.first_index():
                        continue  # trimmed meanwhile: OUT_OF_RANGE above
                    raise Unavailable(
                        f"the entry of record {next_index} is missing from {self.id}'s disk; "
                        "read from another node"
                    )
                next_index += len(chunk)
                yield chunk
                continue
            if not follow:
                return
            try:
                async with asyncio.timeout(READ_KEEPALIVE_S):
                    await self._applied.wait()
            except TimeoutError:
                yield []  # a keepalive: no record, the header says the rest

    def _records_from(self, index: int, limit: int) -> list[tuple[int, bytes]]:
        """Records from index on, as far as their entries are in memory: up to `limit`
        records and READ_BATCH_BYTES_MAX bytes (at least one)."""
        out: list[tuple[int, bytes]] = []
        memory = self.durable.memory
        budget = READ_BATCH_BYTES_MAX
        while len(out) < limit:
            where = self.records.locate(index)
            if where is None:
                break
            raft_index, offset = where
            entry = memory.entry_in_memory(raft_index)
            if entry is None:
                break
            index, budget, full = _take(
                decode_payload(entry.data), offset, index, out, limit, budget
            )
            if full:
                break
        return out

    async def _records_from_disk(self, index: int, limit: int) -> list[tuple[int, bytes]]:
        """Records from index on, from entries read off the loop (older than the window).
        Empty when index was trimmed meanwhile (the caller checks the first index again)."""
        where = self.records.locate(index)
        if where is None:
            return []
        raft_index = where[0]
        hi = max(raft_index + 1, self.durable.memory.window_first())
        entries = await self._reader.run(
            self.durable.read_entries, raft_index, hi, READ_FETCH_BYTES_MAX
        )
        out: list[tuple[int, bytes]] = []
        budget = READ_BATCH_BYTES_MAX
        for entry in entries:
            if len(out) >= limit:
                break
            if not entry.data or entry.type is not EntryType.NORMAL:
                continue
            # Not through decode_payload's cache: old entries would push out the recent ones.
            payload = entry_pb2.EntryPayload.FromString(entry.data)
            if payload.WhichOneof("kind") != "batch":
                continue
            where = self.records.locate(index)
            if where is None or where[0] != entry.index:
                # A trim moved the records' start meanwhile, or the entry is not the one
                # the index names: stop at what is certain.
                break
            index, budget, full = _take(payload, where[1], index, out, limit, budget)
            if full:
                break
        return out

    async def read_index(self) -> int:
        if self.fatal is not None:
            raise self._failed_error()
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
                if self.fatal is not None:
                    raise self._failed_error()
                await asyncio.wait_for(self._applied.wait(), READ_INDEX_TIMEOUT_S)
        except TimeoutError:
            raise Unavailable("no quorum confirmed the read index in time") from None
        finally:
            self._reads.pop(context, None)
        return self.records.last_record_at(raft_index)

    async def trim(self, before_index: int, force: bool = False) -> int:
        if before_index < 1:
            raise InvalidArgument("before_index must be at least 1")
        if before_index > self.records.last_index() + 1:
            raise InvalidArgument(
                f"before_index {before_index} is past the last index {self.records.last_index()}"
            )
        self._require_leader()
        newest = self.records.snapshots.newest()
        covered = newest.index if newest is not None else 0
        if before_index > covered + 1 and not force:
            where = (
                f"the newest durable snapshot covers records up to {covered}, so before_index "
                f"may be at most {covered + 1}"
                if newest is not None
                else "no snapshot is durable yet, so nothing may be trimmed"
            )
            raise FailedPrecondition(
                f"refusing to trim before {before_index}: {where}; records no snapshot "
                "covers would be lost to every client that has not read them (force trims "
                "anyway)"
            )
        await self.propose_and_wait(self._trim_payload(before_index), "the trim")
        return self.records.first_index()

    def _trim_payload(self, before_index: int) -> entry_pb2.EntryPayload:
        return entry_pb2.EntryPayload(
            trim=entry_pb2.TrimCommand(
                before_index=before_index,
                producers=self.records.producers_snapshot(),
                snapshots=self.records.snapshots.carry(),
                carried_through_raft_index=self.records.applied_raft_index,
            )
        )

    async def propose_and_wait(self, payload: entry_pb2.EntryPayload, what: str) -> int:
        """Propose a control entry (leader only) and wait until this node has applied it;
        returns its raft index."""
        self._require_leader()
        term = self.raw().raft.term
        try:
            raft_index = self.raw().propose(payload.SerializeToString())
        except ProposalDropped as exc:
            raise NotAppended(str(exc)) from exc
        self._after_input()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.append_timeout_s
        while self.records.applied_raft_index < raft_index:
            if self.fatal is not None:
                raise self._failed_error()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise OutcomeUnknown(f"{what} did not commit in time")
            if self._stopping or self.fatal is not None:
                raise OutcomeUnknown(f"{self.id} stopped before {what} committed")
            try:
                await asyncio.wait_for(self._applied.wait(), remaining)
            except TimeoutError:
                continue
        if self.raw().raft.log.term(raft_index) not in (term, None):
            raise NotAppended(f"another entry was committed at raft index {raft_index}")
        return raft_index

    # -- membership ----------------------------------------------------------------

    async def member_add(self, node_id: str, address: str, peer_address: str) -> None:
        """Add node_id as a learner (leader only); returns once applied here."""
        if ":" not in address or ":" not in peer_address:
            raise InvalidArgument(
                "a new member needs its client address and its peer address, both HOST:PORT"
            )
        context = entry_pb2.MemberAddress(
            id=node_id, address=address, peer_address=peer_address
        ).SerializeToString()
        await self._change_membership(ConfChange(ConfChangeType.ADD_LEARNER, node_id, context))

    async def member_promote(self, node_id: str) -> None:
        await self._change_membership(ConfChange(ConfChangeType.PROMOTE, node_id))

    async def member_remove(self, node_id: str) -> None:
        await self._change_membership(ConfChange(ConfChangeType.REMOVE, node_id))

    async def _change_membership(self, change: ConfChange) -> None:
        self._require_leader()
        node = self.raw()
        term = node.raft.term
        try:
            index = node.propose_conf_change(change)
        except ProposalDropped as exc:
            raise NotAppended(f"{exc}; retry shortly") from exc
        except ConfChangeRefused as exc:
            raise FailedPrecondition(str(exc)) from exc
        self._after_input()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.append_timeout_s
        what = f"the membership change ({change.describe()})"
        while self.records.applied_raft_index < index:
            if self.fatal is not None:
                raise self._failed_error()
            if self._stopping:
                raise OutcomeUnknown(f"{self.id} stopped before {what} committed")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise OutcomeUnknown(f"{what} did not commit in time; list the members")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._applied.wait(), remaining)
        if node.raft.log.term(index) not in (term, None):
            raise NotAppended(f"{what} was lost to a new leader (another entry committed)")

    def members(self) -> tuple[ConfState, list[tuple[str, str, str, bool, int]]]:
        """The membership applied here: (id, address, peer address, voter, match index)."""
        conf = self.conf
        progress = {}
        if self.node is not None and self.node.raft.role is Role.LEADER:
            progress = {p: pr.match for p, pr in self.node.raft.progress.items()}
        rows = []
        for node_id in sorted(conf.voters + conf.learners):
            client, peer = self.addresses.get(node_id, ("", ""))
            if node_id == self.id:
                client = client or self.config.listen
                peer = peer or self.config.peer_listen_address()
            voter = node_id in conf.voters
            rows.append((node_id, client, peer, voter, progress.get(node_id, 0)))
        return conf, rows

    def auto_trim_target(self, now_ms: int) -> int | None:
        """Where automatic trim would cut now: below the newest durable snapshot, keeping
        the newest trim_keep_entries records and those appended within trim_keep_seconds;
        None when that would drop nothing new."""
        newest = self.records.snapshots.newest()
        if newest is None:
            return None
        records = self.records
        target = min(newest.index + 1, records.last_index() + 1)
        if self.config.trim_keep_entries:
            target = min(target, records.last_index() + 1 - self.config.trim_keep_entries)
        if self.config.trim_keep_seconds:
            cutoff_ms = now_ms - int(self.config.trim_keep_seconds * 1000)
            target = records.first_index_appended_after(cutoff_ms, target)
        if target <= max(records.first_index(), self.auto_trim_before):
            return None
        return target

    async def _auto_trim(self) -> None:
        """On the leader, every trim_interval_s: trim as far as the floors allow."""
        while True:
            await asyncio.sleep(self.config.trim_interval_s)
            raft = self.raw().raft
            if raft.role is not Role.LEADER or self._stopping:
                continue
            target = self.auto_trim_target(int(time.time() * 1000))
            if target is None:
                continue
            try:
                await self.propose_and_wait(self._trim_payload(target), "the automatic trim")
            except (NotAppended, NotLeader, OutcomeUnknown) as exc:
                log.info("%s: automatic trim before %d not done: %s", self.id, target, exc)
                continue
            self.auto_trim_before = target
            log.info("%s trimmed the log before %d (first index now %d)",
                     self.id, target, self.records.first_index())  # fmt: skip

    def caught_up(self) -> bool:
        """Does this node know a leader and has it applied everything it knows committed?"""
        if self.node is None or self.node.raft.leader is None:
            return False
        return self.records.applied_raft_index >= self.node.raft.log.committed

    def term(self) -> int:
        """The current term (the synced one while Raft has not started)."""
        return self.node.raft.term if self.node is not None else self.durable_term()

    def _snapshot_status(self) -> SnapshotStatus:
        catalog = self.records.snapshots
        newest = catalog.newest()
        age_ms = 0
        if newest is not None and newest.created_at_ms:
            age_ms = max(0, int(time.time() * 1000) - newest.created_at_ms)
        return SnapshotStatus(
            newest_snapshot=newest,
            newest_snapshot_age_ms=age_ms,
            snapshots_durable=len(catalog.entries),
            snapshots_missing=len(self.snapshots.missing()),
            trim_keep_entries=self.config.trim_keep_entries,
            trim_keep_seconds=int(self.config.trim_keep_seconds),
            auto_trim_before_index=self.auto_trim_before,
        )

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
            role = "failed" if self.fatal is not None else st.role.name.lower()
            raft_first, raft_last, raft_commit = st.first_index, st.last_index, st.commit_index
            peers = {
                peer: PeerInfo(
                    address=self.addresses.get(peer, ("", ""))[0],
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
            snapshots=self._snapshot_status(),
        )
