"""What storing snapshots costs the log itself: Append latency with and without puts.

    .venv/bin/python bench/snapshot_put_cost.py [--size-mb 12] [--phase-s 6] [--rounds 5]
        [--writers 4] [--batch 10] [--record-bytes 100]

Three `logsvc serve` nodes (production settings, as `memlog up` starts them). A steady
Append load (--writers concurrent appends of --batch records of --record-bytes) runs through
alternating phases of --phase-s seconds: "quiet", and "puts" where another process stores a
snapshot of --size-mb random bytes into the log as soon as the last one is durable
(PutSnapshot to the leader, then pushes to the peers). Per phase: the Append latency
percentiles (of every append that finished in the phase), the puts that completed, and the
CPU seconds of each node (/proc/PID/stat). No shim and no snapshotter: only the log's share
of docs/bench-snapshot-p99.md, so that changes to how a node stores snapshots can be A/B'd
(run the same command on two trees, interleaved, PYTHONPATH=TREE).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from logsvc.client import LogClient
from logsvc.local import LocalCluster

CLK_TCK = os.sysconf("SC_CLK_TCK")

PUTTER = r"""
import asyncio, os, sys, time
from pathlib import Path
from logsvc.client import LogClient, put_snapshot

async def main(addresses, path, stop_file):
    async with LogClient(addresses.split(",")) as client:
        while not os.path.exists(stop_file):
            commit = 0
            for a in client.addresses:
                try:
                    commit = max(commit, (await client.status(a)).commit_index)
                except Exception:
                    pass
            t0 = time.monotonic()
            try:
                await put_snapshot(client, commit, Path(path))
            except Exception as exc:
                print("put failed:", exc, flush=True)
                await asyncio.sleep(0.2)
                continue
            print(f"put {commit} {time.monotonic() - t0:.3f}", flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


def cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_base_port(count: int) -> int:
    """A base port with `count` free ports above it (a random high range, checked)."""
    import random

    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 60_000)
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(
    addresses: list[str],
    writers: int,
    batch: list[bytes],
    marks: list[tuple[float, str]],
    stop: asyncio.Event,
) -> list[tuple[float, float]]:
    """(finish time, latency s) of every append."""
    done: list[tuple[float, float]] = []

    async def writer(client: LogClient) -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            await client.append(batch)
            t1 = time.monotonic()
            done.append((t1, t1 - t0))

    async with LogClient(addresses) as client:
        await client.append(batch)
        tasks = [asyncio.create_task(writer(client)) for _ in range(writers)]
        await stop.wait()
        await asyncio.gather(*tasks, return_exceptions=True)
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=12.0)
    parser.add_argument("--phase-s", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--record-bytes", type=int, default=100)
    parser.add_argument("--batch", type=int, default=10, help="records per append")
    parser.add_argument("--extra", default="", help="extra `logsvc serve` flags")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="memlog-put-cost-"))
    cluster = LocalCluster(
        data_dir=root, base_port=free_base_port(6), extra_args=args.extra.split()
    )
    blob = root / "blob"
    blob.write_bytes(os.urandom(int(args.size_mb * (1 << 20))))
    putter: subprocess.Popen[bytes] | None = None
    results: dict[str, list[dict[str, float]]] = {"quiet": [], "puts": []}
    try:
        cluster.start()
        cluster.wait_for_leader()
        pids = {z: p.pid for z, p in cluster.processes.items()}

        async def run() -> None:
            nonlocal putter
            stop = asyncio.Event()
            marks: list[tuple[float, str]] = []
            task = asyncio.create_task(
                load(
                    cluster.addresses(),
                    args.writers,
                    [b"x" * args.record_bytes] * args.batch,
                    marks,
                    stop,
                )
            )
            await asyncio.sleep(2.0)  # warm up
            for _ in range(args.rounds):
                for name in ("quiet", "puts"):
                    stop_file = root / "stop"
                    stop_file.unlink(missing_ok=True)
                    putlog = root / "putter.log"
                    if name == "puts":
                        with putlog.open("ab") as out:
                            putter = subprocess.Popen(
                                [sys.executable, "-c", PUTTER, ",".join(cluster.addresses()),
                                 str(blob), str(stop_file)],
                                stdout=out, stderr=subprocess.STDOUT,
                            )  # fmt: skip
                        before_puts = putlog.read_text().count("put ")
                        deadline = time.monotonic() + 60
                        # From the first durable put on: puts run back to back.
                        while putlog.read_text().count("put ") <= before_puts:
                            assert putter.poll() is None, putlog.read_text()
                            assert time.monotonic() < deadline, "no put within 60 s"
                            await asyncio.sleep(0.05)
                    puts_before = putlog.read_text().count("put ") if putlog.exists() else 0
                    before = {z: cpu_s(p) for z, p in pids.items()}
                    t0 = time.monotonic()
                    await asyncio.sleep(args.phase_s)
                    t1 = time.monotonic()
                    cpu = {z: cpu_s(p) - before[z] for z, p in pids.items()}
                    puts_now = putlog.read_text().count("put ") if putlog.exists() else 0
                    puts = puts_now - puts_before
                    if putter is not None:
                        stop_file.touch()
                        try:
                            putter.wait(timeout=60)
                        except subprocess.TimeoutExpired:
                            putter.kill()
                            putter.wait()
                        putter = None
                    marks.append((t0, name))
                    marks.append((t1, ""))
                    results[name].append({"t0": t0, "t1": t1, "puts": puts, **cpu})
                    await asyncio.sleep(0.5)
            stop.set()
            done = await task
            for name, rows in results.items():
                for row in rows:
                    lat = [lat for t, lat in done if row["t0"] <= t < row["t1"]]
                    row["n"] = len(lat)
                    row["p50"] = pct(lat, 0.50) * 1000
                    row["p99"] = pct(lat, 0.99) * 1000
                    row["p999"] = pct(lat, 0.999) * 1000
                    row["max"] = max(lat) * 1000 if lat else float("nan")
                    print(name, {k: round(v, 2) for k, v in row.items() if k not in ("t0", "t1")},
                          flush=True)  # fmt: skip

        asyncio.run(run())
    finally:
        if putter is not None:
            putter.kill()
            putter.wait()
        cluster.stop()
    print(
        f"\nsize {args.size_mb} MiB, phase {args.phase_s} s, {args.rounds} rounds, writers "
        f"{args.writers}, load average {os.getloadavg()[0]:.1f}; medians over rounds:"
    )
    print("| phase | appends/s | p50 ms | p99 ms | p99.9 ms | max ms | puts | CPU s a+b+c |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k not in ("t0", "t1")}
        cpu = statistics.median(sum(r[z] for z in ("a", "b", "c")) for r in rows)
        rate = med["n"] / args.phase_s
        print(f"| {name} | {rate:.0f} | {med['p50']:.2f} | {med['p99']:.2f} | {med['p999']:.2f} "
              f"| {med['max']:.1f} | {med['puts']:.0f} | {cpu:.2f} |")  # fmt: skip
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
