"""CPU per acknowledged SET, process by process, for several checkouts of memlog in one run.

    .venv/bin/python bench/write_path_ab.py NAME=DIR [NAME=DIR ...] [--rounds 2]

Each DIR is a checkout of this repository (its C extensions built or copied in); its log
nodes and shim run with PYTHONPATH=DIR, taking turns round by round. For each, redis-benchmark
`-t set -c 50 -P 1` (20,000 requests) and `-P 16` (80,000): SET/s, the CPU time of each
process per SET (from /proc/PID/stat), and the records per Append (from the leader's Status).
The idle CPU of each process (5 s before the load) is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from write_path import bench, cpu_s, load  # bench/ is on sys.path when run as a script

from logsvc.client import LogClient
from tests.cacheshim.harness import Memlog


async def indexes(addresses: list[str]) -> tuple[int, int]:
    async with LogClient(addresses) as client:
        leader = await client.find_leader()
        assert leader is not None
        st = await client.status(leader)
        return st.raft_last_index, st.last_index


def one(name: str, where: Path, rnd: int, out: dict[tuple[str, str], list[float]]) -> None:
    os.environ["PYTHONPATH"] = str(where)
    memlog = Memlog(Path(tempfile.mkdtemp(prefix=f"ab-{name}-")))
    try:
        memlog.start()
        assert memlog.cluster is not None
        pids = {z: p.pid for z, p in memlog.cluster.processes.items()}
        pids["shim"] = memlog.shim_procs[0].pid
        time.sleep(1)
        before = {k: cpu_s([p]) for k, p in pids.items()}
        time.sleep(5)
        idle = {k: round((cpu_s([p]) - before[k]) / 5, 3) for k, p in pids.items()}
        print(f"round {rnd} {name}: idle cores {idle}", flush=True)
        for pipeline in (1, 16):
            n = 20000 * (4 if pipeline == 16 else 1)
            first = asyncio.run(indexes(memlog.cluster.addresses()))
            before = {k: cpu_s([p]) for k, p in pids.items()}
            rps = bench(memlog.shim_ports[0], "set", 50, pipeline, n)["SET"][0]
            used = {k: (cpu_s([p]) - before[k]) / n * 1e6 for k, p in pids.items()}
            last = asyncio.run(indexes(memlog.cluster.addresses()))
            per_append = (last[1] - first[1]) / max(1, last[0] - first[0])
            total = sum(used.values())
            out.setdefault((name, f"SET/s -P {pipeline}"), []).append(rps)
            out.setdefault((name, f"us/SET -P {pipeline}"), []).append(total)
            for k, v in used.items():
                out.setdefault((name, f"us/SET -P {pipeline} {k}"), []).append(v)
            print(f"round {rnd} {name} -P {pipeline}: {rps:,.0f} SET/s, {total:.1f} us CPU/SET "
                  f"{ {k: round(v, 1) for k, v in used.items()} }, {per_append:.1f} records "
                  f"per Append (load {load()})", flush=True)  # fmt: skip
    finally:
        memlog.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    variants = [(v.split("=", 1)[0], Path(v.split("=", 1)[1])) for v in args.variants]
    out: dict[tuple[str, str], list[float]] = {}
    for rnd in range(1, args.rounds + 1):
        for name, where in variants:
            one(name, where, rnd, out)
    print()
    for (name, what), values in sorted(out.items()):
        rounds = ", ".join(f"{v:,.1f}" for v in values)
        print(f"{name} {what}: median {statistics.median(values):,.1f} ({rounds})")


if __name__ == "__main__":
    main()
