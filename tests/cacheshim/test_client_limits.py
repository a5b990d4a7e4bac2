"""maxclients and client-output-buffer-limit (issue 14, finding 6), against redis-server 7.0:
the same CONFIG answers, the same connection refused with the same bytes, the same slow
readers closed (hard limit at once, soft limit after its seconds, also when nothing more is
written), and the limits' bookkeeping (INFO, the log line). Real processes, real sockets.
"""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cacheshim.clientlimits import OutputGuard, OutputLimit, parse_output_limits
from tests.cacheshim.harness import (
    Memlog,
    RedisServer,
    compare,
    execute,
    outcome,
    wait_until,
)
from tests.cacheshim.rawresp import without_callbacks

REFUSED = b"-ERR max number of clients reached\r\n"
DEFAULT_LIMITS = "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"


@pytest.fixture
def servers(oracle_server: RedisServer, memlog: Memlog) -> Iterator[dict[str, int]]:
    """The ports of redis-server and of the shim; their limits back to the defaults after."""
    ports = {"redis": oracle_server.port, "memlog": memlog.shim_ports[0]}
    yield ports
    for port in ports.values():
        conn = control(port)
        execute(conn, "CONFIG", "SET", "maxclients", "10000")
        execute(conn, "CONFIG", "SET", "client-output-buffer-limit", DEFAULT_LIMITS)
        conn.close()


def control(port: int) -> redis.Redis:
    return without_callbacks(redis.Redis(port=port, socket_timeout=30))


def info_field(conn: redis.Redis, field: str) -> int:
    text = execute(conn, "INFO", "everything")
    assert isinstance(text, bytes)
    for line in text.decode().splitlines():
        if line.startswith(field + ":"):
            return int(line.split(":", 1)[1])
    raise AssertionError(f"INFO has no {field}")


def read_to_eof(sock: socket.socket, timeout_s: float = 30) -> bytes:
    data = bytearray()
    sock.settimeout(timeout_s)
    try:
        while chunk := sock.recv(1 << 16):
            data += chunk
    except ConnectionResetError:
        pass
    return bytes(data)


def test_config_set_and_get_answer_as_redis(servers: dict[str, int]) -> None:
    oracle, subject = control(servers["redis"]), control(servers["memlog"])
    maxclients = [
        ["CONFIG", "SET", "maxclients", value]
        # (Not 4294967263, which wraps to no need in the shim as in Redis, but which Redis
        # refuses only after trying every 16th limit below 2**32: minutes of setrlimit.)
        for value in ("0", "-1", "abc", "10 ", "4294967296", "1.5", "100000000")
    ]
    compare(oracle, subject, maxclients)
    compare(
        oracle,
        subject,
        [
            ["CONFIG", "GET", "maxclients"],
            ["CONFIG", "SET", "maxclients", "4294967295"],  # maxclients + 32 wraps: accepted
            ["CONFIG", "GET", "maxclients"],
            ["CONFIG", "SET", "maxclients", "10000"],
            ["CONFIG", "SET", "maxclients", "20"],
            ["CONFIG", "GET", "maxclients"],
        ],
    )
    limits = [
        ["CONFIG", "SET", "client-output-buffer-limit", value]
        for value in (
            "normal 1 2", "bogus 1 2 3", "master 1 2 3", "normal 10mbs 1 1", "normal 1 2 -1",
            "normal 1 2 x", "pubsub 1k 2kb 3", "replica 1mb 2mb 3 normal 4 5 6", "",
        )
    ]  # fmt: skip
    for args in limits:
        compare(oracle, subject, [args, ["CONFIG", "GET", "client-output-buffer-limit"]])


def wait_for_info(conn: redis.Redis, field: str, value: int, timeout_s: float, what: str) -> None:
    wait_until(lambda: info_field(conn, field) == value, timeout_s, what)


def classify(port: int, conn: redis.Redis) -> tuple[socket.socket, bytes | None]:
    """Connect; (socket, None) once the server counts it as a client, or (socket, what it
    sent before closing) if it was turned away."""
    before = info_field(conn, "connected_clients")
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if select.select([sock], [], [], 0.05)[0]:
            return sock, read_to_eof(sock)
        if info_field(conn, "connected_clients") > before:
            return sock, None
    raise TimeoutError("the server neither counted nor refused the connection")


def test_maxclients_turns_away_the_connection_after_the_last(servers: dict[str, int]) -> None:
    """With maxclients at connected + 3, three more connections are served and the next gets
    Redis's error and is closed; it is counted as rejected, not as received; a client that
    leaves makes room; redis-py raises ConnectionError on the refusal."""
    seen: dict[str, tuple[int, bytes | None, int, int]] = {}
    for name, port in servers.items():
        conn = control(port)
        connected = info_field(conn, "connected_clients")
        execute(conn, "CONFIG", "SET", "maxclients", str(connected + 3))
        rejected = info_field(conn, "rejected_connections")
        received = info_field(conn, "total_connections_received")
        accepted: list[socket.socket] = []
        refusal: bytes | None = None
        for _ in range(6):
            sock, refusal = classify(port, conn)
            if refusal is not None:
                sock.close()
                break
            accepted.append(sock)
        for sock in accepted:  # each one served
            sock.sendall(b"PING\r\n")
            assert sock.recv(7) == b"+PONG\r\n"
        with pytest.raises(redis.ConnectionError, match="max number of clients reached"):
            redis.Redis(port=port, socket_timeout=30).ping()
        seen[name] = (
            len(accepted),
            refusal,
            info_field(conn, "rejected_connections") - rejected,
            info_field(conn, "total_connections_received") - received,
        )
        accepted.pop().close()
        wait_for_info(conn, "connected_clients", connected + 2, 30, "a client to go")
        last, refusal = classify(port, conn)
        assert refusal is None, name  # room again
        for sock in [*accepted, last]:
            sock.close()
        execute(conn, "CONFIG", "SET", "maxclients", "10000")
    # Rejected: our socket, then redis-py's attempts (it retries a refused connection).
    assert seen["memlog"] == seen["redis"], seen
    accepted_count, refusal, rejected_count, received_count = seen["memlog"]
    assert (accepted_count, refusal, received_count) == (3, REFUSED, 3) and rejected_count >= 2


def slow_reader(port: int) -> socket.socket:
    """A client whose receive buffer is small: what the server cannot send stays with it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(60)
    return sock


def gets(key: bytes, count: int) -> bytes:
    return b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(key), key) * count


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_normal_hard_limit_closes_a_slow_reader(
    servers: dict[str, int], memlog: Memlog, oracle_server: RedisServer
) -> None:
    """300 MB of replies pipelined to a client that reads nothing: closed by `normal 4mb 0 0`
    on both servers, before most of it was sent and without the server's memory growing by
    more than a few times the limit; not closed with the default `normal 0 0 0`, where all
    of 64 MB is read back."""
    value = b"v" * 100_000
    assert oracle_server.proc is not None
    pids = {"redis": oracle_server.proc.pid, "memlog": memlog.shim_procs[0].pid}
    for name, port in servers.items():
        conn = control(port)
        execute(conn, "SET", "big", value)
        closed = info_field(conn, "connected_clients")
        execute(conn, "CONFIG", "SET", "client-output-buffer-limit", "normal 4mb 0 0")
        peak_before = peak_rss_bytes(pids[name])
        sock = slow_reader(port)
        sock.sendall(gets(b"big", 3000))
        wait_for_info(conn, "connected_clients", closed, 120, f"{name} to close it")
        received = len(read_to_eof(sock))
        sock.close()
        assert received < 32_000_000, (name, received)
        growth = peak_rss_bytes(pids[name]) - peak_before
        assert growth < 64_000_000, (name, growth)
        # The default: nothing closes a normal client, every reply arrives.
        execute(conn, "CONFIG", "SET", "client-output-buffer-limit", DEFAULT_LIMITS)
        sock = slow_reader(port)
        sock.sendall(gets(b"big", 640) + b"*1\r\n$4\r\nQUIT\r\n")
        assert len(read_to_eof(sock, timeout_s=120)) == 640 * (len(value) + 11) + len(b"+OK\r\n")
        sock.close()
    subject = control(servers["memlog"])
    assert info_field(subject, "client_output_buffer_limit_disconnections") >= 1
    assert "scheduled to be closed ASAP for overcoming of output buffer limits" in (
        memlog.log_tail("shim-1.log", 200)
    )


def subscriber(port: int, channel: bytes) -> socket.socket:
    sock = slow_reader(port)
    sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%b\r\n" % (len(channel), channel))
    confirmation = b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%b\r\n:1\r\n" % (len(channel), channel)
    assert sock.recv(len(confirmation), socket.MSG_WAITALL) == confirmation
    return sock


def publish_until_unsubscribed(conn: redis.Redis, channel: bytes) -> int:
    """PUBLISH 100 kB messages until no client listens to channel; how many."""
    message = b"m" * 100_000
    deadline = time.monotonic() + 120
    sent = 0
    while time.monotonic() < deadline:
        execute(conn, "PUBLISH", channel, message)
        sent += 1
        if sent % 10 == 0 and info_field(conn, "pubsub_channels") == 0:
            return sent
    raise AssertionError(f"the subscriber was not closed after {sent} messages")


@pytest.mark.parametrize(
    "limit", ["pubsub 2mb 0 0", "pubsub 0 1mb 1"], ids=["hard", "soft_after_seconds"]
)
def test_pubsub_limits_close_a_subscriber_that_does_not_read(
    servers: dict[str, int], limit: str
) -> None:
    """A subscriber that reads nothing is closed by its class's limit on both servers; the
    normal class's limit (none) does not save it, and a publisher is never closed."""
    published: dict[str, int] = {}
    for name, port in servers.items():
        conn = control(port)
        execute(conn, "CONFIG", "SET", "client-output-buffer-limit", limit)
        sock = subscriber(port, b"news")
        published[name] = publish_until_unsubscribed(conn, b"news")
        read_to_eof(sock)
        sock.close()
        assert execute(conn, "PING") == b"PONG"
    print(published)


def test_soft_limit_closes_when_its_seconds_run_out_without_more_writes(
    servers: dict[str, int],
) -> None:
    """Over the soft limit and then nothing more to send: Redis's clientsCron closes the
    client once the seconds are over, and so does the shim."""
    soft_seconds = 3
    for name, port in servers.items():
        conn = control(port)
        execute(conn, "CONFIG", "SET", "client-output-buffer-limit", f"pubsub 0 1mb {soft_seconds}")
        sock = subscriber(port, b"quiet")
        message = b"q" * 100_000
        started = time.monotonic()
        for _ in range(80):  # 8 MB: beyond what the kernel buffers, over the soft limit
            execute(conn, "PUBLISH", b"quiet", message)
        if time.monotonic() - started < soft_seconds:
            # The soft limit's clock started after `started`: too early to close, and the
            # close below comes with nothing more written.
            assert info_field(conn, "pubsub_channels") == 1, name
        wait_for_info(conn, "pubsub_channels", 0, 60, f"{name} to close it")
        read_to_eof(sock)
        sock.close()


def test_output_guard_counts_soft_seconds_as_redis() -> None:
    """checkClientOutputBufferLimits: the hard limit at once; the soft one only once it has
    held for more than its seconds, its clock starting at the first check over it and
    stopping at the first check under it."""
    limit = OutputLimit(hard_bytes=1000, soft_bytes=100, soft_seconds=5)
    guard = OutputGuard()
    assert not guard.exceeded(99, limit, now=0.0)
    assert not guard.exceeded(100, limit, now=1.0)  # the clock starts
    assert guard.recheck_after_s(limit, now=1.0) == pytest.approx(5.01)
    assert not guard.exceeded(500, limit, now=6.0)  # 5 s: not more than the seconds
    assert guard.exceeded(500, limit, now=6.5)
    assert not guard.exceeded(50, limit, now=7.0)  # under: the clock stops
    assert guard.recheck_after_s(limit, now=7.0) is None
    assert not guard.exceeded(200, limit, now=8.0)
    assert not guard.exceeded(200, limit, now=13.0)
    assert guard.exceeded(1000, OutputLimit(1000, 0, 0), now=0.0)  # hard: at once
    assert not guard.exceeded(10**12, OutputLimit(0, 0, 0), now=0.0)  # 0 0 0: no limit
    assert parse_output_limits(DEFAULT_LIMITS) == {
        "normal": OutputLimit(0, 0, 0),
        "slave": OutputLimit(268435456, 67108864, 60),
        "pubsub": OutputLimit(33554432, 8388608, 60),
    }


def test_startup_flags_validated_and_applied(memlog: Memlog) -> None:
    """--maxclients and --client-output-buffer-limit: refused with Redis's reasons, or
    applied (CONFIG GET shows them, and the limit holds from the first client)."""
    for flag, value, reason in (
        ("--maxclients", "0", "argument must be between 1 and 4294967295 inclusive"),
        ("--maxclients", "ten", "argument couldn't be parsed into an integer"),
        ("--client-output-buffer-limit", "normal 1 2",
         "Wrong number of arguments in buffer limit configuration."),
        ("--client-output-buffer-limit", "master 1 2 3",
         "Invalid client class specified in buffer limit configuration."),
    ):  # fmt: skip
        run = subprocess.run(
            [sys.executable, "-m", "cacheshim.cli", "serve", "--log", "127.0.0.1:1", flag, value],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert run.returncode == 2 and f"{flag} {value!r}: {reason}" in run.stderr, run.stderr
    assert outcome(control(memlog.shim_ports[0]), ["PING"]) == ("ok", b"PONG")
    extra = ["--maxclients", "2", "--client-output-buffer-limit", "pubsub 1mb 0 0"]
    memlog.shim_args[:] = extra
    try:
        memlog.start_shim(len(memlog.shim_ports))
        port = memlog.shim_ports[-1]
        conn = control(port)
        assert execute(conn, "CONFIG", "GET", "maxclients") == {b"maxclients": b"2"}
        assert execute(conn, "CONFIG", "GET", "client-output-buffer-limit") == {
            b"client-output-buffer-limit": (
                b"normal 0 0 0 slave 268435456 67108864 60 pubsub 1048576 0 0"
            )
        }
        second = control(port)
        assert execute(second, "PING") == b"PONG"
        with pytest.raises(redis.ConnectionError, match="max number of clients reached"):
            control(port).ping()
        second.close()
        conn.close()
    finally:
        memlog.shim_args[:] = []
        proc = memlog.shim_procs[-1]
        proc.terminate()
        proc.wait(timeout=30)


def test_client_list_shows_unsent_output_as_omem(servers: dict[str, int]) -> None:
    """A subscriber that reads nothing: CLIENT LIST's omem (and tot-mem) grow with what the
    server holds for it, on both servers; 0 for a client that is up to date."""
    for name, port in servers.items():
        conn = control(port)
        sock = subscriber(port, b"pile")
        message = b"p" * 100_000
        for _ in range(100):  # 10 MB: past the kernel's buffers, under the 32 MB hard limit
            execute(conn, "PUBLISH", b"pile", message)
        listing = execute(conn, "CLIENT", "LIST")
        assert isinstance(listing, bytes)
        fields = {
            line.split(" flags=")[1].split(" ")[0]: dict(
                pair.split("=", 1) for pair in line.split(" ") if "=" in pair
            )
            for line in listing.decode().splitlines()
        }
        assert int(fields["P"]["omem"]) > 1_000_000, (name, fields["P"])
        assert int(fields["P"]["tot-mem"]) >= int(fields["P"]["omem"]), name
        assert int(fields["N"]["omem"]) == 0, (name, fields["N"])
        sock.close()
