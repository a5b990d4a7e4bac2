"""The peer port's framed Raft stream, and the gRPC Peer service behind the same port.

Raft messages between nodes travel as length-prefixed `MessageBatch` protobufs over one
plain asyncio stream per (sender, receiver) pair: no HTTP/2 framing, no gRPC completion
queue, no poller thread, one `transport.write` per batch on the sender and one parse per
batch on the receiver (docs/decisions/0006-peer-transport.md measures why).

The peer port keeps serving the gRPC Peer service (Probe, snapshot transfers, and Deliver
for tools and tests): `PeerPort` accepts every connection and looks at its first bytes.
A framed stream starts with MAGIC; anything else (an HTTP/2 preface, a TLS ClientHello) is
passed through, byte for byte, to the node's gRPC peer server listening on a loopback
port of its own, which does its own TLS and checks as before.

With TLS, a framed stream upgrades after MAGIC (the server answers READY, then both sides
run the handshake): mutual TLS with the same certificate, key and CA as the gRPC peer port,
the client checking that the server's certificate names the peer id, and the server
handing the names of the client's certificate to `on_batch`, which refuses a batch from a
node id the certificate does not name (PeerServicer.receive). A refusal is written back
as one frame (`REFUSED`: the status code's name and the reason) before the connection is
closed.

Frame: a 4-byte big-endian length, then that many bytes of a serialized MessageBatch.
Two lengths are not lengths: REFUSED_LENGTH (server to sender, above) and PING_LENGTH, a
bare 4-byte ping from the sender that the server answers with the same 4 bytes (a pong).

Liveness: a stopped (SIGSTOP), hung or vanished peer closes nothing, and the kernel keeps
taking bytes until its buffers fill, so a sender would wait forever. `watch_stream` pings
every PING_INTERVAL_S and drops the connection once nothing has been heard for
PONG_TIMEOUT_S, so a dead peer is noticed within PONG_TIMEOUT_S + PING_INTERVAL_S (2 s),
under the 3 s the gRPC channels' keepalive takes (logsvc/channels.py); the sender then
reconnects with its backoff and finds the peer when it is back. The receiving side needs no
pings of its own: a live sender pings every PING_INTERVAL_S, so a framed connection silent
for SENDER_SILENCE_S belongs to a sender that is stopped or gone, and the port closes it
(else every pause of a peer would leave one connection and its buffers behind for good).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import cast

from logsvc.auth import TLSFiles
from logsvc.errors import LogError
from logsvc.v1 import peer_pb2

log = logging.getLogger("logsvc.peerwire")

MAGIC = b"MLRAFT01"  # neither an HTTP/2 preface ("PRI * HTTP/2.0") nor TLS (0x16 ...)
READY = b"+"
REFUSED_LENGTH = 0xFFFFFFFF  # a frame from the server: an error, then the end
PING_LENGTH = 0xFFFFFFFE  # a header alone: a ping from the sender, echoed back as a pong
PING = PING_LENGTH.to_bytes(4, "big")
PING_INTERVAL_S = 0.5
PONG_TIMEOUT_S = 1.5
# A framed connection that has carried nothing (no batch, no ping) for this long is closed.
SENDER_SILENCE_S = 5.0
HEADER_BYTES = 4
FIRST_BYTES_TIMEOUT_S = 10.0
HANDSHAKE_TIMEOUT_S = 10.0
# The sender's write buffer above which it waits for the kernel to take the bytes.
WRITE_BUFFER_HIGH_BYTES = 4 << 20

# on_batch(batch, names): names of the verified peer certificate (None: plaintext). Raises
# LogError to refuse the batch, and with it the connection.
OnBatch = Callable[[peer_pb2.MessageBatch, "frozenset[str] | None"], None]


def server_ssl_context(tls: TLSFiles) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls.ca))
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_ssl_context(tls: TLSFiles) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca))
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    ctx.check_hostname = True  # the server's certificate must name the peer id
    return ctx


def certificate_names(transport: asyncio.BaseTransport) -> frozenset[str] | None:
    """The DNS and IP names and the common name of the peer's verified certificate; None
    on a plaintext connection."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert() or {}
    names = {str(value) for _, value in cert.get("subjectAltName", ())}
    for rdn in cert.get("subject", ()):
        names.update(str(value) for key, value in rdn if key == "commonName")
    return frozenset(names)


def encode_frame(batch: peer_pb2.MessageBatch) -> bytes:
    body = batch.SerializeToString()
    return len(body).to_bytes(HEADER_BYTES, "big") + body


class _Splice(asyncio.Protocol):
    """The loopback half of a passed-through connection: bytes back to the peer."""

    def __init__(self, outer: asyncio.Transport) -> None:
        self.outer = outer
        self.inner: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.outer.is_closing():
            if self.inner is not None:
                self.inner.close()
            return
        self.outer.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.outer.close()


class _PeerConnection(asyncio.Protocol):
    """One accepted connection on the peer port: a framed Raft stream or a pass-through."""

    def __init__(self, port: PeerPort) -> None:
        self.port = port
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.mode = "first"  # "first", "handshake", "frames", "splice", "closed"
        self.names: frozenset[str] | None = None
        self.inner: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.heard_at = 0.0  # loop time of the last bytes of a framed stream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they have its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.port.connections.add(self)
        self.timer = asyncio.get_running_loop().call_later(FIRST_BYTES_TIMEOUT_S, self.close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.mode = "closed"
        self.port.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        if self.inner is not None:
            self.inner.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.mode == "frames":
            self.heard_at = asyncio.get_running_loop().time()
            self.buffer += data
            self._frames()
        elif self.mode == "splice":
            if self.inner is not None:
                if self.inner.is_closing():
                    self.close()
                else:
                    self.inner.write(data)
            else:
                self.buffer += data
        elif self.mode == "first":
            self.buffer += data
            self._first()
        elif self.mode == "handshake":  # bytes before the TLS handshake: not our client
            self.close()

    def _first(self) -> None:
        n = min(len(self.buffer), len(MAGIC))
        if self.buffer[:n] != MAGIC[:n]:
            self.mode = "splice"
            asyncio.get_running_loop().create_task(self._splice())
            return
        if len(self.buffer) < len(MAGIC):
            return
        del self.buffer[: len(MAGIC)]
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.port.ssl_context is None:
            self._start_frames()
            self._frames()
            return
        if self.buffer:  # the client starts TLS only once READY is read
            self.close()
            return
        self.mode = "handshake"
        asyncio.get_running_loop().create_task(self._upgrade())

    async def _upgrade(self) -> None:
        assert self.transport is not None and self.port.ssl_context is not None
        loop = asyncio.get_running_loop()
        self.transport.write(READY)
        try:
            tls = await loop.start_tls(
                self.transport, self, self.port.ssl_context, server_side=True,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S,
            )  # fmt: skip
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
            log.info("a peer's TLS handshake on %s failed: %s", self.port.address, exc)
            self.close()
            return
        if tls is None:
            return
        self.transport = tls
        self.names = certificate_names(tls)
        self._start_frames()
        if self.buffer:
            self._frames()

    def _start_frames(self) -> None:
        self.mode = "frames"
        self.heard_at = asyncio.get_running_loop().time()
        self._check_silence()

    def _check_silence(self) -> None:
        """Close a framed stream whose sender has been silent for SENDER_SILENCE_S; else
        look again when that much time will have passed since it was last heard."""
        if self.mode != "frames":
            return
        loop = asyncio.get_running_loop()
        silent = loop.time() - self.heard_at
        if silent >= SENDER_SILENCE_S:
            log.info(
                "closed a peer stream on %s: its sender was silent for %.1fs",
                self.port.address, silent,
            )  # fmt: skip
            self.close()
            return
        self.timer = loop.call_later(SENDER_SILENCE_S - silent, self._check_silence)

    def _frames(self) -> None:
        buffer = self.buffer
        limit = self.port.frame_bytes_max
        at = 0
        try:
            while len(buffer) - at >= HEADER_BYTES:
                size = int.from_bytes(buffer[at : at + HEADER_BYTES], "big")
                if size == PING_LENGTH:
                    at += HEADER_BYTES
                    if self.transport is not None:
                        self.transport.write(PING)
                    continue
                if size > limit:
                    self._refuse("RESOURCE_EXHAUSTED", f"a frame of {size} bytes (limit {limit})")
                    return
                end = at + HEADER_BYTES + size
                if len(buffer) < end:
                    break
                try:
                    batch = peer_pb2.MessageBatch.FromString(bytes(buffer[at + HEADER_BYTES : end]))
                except Exception:  # protobuf's DecodeError
                    self._refuse("INVALID_ARGUMENT", "a frame that is not a MessageBatch")
                    return
                at = end
                self.port.on_batch(batch, self.names)
        except LogError as exc:
            self._refuse(exc.code.name, exc.message)
            return
        finally:
            if at:
                del buffer[:at]

    def _refuse(self, code: str, message: str) -> None:
        """Tell the sender why, then close: nothing after the refused frame is stepped."""
        log.warning("refused a peer stream on %s: %s %s", self.port.address, code, message)
        self.mode = "closed"
        if self.transport is not None:
            text = f"{code}: {message}".encode()[:4096]
            self.transport.write(
                REFUSED_LENGTH.to_bytes(HEADER_BYTES, "big")
                + len(text).to_bytes(HEADER_BYTES, "big")
                + text
            )
            self.transport.close()

    async def _splice(self) -> None:
        """Pass the connection through to the gRPC peer server on its loopback port."""
        assert self.transport is not None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        loop = asyncio.get_running_loop()
        outer = self.transport
        try:
            host, _, port = self.port.grpc_address.rpartition(":")
            inner, _ = await loop.create_connection(lambda: _Splice(outer), host, int(port))
        except OSError as exc:
            log.warning("passing a peer connection to %s failed: %s", self.port.grpc_address, exc)
            outer.close()
            return
        if self.mode == "closed":
            inner.close()
            return
        self.inner = inner
        if self.buffer:
            inner.write(bytes(self.buffer))
            self.buffer.clear()


class PeerPort:
    """The peer port's listener: framed Raft streams to `on_batch`, the rest to gRPC."""

    def __init__(
        self,
        on_batch: OnBatch,
        grpc_address: str,
        ssl_context: ssl.SSLContext | None,
        frame_bytes_max: int,
    ) -> None:
        self.on_batch = on_batch
        self.grpc_address = grpc_address
        self.ssl_context = ssl_context
        self.frame_bytes_max = frame_bytes_max
        self.connections: set[_PeerConnection] = set()
        self.server: asyncio.Server | None = None
        self.address = ""

    async def start(self, address: str) -> int:
        host, _, port = address.rpartition(":")
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: _PeerConnection(self), host.strip("[]") or None, int(port)
        )
        bound = self.server.sockets[0].getsockname()[1]
        self.address = f"{host}:{bound}"
        return int(bound)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for connection in list(self.connections):
            connection.close()
        if self.server is not None:
            await self.server.wait_closed()


class StreamRefused(Exception):
    """The peer closed the stream, with its reason when it gave one."""


async def open_stream(
    address: str, peer_id: str, ssl_context: ssl.SSLContext | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A framed stream to a peer's port (mutual TLS when ssl_context is given, the peer's
    certificate checked against peer_id)."""
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    try:
        writer.write(MAGIC)
        if ssl_context is not None:
            ready = await asyncio.wait_for(reader.readexactly(len(READY)), HANDSHAKE_TIMEOUT_S)
            if ready != READY:
                raise StreamRefused(f"{address} does not speak the framed peer protocol")
            await writer.start_tls(
                ssl_context, server_hostname=peer_id, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S
            )
        transport = writer.transport
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH_BYTES)
    except BaseException:
        writer.close()
        raise
    return reader, writer


async def read_refusal(
    reader: asyncio.StreamReader, on_pong: Callable[[], None] | None = None
) -> str:
    """Wait until the peer ends the stream: its reason, if it wrote one. Pongs are passed
    to on_pong."""
    try:
        while True:
            header = await reader.readexactly(HEADER_BYTES)
            length = int.from_bytes(header, "big")
            if length == PING_LENGTH:
                if on_pong is not None:
                    on_pong()
                continue
            if length != REFUSED_LENGTH:
                return "the peer wrote a frame it should not"
            break
        size = int.from_bytes(await reader.readexactly(HEADER_BYTES), "big")
        return (await reader.readexactly(min(size, 4096))).decode(errors="replace")
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError) as exc:
        return f"the stream ended ({type(exc).__name__})"


async def watch_stream(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    interval_s: float = PING_INTERVAL_S,
    timeout_s: float = PONG_TIMEOUT_S,
) -> str:
    """Ping the peer every interval_s until it ends the stream (its reason), or until
    nothing has come back for timeout_s: then the connection is aborted (whatever waits to
    write on it wakes up) and the reason says so."""
    loop = asyncio.get_running_loop()
    heard = loop.time()

    def on_pong() -> None:
        nonlocal heard
        heard = loop.time()

    reading = asyncio.create_task(read_refusal(reader, on_pong))
    try:
        while True:
            await asyncio.wait({reading}, timeout=interval_s)
            if reading.done():
                return reading.result()
            silent = loop.time() - heard
            if silent > timeout_s:
                writer.transport.abort()
                return f"no answer to pings for {silent:.1f} s: the peer is stopped or gone"
            if writer.transport.is_closing():
                return "the connection was lost"
            writer.write(PING)
    finally:
        reading.cancel()
