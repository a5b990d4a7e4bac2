"""Bad input, big pipelines, killed log leaders, restarted shims: the shim keeps serving and
loses nothing it acknowledged. Byte-level replies are compared with the real redis-server."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.cacheshim.harness import (
    Memlog,
    RedisServer,
    client,
    execute,
    same_index,
    wait_until,
)


def raw_exchange(port: int, chunks: list[bytes], read_timeout_s: float = 2.0) -> bytes:
    """Send chunks (pausing between them), return everything read until close or timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout_s) as sock:
        for chunk in chunks:
            sock.sendall(chunk)
            time.sleep(0.01)
        out = b""
        deadline = time.monotonic() + read_timeout_s
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            out += data
        return out


GARBAGE = [
    [b"*abc\r\n"],
    [b"*1\r\n$-5\r\n"],
    [b"*1\r\n$2147483648\r\n"],
    [b"*2\r\n$3\r\nGET\r\nxyz\r\n"],
    [b"*3000000000\r\n"],
    [b'SET "unbalanced\r\n'],
    [b"\x00\x01\x02\xff\r\n"],
    [b"PING\r\n", b"*1\r\n$4\r\nPING\r\n", b"ECHO 'a b'\r\n"],
]


@pytest.mark.parametrize("chunks", GARBAGE, ids=lambda c: repr(b"".join(c))[:40])
def test_bad_input_gets_the_bytes_redis_sends(
    chunks: list[bytes], oracle_server: RedisServer, memlog: Memlog
) -> None:
    want = raw_exchange(oracle_server.port, chunks)
    got = raw_exchange(memlog.shim_ports[0], chunks)
    assert got == want
    # The server keeps serving everyone else.
    assert client(memlog.shim_ports[0]).ping()


def test_half_sent_command_waits_while_others_are_served(memlog: Memlog) -> None:
    port = memlog.shim_ports[0]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as slow:
        slow.sendall(b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$5\r\nval")
        other = client(port)
        assert other.set("other", "ok") and other.get("other") == b"ok"
        slow.sendall(b"ue\r\n")
        assert slow.recv(100) == b"+OK\r\n"
    assert client(port).get("half") == b"value"


def test_ten_thousand_pipelined_commands(memlog: Memlog) -> None:
    port = memlog.shim_ports[0]
    n = 10_000
    request = b"".join(
        b"*3\r\n$3\r\nSET\r\n$%d\r\np%d\r\n$1\r\nv\r\n" % (len(b"p%d" % i), i) for i in range(n)
    ) + b"".join(b"*2\r\n$3\r\nGET\r\n$%d\r\np%d\r\n" % (len(b"p%d" % i), i) for i in range(n))
    expected = b"+OK\r\n" * n + b"$1\r\nv\r\n" * n
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(request)
        got = b""
        while len(got) < len(expected):
            data = sock.recv(1 << 20)
            assert data, f"connection closed after {len(got)} bytes"
            got += data
    assert got == expected


# -- a deployment of our own: these tests kill and restart its processes -------------------


@pytest.fixture(scope="module")
def two_shims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Memlog]:
    deployment = Memlog(tmp_path_factory.mktemp("memlog-faults"), shims=2)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


def digest(port: int) -> str:
    return str(execute(client(port), "DEBUG", "DIGEST"))


def test_log_leader_killed_while_clients_write(two_shims: Memlog) -> None:
    cluster = two_shims.cluster
    assert cluster is not None
    port = two_shims.shim_ports[0]
    acked_sets: dict[str, str] = {}
    acked_incrs = [0]
    attempts = [0]
    read_gaps: list[float] = []
    errors: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def writer(w: int) -> None:
        conn = client(port)
        for i in range(100_000):
            if stop.is_set():
                return
            key = f"w{w}-{i}"
            try:
                with lock:
                    attempts[0] += 1
                conn.set(key, str(i))
                conn.incr("counter")
            except redis.RedisError as exc:
                errors.append(f"{key}: {exc}")
                continue
            with lock:
                acked_sets[key] = str(i)
                acked_incrs[0] += 1

    def reader() -> None:
        conn = client(port)
        last = time.monotonic()
        while not stop.is_set():
            conn.get("counter")
            now = time.monotonic()
            read_gaps.append(now - last)
            last = now

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    threads.append(threading.Thread(target=reader))
    for t in threads:
        t.start()
    try:
        for _ in range(2):
            wait_until(lambda: len(acked_sets) > 50 + acked_incrs[0] // 2, 30, "writes")
            leader = cluster.node_at(cluster.wait_for_leader())
            cluster.kill_node(leader)
            before = acked_incrs[0]

            def moved_on(before: int = before) -> bool:
                return acked_incrs[0] > before + 20

            wait_until(moved_on, 30, "writes after the kill")
            cluster.start_node(leader)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors[:5]
    conn = client(port)
    for key, value in acked_sets.items():
        assert conn.get(key) == value.encode(), key
    counter = int(conn.get("counter") or 0)
    assert acked_incrs[0] <= counter <= attempts[0]
    assert max(read_gaps) < 2.0, "reads stalled while the log had no leader"
    # The second shim converges to the same keyspace.
    other = two_shims.shim_ports[1]
    wait_until(lambda: digest(other) == digest(port), 30, "equal digests on both shims")
    assert digest(port) != "0" * 40


def test_watch_sees_a_write_made_through_another_shim(two_shims: Memlog) -> None:
    a, b = client(two_shims.shim_ports[0]), client(two_shims.shim_ports[1])
    a.set("watched", "1")
    pipe = a.pipeline(transaction=True)
    execute(pipe, "WATCH", "watched")
    b.set("watched", "2")
    pipe.multi()
    pipe.set("watched", "3")
    with pytest.raises(redis.WatchError):
        pipe.execute()
    wait_until(lambda: a.get("watched") == b"2", 10, "the other shim's write")


def test_restarted_shim_answers_only_after_catching_up(two_shims: Memlog) -> None:
    first, second = two_shims.shim_ports
    proc = two_shims.shim_procs[1]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    writer = client(first)
    for i in range(300):
        writer.set(f"catchup-{i}", str(i))
    writer.set("catchup-last", "done")
    two_shims.start_shim(1)
    late = client(second)
    # Its very first answer already reflects everything committed before it started.
    assert late.get("catchup-last") == b"done"
    assert late.get("catchup-0") == b"0"


def test_data_survives_a_full_restart(tmp_path: Path) -> None:
    deployment = Memlog(tmp_path / "restart")
    try:
        deployment.start()
        conn = client(deployment.shim_ports[0])
        conn.set("durable", "yes")
        conn.incr("n")
        before = digest(deployment.shim_ports[0])
        deployment.stop()
        deployment.shim_procs = []
        deployment.shim_ports = []
        deployment.start()
        conn = client(deployment.shim_ports[0])
        assert conn.get("durable") == b"yes" and conn.get("n") == b"1"
        assert digest(deployment.shim_ports[0]) == before
    finally:
        deployment.stop()


@contextlib.contextmanager
def follower_and_leader_shims(
    root: Path, write_timeout_s: float
) -> Iterator[tuple[Memlog, subprocess.Popen[bytes], redis.Redis, redis.Redis]]:
    """A deployment whose first shim reads from a follower's zone and second from the
    leader's: yields it, the follower's process, and a client of each shim."""
    deployment = Memlog(root, shims=0, shim_args=["--write-timeout-s", str(write_timeout_s)])
    try:
        deployment.start()
        cluster = deployment.cluster
        assert cluster is not None
        leader = cluster.node_at(cluster.wait_for_leader())
        follower = next(z for z in cluster.zones if z != leader)
        deployment.shim_zones = [follower, leader]
        deployment.start_shim(0)
        deployment.start_shim(1)
        conn, other = client(deployment.shim_ports[0]), client(deployment.shim_ports[1])
        assert conn.set("before", "1")
        yield deployment, cluster.processes[follower], conn, other
    finally:
        deployment.stop()


@contextlib.contextmanager
def stopped(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """SIGSTOP the process (its connections stay open) for the block, then SIGCONT."""
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


def test_own_writes_are_answered_while_the_shims_log_node_is_paused(tmp_path: Path) -> None:
    """A shim applies its own committed Appends at once when they are next in line, so its
    writes do not wait for its zone's node to stream them back: with that node stopped
    (SIGSTOP; the other two still commit), every write is answered with its own result.
    Records that node streams later are skipped, and the shim ends equal to another."""
    with follower_and_leader_shims(tmp_path / "paused-local", 3) as (deployment, node, conn, other):
        with stopped(node):
            for i in range(1, 31):
                assert conn.incr("paused-counter") == i
                assert conn.rpush("paused-list", str(i)) == i
            assert conn.get("paused-counter") == b"30"
        # The resumed node streams those records again: skipped, and later writes go on.
        assert conn.incr("paused-counter") == 31
        assert conn.lrange("paused-list", 0, -1) == [str(i).encode() for i in range(1, 31)]
        other.set("from-the-other-shim", "x")
        wait_until(lambda: conn.get("from-the-other-shim") == b"x", 10, "the other's write")
        same_index([conn, other])
        assert digest(deployment.shim_ports[0]) == digest(deployment.shim_ports[1])


def test_a_shim_reads_the_log_elsewhere_when_its_zones_node_hangs(tmp_path: Path) -> None:
    """A node that stops answering (SIGSTOP: its TCP connections stay open, nothing errors)
    must not stall the shim reading from it: gRPC keepalive finds it dead, and the shim's
    Read stream goes on from another node. Here the other shim's writes come in between,
    so this shim's own writes can only be applied after them."""
    with follower_and_leader_shims(tmp_path / "hung-local", 10) as (deployment, node, conn, other):
        with stopped(node):
            for i in range(1, 6):
                other.set("theirs", str(i))
                assert conn.incr("mine") == i  # applied after "theirs" = i
                assert conn.get("theirs") == str(i).encode()
        same_index([conn, other])
        assert digest(deployment.shim_ports[0]) == digest(deployment.shim_ports[1])


def test_linearizable_reads_see_writes_made_through_another_shim(two_shims: Memlog) -> None:
    writer, reader = client(two_shims.shim_ports[0]), client(two_shims.shim_ports[1])
    assert execute(reader, "MEMLOG", "READS") == b"local"
    assert execute(reader, "MEMLOG", "READS", "LINEARIZABLE") == b"OK"
    for i in range(50):
        writer.set("lin", str(i))
        # Acknowledged on shim 1, so a linearizable read on shim 2 must see it at once.
        assert reader.get("lin") == str(i).encode()
    assert execute(reader, "MEMLOG", "READS", "LOCAL") == b"OK"


def test_without_a_log_quorum_reads_go_on_and_writes_fail_clearly(tmp_path: Path) -> None:
    deployment = Memlog(tmp_path / "no-quorum", shim_args=["--write-timeout-s", "2"])
    try:
        deployment.start()
        cluster = deployment.cluster
        assert cluster is not None
        conn = client(deployment.shim_ports[0])
        conn.set("before", "1")
        for node in cluster.zones[:2]:
            cluster.kill_node(node)
        assert conn.get("before") == b"1"  # reads are served from memory
        started = time.monotonic()
        with pytest.raises(redis.ResponseError, match="not confirmed by the log"):
            conn.set("during", "x")
        assert time.monotonic() - started < 10
        assert conn.get("before") == b"1"
        for node in cluster.zones[:2]:
            cluster.start_node(node)
        cluster.wait_for_leader()
        wait_until(lambda: _set_ok(conn), 30, "writes after the quorum is back")
    finally:
        deployment.stop()


def _set_ok(conn: redis.Redis) -> bool:
    try:
        return bool(conn.set("after", "1"))
    except redis.ResponseError:
        return False


def test_fifty_concurrent_writers_all_get_replies(memlog: Memlog) -> None:
    """redis-benchmark's 50 connections keep several Appends in flight at once; every SET
    must be answered (a lost wake-up in the writer once left them waiting forever)."""
    binary = shutil.which("redis-benchmark")
    assert binary is not None, "redis-benchmark is missing (apt-get install redis-tools)"
    out = subprocess.run(
        [binary, "-p", str(memlog.shim_ports[0]), "-t", "set", "-c", "50", "-n", "4000",
         "-r", "1000", "-q", "--csv"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert '"SET"' in out.stdout, out.stdout + out.stderr
