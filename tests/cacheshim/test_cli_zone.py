"""`cacheshim serve` finds the log node of its own zone by asking each node's Status.

This is how a shim on Kubernetes reads from the log node in its zone: the pod knows its zone
(the node's topology label, through the downward API) and every log node reports its own
zone in Status. The log nodes here are small gRPC servers that answer Status only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from cacheshim import cli
from logsvc.v1 import log_pb2, log_pb2_grpc
from tests.cacheshim.harness import Memlog, client, execute
from tests.logsvc.cluster import free_ports

T = TypeVar("T")
ZONES = ["zone-a", "zone-b", "zone-c"]


class StatusOnly(log_pb2_grpc.LogServicer):
    """A log node that only tells its zone; every other call is UNIMPLEMENTED."""

    def __init__(self, zone: str) -> None:
        self.zone = zone
        self.calls = 0

    async def Append(
        self,
        request: log_pb2.AppendRequest,
        context: grpc.aio.ServicerContext[log_pb2.AppendRequest, log_pb2.AppendResponse],
    ) -> log_pb2.AppendResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "status only")

    async def AppendStream(
        self,
        request_iterator: AsyncIterator[log_pb2.AppendStreamRequest],
        context: grpc.aio.ServicerContext[
            log_pb2.AppendStreamRequest, log_pb2.AppendStreamResponse
        ],
    ) -> AsyncIterator[log_pb2.AppendStreamResponse]:
        nothing: list[log_pb2.AppendStreamResponse] = []
        for response in nothing:
            yield response
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "status only")

    async def Read(
        self,
        request: log_pb2.ReadRequest,
        context: grpc.aio.ServicerContext[log_pb2.ReadRequest, log_pb2.ReadResponse],
    ) -> AsyncIterator[log_pb2.ReadResponse]:
        nothing: list[log_pb2.ReadResponse] = []
        for response in nothing:  # a stream that ends at once, then the error
            yield response
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "status only")

    async def ReadIndex(
        self,
        request: log_pb2.ReadIndexRequest,
        context: grpc.aio.ServicerContext[log_pb2.ReadIndexRequest, log_pb2.ReadIndexResponse],
    ) -> log_pb2.ReadIndexResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "status only")

    async def Trim(
        self,
        request: log_pb2.TrimRequest,
        context: grpc.aio.ServicerContext[log_pb2.TrimRequest, log_pb2.TrimResponse],
    ) -> log_pb2.TrimResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "status only")

    async def PutSnapshot(
        self,
        request_iterator: AsyncIterator[log_pb2.SnapshotChunk],
        context: grpc.aio.ServicerContext[log_pb2.SnapshotChunk, log_pb2.PutSnapshotResponse],
    ) -> log_pb2.PutSnapshotResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "status only")

    async def GetSnapshot(
        self,
        request: log_pb2.GetSnapshotRequest,
        context: grpc.aio.ServicerContext[log_pb2.GetSnapshotRequest, log_pb2.SnapshotChunk],
    ) -> AsyncIterator[log_pb2.SnapshotChunk]:
        nothing: list[log_pb2.SnapshotChunk] = []
        for chunk in nothing:
            yield chunk
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "status only")

    async def ListSnapshots(
        self,
        request: log_pb2.ListSnapshotsRequest,
        context: grpc.aio.ServicerContext[
            log_pb2.ListSnapshotsRequest, log_pb2.ListSnapshotsResponse
        ],
    ) -> log_pb2.ListSnapshotsResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "status only")

    async def MemberAdd(
        self,
        request: log_pb2.MemberAddRequest,
        context: grpc.aio.ServicerContext[log_pb2.MemberAddRequest, log_pb2.MemberResponse],
    ) -> log_pb2.MemberResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "status only")

    async def MemberPromote(
        self,
        request: log_pb2.MemberChangeRequest,
        context: grpc.aio.ServicerContext[log_pb2.MemberChangeRequest, log_pb2.MemberResponse],
    ) -> log_pb2.MemberResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "status only")

    async def MemberRemove(
        self,
        request: log_pb2.MemberChangeRequest,
        context: grpc.aio.ServicerContext[log_pb2.MemberChangeRequest, log_pb2.MemberResponse],
    ) -> log_pb2.MemberResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "status only")

    async def MemberList(
        self,
        request: log_pb2.MemberListRequest,
        context: grpc.aio.ServicerContext[log_pb2.MemberListRequest, log_pb2.MemberResponse],
    ) -> log_pb2.MemberResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "status only")

    async def Status(
        self,
        request: log_pb2.StatusRequest,
        context: grpc.aio.ServicerContext[log_pb2.StatusRequest, log_pb2.StatusResponse],
    ) -> log_pb2.StatusResponse:
        self.calls += 1
        return log_pb2.StatusResponse(zone=self.zone, role="follower")


@asynccontextmanager
async def log_nodes(zones: Sequence[str]) -> AsyncIterator[tuple[list[str], list[StatusOnly]]]:
    """One Status-only server per zone on 127.0.0.1; their addresses and servicers."""
    servers: list[grpc.aio.Server] = []
    servicers = [StatusOnly(z) for z in zones]
    addresses = [f"127.0.0.1:{p}" for p in free_ports(len(zones))]
    try:
        for address, servicer in zip(addresses, servicers, strict=True):
            server = grpc.aio.server()
            log_pb2_grpc.add_LogServicer_to_server(servicer, server)
            assert server.add_insecure_port(address) != 0
            await server.start()
            servers.append(server)
        yield addresses, servicers
    finally:
        for server in servers:
            await server.stop(None)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.mark.parametrize("zone", ZONES)
def test_the_node_whose_status_reports_the_zone_is_chosen(zone: str) -> None:
    async def main() -> tuple[str, list[str]]:
        async with log_nodes(ZONES) as (addresses, _):
            return await cli.zone_local_log(addresses, zone, timeout_s=5), addresses

    got, addresses = run(main())
    assert got == addresses[ZONES.index(zone)]


def test_a_node_that_does_not_answer_is_skipped() -> None:
    dead = f"127.0.0.1:{free_ports(1)[0]}"

    async def main() -> tuple[str, str]:
        async with log_nodes(["zone-a", "zone-b"]) as (addresses, _):
            got = await cli.zone_local_log([dead, *addresses], "zone-b", timeout_s=5)
            return got, addresses[1]

    got, expected = run(main())
    assert got == expected


def test_no_zone_means_the_first_address_and_no_question() -> None:
    async def main() -> tuple[str, list[str], int]:
        async with log_nodes(["zone-a", "zone-b"]) as (addresses, servicers):
            got = await cli.zone_local_log(list(reversed(addresses)), "", timeout_s=5)
            return got, addresses, sum(s.calls for s in servicers)

    got, addresses, calls = run(main())
    assert got == addresses[1] and calls == 0


def test_no_node_in_the_zone_falls_back_to_the_first_at_once() -> None:
    async def main() -> tuple[str, list[str], float]:
        async with log_nodes(ZONES) as (addresses, _):
            started = time.monotonic()
            got = await cli.zone_local_log(addresses, "zone-x", timeout_s=20)
            return got, addresses, time.monotonic() - started

    got, addresses, took_s = run(main())
    assert got == addresses[0]
    assert took_s < 5, "every node answered: there is nothing to wait for"


def test_silence_falls_back_to_the_first_after_the_timeout() -> None:
    dead = [f"127.0.0.1:{p}" for p in free_ports(2)]
    started = time.monotonic()
    assert run(cli.zone_local_log(dead, "zone-a", timeout_s=1.0)) == dead[0]
    assert 1.0 <= time.monotonic() - started < 10


def test_a_zone_node_that_starts_late_is_still_found() -> None:
    port = free_ports(1)[0]
    address = f"127.0.0.1:{port}"

    async def main() -> str:
        async with log_nodes(["zone-a"]) as (others, _):
            lookup = asyncio.create_task(
                cli.zone_local_log([*others, address], "zone-b", timeout_s=20)
            )
            await asyncio.sleep(1.0)
            assert not lookup.done(), "zone-b's node has not answered yet: keep asking"
            server = grpc.aio.server()
            log_pb2_grpc.add_LogServicer_to_server(StatusOnly("zone-b"), server)
            server.add_insecure_port(address)
            await server.start()
            try:
                return await asyncio.wait_for(lookup, 15)
            finally:
                await server.stop(None)

    assert run(main()) == address


def test_an_explicit_local_log_wins_over_the_zone() -> None:
    args = cli.build_parser().parse_args(
        ["serve", "--log", "h1:1,h2:2", "--local-log", "h2:2", "--zone", "zone-a"]
    )
    # No node is reachable: an explicit --local-log must not ask anyone.
    assert run(cli.local_log_address(args, ["h1:1", "h2:2"])) == "h2:2"


def test_serve_flags_without_local_log_look_the_zone_up() -> None:
    async def main() -> tuple[str, list[str]]:
        async with log_nodes(ZONES) as (addresses, _):
            args = cli.build_parser().parse_args(
                ["serve", "--log", ",".join(addresses), "--zone", "zone-c"]
            )
            return await cli.local_log_address(args, addresses), addresses

    got, addresses = run(main())
    assert got == addresses[2]


class ZoneOnlyMemlog(Memlog):
    """`memlog up`, but the shims get --zone and no --local-log, as on Kubernetes."""

    def shim_command(self, i: int) -> list[str]:
        command = super().shim_command(i)
        at = command.index("--local-log")
        del command[at : at + 2]
        return command


def test_real_shims_read_from_the_log_node_of_their_zone(tmp_path: Path) -> None:
    deployment = ZoneOnlyMemlog(tmp_path, shims=2)
    try:
        deployment.start()
        assert deployment.cluster is not None
        for i, zone in enumerate(("a", "b")):
            address = deployment.cluster.address(zone)
            assert f"zone {zone}: reading the log from {address}" in deployment.log_tail(
                f"shim-{i + 1}.log", lines=200
            )
        first, second = (client(port) for port in deployment.shim_ports)
        try:
            assert execute(first, "SET", "zone-key", "v") in (True, b"OK")
            deadline = time.monotonic() + 10
            while execute(second, "GET", "zone-key") != b"v":
                assert time.monotonic() < deadline, "the second shim never applied the write"
                time.sleep(0.05)
        finally:
            first.close()
            second.close()
    finally:
        deployment.stop()
