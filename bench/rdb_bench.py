"""RDB dump and load: memlog's serializer (cacheshim/snapshot/rdb.py) against redis-server's
SAVE and its load at startup, for the same data, in one run.

    .venv/bin/python bench/rdb_bench.py [--keys 1000000] [--rounds 3] [--out docs/bench-snapshot.md]

Builds a keyspace of --keys keys of mixed types in-process (60% strings: small integers, 20
to 100 byte texts, a few 1-4 KB values; 10% each lists, sets, hashes and sorted sets of 5 to
20 elements; one key in ten with a TTL; all 16 databases), seeded, then per round:

- memlog: `write_rdb` of the keyspace as a snapshot (with its memlog-* fields) to a file,
  then `read_rdb` of that file back into a keyspace (whose digest is checked);
- redis-server started on the file memlog wrote (its startup load, as its log reports it,
  and spawn-to-PING), DEBUG DIGEST checked against Redis's digest of memlog's keyspace;
- SAVE on that redis-server (its own RDB of the same data), then a second redis-server
  started on Redis's own file (its load of its own RDB), and memlog's `read_rdb` of it.

Every figure is the median of --rounds; the table gives memlog / Redis ratios. Not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
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


def timed(action: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


_LOADED = re.compile(rb"DB loaded from disk: ([0-9.]+) seconds")


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
        found = _LOADED.search(self.log.read_bytes())
        self.load_s = float(found.group(1)) if found else float("nan")

    def stop(self) -> None:
        self.conn.close()
        self.proc.terminate()
        self.proc.wait(timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the report here")
    parser.add_argument("--no-verify", action="store_true", help="skip the digest checks")
    args = parser.parse_args()

    print(f"building {args.keys:,} keys ...", flush=True)
    build_s, keyspace = timed(lambda: build(args.keys, args.seed))
    print(f"  built in {build_s:.1f} s", flush=True)
    digest = keyspace.digest()
    expected_redis = "" if args.no_verify else redis_digest(keyspace)
    state = SnapshotState(index=args.keys, time_ms=1_800_000_000_000)
    rows: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}

    def note(name: str, seconds: float) -> None:
        rows.setdefault(name, []).append(seconds)
        print(f"  {name}: {seconds:.2f} s", flush=True)

    with tempfile.TemporaryDirectory(prefix="rdb-bench-") as tmp:
        root = Path(tmp)
        ours, theirs = root / "memlog.rdb", root / "dump.rdb"
        for round_no in range(args.rounds):
            print(f"round {round_no + 1}/{args.rounds}", flush=True)
            with open(ours, "wb") as out:
                seconds, _ = timed(lambda: write_rdb(keyspace, out, state))
            note("memlog write_rdb (snapshot)", seconds)
            sizes["memlog"] = ours.stat().st_size
            seconds, loaded = timed(lambda: load_file(ours))
            note("memlog read_rdb (its own file)", seconds)
            if not args.no_verify:
                assert loaded.keyspace.digest() == digest
            del loaded

            server = Redis(root, ours.name)
            try:
                note("redis-server load of memlog's file", server.load_s)
                note("redis-server spawn to PING on memlog's file", server.ready_s)
                if not args.no_verify:
                    got = execute(server.conn, "DEBUG", "DIGEST")
                    assert got == expected_redis.encode(), (got, expected_redis)
                server.conn.config_set("dbfilename", theirs.name)
                save = server.conn.save
                seconds, _ = timed(save)
                note("redis-server SAVE", seconds)
                sizes["redis"] = theirs.stat().st_size
            finally:
                server.stop()

            server = Redis(root, theirs.name)
            try:
                note("redis-server load of its own file", server.load_s)
                note("redis-server spawn to PING on its own file", server.ready_s)
            finally:
                server.stop()
            seconds, loaded = timed(lambda: load_file(theirs))
            note("memlog read_rdb (redis-server's file)", seconds)
            if not args.no_verify:
                assert redis_digest(loaded.keyspace) == expected_redis
            del loaded

    med = {name: statistics.median(values) for name, values in rows.items()}
    write_ratio = med["memlog write_rdb (snapshot)"] / med["redis-server SAVE"]
    load_ratio = med["memlog read_rdb (its own file)"] / med["redis-server load of its own file"]
    lines = [
        "# RDB dump and load: memlog against redis-server",
        "",
        f"Generated by `bench/rdb_bench.py --keys {args.keys} --rounds {args.rounds}` on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs shared with other work, Python {platform.python_version()}, "
        f"C CRC-64 {'on' if HAVE_C else 'off'}. {args.keys:,} keys of mixed types (60% strings, "
        "10% each lists, sets, hashes, sorted sets of 5-20 elements, 10% with a TTL, 16 dbs). "
        "Medians of the rounds; ratios are memlog / redis-server in the same run.",
        "",
        "| step | seconds (median) |",
        "|---|---|",
    ]
    lines += [f"| {name} | {value:.2f} |" for name, value in med.items()]
    lines += [
        "",
        f"- File sizes: memlog's snapshot {sizes['memlog'] / 2**20:.1f} MiB (memlog-* fields "
        f"included, strings not compressed), redis-server's {sizes['redis'] / 2**20:.1f} MiB "
        "(LZF on).",
        f"- Dump: memlog's `write_rdb` takes {write_ratio:.1f}x the time of Redis's SAVE.",
        f"- Load: memlog's `read_rdb` of its own file takes {load_ratio:.1f}x the time of "
        "redis-server loading its own RDB file at startup.",
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
