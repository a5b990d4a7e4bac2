"""RDB dump and load: memlog's serializer (cacheshim/snapshot/rdb.py) against redis-server's
SAVE and its load at startup, for the same data, in one run.

    .venv/bin/python bench/rdb_bench.py [--keys 1000000] [--rounds 3] [--out docs/bench-snapshot.md]

Builds a keyspace of --keys keys of mixed types in-process (60% strings: small integers, 20
to 100 byte texts, a few 1-4 KB values; 10% each lists, sets, hashes and sorted sets of 5 to
20 elements; one key in ten with a TTL; all 16 databases), seeded, then per round:

- memlog: `write_rdb` of the keyspace as a snapshot (with its memlog-* fields) to a file,
  then `read_rdb` of that file back into a keyspace (whose digest is checked);
- redis-server started on the file memlog wrote (spawn to its first PING), DEBUG DIGEST
  checked against Redis's digest of memlog's keyspace;
- SAVE on that redis-server (its own RDB of the same data), then a second redis-server
  started on Redis's own file (its load of its own RDB), and memlog's `read_rdb` of it.

Every figure is the median of --rounds, in wall seconds and in CPU seconds of the process
doing the work (fairer on a shared machine); the report gives memlog / Redis ratios. Not a
test.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from cacheshim.snapshot import model
from cacheshim.snapshot.crc64 import HAVE_C
from cacheshim.snapshot.rdb import LoadResult, SnapshotState, read_rdb, write_rdb
from cacheshim.snapshot.redisdigest import redis_digest
from tests.cacheshim.harness import execute
from tests.logsvc.cluster import free_ports

T = TypeVar("T")


def load_file(path: Path) -> LoadResult:
    with open(path, "rb") as inp:
        return read_rdb(inp)


def build(keys: int, seed: int) -> model.Keyspace:
    rng = random.Random(seed)
    keyspace = model.new_keyspace()
    now_ms = 1_800_000_000_000
    for i in range(keys):
        db = keyspace.dbs[i % 16]
        key = b"key:%d" % i
        roll = rng.random()
        size = rng.randint(5, 20)
        value: object
        if roll < 0.6:
            pick = rng.random()
            if pick < 0.3:
                value = b"%d" % rng.randint(-(10**9), 10**12)
            elif pick < 0.97:
                value = rng.randbytes(rng.randint(10, 50)).hex().encode()
            else:
                value = b"v" * rng.randint(1000, 4000)
        elif roll < 0.7:
            value = model.make_list([b"item:%d" % rng.randint(0, 10**6) for _ in range(size)])
        elif roll < 0.8:
            if rng.random() < 0.5:
                members = {b"%d" % rng.randint(0, 10**6) for _ in range(size)}
            else:
                members = {b"m:%d" % rng.randint(0, 10**6) for _ in range(size)}
            value = model.make_set(sorted(members), None)
        elif roll < 0.9:
            pairs = {b"field:%d" % j: b"value:%d" % rng.randint(0, 10**6) for j in range(size)}
            value = model.make_hash(list(pairs.items()), None, None)
        else:
            members = {b"member:%d" % rng.randint(0, 10**6) for _ in range(size)}
            value = model.make_zset([(rng.random() * 1000, m) for m in sorted(members)], None)
        db.set(key, cast(model.Value, value), i + 1)
        if rng.random() < 0.1:
            db.set_expiry(key, now_ms + rng.randint(10**8, 10**9), i + 1)
    return keyspace


def timed(action: Callable[[], T]) -> tuple[float, float, T]:
    """(wall seconds, this process's CPU seconds, the result)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    result = action()
    return time.perf_counter() - start, time.process_time() - start_cpu, result


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


class Redis:
    def __init__(self, root: Path, dbfilename: str) -> None:
        self.root = root
        self.port = free_ports(1)[0]
        self.log = root / f"redis-{self.port}.log"
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is not installed"
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(root), "--dbfilename", dbfilename,
             "--enable-debug-command", "yes", "--enable-protected-configs", "yes",
             "--logfile", str(self.log)],
        )  # fmt: skip
        self.conn = redis.Redis(port=self.port, socket_timeout=600)
        deadline = time.monotonic() + 600
        while True:
            try:
                if self.conn.ping():
                    break
            except (redis.ConnectionError, redis.BusyLoadingError):
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"redis-server did not start: see {self.log}")
            time.sleep(0.01)
        self.ready_s = time.perf_counter() - start
        self.ready_cpu_s = cpu_s(self.proc.pid)

    def stop(self) -> None:
        self.conn.close()
        self.proc.terminate()
        self.proc.wait(timeout=600)


WRITE = "memlog write_rdb (snapshot)"
READ = "memlog read_rdb (its own file)"
SAVE = "redis-server SAVE"
LOAD = "redis-server start on its own file (spawn to PING)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the report here")
    parser.add_argument("--no-verify", action="store_true", help="skip the digest checks")
    args = parser.parse_args()

    print(f"building {args.keys:,} keys ...", flush=True)
    build_s, _, keyspace = timed(lambda: build(args.keys, args.seed))
    print(f"  built in {build_s:.1f} s", flush=True)
    digest = keyspace.digest()
    expected_redis = "" if args.no_verify else redis_digest(keyspace)
    state = SnapshotState(index=args.keys, time_ms=1_800_000_000_000)
    rows: dict[str, list[tuple[float, float]]] = {}
    sizes: dict[str, int] = {}

    def note(name: str, wall_s: float, cpu: float) -> None:
        rows.setdefault(name, []).append((wall_s, cpu))
        print(f"  {name}: {wall_s:.2f} s wall, {cpu:.2f} s CPU", flush=True)

    with tempfile.TemporaryDirectory(prefix="rdb-bench-") as tmp:
        root = Path(tmp)
        ours, theirs = root / "memlog.rdb", root / "dump.rdb"
        for round_no in range(args.rounds):
            print(f"round {round_no + 1}/{args.rounds}", flush=True)
            with open(ours, "wb") as out:
                wall, cpu, _ = timed(lambda: write_rdb(keyspace, out, state))
            note(WRITE, wall, cpu)
            sizes["memlog"] = ours.stat().st_size
            wall, cpu, loaded = timed(lambda: load_file(ours))
            note(READ, wall, cpu)
            if not args.no_verify:
                assert loaded.keyspace.digest() == digest
            del loaded

            server = Redis(root, ours.name)
            try:
                note("redis-server start on memlog's file (spawn to PING)", server.ready_s,
                     server.ready_cpu_s)  # fmt: skip
                if not args.no_verify:
                    got = execute(server.conn, "DEBUG", "DIGEST")
                    assert got == expected_redis.encode(), (got, expected_redis)
                server.conn.config_set("dbfilename", theirs.name)
                before = cpu_s(server.proc.pid)
                wall, _, _ = timed(server.conn.save)
                note(SAVE, wall, cpu_s(server.proc.pid) - before)
                sizes["redis"] = theirs.stat().st_size
            finally:
                server.stop()

            server = Redis(root, theirs.name)
            try:
                note(LOAD, server.ready_s, server.ready_cpu_s)
            finally:
                server.stop()
            wall, cpu, loaded = timed(lambda: load_file(theirs))
            note("memlog read_rdb (redis-server's file)", wall, cpu)
            if not args.no_verify:
                assert redis_digest(loaded.keyspace) == expected_redis
            del loaded

    wall = {name: statistics.median(w for w, _ in values) for name, values in rows.items()}
    cpu = {name: statistics.median(c for _, c in values) for name, values in rows.items()}
    lines = [
        "# RDB dump and load: memlog against redis-server",
        "",
        f"Generated by `bench/rdb_bench.py --keys {args.keys} --rounds {args.rounds}` on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs shared with other work (load average "
        f"{os.getloadavg()[0]:.1f} at the end), Python {platform.python_version()}, C CRC-64 "
        f"{'on' if HAVE_C else 'off'}. {args.keys:,} keys of mixed types (60% strings, 10% "
        "each lists, sets, hashes, sorted sets of 5-20 elements, 10% with a TTL, 16 dbs). "
        "Medians of the rounds. CPU is the CPU time of the process doing the work (memlog's "
        "bench process; the redis-server process, from spawn to its first PING for a load); "
        "on a shared machine it is the fairer measure, wall time includes waiting for a core.",
        "",
        "| step | wall s | CPU s |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {wall[name]:.2f} | {cpu[name]:.2f} |" for name in rows]
    lines += [
        "",
        f"- File sizes: memlog's snapshot {sizes['memlog'] / 2**20:.1f} MiB (memlog-* fields "
        f"included, strings not compressed), redis-server's {sizes['redis'] / 2**20:.1f} MiB "
        "(LZF on).",
        f"- Dump: memlog's `write_rdb` takes {cpu[WRITE] / cpu[SAVE]:.1f}x the CPU time of "
        f"Redis's SAVE ({wall[WRITE] / wall[SAVE]:.1f}x its wall time).",
        f"- Load: memlog's `read_rdb` of its own file takes {cpu[READ] / cpu[LOAD]:.1f}x the "
        f"CPU time of redis-server starting on its own RDB file ({wall[READ] / wall[LOAD]:.1f}x "
        "its wall time).",
        "- Digests checked every round: memlog's keyspace after the round trip, Redis's DEBUG "
        "DIGEST after loading memlog's file, and memlog's reading of Redis's file."
        if not args.no_verify
        else "- Digests not checked (--no-verify).",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out is not None:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
