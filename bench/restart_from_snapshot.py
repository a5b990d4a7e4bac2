"""Restart-to-serving time of a shim from a snapshot, against redis-server loading its own RDB
file of the same data; and the snapshot's write time against redis-server's SAVE. One run.

    .venv/bin/python bench/restart_from_snapshot.py [--keys 1000000] [--rounds 3]
        [--out docs/bench-restart.md]

1. The data: bench/rdb_bench.py's keyspace, built in-process (--keys keys of mixed types:
   60% strings, 10% each lists, sets, hashes and sorted sets of 5 to 20 elements, one key in
   ten with a TTL, all 16 databases), seeded.
2. redis-server: started on a plain RDB file of it (memlog's `write_rdb`), then SAVE, timed
   (--rounds times), writes redis-server's own file; redis-server started on that file,
   timed from exec to the first PONG (--rounds times).
3. memlog: three log nodes and one shim. The shim applies one SET, then the same keyspace is
   written as a memlog snapshot at the shim's applied index and stored with PutSnapshot
   (building 1M keys through the log by `memlog import` takes many minutes here; what a
   restart reads is the same snapshot file either way). Then, --rounds times: one more SET,
   `memlog snapshot` (a new process: fetches and restores that snapshot, replays the record
   after it, writes and stores the next snapshot), timed whole and by its own "written in"
   figure; and the shim stopped and started again, timed from exec to the first PONG (it
   fetches the newest snapshot, restores it, replays nothing), the shim's log giving the
   restore's share.
Prints a Markdown table; --out writes it to a file too. Everything is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

from bench.rdb_bench import build, cpu_s
from cacheshim.snapshot.rdb import HAVE_C_LOADER, SnapshotState, write_rdb
from logsvc.client import LogClient, put_snapshot
from tests.cacheshim.harness import Memlog, free_port, stop_process


def time_to_pong(
    command: list[str], port: int, log_path: Path | None = None
) -> tuple[float, float, subprocess.Popen[bytes]]:
    """(wall seconds from exec to the first PONG, the process's CPU seconds by then, it)."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    while not pong(port):
        if proc.poll() is not None:
            raise RuntimeError(f"{command[0]} exited")
        time.sleep(0.002)
    return time.monotonic() - started, cpu_s(proc.pid), proc


def pong(port: int) -> bool:
    """A raw PING (redis-py retries a refused connection with a backoff of its own, which
    would add up to a second to whichever server is not up at the first try)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def memlog_cli(*args: str) -> tuple[float, float, str]:
    """(wall seconds, the process's CPU seconds, its output) of one memlog command."""
    started = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-m", "cacheshim.launcher", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return time.monotonic() - started, cpu, done.stdout + done.stderr


async def store_snapshot(addresses: list[str], index: int, path: Path) -> None:
    async with LogClient(addresses) as client:
        await put_snapshot(client, index, path)


def shim_index(conn: redis.Redis) -> int:
    """The shim's applied log index (MEMLOG STATUS; redis-py may give it as a dict)."""
    reply = conn.execute_command("MEMLOG", "STATUS")  # type: ignore[no-untyped-call]
    if isinstance(reply, list):
        reply = dict(zip(reply[::2], reply[1::2], strict=True))
    return int(reply[b"applied_index"])


def fmt(values: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="memlog-bench-restart-"))
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is not installed"
    procs: list[subprocess.Popen[bytes]] = []
    m = Memlog(root / "memlog")
    try:
        # 1. the data
        keyspace = build(args.keys, args.seed)
        (root / "redis").mkdir()
        with open(root / "redis" / "memlog.rdb", "wb") as out:
            write_rdb(keyspace, out)
        # 2. redis-server: SAVE of the data, then its load of its own file
        base = [binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(root / "redis")]  # fmt: skip
        port = free_port()
        first = [*base, "--port", str(port), "--dbfilename", "memlog.rdb"]
        _, _, proc = time_to_pong([*first, "--enable-protected-configs", "yes"], port)
        procs.append(proc)
        conn = redis.Redis(port=port, socket_timeout=600)
        conn.config_set("dbfilename", "dump.rdb")
        save_s: list[float] = []
        save_cpu: list[float] = []
        for _ in range(args.rounds):
            started, cpu = time.monotonic(), cpu_s(proc.pid)
            conn.save()
            save_s.append(time.monotonic() - started)
            save_cpu.append(cpu_s(proc.pid) - cpu)
        stop_process(proc)
        rdb_bytes = (root / "redis" / "dump.rdb").stat().st_size
        redis_s: list[float] = []
        redis_cpu: list[float] = []
        for _ in range(args.rounds):
            port = free_port()
            took, cpu, proc = time_to_pong([*base, "--port", str(port)], port)
            procs.append(proc)
            assert redis.Redis(port=port).dbsize() > 0
            redis_s.append(took)
            redis_cpu.append(cpu)
            stop_process(proc)
        # 3. memlog: the snapshot stored directly, then snapshotter runs and restarts
        m.start()
        assert m.cluster is not None
        addresses = m.cluster.addresses()
        shim = redis.Redis(port=m.shim_ports[0])
        shim.set("bench:marker", "1")
        index = shim_index(shim)

        snapshot_path = root / "seed.rdb"
        started = time.monotonic()
        with open(snapshot_path, "wb") as out:
            write_rdb(keyspace, out, SnapshotState(index, int(time.time() * 1000)))
        write_s = time.monotonic() - started
        asyncio.run(store_snapshot(addresses, index, snapshot_path))
        del keyspace
        snapshot_s: list[float] = []
        snapshot_cpu: list[float] = []
        written_s: list[float] = []
        for i in range(args.rounds):
            shim.set(f"bench:after:{i}", "1")
            took, cpu, output = memlog_cli(
                "snapshot", "--log", ",".join(addresses), "--temp-dir", str(root)
            )
            snapshot_s.append(took)
            snapshot_cpu.append(cpu)
            found = re.findall(r"written in ([\d.]+)s", output)
            written_s.append(float(found[-1]) if found else float("nan"))
        shim_s: list[float] = []
        shim_cpu: list[float] = []
        restore_s: list[float] = []
        phases: list[tuple[float, ...]] = []  # fetch wall, CPU; read and restore wall, CPU
        snap_bytes = 0
        log_path = root / "memlog" / "shim-1.log"
        for _ in range(args.rounds):
            stop_process(m.shim_procs[0])
            took, cpu, proc = time_to_pong(m.shim_command(0), m.shim_ports[0], log_path)
            m.shim_procs[0] = proc
            assert redis.Redis(port=m.shim_ports[0]).dbsize() > 0
            shim_s.append(took)
            shim_cpu.append(cpu)
            found = re.findall(
                r"restored snapshot \d+ \((\d+) bytes.*?in ([\d.]+)s \(fetch ([\d.]+)s, "
                r"CPU ([\d.]+)s; read and restore ([\d.]+)s, CPU ([\d.]+)s\)",
                log_path.read_text(),
            )
            restore_s.append(float(found[-1][1]))
            phases.append(tuple(float(x) for x in found[-1][2:]))
            snap_bytes = int(found[-1][0])
    finally:
        m.stop()
        for proc in procs:
            stop_process(proc)
        shutil.rmtree(root, ignore_errors=True)
    red, shim_median = statistics.median(redis_s), statistics.median(shim_s)
    save, written = statistics.median(save_s), statistics.median(written_s)
    lines = [
        f"# Restart from a snapshot: {args.keys:,} keys",
        "",
        f"`bench/restart_from_snapshot.py --keys {args.keys} --rounds {args.rounds}`, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} cores (shared; load average {os.getloadavg()[0]:.1f} at the end), "
        f"Python {platform.python_version()}, C key loader "
        f"{'on' if HAVE_C_LOADER else 'off'}. Data: bench/rdb_bench.py's mixed keyspace.",
        "",
        f"Redis's RDB file: {rdb_bytes / 1e6:.1f} MB; "
        f"memlog's snapshot: {snap_bytes / 1e6:.1f} MB.",
        "",
        "| | median s | rounds (s) |",
        "|---|---|---|",
        f"| redis-server: exec to first PONG, loading its RDB | {red:.2f} | {fmt(redis_s)} |",
        f"| redis-server: its CPU time by then | {statistics.median(redis_cpu):.2f} | "
        f"{fmt(redis_cpu)} |",
        f"| memlog shim: exec to first PONG, from the snapshot | {shim_median:.2f} | "
        f"{fmt(shim_s)} |",
        f"| memlog shim: its CPU time by then | {statistics.median(shim_cpu):.2f} | "
        f"{fmt(shim_cpu)} |",
        f"| ratio of CPU times shim / redis-server | "
        f"{statistics.median(shim_cpu) / max(statistics.median(redis_cpu), 0.01):.1f}x | |",
        f"| of which fetch + read_rdb + restore (shim's log) | "
        f"{statistics.median(restore_s):.2f} | {fmt(restore_s)} |",
        *[
            f"| {what} | {statistics.median(p[i] for p in phases):.2f} | "
            f"{fmt([p[i] for p in phases])} |"
            for i, what in enumerate(
                [
                    "&nbsp;&nbsp;fetch (GetSnapshot into a file)",
                    "&nbsp;&nbsp;fetch, the shim's CPU",
                    "&nbsp;&nbsp;read_rdb + restore",
                    "&nbsp;&nbsp;read_rdb + restore, the shim's CPU",
                ]
            )
        ],
        f"| **ratio shim / redis-server** | **{shim_median / red:.1f}x** | |",
        f"| redis-server SAVE | {save:.2f} | {fmt(save_s)} |",
        f"| redis-server SAVE, its CPU | {statistics.median(save_cpu):.2f} | {fmt(save_cpu)} |",
        f"| `memlog snapshot`: write_rdb of the snapshot (its log) | {written:.2f} | "
        f"{fmt(written_s)} |",
        f"| **ratio write / SAVE** | **{written / save:.1f}x** | |",
        f"| `memlog snapshot` whole (start, fetch, restore, replay, write, put) | "
        f"{statistics.median(snapshot_s):.2f} | {fmt(snapshot_s)} |",
        f"| `memlog snapshot` whole, its CPU | {statistics.median(snapshot_cpu):.2f} | "
        f"{fmt(snapshot_cpu)} |",
        "",
        f"Once: the bench's own write_rdb of the seed snapshot {write_s:.2f} s.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
