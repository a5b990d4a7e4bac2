"""The errors of the log API, each with its gRPC code and whether a retry is safe.

One taxonomy for both ends: the server raises these classes and sends the kind as the
`logsvc-error-kind` trailing metadata (or in an AppendStream's AppendError); the client reads
it back with `kind_from_name` and decides by comparing kinds (`NotLeader.kind`, ...), never
by spelling a name."""

from __future__ import annotations

from typing import TypeAlias

import grpc

from logsvc.v1 import log_pb2

ERROR_KIND_KEY = "logsvc-error-kind"
LEADER_ID_KEY = "logsvc-leader-id"
LEADER_ADDRESS_KEY = "logsvc-leader-address"
FIRST_INDEX_KEY = "logsvc-first-index"


ErrorKind: TypeAlias = log_pb2.ErrorKind.ValueType


def kind_from_name(name: str) -> ErrorKind:
    """The kind that metadata names (ERROR_KIND_UNSPECIFIED for "" or a name this version
    does not know)."""
    try:
        return log_pb2.ErrorKind.Value(name) if name else log_pb2.ERROR_KIND_UNSPECIFIED
    except ValueError:
        return log_pb2.ERROR_KIND_UNSPECIFIED


def kind_name(kind: ErrorKind) -> str:
    """The kind's name, as in metadata and messages ("" when unspecified)."""
    return log_pb2.ErrorKind.Name(kind) if kind else ""


class LogError(Exception):
    code = grpc.StatusCode.INTERNAL
    kind: ErrorKind = log_pb2.ERROR_KIND_UNSPECIFIED
    # May the caller retry the same request (with the same producer id and sequence)?
    retriable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def metadata(self) -> list[tuple[str, str]]:
        if self.kind == log_pb2.ERROR_KIND_UNSPECIFIED:
            return []
        return [(ERROR_KIND_KEY, log_pb2.ErrorKind.Name(self.kind))]


class NotAppended(LogError):
    """Definitely not appended: retry anywhere."""

    code = grpc.StatusCode.UNAVAILABLE
    kind = log_pb2.NOT_APPENDED
    retriable = True


class NotLeader(LogError):
    code = grpc.StatusCode.UNAVAILABLE
    kind = log_pb2.NOT_LEADER
    retriable = True

    def __init__(self, message: str, leader_id: str = "", leader_address: str = "") -> None:
        super().__init__(message)
        self.leader_id = leader_id
        self.leader_address = leader_address

    def metadata(self) -> list[tuple[str, str]]:
        extra = []
        if self.leader_id:
            extra = [(LEADER_ID_KEY, self.leader_id), (LEADER_ADDRESS_KEY, self.leader_address)]
        return super().metadata() + extra


class OutcomeUnknown(LogError):
    """Maybe appended: retry with the same producer id and sequence."""

    code = grpc.StatusCode.UNKNOWN
    kind = log_pb2.OUTCOME_UNKNOWN
    retriable = True


class ResourceExhausted(LogError):
    """Refused for now because too much waits already (nothing appended): retry later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    kind = log_pb2.NOT_APPENDED
    retriable = True


class InvalidArgument(LogError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(LogError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class OutOfRange(LogError):
    code = grpc.StatusCode.OUT_OF_RANGE

    def __init__(self, message: str, first_index: int) -> None:
        super().__init__(message)
        self.first_index = first_index

    def metadata(self) -> list[tuple[str, str]]:
        return [(FIRST_INDEX_KEY, str(self.first_index))]


class NotFound(LogError):
    code = grpc.StatusCode.NOT_FOUND


class DataLoss(LogError):
    """Bytes that do not match their checksum or size: nothing was stored or served."""

    code = grpc.StatusCode.DATA_LOSS


class Unavailable(LogError):
    """Not now (no leader, not caught up): retry later."""

    code = grpc.StatusCode.UNAVAILABLE
    retriable = True
