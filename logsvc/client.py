"""An asyncio client for logsvc: finds the leader, retries safely, tails with reconnect.

    async with LogClient(["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]) as log:
        result = await log.append([b"hello"])          # -> AppendResult(first, last, dup)
        async for index, payload in log.read(1, follow=True):
            ...

Every `append` gets the next sequence of this client's producer id; retries after a timeout,
a broken connection or a leader change reuse it, so nothing is appended twice.

Appends travel over one open `AppendStream` per node (concurrent appends share it, matched by
request id), which costs the node far less than a unary call each; a node that does not serve
AppendStream (UNIMPLEMENTED) is sent unary `Append` calls instead.

Over 500 lines: every call of the Log service from one client, which share the channels,
the leader hint and the error mapping; the snapshot calls at the end are thin wrappers.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

import grpc

from logsvc.auth import ClientCredentials, client_channel
from logsvc.channels import CLIENT_CHANNEL_OPTIONS
from logsvc.errors import (
    ERROR_KIND_KEY,
    FIRST_INDEX_KEY,
    LEADER_ADDRESS_KEY,
    ErrorKind,
    NotAppended,
    NotLeader,
    OutcomeUnknown,
    kind_from_name,
    kind_name,
)
from logsvc.snapshots import file_sha256
from logsvc.v1 import log_pb2, log_pb2_grpc

# Appends larger than this (encoded) go as unary calls: the node's default limit is 4 MiB of
# records per append, and a request past the node's gRPC message limit ends the whole stream
# it travels on (every append on it would be retried); a unary call fails alone and at once.
STREAM_REQUEST_BYTES_MAX = 4 << 20
RETRY_S_MIN = 0.02
# read_index: how long a node may take before the next is asked too (a ReadIndex is one
# heartbeat round on a healthy leader); and after how long a node it left is asked first again.
READ_INDEX_TRY_S = 0.5
READ_INDEX_RETURN_S = 10.0
RETRY_S_MAX = 0.5
STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}
# Codes after which the same append may be retried (with its sequence) on any node.
RETRY_CODES = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,
)


# An AppendStream that ends with one of these failed as a whole, before any append on it.
FINAL_STREAM_CODES = (
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
)


@dataclass(frozen=True, slots=True)
class AppendResult:
    first_index: int
    last_index: int
    duplicate: bool


_NO_KIND: Final = log_pb2.ERROR_KIND_UNSPECIFIED


class LogClientError(Exception):
    def __init__(
        self,
        message: str,
        code: grpc.StatusCode | None = None,
        kind: ErrorKind = _NO_KIND,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.kind = kind


class AppendOutcomeUnknown(LogClientError):
    """Gave up before learning whether the append landed (retry with the same sequence)."""


class TrimmedError(LogClientError):
    def __init__(self, message: str, first_index: int) -> None:
        super().__init__(message, grpc.StatusCode.OUT_OF_RANGE)
        self.first_index = first_index


@dataclass(frozen=True, slots=True)
class _Refused:
    """One attempt's failure, from a unary call's status or an AppendStream's AppendError."""

    code: grpc.StatusCode
    kind: ErrorKind
    details: str
    leader_address: str = ""


class _AppendSession:
    """One open AppendStream to one node: appends are written as they come, from any task,
    and each waits for the answer carrying its request id."""

    def __init__(self, stub: log_pb2_grpc.LogAsyncStub) -> None:
        self._call = stub.AppendStream()
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[log_pb2.AppendStreamResponse]] = {}
        self._write_lock = asyncio.Lock()  # one write at a time on a grpc-aio call
        self.broken: _Refused | None = None
        self._reader = asyncio.create_task(self._read_answers(), name="append-stream-reader")

    async def append(self, request: log_pb2.AppendRequest) -> log_pb2.AppendStreamResponse:
        """The node's answer to one append; raises _AttemptFailed if the stream fails first
        (then the append's outcome is unknown)."""
        if self.broken is not None:
            raise _AttemptFailed(self.broken)
        request_id = next(self._ids)
        answer: asyncio.Future[log_pb2.AppendStreamResponse] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting[request_id] = answer
        try:
            async with self._write_lock:
                await self._call.write(
                    log_pb2.AppendStreamRequest(request_id=request_id, append=request)
                )
            return await answer
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            # The stream failed under this write (a dead node's stream fails writes with
            # INTERNAL or UNAVAILABLE): whatever the reader saw says more, if it saw it.
            self._break(_stream_failure(exc))
            assert self.broken is not None
            raise _AttemptFailed(self.broken) from exc
        finally:
            self._waiting.pop(request_id, None)
            if answer.done() and not answer.cancelled():
                answer.exception()  # retrieved: an answer nobody awaits is not an error

    async def _read_answers(self) -> None:
        try:
            while True:
                answer = await self._call.read()
                if answer is grpc.aio.EOF:
                    self._break(
                        _Refused(grpc.StatusCode.UNAVAILABLE, _NO_KIND, "the node ended the stream")
                    )
                    return
                assert isinstance(answer, log_pb2.AppendStreamResponse)
                waiter = self._waiting.pop(answer.request_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(answer)
        except grpc.aio.AioRpcError as exc:
            self._break(_stream_failure(exc))

    def _break(self, why: _Refused) -> None:
        """Fail every append waiting on this stream (once: the first reason sticks)."""
        if self.broken is None:
            self.broken = why
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(_AttemptFailed(self.broken))
        self._waiting.clear()

    def close(self) -> None:
        self._break(_Refused(grpc.StatusCode.CANCELLED, _NO_KIND, "the append stream was closed"))
        self._reader.cancel()
        self._call.cancel()


class _AttemptFailed(Exception):
    def __init__(self, refused: _Refused) -> None:
        super().__init__(refused.details)
        self.refused = refused


def _stream_failure(exc: grpc.aio.AioRpcError | asyncio.InvalidStateError) -> _Refused:
    """Why an AppendStream failed as a whole. Its appends' outcome is unknown, whatever the
    code (a killed node's stream can fail with INTERNAL), so it is retried as UNAVAILABLE;
    only UNIMPLEMENTED (a node without AppendStream) is kept, for the unary fallback, and
    UNAUTHENTICATED and PERMISSION_DENIED, which a node answers before it reads a request
    of the stream (nothing was appended, and a retry would be refused the same way)."""
    if isinstance(exc, grpc.aio.AioRpcError):
        if exc.code() in FINAL_STREAM_CODES:
            return _refused(exc)
        details = f"the append stream failed: {exc.code().name} {exc.details()}"
    else:
        details = f"the append stream had ended: {exc}"
    return _Refused(grpc.StatusCode.UNAVAILABLE, _NO_KIND, details)


def _refused(exc: grpc.aio.AioRpcError) -> _Refused:
    meta = _metadata(exc)
    return _Refused(
        exc.code(),
        kind_from_name(meta.get(ERROR_KIND_KEY, "")),
        exc.details() or "",
        meta.get(LEADER_ADDRESS_KEY, ""),
    )


def _metadata(exc: grpc.aio.AioRpcError) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in exc.trailing_metadata() or ():
        out[key] = value if isinstance(value, str) else value.decode()
    return out


class LogClient:
    def __init__(
        self,
        addresses: Sequence[str],
        producer_id: str | None = None,
        timeout_s: float = 30.0,
        attempt_timeout_s: float = 3.0,
        credentials: ClientCredentials | None = None,
    ) -> None:
        if not addresses:
            raise ValueError("at least one address is needed")
        self.addresses = list(addresses)
        # TLS, a client certificate, a token (logsvc/auth.py); None: plaintext, no identity.
        self.credentials = credentials
        self.producer_id = producer_id if producer_id is not None else uuid.uuid4().hex
        self.timeout_s = timeout_s
        self.attempt_timeout_s = attempt_timeout_s
        self._sequence = itertools.count(1)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, log_pb2_grpc.LogAsyncStub] = {}
        self._leader: str | None = None
        self._rotation = itertools.cycle(range(1 << 30))
        self._sessions: dict[str, _AppendSession] = {}
        self._unary_only: set[str] = set()  # nodes that answered AppendStream UNIMPLEMENTED
        # read_index: the node that answered last, and until when a node that failed is
        # not asked first.
        self._read_index_from: str | None = None
        self._read_index_avoid: dict[str, float] = {}
        self.read_from = ""  # the node of the Read stream open last (read)

    async def __aenter__(self) -> LogClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._stubs.clear()

    def stub(self, address: str) -> log_pb2_grpc.LogAsyncStub:
        stub = self._stubs.get(address)
        if stub is None:
            channel = client_channel(address, self.credentials, CLIENT_CHANNEL_OPTIONS)
            self._channels[address] = channel
            # A stub builds a callable per method: make it once per channel, not per call.
            stub = self._stubs[address] = log_pb2_grpc.LogStub(channel)
        return stub

    def _next_address(self) -> str:
        if self._leader is not None:
            return self._leader
        return self.addresses[next(self._rotation) % len(self.addresses)]

    def _forget_leader(self) -> None:
        self._leader = None

    async def append(
        self,
        records: Sequence[bytes],
        if_last_index: int | None = None,
        timeout_s: float | None = None,
    ) -> AppendResult:
        """Append records, retried (with one sequence) until confirmed or `timeout_s` (by
        default the client's) has passed: then AppendOutcomeUnknown."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        for i, record in enumerate(records):
            if not record:  # an empty record means nothing to any reader: refused here
                raise LogClientError(
                    f"record {i} of the append is empty; nothing was appended",
                    grpc.StatusCode.INVALID_ARGUMENT,
                )
        request = log_pb2.AppendRequest(
            records=list(records), producer_id=self.producer_id, sequence=next(self._sequence)
        )
        if if_last_index is not None:
            request.if_last_index = if_last_index
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        delay = RETRY_S_MIN
        last_error = "no attempt made"
        while (remaining := deadline - loop.time()) > 0:
            address = self._next_address()
            try:
                async with asyncio.timeout(min(remaining, self.attempt_timeout_s)):
                    response = await self._attempt(address, request)
            except _AttemptFailed as exc:
                refused = exc.refused
            except TimeoutError:
                # The append may still be in flight there: the retry keeps its sequence.
                self._drop_session(address)
                refused = _Refused(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    _NO_KIND,
                    "no answer in time",
                )
            else:
                self._leader = address
                return AppendResult(response.first_index, response.last_index, response.duplicate)
            last_error = (
                f"{address}: {refused.code.name} {kind_name(refused.kind)} {refused.details}"
            )
            if refused.kind == NotLeader.kind:
                self._leader = refused.leader_address or None
                if refused.leader_address:
                    continue  # go straight to the leader
            elif refused.kind in (NotAppended.kind, OutcomeUnknown.kind) or (
                refused.code in RETRY_CODES
            ):
                self._forget_leader()
            else:
                raise LogClientError(last_error, refused.code, refused.kind)
            await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
            delay = min(delay * 2, RETRY_S_MAX)
        raise AppendOutcomeUnknown(
            f"append (producer {self.producer_id}, sequence {request.sequence}) not confirmed "
            f"within {timeout_s:g}s; last error: {last_error}"
        )

    async def _attempt(
        self, address: str, request: log_pb2.AppendRequest
    ) -> log_pb2.AppendResponse:
        """One try on one node; raises _AttemptFailed with what refused it."""
        if address in self._unary_only or request.ByteSize() > STREAM_REQUEST_BYTES_MAX:
            try:
                return await self.stub(address).Append(request)
            except grpc.aio.AioRpcError as exc:
                raise _AttemptFailed(_refused(exc)) from exc
        session = self._sessions.get(address)
        if session is None or session.broken is not None:
            session = self._sessions[address] = _AppendSession(self.stub(address))
        try:
            answer = await session.append(request)
        except _AttemptFailed as exc:
            if self._sessions.get(address) is session:
                self._drop_session(address)  # broken: the next attempt opens a new stream
            if exc.refused.code is grpc.StatusCode.UNIMPLEMENTED:
                self._unary_only.add(address)
                return await self._attempt(address, request)
            raise
        if answer.HasField("appended"):
            return answer.appended
        error = answer.error
        raise _AttemptFailed(
            _Refused(
                STATUS_CODES.get(error.code, grpc.StatusCode.UNKNOWN),
                error.kind,
                error.message,
                error.leader_address,
            )
        )

    def _drop_session(self, address: str) -> None:
        session = self._sessions.pop(address, None)
        if session is not None:
            session.close()

    async def read(
        self,
        from_index: int,
        follow: bool = False,
        address: str | None = None,
        batch_records_max: int = 0,
        prefer: str | None = None,
        on_header: Callable[[log_pb2.ResponseHeader], None] | None = None,
    ) -> AsyncIterator[tuple[int, bytes]]:
        """Committed records in order; reconnects to another node if a stream breaks.
        `address`: only that node; `prefer`: that node first, then the others. The node
        of the stream open now is `read_from`. `on_header` sees the header of every message
        of the stream, keepalives too (a following stream's empty messages: the node is
        alive and names the leader and commit index it knows), before its records."""
        next_index = from_index
        if address:
            addresses = [address]
        elif prefer:
            addresses = [prefer, *(a for a in self.addresses if a != prefer)]
        else:
            addresses = self.addresses
        attempt = 0
        delay = RETRY_S_MIN
        give_up_at: float | None = None
        last_error = ""
        while True:
            target = addresses[attempt % len(addresses)]
            self.read_from = target
            try:
                stream = self.stub(target).Read(
                    log_pb2.ReadRequest(
                        from_index=next_index, follow=follow, batch_records_max=batch_records_max
                    )
                )
                async for response in stream:
                    delay = RETRY_S_MIN
                    give_up_at = None
                    if on_header is not None:
                        on_header(response.header)
                    for record in response.records:
                        if record.index == next_index:
                            next_index += 1
                            yield record.index, record.payload
                return
            except grpc.aio.AioRpcError as exc:
                meta = _metadata(exc)
                if exc.code() is grpc.StatusCode.OUT_OF_RANGE:
                    first = int(meta.get(FIRST_INDEX_KEY, "0"))
                    raise TrimmedError(exc.details() or "trimmed", first) from exc
                if exc.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.UNKNOWN,
                    grpc.StatusCode.CANCELLED,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ):
                    raise LogClientError(f"{target}: {exc.details()}", exc.code()) from exc
                last_error = f"; last error: {target}: {exc.code().name} {exc.details()}"
            attempt += 1
            if not follow:
                loop = asyncio.get_running_loop()
                if give_up_at is None:
                    give_up_at = loop.time() + self.timeout_s
                elif loop.time() > give_up_at:
                    raise LogClientError(
                        f"no node served the read from index {next_index} within "
                        f"{self.timeout_s}s{last_error}"
                    )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_S_MAX)

    async def read_index(self, address: str | None = None, timeout_s: float | None = None) -> int:
        """A quorum-confirmed commit index. Any node's answer is as good: `address` is asked
        first (by default the node that answered last, or the known leader). A node that
        fails (down, no leader known, no quorum in reach) is passed over at once for the
        leader it names, then the others; one that has not answered within
        READ_INDEX_TRY_S (paused, cut off, or only slow) is left to answer while the next
        is asked too, and the first answer wins. While no node can answer (no leader), it
        asks again until `timeout_s` (by default the client's) has passed, then raises the
        last error. A preferred node that did not answer is asked first again
        READ_INDEX_RETURN_S later (meanwhile the node that answered instead is)."""
        loop = asyncio.get_running_loop()
        limit_s = self.timeout_s if timeout_s is None else timeout_s
        deadline = loop.time() + limit_s
        preferred = address or self._leader or self.addresses[0]
        first = preferred
        if self._read_index_from and loop.time() < self._read_index_avoid.get(preferred, 0.0):
            first = self._read_index_from  # the preferred node failed a moment ago
        error: LogClientError | None = None
        order = [first, *(a for a in self.addresses if a != first)]
        asked: dict[asyncio.Task[log_pb2.ReadIndexResponse], str] = {}
        # Nodes that failed (no leader known, down): asked again at a time, with a backoff.
        again_at: dict[str, float] = {}
        delays: dict[str, float] = {}
        try:
            while (remaining := deadline - loop.time()) > 0:
                if order:
                    target = order.pop(0)
                    call = self.stub(target).ReadIndex(
                        log_pb2.ReadIndexRequest(), timeout=remaining
                    )
                    asked[asyncio.ensure_future(call)] = target
                    wait_s = min(READ_INDEX_TRY_S, remaining)
                else:
                    wait_s = min([remaining, *(at - loop.time() for at in again_at.values())])
                if asked:
                    done, _ = await asyncio.wait(
                        asked, timeout=max(0.0, wait_s), return_when=asyncio.FIRST_COMPLETED
                    )
                else:
                    done = set()
                    await asyncio.sleep(max(0.0, wait_s))
                for task in done:
                    target = asked.pop(task)
                    exc = task.exception()
                    if exc is None:
                        response = task.result()
                        self._read_index_from = target
                        if target != preferred:
                            self._read_index_avoid[preferred] = loop.time() + READ_INDEX_RETURN_S
                        return response.read_index
                    if not isinstance(exc, grpc.aio.AioRpcError):
                        raise exc
                    error = _client_error(target, exc)
                    if exc.code() not in RETRY_CODES:
                        raise error from exc
                    delays[target] = delay = min(
                        delays.get(target, RETRY_S_MIN / 2) * 2, RETRY_S_MAX
                    )
                    again_at[target] = loop.time() + delay
                    hint = _metadata(exc).get(LEADER_ADDRESS_KEY, "")
                    if hint in order:  # the leader it names next
                        order.remove(hint)
                        order.insert(0, hint)
                now = loop.time()
                for target, at in list(again_at.items()):
                    if at <= now:
                        del again_at[target]
                        if target not in order and target not in asked.values():
                            order.append(target)
        finally:
            for task in asked:
                task.cancel()
        raise LogClientError(
            f"no log node confirmed a read index within {limit_s:g}s (no leader?); "
            f"last error: {error}",
            error.code if error is not None else grpc.StatusCode.DEADLINE_EXCEEDED,
        )

    async def status(self, address: str) -> log_pb2.StatusResponse:
        try:
            return await self.stub(address).Status(
                log_pb2.StatusRequest(), timeout=self.attempt_timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise _client_error(address, exc) from exc

    async def find_leader(self) -> str | None:
        for address in self.addresses:
            try:
                st = await self.status(address)
            except LogClientError:
                continue
            if st.role == "leader":
                return address
            if st.header.leader_address:
                return st.header.leader_address
        return None

    async def trim(self, before_index: int, force: bool = False) -> int:
        address = await self.find_leader() or self.addresses[0]
        try:
            response = await self.stub(address).Trim(
                log_pb2.TrimRequest(before_index=before_index, force=force),
                timeout=self.attempt_timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise _client_error(address, exc) from exc
        return response.first_index


    async def member_list(self) -> log_pb2.MemberResponse:
        """The membership the first node that answers has applied."""
        errors: list[str] = []
        for address in self.addresses:
            try:
                return await self.stub(address).MemberList(
                    log_pb2.MemberListRequest(), timeout=self.attempt_timeout_s
                )
            except grpc.aio.AioRpcError as exc:
                errors.append(str(_client_error(address, exc)))
        raise LogClientError("; ".join(errors) or "no address given")

    async def member_change(
        self,
        method: str,
        request: log_pb2.MemberAddRequest | log_pb2.MemberChangeRequest,
        timeout_s: float,
        retry_behind: bool = False,
    ) -> log_pb2.MemberResponse:
        """MemberAdd, MemberPromote or MemberRemove on the leader, retried while the answer
        says nothing happened (no leader yet, the previous change not applied yet) and, with
        retry_behind, while the learner is still behind; until timeout_s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            address = await self.find_leader() or self.addresses[0]
            call = getattr(self.stub(address), method)
            try:
                response: log_pb2.MemberResponse = await call(
                    request, timeout=self.attempt_timeout_s
                )
                return response
            except grpc.aio.AioRpcError as exc:
                error = _client_error(address, exc)
                nothing_done = error.kind in (log_pb2.NOT_APPENDED, log_pb2.NOT_LEADER) or (
                    retry_behind
                    and error.code is grpc.StatusCode.FAILED_PRECONDITION
                    and "behind" in (exc.details() or "")
                )
                if not nothing_done or loop.time() >= deadline:
                    raise error from exc
            await asyncio.sleep(0.2)


def _client_error(address: str, exc: grpc.aio.AioRpcError) -> LogClientError:
    kind = kind_from_name(_metadata(exc).get(ERROR_KIND_KEY, ""))
    return LogClientError(f"{address}: {exc.code().name}: {exc.details()}", exc.code(), kind)


SNAPSHOT_CHUNK_BYTES = 1 << 20


def _file_blocks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(SNAPSHOT_CHUNK_BYTES):
            yield block


async def _chunks_of(index: int, data: bytes | Path) -> AsyncIterator[log_pb2.SnapshotChunk]:
    """The PutSnapshot stream of bytes, or of a file read a chunk at a time (never whole)."""
    if isinstance(data, Path):
        sha256, size = await asyncio.to_thread(file_sha256, data)
        blocks: Iterator[bytes] = _file_blocks(data)
    else:
        sha256, size = hashlib.sha256(data).digest(), len(data)
        step = SNAPSHOT_CHUNK_BYTES
        blocks = (data[at : at + step] for at in range(0, len(data), step))
    info = log_pb2.SnapshotInfo(index=index, size_bytes=size, sha256=sha256)
    yield log_pb2.SnapshotChunk(info=info, data=await asyncio.to_thread(next, blocks, b""))
    while (block := await asyncio.to_thread(next, blocks, None)) is not None:
        yield log_pb2.SnapshotChunk(data=block)


async def put_snapshot(
    client: LogClient, index: int, data: bytes | Path, timeout_s: float = 120.0
) -> log_pb2.PutSnapshotResponse:
    """Store a snapshot (bytes, or a file's content) covering records up to index (on the
    leader; durable on return).

    A put refused as UNAVAILABLE (no leader there, no majority in time, the node stopping)
    is sent again, to the leader of the moment: a retry of a snapshot that became durable
    meanwhile answers `duplicate`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        address = await client.find_leader() or client.addresses[0]
        try:
            return await client.stub(address).PutSnapshot(
                _chunks_of(index, data), timeout=max(1.0, deadline - loop.time())
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.UNAVAILABLE or loop.time() >= deadline:
                raise _client_error(address, exc) from exc
        await asyncio.sleep(RETRY_S_MAX)


async def get_snapshot(
    client: LogClient, index: int = 0, address: str | None = None, timeout_s: float = 120.0
) -> tuple[log_pb2.SnapshotInfo, bytes]:
    """A durable snapshot (0: the newest) and its bytes, checked against its SHA-256. Asks
    `address`, or each node in turn until one serves it."""
    errors: list[str] = []
    for target in [address] if address else client.addresses:
        try:
            info, data = await _get_from(client, target, index, timeout_s)
        except LogClientError as exc:
            if exc.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise
            errors.append(str(exc))
            continue
        return info, data
    raise LogClientError("no node served the snapshot: " + "; ".join(errors))


async def _get_from(
    client: LogClient, address: str, index: int, timeout_s: float
) -> tuple[log_pb2.SnapshotInfo, bytes]:
    parts: list[bytes] = []
    info: log_pb2.SnapshotInfo | None = None
    try:
        async for chunk in client.stub(address).GetSnapshot(
            log_pb2.GetSnapshotRequest(index=index), timeout=timeout_s
        ):
            if info is None:
                info = chunk.info
            parts.append(chunk.data)
    except grpc.aio.AioRpcError as exc:
        raise _client_error(address, exc) from exc
    data = b"".join(parts)
    if info is None or hashlib.sha256(data).digest() != info.sha256:
        raise LogClientError(f"{address}: the snapshot's bytes do not match its SHA-256")
    return info, data


async def list_snapshots(client: LogClient, address: str) -> log_pb2.ListSnapshotsResponse:
    try:
        return await client.stub(address).ListSnapshots(
            log_pb2.ListSnapshotsRequest(), timeout=client.attempt_timeout_s
        )
    except grpc.aio.AioRpcError as exc:
        raise _client_error(address, exc) from exc
