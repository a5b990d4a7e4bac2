"""Registering a servicer so that a request that does not parse is refused cleanly.

The handlers that grpcio-tools generates decode requests with `Message.FromString`: bytes
that are not the request message raise DecodeError inside gRPC, which answers UNKNOWN and
logs a traceback per call. `add_servicer` builds the same handlers from the service's
descriptor (so RPCs added to the .proto later are covered too) with a decoder that never
raises: what does not parse reaches the method wrapper as `Malformed`, which ends the call
with INVALID_ARGUMENT and one log line. Streamed requests are checked as they are read.
LogErrors raised by the servicer end the call with their own code and message.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf import message as pb_message
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass

from logsvc.errors import InvalidArgument, LogError

log = logging.getLogger("logsvc.rpc")

MALFORMED_DETAIL_CHARS_MAX = 200


@dataclass(frozen=True, slots=True)
class Malformed:
    """A request whose bytes did not parse as its message type."""

    type_name: str
    error: str

    def describe(self) -> str:
        return f"malformed request: the bytes are not a valid {self.type_name} ({self.error})"


def _decoder(message_class: Any) -> Callable[[bytes], Any]:
    type_name = message_class.DESCRIPTOR.full_name

    def decode(data: bytes) -> Any:
        try:
            return message_class.FromString(data)
        except pb_message.DecodeError as exc:
            # upb says "Error parsing message with type 'T': why"; keep the why.
            reason = str(exc).rpartition(": ")[2] or "unparsable"
            return Malformed(type_name, reason[:MALFORMED_DETAIL_CHARS_MAX])

    return decode


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: LogError) -> NoReturn:
    context.set_trailing_metadata(tuple(exc.metadata()))
    await context.abort(exc.code, exc.message)
    raise AssertionError("unreachable")  # abort raises


def _refuse_malformed(
    method: str, context: grpc.aio.ServicerContext[Any, Any], bad: Malformed
) -> InvalidArgument:
    log.warning("%s from %s: %s", method, context.peer(), bad.describe())
    return InvalidArgument(bad.describe())


async def _checked(
    method: str, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Malformed):
            raise _refuse_malformed(method, context, request)
        yield request


Guard = Callable[[str, grpc.aio.ServicerContext[Any, Any]], None]


def _handler(
    path: str, method: MethodDescriptor, behaviour: Callable[..., Any], guard: Guard | None
) -> grpc.RpcMethodHandler[Any, Any]:
    request_class = GetMessageClass(method.input_type)
    response_class = GetMessageClass(method.output_type)
    decode = _decoder(request_class)
    encode = response_class.SerializeToString
    streams_in = method.client_streaming
    streams_out = method.server_streaming

    async def prepared(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if guard is not None:
            guard(method.name, context)  # before a request is read or anything is done
        if streams_in:
            return _checked(path, request, context)
        if isinstance(request, Malformed):
            raise _refuse_malformed(path, context, request)
        return request

    if streams_out:

        async def stream_out(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                async for response in behaviour(await prepared(request, context), context):
                    yield response
            except LogError as exc:
                await _abort(context, exc)

        if streams_in:
            return grpc.stream_stream_rpc_method_handler(stream_out, decode, encode)
        return grpc.unary_stream_rpc_method_handler(stream_out, decode, encode)

    async def unary_out(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behaviour(await prepared(request, context), context)
        except LogError as exc:
            await _abort(context, exc)

    if streams_in:
        return grpc.stream_unary_rpc_method_handler(unary_out, decode, encode)
    return grpc.unary_unary_rpc_method_handler(unary_out, decode, encode)


def add_servicer(
    server: grpc.aio.Server,
    service: ServiceDescriptor,
    servicer: object,
    guard: Guard | None = None,
) -> None:
    """Serve every method of `service` with the method of the same name on `servicer`;
    `guard(method name, context)` may refuse a call (by raising a LogError) first."""
    handlers = {
        method.name: _handler(
            f"/{service.full_name}/{method.name}", method, getattr(servicer, method.name), guard
        )
        for method in service.methods
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)
