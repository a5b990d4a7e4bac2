"""ReadIndex latency at the log leader, with every node up and with one follower paused.

    .venv/bin/python bench/readindex_pause.py

Starts three `logsvc serve` nodes on 127.0.0.1 (default timing), then for 5 s per phase
asks the leader for a read index in a loop (20 ms apart) under a light append load (a
1 kB record every 10 ms): all nodes up; one follower paused (SIGSTOP); after its SIGCONT.
Prints the median, p99 and max of each phase. (Issue 21: is the leader's ReadIndex slow
while a follower is paused, as the shim-level failover runs suggested?)
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from logsvc.client import LogClient
from logsvc.local import LocalCluster
from tests.cacheshim.harness import free_port_block

PHASE_S = 5.0


async def phase(cluster: LocalCluster, leader_address: str, name: str) -> None:
    async with LogClient(cluster.addresses(), timeout_s=10) as log:
        started = time.monotonic()

        async def load() -> None:
            while time.monotonic() - started < PHASE_S:
                await log.append([b"y" * 1000])
                await asyncio.sleep(0.01)

        appending = asyncio.create_task(load())
        took: list[float] = []
        while time.monotonic() - started < PHASE_S:
            asked = time.monotonic()
            await log.read_index(leader_address, timeout_s=10)
            took.append(time.monotonic() - asked)
            await asyncio.sleep(0.02)
        await appending
    took.sort()
    print(
        f"{name}: {len(took)} read indexes, median {statistics.median(took) * 1000:.1f} ms, "
        f"p99 {took[int(len(took) * 0.99)] * 1000:.1f} ms, max {took[-1] * 1000:.1f} ms",
        flush=True,
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        cluster = LocalCluster(data_dir=Path(root), base_port=free_port_block(6))
        cluster.start()
        try:
            leader_address = cluster.wait_for_leader()
            leader = cluster.node_at(leader_address)
            follower = next(z for z in cluster.zones if z != leader)
            asyncio.run(phase(cluster, leader_address, "all up"))
            cluster.processes[follower].send_signal(signal.SIGSTOP)
            try:
                asyncio.run(phase(cluster, leader_address, f"follower {follower} paused"))
            finally:
                cluster.processes[follower].send_signal(signal.SIGCONT)
            asyncio.run(phase(cluster, leader_address, "after the resume"))
        finally:
            for proc in cluster.processes.values():
                if proc.poll() is None:
                    proc.terminate()
            for proc in cluster.processes.values():
                proc.wait(30)


if __name__ == "__main__":
    main()
