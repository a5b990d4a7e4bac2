"""The log API against a healthy three-node cluster of real processes.

These tests share one cluster per module and only add records, so each one works from
the indexes it was given rather than from absolute positions.

Over 500 lines: every call of the log API against the one shared cluster.
"""

from __future__ import annotations

import asyncio
from typing import cast

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from logsvc.client import LogClient, LogClientError
from logsvc.transport import CLIENT_CHANNEL_OPTIONS, KEEPALIVE_TIME_MS
from logsvc.v1 import log_pb2, log_pb2_grpc
from tests.logsvc.cluster import Cluster, rpc_failure

TIMEOUT_S = 10.0


def followers(cluster: Cluster) -> list[str]:
    leader = cluster.leader()
    return [i for i in cluster.nodes if i != leader]


def test_append_then_read_back_from_every_node(shared_cluster: Cluster) -> None:
    c = shared_cluster
    payloads = [b"one", b"two", b"\x00", b"\x00\xffbinary", b"five"]  # LogClient refuses b""

    async def go() -> tuple[int, list[tuple[int, bytes]]]:
        async with LogClient(c.addresses) as client:
            first = await client.append(payloads[:2])
            assert first.last_index == first.first_index + 1
            assert not first.duplicate
            rest = await client.append(payloads[2:])
            assert rest.first_index == first.last_index + 1
            assert rest.last_index == rest.first_index + 2
            # Read back from the leader right after the acknowledgement.
            leader = await client.find_leader()
            got = [r async for r in client.read(first.first_index, address=leader)]
            return first.first_index, got

    first_index, from_leader = asyncio.run(go())
    last_index = first_index + len(payloads) - 1
    expected = list(zip(range(first_index, last_index + 1), payloads, strict=True))
    assert from_leader[: len(payloads)] == expected
    c.wait_last_index(last_index)
    for node_id in c.nodes:
        records = c.read_all(node_id, first_index)
        assert records[: len(payloads)] == expected, f"node {node_id}"


def test_follow_from_a_follower_sees_new_commits(shared_cluster: Cluster) -> None:
    c = shared_cluster
    follower = followers(c)[0]

    async def go() -> None:
        async with LogClient(c.addresses) as writer, LogClient([c.address(follower)]) as reader:
            start = (await writer.append([b"follow-0"])).first_index
            stream = reader.read(start, follow=True, address=c.address(follower))
            try:
                index, payload = await asyncio.wait_for(anext(stream), TIMEOUT_S)
                assert (index, payload) == (start, b"follow-0")
                for i in range(1, 6):
                    acked = await writer.append([f"follow-{i}".encode()])
                    index, payload = await asyncio.wait_for(anext(stream), TIMEOUT_S)
                    assert (index, payload) == (acked.first_index, f"follow-{i}".encode())
                # A batch arrives in order, record by record.
                batch = [f"follow-batch-{i}".encode() for i in range(10)]
                acked = await writer.append(batch)
                for offset, expected in enumerate(batch):
                    index, payload = await asyncio.wait_for(anext(stream), TIMEOUT_S)
                    assert (index, payload) == (acked.first_index + offset, expected)
            finally:
                await stream.aclose()  # type: ignore[attr-defined]

    asyncio.run(go())


def test_an_idle_follow_stream_outlives_the_clients_keepalive_pings(
    shared_cluster: Cluster,
) -> None:
    """LogClient's channels ping every second while a call is open (transport.py); a node
    must accept that on an idle follow Read: gRPC's default policy answers the third such
    ping with GOAWAY "too_many_pings", which ended the stream after about 5 s. While idle
    the stream brings only keepalives (issue 21): no records, a header that names the leader
    and the commit index, every READ_KEEPALIVE_S."""
    c = shared_cluster
    follower = followers(c)[0]
    idle_s = 4 * KEEPALIVE_TIME_MS / 1000 + 2

    async def go() -> None:
        async with LogClient(c.addresses) as writer:
            start = (await writer.append([b"idle-0"])).last_index + 1
            channel = grpc.aio.insecure_channel(c.address(follower), options=CLIENT_CHANNEL_OPTIONS)
            try:
                stream = aiter(
                    log_pb2_grpc.LogStub(channel).Read(
                        log_pb2.ReadRequest(from_index=start, follow=True)
                    )
                )
                loop = asyncio.get_running_loop()
                idle_until = loop.time() + idle_s
                keepalives: list[float] = []
                while loop.time() < idle_until:  # an error here is the GOAWAY
                    response = await asyncio.wait_for(anext(stream), TIMEOUT_S)
                    assert not response.records, response
                    assert response.header.leader_id, response.header
                    assert response.header.commit_index == start - 1, response.header
                    keepalives.append(loop.time())
                # About four a second (the loaded machine may space them more).
                assert len(keepalives) >= idle_s, keepalives
                acked = await writer.append([b"idle-1"])
                while not (response := await asyncio.wait_for(anext(stream), TIMEOUT_S)).records:
                    pass
                assert [(r.index, r.payload) for r in response.records] == [
                    (acked.first_index, b"idle-1")
                ]
            finally:
                await channel.close()

    asyncio.run(go())


def test_follower_reads_equal_leader_reads(shared_cluster: Cluster) -> None:
    c = shared_cluster

    async def go() -> tuple[int, int]:
        async with LogClient(c.addresses) as client:
            results = [
                await client.append([f"same-{i}-{j}".encode() for j in range(i % 7 + 1)])
                for i in range(30)
            ]
        return results[0].first_index, results[-1].last_index

    first, last = asyncio.run(go())
    c.wait_last_index(last)
    reads = {node_id: c.read_all(node_id, first) for node_id in c.nodes}
    leader_read = reads[c.leader()]
    assert [i for i, _ in leader_read[: last - first + 1]] == list(range(first, last + 1))
    for node_id, records in reads.items():
        assert records[: last - first + 1] == leader_read[: last - first + 1], node_id


def test_read_index_covers_every_acknowledged_append(shared_cluster: Cluster) -> None:
    c = shared_cluster

    async def go() -> None:
        async with LogClient(c.addresses) as client:
            acked = await client.append([b"read-index"])
            for address in c.addresses:
                assert await client.read_index(address) >= acked.last_index, address

    asyncio.run(go())


def test_bad_requests_are_invalid_argument_and_change_nothing(shared_cluster: Cluster) -> None:
    c = shared_cluster
    leader = c.leader()
    asyncio.run(_append_one(c, b"before-bad-requests"))
    c.wait_last_index(c.status(leader).last_index)
    before = {node_id: c.status(node_id) for node_id in c.nodes}
    stub = c.stub(leader)
    limit = 1024  # --record-bytes-max of shared_cluster

    bad_appends = {
        "empty batch": log_pb2.AppendRequest(records=[]),
        "empty batch with a producer": log_pb2.AppendRequest(producer_id="bad", sequence=1),
        "record over the limit": log_pb2.AppendRequest(records=[b"x" * (limit + 1)]),
        "one bad record in a batch": log_pb2.AppendRequest(
            records=[b"fine", b"x" * (limit + 1), b"fine too"]
        ),
        "producer with sequence 0": log_pb2.AppendRequest(
            records=[b"r"], producer_id="bad", sequence=0
        ),
    }
    for what, request in bad_appends.items():
        failure = rpc_failure(lambda r=request: stub.Append(r, timeout=TIMEOUT_S))  # type: ignore[misc]
        assert failure.code is grpc.StatusCode.INVALID_ARGUMENT, (what, failure)
    failure = rpc_failure(
        lambda: list(stub.Read(log_pb2.ReadRequest(from_index=0), timeout=TIMEOUT_S))
    )
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT, failure
    follower = followers(c)[0]
    failure = rpc_failure(
        lambda: list(
            c.stub(follower).Read(log_pb2.ReadRequest(from_index=0, follow=True), timeout=5)
        )
    )
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT, failure
    for before_index in (0, before[leader].last_index + 2):
        failure = rpc_failure(
            lambda b=before_index: stub.Trim(  # type: ignore[misc]
                log_pb2.TrimRequest(before_index=b), timeout=TIMEOUT_S
            )
        )
        assert failure.code is grpc.StatusCode.INVALID_ARGUMENT, (before_index, failure)

    # Nothing changed, on any node.
    for node_id in c.nodes:
        after = c.status(node_id)
        assert (after.first_index, after.last_index) == (
            before[node_id].first_index,
            before[node_id].last_index,
        ), node_id

    # The client surfaces the code and gives up at once (no retry of a bad request).
    async def through_client() -> None:
        async with LogClient(c.addresses, timeout_s=TIMEOUT_S) as client:
            with pytest.raises(LogClientError) as info:
                await client.append([b"y" * (limit + 1)])
            assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(LogClientError) as info:
                async for _ in client.read(0):
                    pass
            assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
            # A record of exactly the limit is fine.
            at_limit = await client.append([b"z" * limit])
            assert at_limit.last_index == before[leader].last_index + 1

    asyncio.run(through_client())


async def _append_one(c: Cluster, payload: bytes) -> int:
    async with LogClient(c.addresses) as client:
        return (await client.append([payload])).first_index


def test_conditional_append_fences_an_old_writer(shared_cluster: Cluster) -> None:
    c = shared_cluster

    async def go() -> None:
        async with LogClient(c.addresses) as w1, LogClient(c.addresses) as w2:
            await w1.append([b"fence-setup"])
            leader = await w1.find_leader()
            assert leader is not None
            # Both writers learn the same last index L.
            last = (await w1.status(leader)).last_index
            assert (await w2.status(leader)).last_index == last

            won = await w1.append([b"fence-writer-1"], if_last_index=last)
            assert (won.first_index, won.last_index) == (last + 1, last + 1)
            with pytest.raises(LogClientError) as info:
                await w2.append([b"fence-writer-2", b"fence-writer-2b"], if_last_index=last)
            assert info.value.code is grpc.StatusCode.FAILED_PRECONDITION
            assert (await w2.status(leader)).last_index == last + 1

            # Told the truth, writer 2 may go on.
            later = await w2.append([b"fence-writer-2-again"], if_last_index=last + 1)
            assert later.first_index == last + 2

            # From the leader: a follower may learn the last commit index a little later.
            got = [p async for _, p in w1.read(last + 1, address=leader)]
            assert got == [b"fence-writer-1", b"fence-writer-2-again"]

    asyncio.run(go())


def test_conditional_append_retry_is_a_duplicate_not_a_conflict(shared_cluster: Cluster) -> None:
    """A retry of a conditional append that succeeded answers the first outcome."""
    c = shared_cluster
    leader = c.leader()
    last = c.status(leader).last_index
    request = log_pb2.AppendRequest(
        records=[b"cond-retry"], producer_id="cond-retry", sequence=1, if_last_index=last
    )
    first = c.stub(leader).Append(request, timeout=TIMEOUT_S)
    again = c.stub(leader).Append(request, timeout=TIMEOUT_S)
    assert (first.first_index, first.duplicate) == (last + 1, False)
    assert (again.first_index, again.last_index, again.duplicate) == (last + 1, last + 1, True)
    assert c.status(leader).last_index == last + 1


def test_copies_of_one_append_in_flight_share_its_outcome(shared_cluster: Cluster) -> None:
    """Copies of one (producer, sequence) sent together: one appends, every other copy
    answers the same indexes as a duplicate, also when a copy that gave up early (its
    deadline passed while the append was in flight) is among them."""
    c = shared_cluster
    leader = c.leader()
    last = c.status(leader).last_index
    request = log_pb2.AppendRequest(records=[b"copies"], producer_id="copies", sequence=1)

    async def go() -> list[log_pb2.AppendResponse | grpc.StatusCode]:
        async with grpc.aio.insecure_channel(c.address(leader)) as channel:
            stub = log_pb2_grpc.LogStub(channel)

            async def one(timeout: float) -> log_pb2.AppendResponse | grpc.StatusCode:
                try:
                    return await stub.Append(request, timeout=timeout)
                except grpc.aio.AioRpcError as exc:
                    return exc.code()

            return await asyncio.gather(
                one(TIMEOUT_S), one(0.0005), *(one(TIMEOUT_S) for _ in range(6))
            )

    answers = asyncio.run(go())
    impatient = answers[1]
    assert impatient == grpc.StatusCode.DEADLINE_EXCEEDED or (
        isinstance(impatient, log_pb2.AppendResponse) and impatient.first_index == last + 1
    ), impatient
    done = [a for i, a in enumerate(answers) if i != 1]
    assert all(isinstance(a, log_pb2.AppendResponse) for a in done), answers
    responses = cast(list[log_pb2.AppendResponse], done)
    assert {(r.first_index, r.last_index) for r in responses} == {(last + 1, last + 1)}
    assert sum(not r.duplicate for r in responses) <= 1
    assert c.status(leader).last_index == last + 1
    assert c.read_all(leader, last + 1) == [(last + 1, b"copies")]


def test_health_is_serving_on_every_node(shared_cluster: Cluster) -> None:
    c = shared_cluster
    for node_id in c.nodes:
        for service in ("", "logsvc.v1.Log"):
            c.wait_health_serving(node_id, service, TIMEOUT_S)
        unknown = rpc_failure(lambda n=node_id: c.health(n, "no.such.Service"))  # type: ignore[misc]
        assert unknown.code is grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_log_service(shared_cluster: Cluster) -> None:
    c = shared_cluster
    # The stub's attribute is untyped in types-grpcio-reflection: name its type here.
    info = cast(
        "grpc.StreamStreamMultiCallable["
        "reflection_pb2.ServerReflectionRequest, reflection_pb2.ServerReflectionResponse]",
        reflection_pb2_grpc.ServerReflectionStub(c.channel("b")).ServerReflectionInfo,
    )
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="logsvc.v1.Log"),
    ]
    listed, described = list(info(iter(requests), timeout=TIMEOUT_S))
    names = {s.name for s in listed.list_services_response.service}
    assert {"logsvc.v1.Log", "grpc.health.v1.Health"} <= names, names
    files = described.file_descriptor_response.file_descriptor_proto
    assert files, described
    assert any(b"logsvc.v1" in f and b"Append" in f for f in files)


def test_follower_answers_not_leader_with_a_hint_and_appends_nothing(
    shared_cluster: Cluster,
) -> None:
    c = shared_cluster
    leader = c.leader()
    follower = followers(c)[0]
    before = c.status(leader).last_index
    request = log_pb2.AppendRequest(records=[b"to-a-follower"], producer_id="hint", sequence=1)
    failure = rpc_failure(lambda: c.stub(follower).Append(request, timeout=TIMEOUT_S))
    assert (failure.code, failure.kind) == (grpc.StatusCode.UNAVAILABLE, "NOT_LEADER"), failure
    assert failure.metadata.get("logsvc-leader-id") == leader, failure
    assert failure.metadata.get("logsvc-leader-address") == c.address(leader), failure
    trim = rpc_failure(
        lambda: c.stub(follower).Trim(log_pb2.TrimRequest(before_index=1), timeout=TIMEOUT_S)
    )
    assert (trim.code, trim.kind) == (grpc.StatusCode.UNAVAILABLE, "NOT_LEADER"), trim
    assert c.status(leader).last_index == before
    # The same request at the leader is a first append, not a duplicate.
    response = c.stub(leader).Append(request, timeout=TIMEOUT_S)
    assert (response.first_index, response.duplicate) == (before + 1, False)
    assert response.header.leader_id == leader and response.header.node_id == leader


def test_read_batches_respect_batch_records_max(shared_cluster: Cluster) -> None:
    c = shared_cluster

    async def go() -> int:
        async with LogClient(c.addresses) as client:
            return (await client.append([f"batched-{i}".encode() for i in range(10)])).first_index

    first = asyncio.run(go())
    c.wait_last_index(first + 9)
    for node_id in c.nodes:
        responses = list(
            c.stub(node_id).Read(
                log_pb2.ReadRequest(from_index=first, batch_records_max=3), timeout=TIMEOUT_S
            )
        )
        assert all(1 <= len(r.records) <= 3 for r in responses), node_id
        records = [(r.index, r.payload) for resp in responses for r in resp.records][:10]
        assert records == [(first + i, f"batched-{i}".encode()) for i in range(10)]
        assert all(r.header.node_id == node_id for r in responses)


# -- AppendStream -------------------------------------------------------------------------------


def stream_append(
    c: Cluster, node_id: str, requests: list[log_pb2.AppendStreamRequest]
) -> list[log_pb2.AppendStreamResponse]:
    """Send every request on one AppendStream without waiting, then read every answer."""

    async def go() -> list[log_pb2.AppendStreamResponse]:
        async with grpc.aio.insecure_channel(c.address(node_id)) as channel:
            call = log_pb2_grpc.LogStub(channel).AppendStream(timeout=TIMEOUT_S)
            for request in requests:
                await call.write(request)
            await call.done_writing()
            return [answer async for answer in call]

    return asyncio.run(go())


def one(request_id: int, *records: bytes, **fields: object) -> log_pb2.AppendStreamRequest:
    append = log_pb2.AppendRequest(records=list(records), **fields)  # type: ignore[arg-type]
    return log_pb2.AppendStreamRequest(request_id=request_id, append=append)


def test_append_stream_pipelines_appends_in_order(shared_cluster: Cluster) -> None:
    c = shared_cluster
    leader = c.leader()
    last = c.status(leader).last_index
    payloads = [b"stream-%d" % i for i in range(50)]
    answers = stream_append(c, leader, [one(100 + i, p) for i, p in enumerate(payloads)])
    assert [a.request_id for a in answers] == [100 + i for i in range(50)]
    assert all(a.WhichOneof("outcome") == "appended" for a in answers), answers[:3]
    indexes = [(a.appended.first_index, a.appended.last_index) for a in answers]
    assert indexes == [(last + 1 + i, last + 1 + i) for i in range(50)]
    assert all(a.appended.header.leader_id == leader for a in answers)
    c.wait_last_index(last + 50)
    for node_id in c.nodes:
        assert c.read_all(node_id, last + 1)[:50] == list(
            zip(range(last + 1, last + 51), payloads, strict=True)
        ), node_id


def test_append_stream_answers_each_failure_and_goes_on(shared_cluster: Cluster) -> None:
    c = shared_cluster
    leader = c.leader()
    last = c.status(leader).last_index
    answers = stream_append(
        c,
        leader,
        [
            one(1),  # no records
            one(2, b"x" * (1 << 21)),  # over the default record size limit
            one(3, b"seq-zero", producer_id="stream-p", sequence=0),
            one(4, b"fenced", if_last_index=last + 5),
            one(5, b"kept", producer_id="stream-p", sequence=1),
            one(6, b"kept", producer_id="stream-p", sequence=1),  # a retry: the same outcome
        ],
    )
    by_id = {a.request_id: a for a in answers}
    assert sorted(by_id) == [1, 2, 3, 4, 5, 6]
    for request_id in (1, 2, 3):
        error = by_id[request_id].error
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0], error
        assert error.kind == log_pb2.ERROR_KIND_UNSPECIFIED and error.message
    assert by_id[4].error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert "nothing appended" in by_id[4].error.message
    kept, retry = by_id[5].appended, by_id[6].appended
    assert (kept.first_index, kept.duplicate) == (last + 1, False)
    assert (retry.first_index, retry.last_index, retry.duplicate) == (last + 1, last + 1, True)
    assert c.status(leader).last_index == last + 1


def test_append_stream_on_a_follower_answers_not_leader(shared_cluster: Cluster) -> None:
    c = shared_cluster
    leader = c.leader()
    last = c.status(leader).last_index
    follower = followers(c)[0]
    answers = stream_append(c, follower, [one(7, b"nope"), one(8, b"nope")])
    assert [a.request_id for a in answers] == [7, 8]
    for answer in answers:
        assert answer.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
        assert answer.error.kind == log_pb2.NOT_LEADER
        assert (answer.error.leader_id, answer.error.leader_address) == (
            leader,
            c.address(leader),
        )
    assert c.status(leader).last_index == last


def test_client_appends_from_many_tasks_each_get_their_own_index(shared_cluster: Cluster) -> None:
    """LogClient multiplexes concurrent appends over one AppendStream: every caller must be
    answered with the index its own record was written at, not a neighbour's."""
    c = shared_cluster
    payloads = [b"task-%03d" % i for i in range(60)]

    async def go() -> list[int]:
        async with LogClient(c.addresses) as client:
            results = await asyncio.gather(*(client.append([p]) for p in payloads))
        assert all(r.first_index == r.last_index and not r.duplicate for r in results)
        return [r.first_index for r in results]

    indexes = asyncio.run(go())
    assert len(set(indexes)) == len(payloads)
    c.wait_last_index(max(indexes))
    written = dict(c.read_all(c.leader(), min(indexes)))
    assert [written[i] for i in indexes] == payloads


class UnaryOnly(log_pb2_grpc.LogServicer):
    """A node of an older release: unary Append only (AppendStream is UNIMPLEMENTED)."""

    def __init__(self) -> None:
        self.requests: list[log_pb2.AppendRequest] = []

    async def Append(
        self,
        request: log_pb2.AppendRequest,
        context: grpc.aio.ServicerContext[log_pb2.AppendRequest, log_pb2.AppendResponse],
    ) -> log_pb2.AppendResponse:
        self.requests.append(request)
        first = 41 + 10 * len(self.requests)
        return log_pb2.AppendResponse(
            first_index=first, last_index=first + len(request.records) - 1
        )


def test_client_falls_back_to_unary_append_without_append_stream() -> None:
    async def go() -> tuple[list[tuple[int, int]], list[log_pb2.AppendRequest]]:
        servicer = UnaryOnly()  # type: ignore[abstract]  # the base answers UNIMPLEMENTED
        server = grpc.aio.server()
        log_pb2_grpc.add_LogServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with LogClient([f"127.0.0.1:{port}"], producer_id="old", timeout_s=5) as client:
                got = [await client.append([b"a", b"b"]), await client.append([b"c"])]
        finally:
            await server.stop(None)
        return [(r.first_index, r.last_index) for r in got], servicer.requests

    results, requests = asyncio.run(go())
    assert results == [(51, 52), (61, 61)]
    assert [(list(r.records), r.producer_id, r.sequence) for r in requests] == [
        ([b"a", b"b"], "old", 1),
        ([b"c"], "old", 2),
    ]
