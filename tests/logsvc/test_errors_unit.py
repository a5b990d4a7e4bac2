"""One error taxonomy for server and client: kinds travel by name and are compared by value."""

from __future__ import annotations

import pytest

from logsvc.errors import (
    ERROR_KIND_KEY,
    LogError,
    NotAppended,
    NotLeader,
    OutcomeUnknown,
    kind_from_name,
    kind_name,
)
from logsvc.v1 import log_pb2


@pytest.mark.parametrize(
    "error", [NotAppended("x"), NotLeader("x", "2", "a:1"), OutcomeUnknown("x")]
)
def test_the_kind_the_server_sends_is_the_one_the_client_reads(error: LogError) -> None:
    sent = dict(error.metadata())[ERROR_KIND_KEY]
    assert kind_from_name(sent) == type(error).kind
    assert kind_name(type(error).kind) == sent


def test_no_kind_or_an_unknown_one_reads_as_unspecified() -> None:
    assert kind_from_name("") == log_pb2.ERROR_KIND_UNSPECIFIED
    assert kind_from_name("SOMETHING_NEWER") == log_pb2.ERROR_KIND_UNSPECIFIED
    assert kind_name(log_pb2.ERROR_KIND_UNSPECIFIED) == ""
