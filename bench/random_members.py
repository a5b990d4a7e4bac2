"""Random-member commands with big counts, memlog against redis-server in the same run.

    .venv/bin/python bench/random_members.py [--count 1000000] [--rounds 3]
        [--out docs/bench-random.md]

Starts on 127.0.0.1 a memlog deployment (three log nodes, one shim) and a plain in-memory
`redis-server`, fills both with the same keys (a set, a sorted set and a hash of 1,000 small
members each, and a set, sorted set and hash of 1,000,000), then times SRANDMEMBER, SPOP
with a count, ZRANDMEMBER and HRANDFIELD (with and without WITHSCORES / WITHVALUES; negative
counts, which pick with repeats, and positive ones, which pick distinct members) on each
server. A time is the wall clock from sending the command to the last byte of its reply,
read by a raw socket that does not parse it (a PING sent right after it marks the end), so
what is measured is the server: computing the reply, encoding it and sending it. While a
command runs, neither server answers anyone else, so this is also how long every other
client waits. Each point runs `--rounds` times, the servers taking turns; the table gives
each server's best time, memlog's divided by Redis's, the same ratio of the medians, and
the median CPU time each server process spent on the call (/proc schedstat, all threads).
SPOP's set is rebuilt (SUNIONSTORE, not timed) before every call.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.cacheshim.harness import Memlog, RedisServer

SMALL = 1_000
BIG = 1_000_000
BATCH = 1_000
PING = b"*1\r\n$4\r\nPING\r\n"
PONG = b"+PONG\r\n"


def encode(args: Sequence[bytes]) -> bytes:
    out = bytearray(b"*%d\r\n" % len(args))
    for arg in args:
        out += b"$%d\r\n%b\r\n" % (len(arg), arg)
    return bytes(out)


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of process pid so far (/proc/PID/task/*/schedstat: the
    scheduler's nanoseconds on a CPU, not 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread that ended
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


class Raw:
    """One connection that sends commands and reads replies as bytes."""

    def __init__(self, port: int, pid: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(600)
        self.pid = pid
        self.cpu = 0.0  # the server's CPU seconds for the last timed command

    def timed(self, args: Sequence[bytes]) -> tuple[float, int]:
        """Seconds until the whole reply arrived, and its size in bytes; the server's CPU
        seconds meanwhile go to self.cpu (on a busy machine the wall clock also counts the
        time the server waited for a core)."""
        buffer = bytearray()
        cpu = cpu_seconds(self.pid)
        started = time.perf_counter()
        self.sock.sendall(encode(args) + PING)
        while not buffer.endswith(PONG):
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buffer += chunk
        elapsed = time.perf_counter() - started
        self.cpu = cpu_seconds(self.pid) - cpu
        if buffer.startswith(b"-"):
            raise RuntimeError(f"{args[:3]!r}: {bytes(buffer[:200])!r}")
        return elapsed, len(buffer) - len(PONG)

    def call(self, args: Sequence[bytes]) -> None:
        self.timed(args)

    def pipeline(self, commands: Sequence[Sequence[bytes]]) -> None:
        """Send commands in one go and wait for all replies (a PING after the last)."""
        payload = b"".join(encode(args) for args in commands) + PING
        self.sock.sendall(payload)
        buffer = bytearray()
        while not buffer.endswith(PONG):
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buffer += chunk
        if b"\r\n-" in buffer or buffer.startswith(b"-"):
            raise RuntimeError(f"an error while filling: {bytes(buffer[:300])!r}")


def fill(conn: Raw) -> None:
    """The same keys on both servers: members m%07d, scores and values from the index."""
    for name, size in ((b"small", SMALL), (b"big", BIG)):
        commands: list[list[bytes]] = []
        for start in range(0, size, BATCH):
            numbers = range(start, min(start + BATCH, size))
            commands.append([b"SADD", b"s:" + name, *(b"m%07d" % i for i in numbers)])
            zadd = [b"ZADD", b"z:" + name]
            hset = [b"HSET", b"h:" + name]
            for i in numbers:
                zadd += [b"%d" % i, b"m%07d" % i]
                hset += [b"m%07d" % i, b"v%d" % i]
            commands += [zadd, hset]
        for at in range(0, len(commands), 30):
            conn.pipeline(commands[at : at + 30])


def cases(count: int) -> list[tuple[str, list[bytes], bytes | None]]:
    """(label, command, set to rebuild from before each call or None)."""
    n = b"%d" % count
    return [
        (f"SRANDMEMBER s -{count} (1k members)", [b"SRANDMEMBER", b"s:small", b"-" + n], None),
        (f"SRANDMEMBER s -{count} (1M members)", [b"SRANDMEMBER", b"s:big", b"-" + n], None),
        ("SRANDMEMBER s 100000 (1M members)", [b"SRANDMEMBER", b"s:big", b"100000"], None),
        ("SRANDMEMBER s 600000 (1M members)", [b"SRANDMEMBER", b"s:big", b"600000"], None),
        ("SPOP s 100000 (1M members)", [b"SPOP", b"s:pop", b"100000"], b"s:big"),
        ("SPOP s 900000 (1M members)", [b"SPOP", b"s:pop", b"900000"], b"s:big"),
        (f"ZRANDMEMBER z -{count} (1k)", [b"ZRANDMEMBER", b"z:small", b"-" + n], None),
        (
            f"ZRANDMEMBER z -{count} WITHSCORES (1k)",
            [b"ZRANDMEMBER", b"z:small", b"-" + n, b"WITHSCORES"],
            None,
        ),
        ("ZRANDMEMBER z 100000 (1M)", [b"ZRANDMEMBER", b"z:big", b"100000"], None),
        (
            "ZRANDMEMBER z 100000 WITHSCORES (1M)",
            [b"ZRANDMEMBER", b"z:big", b"100000", b"WITHSCORES"],
            None,
        ),
        (f"HRANDFIELD h -{count} (1k)", [b"HRANDFIELD", b"h:small", b"-" + n], None),
        (
            f"HRANDFIELD h -{count} WITHVALUES (1k)",
            [b"HRANDFIELD", b"h:small", b"-" + n, b"WITHVALUES"],
            None,
        ),
        ("HRANDFIELD h 100000 (1M)", [b"HRANDFIELD", b"h:big", b"100000"], None),
        (
            "HRANDFIELD h 100000 WITHVALUES (1M)",
            [b"HRANDFIELD", b"h:big", b"100000", b"WITHVALUES"],
            None,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="|count| of the repeats")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="", help="write the Markdown report here")
    parser.add_argument("--only", default="", help="run the cases whose label contains this")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-random-"))
    redis_server = RedisServer(root / "redis")
    memlog = Memlog(root / "memlog", shims=1)
    rows: list[str] = []
    try:
        redis_server.start()
        memlog.start()
        assert redis_server.proc is not None
        servers = {
            "redis": Raw(redis_server.port, redis_server.proc.pid),
            "memlog": Raw(memlog.shim_ports[0], memlog.shim_procs[0].pid),
        }
        load_before = os.getloadavg()
        started = time.perf_counter()
        for conn in servers.values():
            fill(conn)
        print(f"filled both servers in {time.perf_counter() - started:.1f}s", flush=True)
        for label, command, source in cases(args.count):
            if args.only and args.only not in label:
                continue
            times: dict[str, list[float]] = {"redis": [], "memlog": []}
            cpus: dict[str, list[float]] = {"redis": [], "memlog": []}
            sizes: dict[str, int] = {}
            for _ in range(args.rounds):
                for name, conn in servers.items():
                    if source is not None:
                        conn.call([b"SUNIONSTORE", command[1], source])
                    elapsed, size = conn.timed(command)
                    times[name].append(elapsed)
                    cpus[name].append(conn.cpu)
                    sizes[name] = size
            redis_s, memlog_s = min(times["redis"]), min(times["memlog"])
            median_ratio = statistics.median(times["memlog"]) / statistics.median(times["redis"])
            redis_cpu, memlog_cpu = (statistics.median(cpus[name]) for name in ("redis", "memlog"))
            row = (
                f"| {label} | {redis_s * 1000:,.0f} | {memlog_s * 1000:,.0f} | "
                f"{memlog_s / redis_s:.2f}x | {median_ratio:.2f}x | {redis_cpu * 1000:,.0f} | "
                f"{memlog_cpu * 1000:,.0f} | {memlog_cpu / max(redis_cpu, 1e-9):.2f}x | "
                f"{sizes['memlog'] / 1e6:,.1f} |"
            )
            print(row, flush=True)
            rows.append(row)
        load_after = os.getloadavg()
    finally:
        memlog.stop()
        redis_server.stop()

    header = [
        "| command | redis-server ms | memlog ms | memlog / redis | ratio of medians "
        "| redis CPU ms | memlog CPU ms | CPU ratio | reply MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    report = "\n".join(
        [
            "# Random-member commands with big counts: memlog against redis-server",
            "",
            f"Generated by `bench/random_members.py --count {args.count} --rounds "
            f"{args.rounds}{' --only ' + args.only if args.only else ''}` on "
            f"{datetime.date.today().isoformat()} "
            f"({platform.machine()}, {os.cpu_count()} cores shared with other work; "
            "Python " + platform.python_version() + "). The best of the rounds (the machine is "
            "shared, so the best is the least disturbed), and the ratio of the medians beside "
            "it; a time runs from sending the command to the last byte of the reply (raw "
            "socket, not parsed), so it is also how long every other client of that server "
            "waits. CPU: the median of the server process's CPU time (all its threads) over "
            "the same calls, which a busy machine disturbs less than the wall clock. Load "
            f"average (1 min) {load_before[0]:.1f} before the first case, {load_after[0]:.1f} "
            "after the last.",
            "",
            *header,
            *rows,
            "",
        ]
    )
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
