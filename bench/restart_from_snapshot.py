"""Restart-to-serving time of a shim from a snapshot, against redis-server loading its own RDB
file of the same data, in one run.

    .venv/bin/python bench/restart_from_snapshot.py [--keys 100000] [--rounds 3]
        [--out docs/bench-restart.md]

1. Fills a redis-server with --keys keys of mixed types (60% strings, 10% each of small
   lists, sets, hashes and sorted sets, 5% of all with a TTL) and SAVEs its RDB file.
2. redis-server: started on a copy of that file, timed from exec to the first PONG.
3. memlog: three log nodes and one shim; the file is loaded with `memlog import` (through
   the log), `memlog snapshot` writes one snapshot, then the shim is stopped and started
   again, timed from exec to the first PONG (it fetches the snapshot, restores it, replays
   the few records after it). The shim's own log gives the restore's share.
Prints a Markdown table; --out writes it to a file too. Everything is stopped by PID.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
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

from tests.cacheshim.harness import Memlog, free_port, stop_process


def fill(port: int, keys: int, seed: int) -> None:
    rng = random.Random(seed)
    conn = redis.Redis(port=port)
    pipe = conn.pipeline(transaction=False)
    far_ms = int(time.time() * 1000) + 24 * 3600 * 1000
    for i in range(keys):
        pick = rng.random()
        key = f"key:{i}"
        if pick < 0.6:
            pipe.set(key, rng.randbytes(rng.randrange(10, 100)))
        elif pick < 0.7:
            pipe.rpush(key, *[rng.randrange(10**6) for _ in range(8)])
        elif pick < 0.8:
            pipe.sadd(key, *[f"m{rng.randrange(1000)}" for _ in range(8)])
        elif pick < 0.9:
            pipe.hset(key, mapping={f"f{j}": rng.randbytes(10) for j in range(8)})
        else:
            pipe.zadd(key, {f"m{j}": rng.random() for j in range(8)})
        if rng.random() < 0.05:
            pipe.pexpireat(key, far_ms + rng.randrange(10**6))
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()


def time_to_pong(
    command: list[str], port: int, log_path: Path | None = None
) -> tuple[float, subprocess.Popen[bytes]]:
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    while not pong(port):
        if proc.poll() is not None:
            raise RuntimeError(f"{command[0]} exited")
        time.sleep(0.002)
    return time.monotonic() - started, proc


def pong(port: int) -> bool:
    """A raw PING (redis-py retries a refused connection with a backoff of its own, which
    would add up to a second to whichever server is not up at the first try)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def memlog_cli(*args: str) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "cacheshim.launcher", *args], check=True, capture_output=True
    )
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
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
        # 1. the data, in redis-server's own RDB file
        (root / "redis").mkdir()
        port = free_port()
        base = [binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        _, proc = time_to_pong([*base, "--port", str(port), "--dir", str(root / "redis")], port)
        procs.append(proc)
        fill(port, args.keys, args.seed)
        redis.Redis(port=port).save()
        stop_process(proc)
        rdb = root / "redis" / "dump.rdb"
        rdb_bytes = rdb.stat().st_size
        # 2. redis-server loading it
        redis_s: list[float] = []
        for _ in range(args.rounds):
            port = free_port()
            took, proc = time_to_pong(
                [*base, "--port", str(port), "--dir", str(root / "redis")], port
            )
            procs.append(proc)
            assert redis.Redis(port=port).dbsize() > 0
            redis_s.append(took)
            stop_process(proc)
        # 3. memlog: import, one snapshot, restarts
        m.start()
        shim_addr = f"127.0.0.1:{m.shim_ports[0]}"
        import_s = memlog_cli("import", "--rdb", str(rdb), "--addr", shim_addr)
        assert m.cluster is not None
        log_addrs = ",".join(m.cluster.addresses())
        snapshot_s = memlog_cli("snapshot", "--log", log_addrs, "--temp-dir", str(root))
        shim_s: list[float] = []
        restore_s: list[float] = []
        log_path = root / "memlog" / "shim-1.log"
        for _ in range(args.rounds):
            stop_process(m.shim_procs[0])
            took, proc = time_to_pong(m.shim_command(0), m.shim_ports[0], log_path)
            m.shim_procs[0] = proc
            assert redis.Redis(port=m.shim_ports[0]).dbsize() > 0
            shim_s.append(took)
            found = re.findall(
                r"restored snapshot \d+ \((\d+) bytes.*?in ([\d.]+)s", log_path.read_text()
            )
            restore_s.append(float(found[-1][1]))
            snap_bytes = int(found[-1][0])
    finally:
        m.stop()
        for proc in procs:
            stop_process(proc)
        shutil.rmtree(root, ignore_errors=True)
    red, shim = statistics.median(redis_s), statistics.median(shim_s)
    lines = [
        f"# Restart from a snapshot: {args.keys:,} keys",
        "",
        f"`bench/restart_from_snapshot.py --keys {args.keys} --rounds {args.rounds}`, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} cores (shared), Python {platform.python_version()}.",
        "",
        f"Redis's RDB file: {rdb_bytes / 1e6:.1f} MB; "
        f"memlog's snapshot: {snap_bytes / 1e6:.1f} MB.",
        "",
        "| | median s | rounds (s) |",
        "|---|---|---|",
        f"| redis-server: exec to first PONG, loading its RDB | {red:.2f} | "
        f"{', '.join(f'{x:.2f}' for x in redis_s)} |",
        f"| memlog shim: exec to first PONG, from the snapshot | {shim:.2f} | "
        f"{', '.join(f'{x:.2f}' for x in shim_s)} |",
        "| of which fetch + read_rdb + restore (shim's log) | "
        f"{statistics.median(restore_s):.2f} | "
        f"{', '.join(f'{x:.2f}' for x in restore_s)} |",
        f"| ratio shim / redis-server | {shim / red:.1f}x | |",
        "",
        f"Once, for scale: `memlog import` of the file through the log {import_s:.1f} s; "
        "`memlog snapshot` (no snapshot to restore: replays the whole log, writes, puts) "
        f"{snapshot_s:.1f} s.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
