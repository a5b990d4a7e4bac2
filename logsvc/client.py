"""An asyncio client for logsvc: finds the leader, retries safely, tails with reconnect.

    async with LogClient(["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]) as log:
        result = await log.append([b"hello"])          # -> AppendResult(first, last, dup)
        async for index, payload in log.read(1, follow=True):
            ...

Every `append` gets the next sequence of this client's producer id; retries after a timeout,
a broken connection or a leader change reuse it, so nothing is appended twice.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import TracebackType

import grpc

from logsvc.errors import ERROR_KIND_KEY, FIRST_INDEX_KEY, LEADER_ADDRESS_KEY
from logsvc.transport import CHANNEL_OPTIONS
from logsvc.v1 import log_pb2, log_pb2_grpc

RETRY_S_MIN = 0.02
RETRY_S_MAX = 0.5


@dataclass(frozen=True, slots=True)
class AppendResult:
    first_index: int
    last_index: int
    duplicate: bool


class LogClientError(Exception):
    def __init__(self, message: str, code: grpc.StatusCode | None = None, kind: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.kind = kind


class AppendOutcomeUnknown(LogClientError):
    """Gave up before learning whether the append landed (retry with the same sequence)."""


class TrimmedError(LogClientError):
    def __init__(self, message: str, first_index: int) -> None:
        super().__init__(message, grpc.StatusCode.OUT_OF_RANGE)
        self.first_index = first_index


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
    ) -> None:
        if not addresses:
            raise ValueError("at least one address is needed")
        self.addresses = list(addresses)
        self.producer_id = producer_id if producer_id is not None else uuid.uuid4().hex
        self.timeout_s = timeout_s
        self.attempt_timeout_s = attempt_timeout_s
        self._sequence = itertools.count(1)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, log_pb2_grpc.LogAsyncStub] = {}
        self._leader: str | None = None
        self._rotation = itertools.cycle(range(1 << 30))

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
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._stubs.clear()

    def stub(self, address: str) -> log_pb2_grpc.LogAsyncStub:
        stub = self._stubs.get(address)
        if stub is None:
            channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
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
        self, records: Sequence[bytes], if_last_index: int | None = None
    ) -> AppendResult:
        request = log_pb2.AppendRequest(
            records=list(records), producer_id=self.producer_id, sequence=next(self._sequence)
        )
        if if_last_index is not None:
            request.if_last_index = if_last_index
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        delay = RETRY_S_MIN
        last_error = "no attempt made"
        while (remaining := deadline - loop.time()) > 0:
            address = self._next_address()
            try:
                response = await self.stub(address).Append(
                    request, timeout=min(remaining, self.attempt_timeout_s)
                )
            except grpc.aio.AioRpcError as exc:
                meta = _metadata(exc)
                kind = meta.get(ERROR_KIND_KEY, "")
                last_error = f"{address}: {exc.code().name} {kind} {exc.details()}"
                if kind == "NOT_LEADER":
                    hint = meta.get(LEADER_ADDRESS_KEY, "")
                    self._leader = hint or None
                    if hint:
                        continue  # go straight to the leader
                elif kind in ("NOT_APPENDED", "OUTCOME_UNKNOWN") or exc.code() in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.UNKNOWN,
                    grpc.StatusCode.CANCELLED,
                ):
                    self._forget_leader()
                else:
                    raise LogClientError(last_error, exc.code(), kind) from exc
                await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
                delay = min(delay * 2, RETRY_S_MAX)
                continue
            self._leader = address
            return AppendResult(response.first_index, response.last_index, response.duplicate)
        raise AppendOutcomeUnknown(
            f"append (producer {self.producer_id}, sequence {request.sequence}) not confirmed "
            f"within {self.timeout_s}s; last error: {last_error}"
        )

    async def read(
        self, from_index: int, follow: bool = False, address: str | None = None
    ) -> AsyncIterator[tuple[int, bytes]]:
        """Committed records in order; reconnects to another node if a stream breaks."""
        next_index = from_index
        addresses = [address] if address else self.addresses
        attempt = 0
        delay = RETRY_S_MIN
        give_up_at: float | None = None
        while True:
            target = addresses[attempt % len(addresses)]
            try:
                stream = self.stub(target).Read(
                    log_pb2.ReadRequest(from_index=next_index, follow=follow)
                )
                async for response in stream:
                    delay = RETRY_S_MIN
                    give_up_at = None
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
            attempt += 1
            if not follow:
                loop = asyncio.get_running_loop()
                if give_up_at is None:
                    give_up_at = loop.time() + self.timeout_s
                elif loop.time() > give_up_at:
                    raise LogClientError(
                        f"no node served the read from index {next_index} within {self.timeout_s}s"
                    )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_S_MAX)

    async def read_index(self, address: str | None = None) -> int:
        target = address or self._next_address()
        try:
            response = await self.stub(target).ReadIndex(
                log_pb2.ReadIndexRequest(), timeout=self.attempt_timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise _client_error(target, exc) from exc
        return response.read_index

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

    async def trim(self, before_index: int) -> int:
        address = await self.find_leader() or self.addresses[0]
        try:
            response = await self.stub(address).Trim(
                log_pb2.TrimRequest(before_index=before_index), timeout=self.attempt_timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise _client_error(address, exc) from exc
        return response.first_index


def _client_error(address: str, exc: grpc.aio.AioRpcError) -> LogClientError:
    kind = _metadata(exc).get(ERROR_KIND_KEY, "")
    return LogClientError(f"{address}: {exc.code().name}: {exc.details()}", exc.code(), kind)
