"""The gRPC face of a node: the public Log service, the Peer service, health, reflection."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from logsvc.config import NodeConfig
from logsvc.errors import LogError, NotLeader, ResourceExhausted
from logsvc.metrics import serve_metrics
from logsvc.node import LogNode
from logsvc.peerwire import PeerPort, server_ssl_context
from logsvc.raft import Role
from logsvc.rpc import add_servicer
from logsvc.transport import SERVER_KEEPALIVE_OPTIONS, PeerServicer
from logsvc.v1 import log_pb2, log_pb2_grpc, peer_pb2

log = logging.getLogger("logsvc.server")

LOG_SERVICE = log_pb2.DESCRIPTOR.services_by_name["Log"].full_name
HEALTH_INTERVAL_S = 0.25
GRACE_S = 1.0
SWITCH_INTERVAL_S = 0.0005


def append_error(exc: BaseException) -> log_pb2.AppendError:
    """The AppendError of a stream append: what a unary Append would have failed with."""
    if not isinstance(exc, LogError):
        return log_pb2.AppendError(code=grpc.StatusCode.INTERNAL.value[0], message=str(exc))
    error = log_pb2.AppendError(code=exc.code.value[0], kind=exc.kind, message=exc.message)
    if isinstance(exc, NotLeader):
        error.leader_id = exc.leader_id
        error.leader_address = exc.leader_address
    return error


class LogServicer(log_pb2_grpc.LogServicer):
    def __init__(self, node: LogNode) -> None:
        self.node = node

    def header(self) -> log_pb2.ResponseHeader:
        leader, address = self.node.leader_hint()
        return log_pb2.ResponseHeader(
            cluster_id=self.node.config.cluster_id,
            node_id=self.node.id,
            term=self.node.term(),
            commit_index=self.node.records.last_index(),
            leader_id=leader,
            leader_address=address,
        )

    async def _abort(self, context: grpc.aio.ServicerContext[Any, Any], exc: LogError) -> NoReturn:
        context.set_trailing_metadata(tuple(exc.metadata()))
        await context.abort(exc.code, exc.message)
        raise AssertionError("unreachable")  # abort raises

    async def Append(
        self,
        request: log_pb2.AppendRequest,
        context: grpc.aio.ServicerContext[log_pb2.AppendRequest, log_pb2.AppendResponse],
    ) -> log_pb2.AppendResponse:
        if_last = request.if_last_index if request.HasField("if_last_index") else None
        try:
            first, last, duplicate = await self.node.append(
                list(request.records), request.producer_id, request.sequence, if_last
            )
        except LogError as exc:
            await self._abort(context, exc)
        return log_pb2.AppendResponse(
            header=self.header(), first_index=first, last_index=last, duplicate=duplicate
        )

    async def AppendStream(
        self,
        request_iterator: AsyncIterator[log_pb2.AppendStreamRequest],
        context: grpc.aio.ServicerContext[
            log_pb2.AppendStreamRequest, log_pb2.AppendStreamResponse
        ],
    ) -> AsyncIterator[log_pb2.AppendStreamResponse]:
        """Appends over one stream: proposed as they arrive, answered as they complete.

        What one stream may hold on the node is bounded by --stream-appends-max: appends in
        flight past it are answered RESOURCE_EXHAUSTED at once, and while that many answers
        wait unread (a client that writes and does not read), no more requests are read.
        """
        answers: asyncio.Queue[log_pb2.AppendStreamResponse | None] = asyncio.Queue()
        outstanding = 0
        limit = self.node.config.stream_appends_max
        room = asyncio.Event()  # set when answers are read again

        def appended(request_id: int, first: int, last: int, duplicate: bool) -> None:
            answers.put_nowait(
                log_pb2.AppendStreamResponse(
                    request_id=request_id,
                    appended=log_pb2.AppendResponse(
                        header=self.header(), first_index=first, last_index=last,
                        duplicate=duplicate,
                    ),
                )
            )  # fmt: skip

        def failed(request_id: int, exc: BaseException) -> None:
            answers.put_nowait(
                log_pb2.AppendStreamResponse(request_id=request_id, error=append_error(exc))
            )

        def completed(
            request_id: int, duplicate: bool, waiter: asyncio.Future[tuple[int, int]]
        ) -> None:
            nonlocal outstanding
            outstanding -= 1
            if waiter.cancelled():
                answers.put_nowait(None)  # nothing to say, but the loop below re-checks
                return
            exc = waiter.exception()
            if exc is not None:
                failed(request_id, exc)
            else:
                first, last = waiter.result()
                appended(request_id, first, last, duplicate)

        async def take_requests() -> None:
            nonlocal outstanding
            async for request in request_iterator:
                while answers.qsize() >= limit:
                    room.clear()
                    await room.wait()
                if outstanding >= limit:
                    failed(
                        request.request_id,
                        ResourceExhausted(
                            f"{outstanding} appends of this stream are in flight, the limit "
                            f"is {limit} (--stream-appends-max); nothing appended, send more "
                            "once some are answered"
                        ),
                    )
                    continue
                append = request.append
                if_last = append.if_last_index if append.HasField("if_last_index") else None
                try:
                    started = self.node.begin_append(
                        list(append.records), append.producer_id, append.sequence, if_last
                    )
                except LogError as exc:
                    failed(request.request_id, exc)
                    continue
                if isinstance(started, tuple):
                    appended(request.request_id, *started)
                    continue
                outstanding += 1
                waiter = self.node.watch(started.pending)
                waiter.add_done_callback(
                    functools.partial(completed, request.request_id, started.duplicate)
                )

        reader = asyncio.create_task(take_requests())
        # Done sending, or the request stream broke: wake the loop below to see it.
        reader.add_done_callback(lambda _: answers.put_nowait(None))
        try:
            while not (reader.done() and outstanding == 0 and answers.empty()):
                answer = await answers.get()
                if answers.qsize() < limit:
                    room.set()
                if answer is not None:
                    yield answer
            reader.result()  # a broken request stream ends the call with its error
        finally:
            reader.cancel()

    async def Read(
        self,
        request: log_pb2.ReadRequest,
        context: grpc.aio.ServicerContext[log_pb2.ReadRequest, log_pb2.ReadResponse],
    ) -> AsyncIterator[log_pb2.ReadResponse]:
        try:
            async for chunk in self.node.read(
                request.from_index, request.follow, request.batch_records_max
            ):
                yield log_pb2.ReadResponse(
                    header=self.header(),
                    records=[log_pb2.Record(index=i, payload=p) for i, p in chunk],
                )
        except LogError as exc:
            await self._abort(context, exc)

    async def ReadIndex(
        self,
        request: log_pb2.ReadIndexRequest,
        context: grpc.aio.ServicerContext[log_pb2.ReadIndexRequest, log_pb2.ReadIndexResponse],
    ) -> log_pb2.ReadIndexResponse:
        try:
            index = await self.node.read_index()
        except LogError as exc:
            await self._abort(context, exc)
        return log_pb2.ReadIndexResponse(header=self.header(), read_index=index)

    async def Status(
        self,
        request: log_pb2.StatusRequest,
        context: grpc.aio.ServicerContext[log_pb2.StatusRequest, log_pb2.StatusResponse],
    ) -> log_pb2.StatusResponse:
        st = self.node.status()
        snap = st.snapshots
        return log_pb2.StatusResponse(
            header=self.header(),
            role=st.role,
            zone=st.zone,
            first_index=st.first_index,
            last_index=st.last_index,
            commit_index=st.commit_index,
            raft_first_index=st.raft_first_index,
            raft_last_index=st.raft_last_index,
            raft_commit_index=st.raft_commit_index,
            raft_applied_index=st.raft_applied_index,
            peers=[
                log_pb2.PeerStatus(
                    id=peer,
                    address=info.address,
                    match_index=info.match_index,
                    next_index=info.next_index,
                    state=info.state,
                    messages_sent=info.messages_sent,
                )
                for peer, info in st.peers.items()
            ],
            newest_snapshot=None if snap.newest_snapshot is None else snap.newest_snapshot.info(),
            newest_snapshot_age_ms=snap.newest_snapshot_age_ms,
            snapshots_durable=snap.snapshots_durable,
            snapshots_missing=snap.snapshots_missing,
            trim_keep_entries=snap.trim_keep_entries,
            trim_keep_seconds=snap.trim_keep_seconds,
            auto_trim_before_index=snap.auto_trim_before_index,
        )

    async def Trim(
        self,
        request: log_pb2.TrimRequest,
        context: grpc.aio.ServicerContext[log_pb2.TrimRequest, log_pb2.TrimResponse],
    ) -> log_pb2.TrimResponse:
        try:
            first = await self.node.trim(request.before_index, request.force)
        except LogError as exc:
            await self._abort(context, exc)
        return log_pb2.TrimResponse(header=self.header(), first_index=first)

    def _members(self) -> log_pb2.MemberResponse:
        conf, rows = self.node.members()
        return log_pb2.MemberResponse(
            header=self.header(),
            conf_index=conf.index,
            members=[
                log_pb2.Member(
                    id=node_id,
                    address=address,
                    peer_address=peer,
                    voter=voter,
                    match_index=match,
                )
                for node_id, address, peer, voter, match in rows
            ],
        )

    async def MemberAdd(
        self,
        request: log_pb2.MemberAddRequest,
        context: grpc.aio.ServicerContext[log_pb2.MemberAddRequest, log_pb2.MemberResponse],
    ) -> log_pb2.MemberResponse:
        try:
            await self.node.member_add(request.id, request.address, request.peer_address)
        except LogError as exc:
            await self._abort(context, exc)
        return self._members()

    async def MemberPromote(
        self,
        request: log_pb2.MemberChangeRequest,
        context: grpc.aio.ServicerContext[log_pb2.MemberChangeRequest, log_pb2.MemberResponse],
    ) -> log_pb2.MemberResponse:
        try:
            await self.node.member_promote(request.id)
        except LogError as exc:
            await self._abort(context, exc)
        return self._members()

    async def MemberRemove(
        self,
        request: log_pb2.MemberChangeRequest,
        context: grpc.aio.ServicerContext[log_pb2.MemberChangeRequest, log_pb2.MemberResponse],
    ) -> log_pb2.MemberResponse:
        try:
            await self.node.member_remove(request.id)
        except LogError as exc:
            await self._abort(context, exc)
        return self._members()

    async def MemberList(
        self,
        request: log_pb2.MemberListRequest,
        context: grpc.aio.ServicerContext[log_pb2.MemberListRequest, log_pb2.MemberResponse],
    ) -> log_pb2.MemberResponse:
        return self._members()

    async def PutSnapshot(
        self,
        request_iterator: AsyncIterator[log_pb2.SnapshotChunk],
        context: grpc.aio.ServicerContext[log_pb2.SnapshotChunk, log_pb2.PutSnapshotResponse],
    ) -> log_pb2.PutSnapshotResponse:
        try:
            result = await self.node.snapshots.put(request_iterator)
        except LogError as exc:
            await self._abort(context, exc)
        return log_pb2.PutSnapshotResponse(
            header=self.header(),
            snapshot=result.entry.info(stored_here=True),
            stored_on=result.stored_on,
            duplicate=result.duplicate,
        )

    async def GetSnapshot(
        self,
        request: log_pb2.GetSnapshotRequest,
        context: grpc.aio.ServicerContext[log_pb2.GetSnapshotRequest, log_pb2.SnapshotChunk],
    ) -> AsyncIterator[log_pb2.SnapshotChunk]:
        try:
            async for chunk in self.node.snapshots.get(request.index, request.chunk_bytes_max):
                yield chunk
        except LogError as exc:
            await self._abort(context, exc)

    async def ListSnapshots(
        self,
        request: log_pb2.ListSnapshotsRequest,
        context: grpc.aio.ServicerContext[
            log_pb2.ListSnapshotsRequest, log_pb2.ListSnapshotsResponse
        ],
    ) -> log_pb2.ListSnapshotsResponse:
        return log_pb2.ListSnapshotsResponse(
            header=self.header(), snapshots=self.node.snapshots.list()
        )


async def _watch_health(node: LogNode, servicer: health.aio.HealthServicer) -> None:
    """SERVING once the node has caught up with the commit index it saw at start."""
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    while True:
        raft = node.raw().raft
        ok = node.fatal is None and (
            raft.role is Role.LEADER
            or (raft.leader is not None and node.records.applied_raft_index >= raft.log.committed)
        )
        status = serving if ok else not_serving
        for name in ("", LOG_SERVICE):
            await servicer.set(name, status)
        await asyncio.sleep(HEALTH_INTERVAL_S)


def _bind(
    server: grpc.aio.Server, flag: str, address: str, credentials: grpc.ServerCredentials | None
) -> None:
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {address} ({flag})")


async def serve(config: NodeConfig) -> None:
    """Run a node until SIGTERM or SIGINT, then shut down gracefully."""
    # The writer thread's fsync returns while the event loop may hold the GIL; a short
    # switch interval hands it over in well under a millisecond (default: 5 ms).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    node = LogNode(config)
    options = [
        # Larger requests are refused by gRPC before they are parsed (RESOURCE_EXHAUSTED).
        ("grpc.max_receive_message_length", config.message_bytes_max()),
        ("grpc.max_send_message_length", 64 << 20),
        *SERVER_KEEPALIVE_OPTIONS,
    ]
    auth = config.auth
    # The client port: the Log service (every call authorized when credentials are
    # configured), health and reflection. Never a Raft message.
    server = grpc.aio.server(options=options)
    # Not the generated add_*_to_server: these refuse malformed requests cleanly (rpc.py).
    add_servicer(
        server,
        log_pb2.DESCRIPTOR.services_by_name["Log"],
        LogServicer(node),
        guard=auth.authorize if auth.enabled else None,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (LOG_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    _bind(server, "--listen", config.listen, auth.client_credentials())
    # The peer port: Raft's framed streams (logsvc/peerwire.py) and the Peer service, mutual
    # TLS when credentials are configured. The Peer service's gRPC server listens on a
    # loopback port of its own, which the peer port passes other connections through to.
    peer_server: grpc.aio.Server | None = None
    peer_port: PeerPort | None = None
    peer_listen = config.peer_listen_address()
    if peer_listen:
        peer_server = grpc.aio.server(options=options)
        servicer = PeerServicer(
            config.cluster_id,
            config.id,
            node.deliver,
            durable_term=node.durable_term,
            peer_started_empty=node.peer_started_empty,
            peer_ids=node.known_ids,
            snapshots=node.snapshots,
            tls=auth.tls is not None,
        )
        add_servicer(peer_server, peer_pb2.DESCRIPTOR.services_by_name["Peer"], servicer)
        credentials = auth.peer_credentials()
        behind = (
            peer_server.add_insecure_port("127.0.0.1:0")
            if credentials is None
            else peer_server.add_secure_port("127.0.0.1:0", credentials)
        )
        if behind == 0:
            raise OSError("cannot listen on a loopback port for the Peer service")
        peer_port = PeerPort(
            servicer.receive,
            f"127.0.0.1:{behind}",
            server_ssl_context(auth.tls) if auth.tls is not None else None,
            config.message_bytes_max(),
        )
    # A plain health port for probes that speak no TLS (the kubelet's gRPC probe).
    health_server: grpc.aio.Server | None = None
    if config.health_listen:
        health_server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
        _bind(health_server, "--health-listen", config.health_listen, None)
    servers = [s for s in (server, peer_server, health_server) if s is not None]
    if auth.enabled:
        kinds = [
            k for k, on in (("certificates", auth.client_certs), ("tokens", auth.tokens)) if on
        ]
        log.info(
            "TLS on: peers speak mutual TLS, clients need %s (%d known)",
            " or ".join(kinds), len(auth.client_certs) + len(auth.tokens),
        )  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Serve before Raft starts: a peer with an empty data directory asks this node's
    # durable term (Peer.Probe) before it starts, and so may this node (LogNode.start).
    await node.open()
    metrics_server = None
    if config.metrics_listen:
        try:
            metrics_server = serve_metrics(config.metrics_listen, node)
        except OSError as exc:
            raise OSError(
                f"cannot listen on {config.metrics_listen} (--metrics-listen): {exc}"
            ) from exc
    # gRPC's health service says SERVING for "" until told otherwise: not ready until Raft
    # runs and the node has caught up (_watch_health).
    for name in ("", LOG_SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    for srv in servers:
        await srv.start()
    if peer_port is not None:
        try:
            await peer_port.start(peer_listen)
        except OSError as exc:
            raise OSError(f"cannot listen on {peer_listen} (--peer-listen): {exc}") from exc
    starting = asyncio.create_task(node.start(), name="node-start")
    stopping = asyncio.create_task(stop.wait(), name="stop")
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    watcher: asyncio.Task[None] | None = None
    if starting.done():
        starting.result()  # a failed start ends the process with its error
        watcher = asyncio.create_task(_watch_health(node, health_servicer))
        log.info("logsvc %s (zone %s) serving clients on %s, peers on %s",
                 config.id, config.zone, config.listen, peer_listen or "(none)")  # fmt: skip
        await stopping
    else:
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
    log.info("logsvc %s shutting down", config.id)
    if watcher is not None:
        watcher.cancel()
    await health_servicer.enter_graceful_shutdown()
    # Leadership first, so appends move on at once; then the node (failing what still
    # waits, ending tails and peer streams); then whatever calls remain.
    if node.node is not None:
        await node.hand_off()
    await node.stop()
    if peer_port is not None:
        await peer_port.stop()
    await asyncio.gather(*(srv.stop(GRACE_S) for srv in servers))
    if metrics_server is not None:
        await asyncio.to_thread(metrics_server.shutdown)
        metrics_server.server_close()
