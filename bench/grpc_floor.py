"""The latency floor of logsvc's topology in grpc-aio: what one unbatched Append would cost
with no Raft, no protobuf and no record bookkeeping at all.

    .venv/bin/python bench/grpc_floor.py [--calls 2000]

Two node processes, A and B, on 127.0.0.1, each with a uvloop event loop, a grpc-aio server
and a client stream to the other, as logsvc's peers have. A client (grpc-aio unary call,
like bench/logsvc_append.py's) sends raw bytes to A; A forwards them on its stream to B and
syncs a 100-byte rocksdict write on its writer thread meanwhile; B syncs the same and
answers on its own stream to A; A replies once both syncs are done. That is the critical
path of a commit on a majority of three (leader plus one follower), reduced to the
transport and the disk. `bench/logsvc_append.py` runs it in the same run as the cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# First: it sets gRPC's settings (GRPC_EXPERIMENTS, logsvc/__init__.py) before grpc loads.
import logsvc  # noqa: F401

# isort: split
import grpc
import uvloop
from rocksdict import Options, Rdict, WriteBatch, WriteOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.logsvc.cluster import free_ports

RECORD = b"x" * 100
SERVICE = "floor.Floor"


def _same(data: bytes) -> bytes:
    return data


class SyncedLog:
    """A rocksdict written as logsvc's storage writes: unsynced, then the WAL synced."""

    def __init__(self, path: Path) -> None:
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self.db = Rdict(str(path), options)
        self._nosync = WriteOptions()
        self._nosync.sync = False
        self._index = 0

    def append(self) -> None:
        self._index += 1
        batch = WriteBatch(raw_mode=True)
        batch.put(self._index.to_bytes(8, "big"), RECORD)
        self.db.write(batch, self._nosync)
        self.db.flush_wal(True)


async def run_node(port: int, peer_port: int, data: Path) -> None:
    loop = asyncio.get_running_loop()
    writer = ThreadPoolExecutor(1)
    log = SyncedLog(data)
    outbox: asyncio.Queue[bytes] = asyncio.Queue()
    waiting: dict[bytes, asyncio.Future[None]] = {}

    async def deliver(requests: AsyncIterator[bytes], context: Any) -> bytes:
        async for message in requests:
            kind, key = message[:1], message[1:]
            if kind == b"A":  # an append from the "leader": sync, then acknowledge
                await loop.run_in_executor(writer, log.append)
                outbox.put_nowait(b"R" + key)
            else:
                done = waiting.pop(key, None)
                if done is not None and not done.done():
                    done.set_result(None)
        return b""

    async def append(request: bytes, context: Any) -> bytes:
        acked: asyncio.Future[None] = loop.create_future()
        waiting[request] = acked
        outbox.put_nowait(b"A" + request)
        await loop.run_in_executor(writer, log.append)
        await acked
        return b"ok"

    server = grpc.aio.server()
    handlers = {
        "Deliver": grpc.stream_unary_rpc_method_handler(deliver, _same, _same),
        "Append": grpc.unary_unary_rpc_method_handler(append, _same, _same),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()

    async def outgoing() -> AsyncIterator[bytes]:
        while True:
            yield await outbox.get()

    while True:  # the stream to the peer, reconnected until the process is stopped
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{peer_port}") as channel:
                await channel.channel_ready()
                call = channel.stream_unary(f"/{SERVICE}/Deliver", _same, _same)
                await call(outgoing())
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.05)


@dataclass(frozen=True, slots=True)
class FloorResult:
    calls: int
    p50_ms: float
    p99_ms: float


async def _time_calls(port: int, calls: int, warmup: int) -> list[float]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)
        call: Callable[[bytes], Any] = channel.unary_unary(f"/{SERVICE}/Append", _same, _same)
        times: list[float] = []
        for i in range(warmup + calls):
            start = time.perf_counter()
            await asyncio.wait_for(call(b"%d" % i), 10)
            times.append(time.perf_counter() - start)
    return sorted(times[warmup:])


def measure_floor(root: Path, calls: int = 2000) -> FloorResult:
    """Start A and B, time `calls` unbatched appends through A, stop both by PID."""
    ports = free_ports(2)
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "node", str(mine), str(peer), str(root / name)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, mine, peer in (("a", ports[0], ports[1]), ("b", ports[1], ports[0]))
    ]
    try:
        times = uvloop.run(_time_calls(ports[0], calls, warmup=200))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return FloorResult(
        calls=calls,
        p50_ms=times[len(times) // 2] * 1000,
        p99_ms=times[min(len(times) - 1, int(len(times) * 0.99))] * 1000,
    )


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "node":
        port, peer_port, data = int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
        uvloop.run(run_node(port, peer_port, data))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="grpc-floor-", dir=os.getcwd()) as root:
        result = measure_floor(Path(root), args.calls)
    print(f"grpc-aio floor: p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms "
          f"({result.calls} calls)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
