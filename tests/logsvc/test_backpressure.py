"""What clients can pile up on a leader is bounded, with real processes.

Both followers are stopped (SIGSTOP), so nothing commits and every accepted append stays
pending on the leader; the election timeout is long (4-8 s) so that the leader keeps its
leadership meanwhile. Then: appends past --pending-appends-max or --pending-bytes-max, and
appends past --stream-appends-max in flight on one AppendStream, are answered
RESOURCE_EXHAUSTED at once (kind NOT_APPENDED, with the limit in the message), and the
accepted ones all commit once the followers are back.
"""

from __future__ import annotations

import asyncio

import grpc

from logsvc.v1 import log_pb2, log_pb2_grpc
from tests.logsvc.conftest import Clusters

MIB = 1 << 20
TIMEOUT_S = 30.0
LIMITS = (
    "--tick-ms", "10", "--election-ticks", "400", "--heartbeat-ticks", "3",
    "--append-request-bytes-max", str(2 * MIB),
    "--pending-appends-max", "6",
    "--pending-bytes-max", str(3 * MIB),
    "--stream-appends-max", "3",
)  # fmt: skip
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]


class Stream:
    """One AppendStream: write requests, read answers as they come."""

    def __init__(self, stub: log_pb2_grpc.LogAsyncStub) -> None:
        self.call = stub.AppendStream(timeout=TIMEOUT_S)

    async def send(self, request_id: int, *records: bytes) -> None:
        append = log_pb2.AppendRequest(records=list(records))
        await self.call.write(log_pb2.AppendStreamRequest(request_id=request_id, append=append))

    async def answer(self) -> log_pb2.AppendStreamResponse:
        answer = await asyncio.wait_for(self.call.read(), TIMEOUT_S)
        assert isinstance(answer, log_pb2.AppendStreamResponse), answer
        return answer


def refused(answer: log_pb2.AppendStreamResponse, flag: str) -> bool:
    error = answer.error
    return (
        answer.WhichOneof("outcome") == "error"
        and error.code == EXHAUSTED
        and error.kind == log_pb2.NOT_APPENDED
        and flag in error.message
    )


def test_pending_appends_and_stream_appends_are_bounded(clusters: Clusters) -> None:
    c = clusters(extra_args=LIMITS)
    leader = c.start_all()
    assert leader is not None
    term = c.status(leader).header.term
    last = c.status(leader).last_index
    followers = [i for i in c.nodes if i != leader]

    async def go() -> None:
        async with grpc.aio.insecure_channel(c.address(leader)) as channel:
            stub = log_pb2_grpc.LogStub(channel)
            for f in followers:
                c.pause(f)
            try:
                # Four appends on one stream: the fourth is over --stream-appends-max.
                x = Stream(stub)
                for i in range(4):
                    await x.send(i, b"x%d" % i)
                answer = await x.answer()
                assert answer.request_id == 3 and refused(answer, "--stream-appends-max"), answer
                assert "3 appends of this stream are in flight" in answer.error.message
                # 3 pending. One of 1 MiB (unary, left waiting) -> 4 pending, 1 MiB + 6 bytes.
                one_mib = asyncio.ensure_future(
                    stub.Append(log_pb2.AppendRequest(records=[b"m" * MIB]), timeout=TIMEOUT_S)
                )
                await asyncio.sleep(0.5)
                assert not one_mib.done()
                # 2 MiB more would pass --pending-bytes-max (3 MiB).
                try:
                    await stub.Append(
                        log_pb2.AppendRequest(records=[b"n" * MIB] * 2), timeout=TIMEOUT_S
                    )
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, exc
                    details = exc.details() or ""
                    assert "--pending-bytes-max" in details and str(3 * MIB) in details, details
                    metadata = dict(exc.trailing_metadata() or ())
                    assert metadata.get("logsvc-error-kind") == "NOT_APPENDED", metadata
                else:
                    raise AssertionError("2 MiB more pending bytes were accepted")
                # Two more small ones fit (6 pending); the third is over --pending-appends-max.
                y = Stream(stub)
                for i in range(3):
                    await y.send(10 + i, b"y%d" % i)
                answer = await y.answer()
                assert answer.request_id == 12, answer
                assert refused(answer, "--pending-appends-max"), answer
                assert "6 appends are waiting to commit" in answer.error.message
            finally:
                for f in followers:
                    c.resume(f)
            # Back in business: everything accepted commits, in the order it was proposed.
            xs = sorted([await x.answer() for _ in range(3)], key=lambda a: a.request_id)
            ys = sorted([await y.answer() for _ in range(2)], key=lambda a: a.request_id)
            assert [a.appended.first_index for a in xs] == [last + 1, last + 2, last + 3], xs
            assert (await one_mib).first_index == last + 4
            assert [a.appended.first_index for a in ys] == [last + 5, last + 6], ys
            for stream in (x, y):
                await stream.call.done_writing()
            after = await stub.Append(log_pb2.AppendRequest(records=[b"after"]), timeout=30)
            assert after.first_index == last + 7

    asyncio.run(go())
    assert c.status(leader).header.term == term


def test_a_client_that_does_not_read_its_answers_is_held_back(clusters: Clusters) -> None:
    """An AppendStream client that writes and never reads: once --stream-appends-max answers
    wait unread, the node reads no more of its requests, so HTTP/2 flow control stops the
    client's writes instead of the node's memory growing. (With the limit out of reach the
    node read 60,000 such writes and its RSS grew from 58 to 138 MB.)"""
    c = clusters(ids=("a",), extra_args=("--stream-appends-max", "2"))
    c.start_all()
    writes_max = 200_000
    blocked_at: list[int] = []

    async def go() -> None:
        # No BDP probing: the client's receive window stays at its 64 KiB default.
        options = [("grpc.http2.bdp_probe", 0)]
        async with grpc.aio.insecure_channel(c.address("a"), options=options) as channel:
            call = log_pb2_grpc.LogStub(channel).AppendStream(timeout=TIMEOUT_S * 4)
            append = log_pb2.AppendRequest(records=[b"u" * 200])
            for i in range(writes_max):
                request = log_pb2.AppendStreamRequest(request_id=i, append=append)
                try:
                    await asyncio.wait_for(call.write(request), 2.0)
                except TimeoutError:
                    blocked_at.append(i)
                    break
            call.cancel()
            # The node serves everyone else meanwhile.
            stub = log_pb2_grpc.LogStub(channel)
            other = await stub.Append(log_pb2.AppendRequest(records=[b"other"]), timeout=30)
            assert other.first_index >= 1

    asyncio.run(go())
    assert blocked_at, f"{writes_max} writes went through without a single answer read"
    print(f"the client's writes were held back after {blocked_at[0]} requests")
