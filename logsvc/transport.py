"""Peer transport: Raft messages over one gRPC client stream per peer, batched.

Each `PeerSender` owns a bounded queue and a task that keeps a `Peer.Deliver` stream open,
writing everything queued as one `MessageBatch`. A broken stream is reported to the core
(`report_unreachable`) and reopened with exponential backoff. Raft tolerates lost
messages, so a full queue drops the newest message and reports it the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable

import grpc

from logsvc.raft import Entry, EntryType, Message, MessageType, SnapshotMeta
from logsvc.v1 import peer_pb2, peer_pb2_grpc

log = logging.getLogger("logsvc.transport")

BACKOFF_S_MIN = 0.05
BACKOFF_S_MAX = 1.0
QUEUE_MESSAGES_MAX = 4096
# Reconnect fast to a restarted peer (gRPC's default backoff grows to two minutes).
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
]
BATCH_MESSAGES_MAX = 256
# A node that stops answering without closing its connections (stopped, hung, its host
# gone from the network) is found by HTTP/2 keepalive: a ping after KEEPALIVE_TIME_MS of
# silence, the connection given up KEEPALIVE_TIMEOUT_MS later, so a Read stream that would
# wait forever fails instead, and LogClient goes on from another node. Pings go on while a
# call is open even if the client sends nothing (a follow Read sends nothing after asking).
KEEPALIVE_TIME_MS = 1000
KEEPALIVE_TIMEOUT_MS = 2000
CLIENT_CHANNEL_OPTIONS = [
    *CHANNEL_OPTIONS,
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    # gRPC 1.85 times a keepalive ping out by this one (default: 60 s), not the one above.
    ("grpc.http2.ping_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.http2.max_pings_without_data", 0),
]
# What a node accepts from such clients: gRPC's default answers a ping more often than every
# five minutes with GOAWAY ("too_many_pings") after two strikes.
SERVER_KEEPALIVE_OPTIONS = [
    ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_TIME_MS // 2),
    ("grpc.http2.max_ping_strikes", 0),
]


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
    return pb


def message_from_proto(pb: peer_pb2.RaftMessage) -> Message:
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
            SnapshotMeta(index=pb.snapshot_index, term=pb.snapshot_term)
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
    ) -> None:
        self.cluster_id = cluster_id
        self.self_id = self_id
        self.peer_id = peer_id
        self.address = address
        self.on_unreachable = on_unreachable
        self._queue: deque[Message] = deque()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"peer-sender-{self.peer_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def send(self, message: Message) -> None:
        if not self.connected:
            # Nobody to talk to: Raft retries by itself once the stream is back.
            self.dropped += 1
            return
        if len(self._queue) >= QUEUE_MESSAGES_MAX:
            self.dropped += 1
            self.on_unreachable(self.peer_id)
            return
        self._queue.append(message)
        self._ready.set()

    async def _batches(self) -> AsyncIterator[peer_pb2.MessageBatch]:
        while True:
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()
            batch = peer_pb2.MessageBatch(cluster_id=self.cluster_id, from_id=self.self_id)
            n = min(len(self._queue), BATCH_MESSAGES_MAX)
            batch.messages.extend(message_to_proto(self._queue.popleft()) for _ in range(n))
            yield batch

    async def _run(self) -> None:
        backoff = BACKOFF_S_MIN
        while True:
            try:
                async with grpc.aio.insecure_channel(
                    self.address, options=CHANNEL_OPTIONS
                ) as channel:
                    await channel.channel_ready()
                    stub = peer_pb2_grpc.PeerStub(channel)
                    self.connected = True
                    backoff = BACKOFF_S_MIN
                    await stub.Deliver(self._batches())
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                if self.connected:
                    log.info("stream to %s (%s) broke: %s", self.peer_id, self.address, exc.code())
            self.connected = False
            # Whatever was in flight may be lost: the leader probes this peer again.
            self._queue.clear()
            self.on_unreachable(self.peer_id)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_S_MAX)


class PeerServicer(peer_pb2_grpc.PeerServicer):
    """Receives batches from peers and steps them into the local node."""

    def __init__(self, cluster_id: str, self_id: str, deliver: Callable[[Message], None]) -> None:
        self.cluster_id = cluster_id
        self.self_id = self_id
        self.deliver = deliver

    async def Deliver(
        self,
        request_iterator: AsyncIterator[peer_pb2.MessageBatch],
        context: grpc.aio.ServicerContext[peer_pb2.MessageBatch, peer_pb2.DeliverAck],
    ) -> peer_pb2.DeliverAck:
        async for batch in request_iterator:
            if batch.cluster_id != self.cluster_id:
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"cluster id {batch.cluster_id!r} is not {self.cluster_id!r}",
                )
            for pb in batch.messages:
                if pb.to != self.self_id:
                    log.warning("dropping a message for %s delivered to %s", pb.to, self.self_id)
                    continue
                self.deliver(message_from_proto(pb))
        return peer_pb2.DeliverAck()
