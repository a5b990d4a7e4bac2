"""Requests that are not what they claim to be, sent as raw bytes over real gRPC channels.

Every RPC of the public Log service and of the Peer service (on its own port; listed from the
service descriptors, so an RPC added later is covered too) gets bytes that do not parse as its
request message. Each call must end INVALID_ARGUMENT, the node must log at most one line
for it and no traceback, and the cluster must go on as before: same leader, same term,
appends still commit.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import grpc
import pytest
from google.protobuf import message as pb_message
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message_factory import GetMessageClass

from logsvc.client import LogClient
from logsvc.v1 import log_pb2, peer_pb2
from tests.logsvc.cluster import Cluster, RpcFailure

TIMEOUT_S = 10.0
SERVICES = (
    log_pb2.DESCRIPTOR.services_by_name["Log"],
    peer_pb2.DESCRIPTOR.services_by_name["Peer"],
)
METHODS = [method for service in SERVICES for method in service.methods]
SEED = 1414


def garbage_for(method: MethodDescriptor, count: int, rng: random.Random) -> list[bytes]:
    """Byte strings that fail to parse as the method's request (checked here)."""
    request_class = GetMessageClass(method.input_type)
    # A truncated varint, a field of wire type 7 (does not exist), a length past the end.
    fixed = [b"\x08", b"\x0f\x01", b"\x0a\x7f\x01", b"\xff\xff\xff\xff\x0f"]
    out: list[bytes] = []
    for candidate in fixed + [rng.randbytes(rng.randrange(1, 64)) for _ in range(200)]:
        try:
            request_class.FromString(candidate)
        except pb_message.DecodeError:
            out.append(candidate)
        if len(out) == count:
            return out
    raise AssertionError(f"too few unparsable byte strings for {method.full_name}")


def call_raw(channel: grpc.Channel, method: MethodDescriptor, payload: bytes) -> RpcFailure:
    """Send payload as the whole request (or as the only message of a request stream)."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    kinds = {
        (False, False): channel.unary_unary,
        (False, True): channel.unary_stream,
        (True, False): channel.stream_unary,
        (True, True): channel.stream_stream,
    }
    make: Any = kinds[(method.client_streaming, method.server_streaming)]
    # No serializers: the bytes go out as they are, and come back as bytes.
    call = make(path, request_serializer=None, response_deserializer=None)
    request = iter([payload]) if method.client_streaming else payload
    try:
        result = call(request, timeout=TIMEOUT_S)
        if method.server_streaming:
            result = list(result)
    except grpc.RpcError as exc:
        return RpcFailure.of(exc)
    raise AssertionError(f"{path} accepted {payload!r}: {result!r}")


def test_malformed_requests_get_invalid_argument_on_every_rpc(cluster: Cluster) -> None:
    c = cluster
    rng = random.Random(SEED)
    print(f"seed {SEED}")
    leader = c.leader()
    term = c.status(leader).header.term
    log_sizes = {i: len(c.log_text(i).splitlines()) for i in c.nodes}
    calls = {i: 0 for i in c.nodes}
    for method in METHODS:
        for payload in garbage_for(method, 3, rng):
            for node_id in c.nodes:
                peer = method.containing_service.name == "Peer"
                channel = c.peer_channel(node_id) if peer else c.channel(node_id)
                failure = call_raw(channel, method, payload)
                assert failure.code is grpc.StatusCode.INVALID_ARGUMENT, (
                    method.full_name, payload, failure,
                )  # fmt: skip
                assert "malformed request" in failure.details, failure
                assert method.input_type.full_name in failure.details, failure
                calls[node_id] += 1

    # The cluster did not notice: same leader and term, and appends commit.
    async def append() -> int:
        async with LogClient(c.addresses, timeout_s=TIMEOUT_S) as client:
            return (await client.append([b"after the garbage"])).last_index

    last = asyncio.run(append())
    c.wait_last_index(last)
    assert c.leader() == leader
    assert c.status(leader).header.term == term
    for node_id in c.nodes:
        new_lines = c.log_text(node_id).splitlines()[log_sizes[node_id] :]
        assert not any("Traceback" in line for line in new_lines), "\n".join(new_lines)
        malformed = [line for line in new_lines if "malformed request" in line]
        # One concise line per refused call, at most.
        assert len(malformed) <= calls[node_id], "\n".join(new_lines)
        assert all(len(line) < 400 for line in malformed), malformed[:1]


def _batch(**fields: object) -> bytes:
    return peer_pb2.MessageBatch(**fields).SerializeToString()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "what",
    ["unknown sender", "sender mismatch", "unknown message type", "unknown entry type"],
)
def test_peer_deliver_refuses_batches_it_cannot_trust(cluster: Cluster, what: str) -> None:
    """Well-formed protobuf that is still not a Raft message from a peer: refused whole,
    nothing of it stepped, the node undisturbed."""
    c = cluster
    leader = c.leader()
    follower = next(i for i in c.nodes if i != leader)
    term = c.status(leader).header.term
    huge_term = term + 1000

    def vote(frm: str) -> peer_pb2.RaftMessage:
        pb = peer_pb2.RaftMessage(
            type=2, to=follower, term=huge_term, index=1 << 40, log_term=huge_term
        )
        setattr(pb, "from", frm)
        return pb

    unknown_type = peer_pb2.RaftMessage(type=99, to=follower, term=huge_term)
    setattr(unknown_type, "from", leader)
    unknown_entry = peer_pb2.RaftMessage(
        type=0,
        to=follower,
        term=huge_term,
        entries=[peer_pb2.RaftEntry(term=huge_term, index=1, type=77)],
    )
    setattr(unknown_entry, "from", leader)
    messages = {
        "unknown sender": ("mallory", [vote("mallory")]),
        "sender mismatch": (leader, [vote("mallory")]),
        "unknown message type": (leader, [unknown_type]),
        "unknown entry type": (leader, [unknown_entry]),
    }
    from_id, batch = messages[what]
    payload = _batch(cluster_id="memlog", from_id=from_id, messages=batch)
    method = peer_pb2.DESCRIPTOR.services_by_name["Peer"].methods_by_name["Deliver"]
    failure = call_raw(c.peer_channel(follower), method, payload)
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT, failure
    # Had the huge term been stepped, the follower would have moved to it.
    assert c.status(follower).header.term == term
    assert c.leader() == leader
    assert c.status(leader).header.term == term
    assert "Traceback" not in c.log_text(follower)
