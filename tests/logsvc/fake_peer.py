"""A log node's peer written in the test: a real peer port (framed Raft streams, and the gRPC
Peer service behind it, logsvc/peerwire.py) that records what it gets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc

from logsvc.peerwire import PeerPort
from logsvc.raft import Message
from logsvc.transport import message_from_proto
from logsvc.v1 import log_pb2, peer_pb2, peer_pb2_grpc


@dataclass
class FakePeer(peer_pb2_grpc.PeerServicer):
    """A peer that answers Probe with `term` (or refuses while `term` is None)."""

    term: int | None
    received: list[Message] = field(default_factory=list)
    server: grpc.aio.Server | None = None
    peer_port: PeerPort | None = None
    port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> None:
        self.server = grpc.aio.server()
        peer_pb2_grpc.add_PeerServicer_to_server(self, self.server)
        behind = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.peer_port = PeerPort(self.receive, f"127.0.0.1:{behind}", None, 64 << 20)
        self.port = await self.peer_port.start(f"127.0.0.1:{port}")

    async def stop(self) -> None:
        if self.peer_port is not None:
            await self.peer_port.stop()
        if self.server is not None:
            await self.server.stop(None)

    def receive(self, batch: peer_pb2.MessageBatch, names: frozenset[str] | None) -> None:
        self.received.extend(message_from_proto(pb) for pb in batch.messages)

    async def Probe(
        self,
        request: peer_pb2.ProbeRequest,
        context: grpc.aio.ServicerContext[peer_pb2.ProbeRequest, peer_pb2.ProbeResponse],
    ) -> peer_pb2.ProbeResponse:
        if self.term is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "not yet")
        return peer_pb2.ProbeResponse(term=self.term or 0)

    async def Deliver(
        self,
        request_iterator: AsyncIterator[peer_pb2.MessageBatch],
        context: grpc.aio.ServicerContext[peer_pb2.MessageBatch, peer_pb2.DeliverAck],
    ) -> peer_pb2.DeliverAck:
        async for batch in request_iterator:
            self.received.extend(message_from_proto(pb) for pb in batch.messages)
        return peer_pb2.DeliverAck()

    async def PushSnapshot(
        self,
        request_iterator: AsyncIterator[peer_pb2.SnapshotTransfer],
        context: grpc.aio.ServicerContext[peer_pb2.SnapshotTransfer, peer_pb2.PushSnapshotResponse],
    ) -> peer_pb2.PushSnapshotResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "a fake peer stores no snapshot")

    async def FetchSnapshot(
        self,
        request: peer_pb2.FetchSnapshotRequest,
        context: grpc.aio.ServicerContext[peer_pb2.FetchSnapshotRequest, log_pb2.SnapshotChunk],
    ) -> AsyncIterator[log_pb2.SnapshotChunk]:
        nothing: list[log_pb2.SnapshotChunk] = []
        for chunk in nothing:
            yield chunk
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "a fake peer stores no snapshot")
