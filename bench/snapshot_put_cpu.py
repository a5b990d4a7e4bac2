"""CPU each log node spends per stored snapshot, with no other load.

    .venv/bin/python bench/snapshot_put_cpu.py [--puts 8] [--size-mb 12]

Three `logsvc serve` nodes as `memlog up` starts them; --puts puts of --size-mb random bytes
one after the other (each waits until the snapshot is durable on a majority), then 1.5 s for
the last push to end. Per node: CPU ms per put (/proc/PID/stat) less what it used idle over
the same time (measured for 4 s first), and what the putting client used. CPU seconds hardly
depend on what else runs on a shared machine, latencies do: A/B two trees with
PYTHONPATH=TREE, interleaved. It also counts, from the nodes' logs, the copies each node got
by push and by fetch (each node should get each snapshot once).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from logsvc.client import LogClient, put_snapshot
from logsvc.local import LocalCluster

CLK_TCK = os.sysconf("SC_CLK_TCK")
IDLE_S = 4.0
SETTLE_S = 1.5


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


async def measure(cluster: LocalCluster, blob: Path, puts: int) -> None:
    pids = {z: p.pid for z, p in cluster.processes.items()}
    async with LogClient(cluster.addresses()) as client:
        for _ in range(4):
            await client.append([b"x"] * 10)
        await asyncio.sleep(1.0)
        before = {z: cpu_s(p) for z, p in pids.items()}
        await asyncio.sleep(IDLE_S)
        idle = {z: (cpu_s(p) - before[z]) / IDLE_S for z, p in pids.items()}
        before = {z: cpu_s(p) for z, p in pids.items()}
        mine = own_cpu_s()
        started = time.monotonic()
        for _ in range(puts):
            await client.append([b"x"] * 10)
            index = max([(await client.status(a)).commit_index for a in cluster.addresses()])
            await put_snapshot(client, index, blob)
        await asyncio.sleep(SETTLE_S)
        wall = time.monotonic() - started
        per_put = {
            z: (cpu_s(p) - before[z] - idle[z] * wall) / puts * 1000 for z, p in pids.items()
        }
        leader = await client.find_leader()
        print(
            "CPU ms per put (idle use subtracted): "
            + ", ".join(
                f"{z}{' (leader)' if cluster.address(z) == leader else ''} {v:.0f}"
                for z, v in per_put.items()
            )
            + f"; nodes {sum(per_put.values()):.0f}"
            f"; client {(own_cpu_s() - mine) / puts * 1000:.0f}"
            f"; wall per put {(wall - SETTLE_S) / puts * 1000:.0f} ms"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--puts", type=int, default=8)
    parser.add_argument("--size-mb", type=float, default=12.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="memlog-put-cpu-"))
    cluster = LocalCluster(data_dir=root, base_port=random.randrange(20_000, 60_000))
    blob = root / "blob"
    blob.write_bytes(os.urandom(int(args.size_mb * (1 << 20))))
    try:
        cluster.start()
        cluster.wait_for_leader()
        asyncio.run(measure(cluster, blob, args.puts))
    finally:
        cluster.stop()
        for z in cluster.zones:
            text = cluster.log_path(z).read_text()
            print(
                f"{z}: pushed {text.count('pushed by')}, fetched {text.count('fetched snapshot')}"
            )
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
