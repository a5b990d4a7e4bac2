"""A client that stops reading: how big the server grows, memlog beside redis-server.

    .venv/bin/python bench/slow_reader.py [--limit "normal 64mb 16mb 10"] [--mb 1000]

Starts on 127.0.0.1 a memlog deployment (three log nodes, one shim) and a plain in-memory
`redis-server`, sets `client-output-buffer-limit` on both, stores a 500 kB value, then opens
a client with a small receive buffer that pipelines GETs of it (`--mb` MB of replies in all)
and reads nothing. Prints, per server, the peak resident memory of the server process
(VmHWM) before and after, whether the client was closed, and how many bytes it received
before that. With a limit the server closes the client near the limit; without one (Redis's
default for normal clients) both keep every reply in memory until it is read.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

from tests.cacheshim.harness import Memlog, RedisServer

VALUE_BYTES = 500_000


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def scenario(port: int, pid: int, limit: str, total_mb: int) -> str:
    conn = redis.Redis(port=port, socket_timeout=60)
    conn.config_set("client-output-buffer-limit", limit)
    conn.set("big", b"v" * VALUE_BYTES)
    before = peak_rss_mb(pid)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.connect(("127.0.0.1", port))
    count = total_mb * 1_000_000 // VALUE_BYTES
    request = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * count
    while len(conn.client_list()) < 2:  # until the server has accepted it
        time.sleep(0.05)
    sock.sendall(request)
    # Until the server closed the client, or its memory stopped growing for 3 seconds.
    started = time.monotonic()
    closed = False
    last_growth, last_peak = started, before
    while time.monotonic() - started < 300:
        if len(conn.client_list()) == 1:
            closed = True
            break
        peak = peak_rss_mb(pid)
        if peak > last_peak + 1:
            last_growth, last_peak = time.monotonic(), peak
        elif time.monotonic() - last_growth > 3:
            break
        time.sleep(0.2)
    after = peak_rss_mb(pid)
    sock.settimeout(60)
    received = 0
    try:
        while received < count * (VALUE_BYTES + 13) and (chunk := sock.recv(1 << 20)):
            received += len(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    return (
        f"peak RSS {before:,.0f} MB -> {after:,.0f} MB; client "
        f"{'closed' if closed else 'NOT closed'}; it received {received / 1e6:,.1f} MB "
        f"of {count * VALUE_BYTES / 1e6:,.0f} MB"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", default="normal 64mb 16mb 10")
    parser.add_argument("--mb", type=int, default=1000, help="MB of replies requested")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-slow-reader-"))
    redis_server = RedisServer(root / "redis")
    memlog = Memlog(root / "memlog", shims=1)
    try:
        redis_server.start()
        memlog.start()
        assert redis_server.proc is not None
        print(f"client-output-buffer-limit {args.limit!r}, {args.mb} MB of replies unread")
        print(
            "redis-server:", scenario(redis_server.port, redis_server.proc.pid, args.limit, args.mb)
        )
        print(
            "memlog shim: ",
            scenario(memlog.shim_ports[0], memlog.shim_procs[0].pid, args.limit, args.mb),
        )
    finally:
        memlog.stop()
        redis_server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
