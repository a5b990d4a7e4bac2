"""A node whose disk fills up, with real processes and a real RocksDB write error.

Node c runs with RLIMIT_FSIZE (tests/logsvc/cluster.py, `file_bytes_max`): once its RocksDB
WAL would grow past the limit, the write fails with EFBIG ("File too large"), as it would
with ENOSPC on a full disk, and c's Ready loop stops. Before the fix c stepped down but its
Read streams and ReadIndex calls waited forever (and a shim tailing c never moved on). Now
they fail fast with UNAVAILABLE, Status says "failed", and LogClient's follow read goes on
from another node without a gap.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2

from logsvc.client import LogClient
from logsvc.transport import CLIENT_CHANNEL_OPTIONS
from logsvc.v1 import log_pb2, log_pb2_grpc
from tests.logsvc.cluster import Cluster
from tests.logsvc.conftest import Clusters

MIB = 1 << 20
FULL = "c"
# Under the 16 MiB memtable (logsvc/storage.py): a WAL file is cut when its memtable is full,
# so a larger limit would never be reached by one file.
FILE_BYTES_MAX = 8 * MIB
TIMEOUT_S = 60.0
FAIL_FAST_S = 4.0  # under ReadIndex's own 5 s timeout (which the old code waited out)
TAIL_END_S = 10.0  # the old code's tail never ended


def make_leader(c: Cluster, wanted: bool) -> str:
    """Restart leaders until FULL leads (wanted) or does not; returns the leader."""
    for _ in range(4):
        leader = c.leader()
        if (leader == FULL) == wanted:
            return leader
        # SIGTERM hands leadership to the most caught-up peer, the highest id on a tie (c).
        victim = leader if wanted else FULL
        c.stop(victim)
        c.start(victim)
        c.wait_serving(victim)
    raise AssertionError(f"could not make {FULL} {'the' if wanted else 'not the'} leader")


@pytest.mark.parametrize("role", ["follower", "leader"])
def test_a_node_with_a_full_disk_fails_its_reads_fast(clusters: Clusters, role: str) -> None:
    c = clusters(file_bytes_max={FULL: FILE_BYTES_MAX})
    c.start_all()
    make_leader(c, wanted=role == "leader")
    addresses = [c.address(FULL), *(c.address(i) for i in c.nodes if i != FULL)]

    async def go() -> None:
        async with grpc.aio.insecure_channel(
            c.address(FULL), options=CLIENT_CHANNEL_OPTIONS
        ) as channel:
            stub = log_pb2_grpc.LogStub(channel)
            # A tail on the node whose disk will fill, as a shim in its zone has.
            tail = stub.Read(log_pb2.ReadRequest(from_index=1, follow=True))

            async def drain() -> grpc.StatusCode:
                try:
                    async for _ in tail:
                        pass
                except grpc.aio.AioRpcError as exc:
                    return exc.code()
                return grpc.StatusCode.OK

            tail_ended = asyncio.create_task(drain())
            got: list[tuple[int, bytes]] = []

            async def follow() -> None:
                async with LogClient(addresses, timeout_s=TIMEOUT_S) as reader:
                    async for record in reader.read(1, follow=True):
                        got.append(record)

            follower = asyncio.create_task(follow())
            async with LogClient(addresses, timeout_s=TIMEOUT_S) as writer:
                # Fill c's disk with 1 MiB records until its storage fails.
                failed_at = None
                for i in range(3 * FILE_BYTES_MAX // MIB):
                    await writer.append([bytes([i % 256]) * MIB])
                    if "the ready loop died" in c.log_text(FULL):
                        failed_at = time.monotonic()
                        break
                assert failed_at is not None, f"{FULL}'s storage never failed"
                # Its tail fails at once, UNAVAILABLE, instead of waiting forever.
                code = await asyncio.wait_for(tail_ended, TAIL_END_S)
                assert code is grpc.StatusCode.UNAVAILABLE, code
                # So do ReadIndex and new Reads.
                started = time.monotonic()
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.ReadIndex(log_pb2.ReadIndexRequest(), timeout=TIMEOUT_S)
                assert info.value.code() is grpc.StatusCode.UNAVAILABLE, info.value
                assert time.monotonic() - started < FAIL_FAST_S
                assert "failed" in (info.value.details() or "")
                status = await writer.status(c.address(FULL))
                assert status.role == "failed" and status.header.leader_id == "", status
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    async for _ in stub.Read(log_pb2.ReadRequest(from_index=1, follow=True)):
                        pass
                assert info.value.code() is grpc.StatusCode.UNAVAILABLE, info.value
                # The others go on (with a new leader if c led), and so does the writer.
                last = 0
                for i in range(5):
                    last = (await writer.append([b"after-%d" % i])).last_index
                # LogClient asks another node for a read index when c cannot give one.
                started = time.monotonic()
                assert await writer.read_index(c.address(FULL)) >= last
                assert time.monotonic() - started < FAIL_FAST_S
            # LogClient's tail moved to another node: every record, in order, no gap.
            deadline = time.monotonic() + TIMEOUT_S
            while len(got) < last:
                assert time.monotonic() < deadline, f"the follow read got {len(got)} of {last}"
                await asyncio.sleep(0.05)
            follower.cancel()
            assert [index for index, _ in got[:last]] == list(range(1, last + 1))
            assert got[last - 1][1] == b"after-4"

    asyncio.run(go())
    # Health follows within its polling interval.
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    c.wait_until(lambda: c.health(FULL) == not_serving, TIMEOUT_S, f"{FULL} is NOT_SERVING")
    others = [i for i in c.nodes if i != FULL]
    assert c.leader(among=others) in others
    # SIGTERM still stops it cleanly, and once its disk has room it catches up.
    code = c.stop(FULL)
    assert code == 0, f"exit {code}: {c.log_tail(FULL)}"
    c.file_bytes_max.pop(FULL)
    c.start(FULL)
    c.wait_serving(FULL)
    last = c.status(c.leader()).last_index
    c.wait_last_index(last, timeout=TIMEOUT_S)
    assert c.read_all(FULL, last) == c.read_all(c.leader(), last)
