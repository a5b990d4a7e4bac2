"""Append latency while a snapshot is stored, and a snapshot's put and get throughput.

    .venv/bin/python bench/snapshot_put.py [--size-mib 64] [--rounds 2] [-- SERVE FLAGS...]

A fresh three-node cluster of real `logsvc serve` processes (the test harness's, on free
ports). Each round: one append at a time through `LogClient` for 3 s (the baseline), then
the same while a snapshot of --size-mib random bytes is put; then the snapshot is read back
from the leader. Prints p50/p99/max of the appends in both phases, and the put and get
rates. Flags after `--` go to every `logsvc serve` (e.g. `--snapshot-bytes-per-s 0`).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from logsvc.client import LogClient, get_snapshot, put_snapshot
from tests.logsvc.cluster import Cluster

BASELINE_S = 3.0


async def appends(client: LogClient, stop: asyncio.Event) -> list[float]:
    latencies: list[float] = []
    while not stop.is_set():
        started = time.perf_counter()
        await client.append([b"x" * 100])
        latencies.append(time.perf_counter() - started)
    return latencies


def summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000

    return f"n={len(ordered)} p50={at(0.5):.2f} p99={at(0.99):.2f} max={ordered[-1] * 1000:.1f} ms"


async def run(cluster: Cluster, size_mib: int, rounds: int) -> None:
    data = random.Random(size_mib).randbytes(size_mib << 20)
    async with LogClient(cluster.addresses) as client, LogClient(cluster.addresses) as putter:
        await client.append([b"warm-up"])
        for round_no in range(rounds):
            stop = asyncio.Event()
            task = asyncio.create_task(appends(client, stop))
            await asyncio.sleep(BASELINE_S)
            stop.set()
            baseline = await task
            stop = asyncio.Event()
            task = asyncio.create_task(appends(client, stop))
            index = (await client.append([b"covered"])).last_index
            started = time.monotonic()
            await put_snapshot(putter, index, data)
            put_s = time.monotonic() - started
            stop.set()
            during = await task
            leader = await putter.find_leader()
            started = time.monotonic()
            _, got = await get_snapshot(putter, index, address=leader)
            get_s = time.monotonic() - started
            assert got == data
            print(
                f"round {round_no}: appends without a put {summary(baseline)}; during a "
                f"{size_mib} MiB put {summary(during)}; put {put_s:.2f} s "
                f"({size_mib / put_s:.0f} MiB/s), get {get_s:.2f} s ({size_mib / get_s:.0f} MiB/s)",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("serve_flags", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp), extra_args=tuple(args.serve_flags))
        try:
            cluster.start_all()
            asyncio.run(run(cluster, args.size_mib, args.rounds))
        finally:
            cluster.close()


if __name__ == "__main__":
    main()
