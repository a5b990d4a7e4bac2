"""Peer transport: Raft messages over one framed stream per peer, batched.

Each `PeerSender` owns a bounded queue and a task that keeps a framed stream to the peer's
port open (logsvc/peerwire.py: length-prefixed `MessageBatch`es on an asyncio stream, mutual
TLS when credentials are configured), writing what is queued as batches. A broken stream is
reported to the core (`report_unreachable`) and reopened with exponential backoff. Raft
tolerates lost messages, so a full queue drops the newest message and reports it the same
way. (Until issue 18 the batches went on a gRPC `Peer.Deliver` stream; the receiving side
still serves that call, docs/decisions/0006-peer-transport.md.)

Two lanes: messages that carry entries or move a follower's log (appends, snapshot
boundaries, leadership hand-over) keep their order in one lane, and everything else
(heartbeats, votes, answers, read-index rounds) goes in the other, which every batch takes
first. A batch carries at most BATCH_BYTES_MAX of the first lane, so a heartbeat waits for
at most one such batch on the wire, never for a follower's whole catch-up. (Raft allows any
reordering; keeping appends in order among themselves only spares needless rejections.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

import grpc

from logsvc import peerwire
from logsvc.auth import PermissionDenied, Unauthenticated, peer_names, tls_options

# Re-exported: their home was here, and importers of them from here keep working.
from logsvc.channels import CHANNEL_OPTIONS as CHANNEL_OPTIONS
from logsvc.channels import CLIENT_CHANNEL_OPTIONS as CLIENT_CHANNEL_OPTIONS
from logsvc.channels import KEEPALIVE_TIME_MS as KEEPALIVE_TIME_MS
from logsvc.channels import KEEPALIVE_TIMEOUT_MS as KEEPALIVE_TIMEOUT_MS
from logsvc.channels import SERVER_KEEPALIVE_OPTIONS as SERVER_KEEPALIVE_OPTIONS
from logsvc.errors import FailedPrecondition, InvalidArgument, LogError
from logsvc.raft import ConfState, Entry, EntryType, Message, MessageType, SnapshotMeta
from logsvc.v1 import peer_pb2, peer_pb2_grpc

if TYPE_CHECKING:
    from logsvc.snapshots import SnapshotManager

log = logging.getLogger("logsvc.transport")

BACKOFF_S_MIN = 0.05
BACKOFF_S_MAX = 1.0
QUEUE_MESSAGES_MAX = 4096
# Bytes of entries per batch (at least one message): at most one Raft append message of
# append_bytes_max (4 MiB by default) in front of any heartbeat.
BATCH_BYTES_MAX = 4 << 20
# What a message weighs in a batch besides its entries' data.
MESSAGE_OVERHEAD_BYTES = 64
# Message types that go in order with the entries (the rest may overtake them).
LOG_MESSAGE_TYPES = frozenset({MessageType.APPEND, MessageType.SNAPSHOT, MessageType.TIMEOUT_NOW})
BATCH_MESSAGES_MAX = 256


def peer_channel(
    peer_id: str, address: str, credentials: grpc.ChannelCredentials | None
) -> grpc.aio.Channel:
    """A channel to a peer's peer port: mutual TLS when credentials are configured, with the
    peer's certificate checked against its node id (it must name the id as a DNS name), so
    a node of another cluster's CA, or one holding another node's certificate, is refused."""
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
    options = [*tls_options(CHANNEL_OPTIONS), ("grpc.ssl_target_name_override", peer_id)]
    return grpc.aio.secure_channel(address, credentials, options=options)


def message_to_proto(m: Message) -> peer_pb2.RaftMessage:
    pb = peer_pb2.RaftMessage(
        type=int(m.type),
        to=m.to,
        term=m.term,
        log_term=m.log_term,
        index=m.index,
        commit=m.commit,
        reject=m.reject,
        reject_hint=m.reject_hint,
        context=m.context,
    )
    setattr(pb, "from", m.frm)
    if m.entries:
        pb.entries.extend(
            peer_pb2.RaftEntry(term=e.term, index=e.index, type=int(e.type), data=e.data)
            for e in m.entries
        )
    if m.snapshot is not None:
        pb.has_snapshot = True
        pb.snapshot_index = m.snapshot.index
        pb.snapshot_term = m.snapshot.term
        conf = m.snapshot.conf
        if conf is not None:
            pb.has_conf = True
            pb.conf_voters.extend(conf.voters)
            pb.conf_learners.extend(conf.learners)
            pb.conf_index = conf.index
    return pb


def message_bytes(m: Message) -> int:
    """About what a message weighs on the wire (its entries' data and a fixed overhead)."""
    return MESSAGE_OVERHEAD_BYTES + sum(e.size_bytes() for e in m.entries)


def message_from_proto(pb: peer_pb2.RaftMessage) -> Message:
    """The core's Message; ValueError for a message type or entry type it does not know."""
    return Message(
        type=MessageType(pb.type),
        to=pb.to,
        frm=getattr(pb, "from"),
        term=pb.term,
        log_term=pb.log_term,
        index=pb.index,
        entries=tuple(
            Entry(term=e.term, index=e.index, data=e.data, type=EntryType(e.type))
            for e in pb.entries
        ),
        commit=pb.commit,
        reject=pb.reject,
        reject_hint=pb.reject_hint,
        context=pb.context,
        snapshot=(
            SnapshotMeta(
                index=pb.snapshot_index,
                term=pb.snapshot_term,
                conf=(
                    ConfState(tuple(pb.conf_voters), tuple(pb.conf_learners), pb.conf_index)
                    if pb.has_conf
                    else None
                ),
            )
            if pb.has_snapshot
            else None
        ),
    )


class PeerSender:
    def __init__(
        self,
        cluster_id: str,
        self_id: str,
        peer_id: str,
        address: str,
        on_unreachable: Callable[[str], None],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.ssl_context = ssl_context
        self.cluster_id = cluster_id
        self.self_id = self_id
        self.peer_id = peer_id
        self.address = address
        self.on_unreachable = on_unreachable
        self._queue: deque[Message] = deque()  # LOG_MESSAGE_TYPES, in order
        self._urgent: deque[Message] = deque()  # the others: sent before the queue
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._deferred: Message | None = None
        self._deferred_timer: asyncio.TimerHandle | None = None
        self.connected = False
        self.dropped = 0
        self.sent = 0  # messages handed to the stream

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"peer-sender-{self.peer_id}")

    async def stop(self) -> None:
        if self._deferred_timer is not None:
            self._deferred_timer.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def send(self, message: Message) -> None:
        if message.type is MessageType.APPEND and self._deferred_timer is not None:
            # Every append carries the leader's commit index: a deferred one is superseded,
            # and the next deferral gets a whole hold of its own.
            self._deferred_timer.cancel()
            self._deferred_timer = None
            self._deferred = None
        if not self.connected:
            # Nobody to talk to: Raft retries by itself once the stream is back.
            self.dropped += 1
            return
        lane = self._queue if message.type in LOG_MESSAGE_TYPES else self._urgent
        if len(lane) >= QUEUE_MESSAGES_MAX:
            self.dropped += 1
            self.on_unreachable(self.peer_id)
            return
        lane.append(message)
        self._ready.set()

    def defer(self, message: Message, hold_s: float) -> None:
        """Send `message` (an append that only carries a commit index) after `hold_s`,
        unless another append to this peer goes first and so carries a commit index as new.

        With one append at a time, the next one usually comes within the hold: this saves a
        message and its answer on both nodes per append. The first deferral sets the time;
        a later one replaces the message (its commit index is newer), not the time, so no
        commit index waits longer than the hold.
        """
        self._deferred = message
        if self._deferred_timer is None:
            loop = asyncio.get_running_loop()
            self._deferred_timer = loop.call_later(hold_s, self._send_deferred)

    def _send_deferred(self) -> None:
        self._deferred_timer = None
        message, self._deferred = self._deferred, None
        if message is not None:
            self.send(message)

    def take_batch(self) -> list[Message]:
        """The next batch: the urgent lane first, then log messages up to BATCH_BYTES_MAX
        (at least one, whatever its size), BATCH_MESSAGES_MAX messages in all."""
        urgent, queue = self._urgent, self._queue
        out = [urgent.popleft() for _ in range(min(len(urgent), BATCH_MESSAGES_MAX))]
        budget = BATCH_BYTES_MAX
        while queue and len(out) < BATCH_MESSAGES_MAX:
            size = message_bytes(queue[0])
            if size > budget and budget < BATCH_BYTES_MAX:
                break
            budget -= size
            out.append(queue.popleft())
        return out

    def _next_frame(self) -> bytes:
        batch = peer_pb2.MessageBatch(cluster_id=self.cluster_id, from_id=self.self_id)
        messages = self.take_batch()
        batch.messages.extend(message_to_proto(m) for m in messages)
        self.sent += len(messages)
        return peerwire.encode_frame(batch)

    async def _stream(self, writer: asyncio.StreamWriter, ended: asyncio.Task[str]) -> str:
        """Write batches as they are queued until the peer ends the stream: its reason."""
        ready = self._ready
        transport = writer.transport
        while not ended.done():
            if transport.is_closing():  # lost: the reader has not noticed yet
                return "the connection was lost"
            if not self._queue and not self._urgent:
                ready.clear()
                await ready.wait()
                continue
            writer.write(self._next_frame())
            if writer.transport.get_write_buffer_size() > peerwire.WRITE_BUFFER_HIGH_BYTES:
                await writer.drain()
        return ended.result()

    async def _run(self) -> None:
        backoff = BACKOFF_S_MIN
        while True:
            writer: asyncio.StreamWriter | None = None
            ended: asyncio.Task[str] | None = None
            try:
                reader, writer = await peerwire.open_stream(
                    self.address, self.peer_id, self.ssl_context
                )
                ended = asyncio.create_task(peerwire.watch_stream(reader, writer))
                ended.add_done_callback(lambda _: self._ready.set())
                self.connected = True
                backoff = BACKOFF_S_MIN
                why = await self._stream(writer, ended)
                log.info("stream to %s (%s) ended: %s", self.peer_id, self.address, why)
            except asyncio.CancelledError:
                raise
            except (OSError, ssl.SSLError, TimeoutError, peerwire.StreamRefused) as exc:
                if self.connected:
                    log.info("stream to %s (%s) broke: %s", self.peer_id, self.address, exc)
            except Exception:  # never let the sender die: the peer would be cut off for good
                log.exception("stream to %s (%s) failed", self.peer_id, self.address)
            finally:
                if ended is not None:
                    ended.cancel()
                if writer is not None:
                    writer.close()
            self.connected = False
            # Whatever was in flight may be lost: the leader probes this peer again.
            self._queue.clear()
            self._urgent.clear()
            self.on_unreachable(self.peer_id)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_S_MAX)


PROBE_RETRY_S = 0.05
PROBE_TIMEOUT_S = 1.0
PROBE_WAITING_LOG_S = 5.0


async def probe_terms(
    cluster_id: str,
    self_id: str,
    peers: Mapping[str, str],
    credentials: grpc.ChannelCredentials | None = None,
) -> dict[str, int]:
    """Every peer's durable term (Peer.Probe), asking again until each has answered.

    Waits as long as it takes: the caller must not go on without every answer (see
    LogNode.start). A peer of another cluster, or one that does not serve Probe, is asked
    again and again, with an error in the log.
    """
    request = peer_pb2.ProbeRequest(cluster_id=cluster_id, from_id=self_id)
    terms: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    report_at = loop.time() + PROBE_WAITING_LOG_S
    channels = {
        peer_id: peer_channel(peer_id, address, credentials) for peer_id, address in peers.items()
    }
    try:
        while len(terms) < len(peers):
            for peer_id, channel in channels.items():
                if peer_id in terms:
                    continue
                try:
                    response = await peer_pb2_grpc.PeerStub(channel).Probe(
                        request, timeout=PROBE_TIMEOUT_S
                    )
                except grpc.aio.AioRpcError as exc:
                    if exc.code() not in (
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                    ):
                        log.error("probing %s (%s): %s", peer_id, peers[peer_id], exc.details())
                    continue
                terms[peer_id] = response.term
            if len(terms) < len(peers):
                if loop.time() >= report_at:
                    missing = sorted(set(peers) - set(terms))
                    log.warning(
                        "%s has an empty data directory and waits for every peer's term; "
                        "no answer yet from %s",
                        self_id, ", ".join(missing),
                    )  # fmt: skip
                    report_at = loop.time() + PROBE_WAITING_LOG_S
                await asyncio.sleep(PROBE_RETRY_S)
    finally:
        for channel in channels.values():
            await channel.close()
    return terms


class PeerServicer(peer_pb2_grpc.PeerServicer):
    """Receives batches from peers and steps them into the local node; answers probes."""

    def __init__(
        self,
        cluster_id: str,
        self_id: str,
        deliver: Callable[[Message], None],
        durable_term: Callable[[], int] = lambda: 0,
        peer_started_empty: Callable[[str], None] = lambda peer_id: None,
        peer_ids: Collection[str] | None = None,
        snapshots: SnapshotManager | None = None,
        tls: bool = False,
    ) -> None:
        # With TLS, each call's certificate (verified against the cluster's CA by the
        # handshake) must name the node id the call claims to come from.
        self.tls = tls
        self.cluster_id = cluster_id
        self.self_id = self_id
        # Whom messages may come from (None: anyone); never this node itself.
        # A live collection: the node adds the members that join (membership changes).
        self.peer_ids = peer_ids
        self.deliver = deliver
        self.durable_term = durable_term
        self.peer_started_empty = peer_started_empty
        self.snapshots = snapshots

    async def _check_cluster(
        self, cluster_id: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        """A peer of another cluster (a misconfigured address) is refused, never stepped."""
        if cluster_id != self.cluster_id:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"cluster id {cluster_id!r} is not {self.cluster_id!r}",
            )

    async def _check_sender(
        self, from_id: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        """The sender must be a peer (not this node) and, with TLS, hold that peer's
        certificate; anything else is refused before a byte of it is stepped."""
        self._check_names(from_id, peer_names(context) if self.tls else None)

    def _check_names(self, from_id: str, names: frozenset[str] | None) -> None:
        if self.peer_ids is not None and (from_id == self.self_id or from_id not in self.peer_ids):
            raise InvalidArgument(f"{from_id!r} is not a peer of {self.self_id}")
        if not self.tls:
            return
        if names is None:
            raise Unauthenticated("this peer port requires mutual TLS")
        if from_id not in names:
            raise PermissionDenied(
                f"a peer certificate for {', '.join(sorted(names)) or 'no name'} may not speak "
                f"for {from_id!r}: a node's certificate must name its node id"
            )

    async def Probe(
        self,
        request: peer_pb2.ProbeRequest,
        context: grpc.aio.ServicerContext[peer_pb2.ProbeRequest, peer_pb2.ProbeResponse],
    ) -> peer_pb2.ProbeResponse:
        await self._check_cluster(request.cluster_id, context)
        await self._check_sender(request.from_id, context)
        # Only a node with an empty data directory probes: whatever this node (if it leads)
        # knew of that peer's log is gone. Before the answer, so before the peer starts.
        self.peer_started_empty(request.from_id)
        return peer_pb2.ProbeResponse(term=self.durable_term())

    def receive(self, batch: peer_pb2.MessageBatch, names: frozenset[str] | None) -> None:
        """Check a batch and step its messages (all or none); raises the LogError that
        refuses it. `names`: those of the sender's verified certificate (None: plaintext)."""
        if batch.cluster_id != self.cluster_id:
            raise FailedPrecondition(f"cluster id {batch.cluster_id!r} is not {self.cluster_id!r}")
        self._check_names(batch.from_id, names)
        messages: list[Message] = []
        for pb in batch.messages:
            if pb.to != self.self_id:
                log.warning("dropping a message for %s delivered to %s", pb.to, self.self_id)
                continue
            if getattr(pb, "from") != batch.from_id:
                raise InvalidArgument(
                    f"a message from {getattr(pb, 'from')!r} in a batch from {batch.from_id!r}"
                )
            try:
                messages.append(message_from_proto(pb))
            except ValueError as exc:
                raise InvalidArgument(f"a message the node cannot read: {exc}") from None
        # All or nothing: a batch with one bad message steps none of its messages.
        for message in messages:
            self.deliver(message)

    async def Deliver(
        self,
        request_iterator: AsyncIterator[peer_pb2.MessageBatch],
        context: grpc.aio.ServicerContext[peer_pb2.MessageBatch, peer_pb2.DeliverAck],
    ) -> peer_pb2.DeliverAck:
        """The gRPC form of the framed stream (for tools; the nodes send framed)."""
        names = peer_names(context) if self.tls else None
        async for batch in request_iterator:
            await self._check_cluster(batch.cluster_id, context)
            self.receive(batch, names)
        return peer_pb2.DeliverAck()

    async def PushSnapshot(
        self,
        request_iterator: AsyncIterator[peer_pb2.SnapshotTransfer],
        context: grpc.aio.ServicerContext[peer_pb2.SnapshotTransfer, peer_pb2.PushSnapshotResponse],
    ) -> peer_pb2.PushSnapshotResponse:
        if self.snapshots is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "no snapshot store here")
        assert self.snapshots is not None

        async def checked() -> AsyncIterator[peer_pb2.SnapshotTransfer]:
            async for transfer in request_iterator:
                await self._check_cluster(transfer.cluster_id, context)
                await self._check_sender(transfer.from_id, context)
                yield transfer

        try:
            await self.snapshots.receive_push(checked())
        except LogError as exc:
            await context.abort(exc.code, exc.message)
        return peer_pb2.PushSnapshotResponse()

    async def FetchSnapshot(
        self,
        request: peer_pb2.FetchSnapshotRequest,
        context: grpc.aio.ServicerContext[peer_pb2.FetchSnapshotRequest, Any],
    ) -> AsyncIterator[Any]:
        if self.snapshots is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "no snapshot store here")
        assert self.snapshots is not None
        await self._check_cluster(request.cluster_id, context)
        await self._check_sender(request.from_id, context)
        try:
            async for chunk in self.snapshots.serve_fetch(request):
                yield chunk
        except LogError as exc:
            await context.abort(exc.code, exc.message)
