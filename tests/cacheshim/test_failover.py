"""Faults in the log, seen from a shim's clients (issue 21): every write is answered within
--write-timeout-s of its arrival, with an error that says whether it may still be applied;
linearizable reads go on from another node while the shim's zone-local node is paused or
down. Real processes: three log nodes and shims, paused with SIGSTOP or killed."""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.cacheshim.harness import Memlog, client, execute, wait_until

WRITE_TIMEOUT_S = 2.0
# What the machine may add to a write timeout (two shared cores, a loaded test run).
MARGIN_S = 1.0
UNKNOWN = "its outcome is unknown"
NOT_APPLIED = "it was not applied and will not be"


def test_every_write_is_answered_within_the_write_timeout_while_the_log_hangs(
    tmp_path: Path,
) -> None:
    """With all log nodes paused, one Append hangs in flight and the writes that come after
    it wait behind it. Each is answered within the write timeout of its own arrival (before
    the fix, a write queued behind the Append waited for it and then for its own timeout),
    as 'outcome unknown' (sent) or 'not applied' (a large write whose last piece was never
    sent). After the resume, the unknown ones are applied at most once, and every write
    acknowledged before the pause is there."""
    deployment = Memlog(
        tmp_path / "hung-log", shim_args=["--write-timeout-s", str(WRITE_TIMEOUT_S)]
    )
    try:
        deployment.start()
        cluster = deployment.cluster
        assert cluster is not None
        port = deployment.shim_ports[0]
        conn = client(port)
        assert conn.rpush("acked", "before") == 1
        results: dict[str, tuple[float, object]] = {}

        def send(name: str, *args: object) -> None:
            started = time.monotonic()
            try:
                reply: object = execute(client(port), *args)
            except redis.ResponseError as exc:
                reply = exc
            results[name] = (time.monotonic() - started, reply)

        big = b"x" * (3 << 20)  # 12 pieces: more than one Append carries
        for proc in cluster.processes.values():
            proc.send_signal(signal.SIGSTOP)
        try:
            threads = [threading.Thread(target=send, args=("first", "RPUSH", "l", "first"))]
            threads[0].start()
            time.sleep(0.3)  # the first Append is in flight now: the others queue behind it
            for i in range(8):
                name = f"w{i}"
                threads.append(threading.Thread(target=send, args=(name, "RPUSH", "l", name)))
                threads[-1].start()
                time.sleep(0.15)
            threads.append(threading.Thread(target=send, args=("big", "SET", "big", big)))
            threads[-1].start()
            for thread in threads:
                thread.join(timeout=WRITE_TIMEOUT_S * 4 + 10)
        finally:
            for proc in cluster.processes.values():
                proc.send_signal(signal.SIGCONT)
        assert len(results) == 10, results
        unknown: list[str] = []
        for name, (took, reply) in results.items():
            assert took < WRITE_TIMEOUT_S + MARGIN_S, (name, took, reply)
            assert isinstance(reply, redis.ResponseError), (name, reply)
            text = str(reply)
            assert "memlog:" in text and f"within {WRITE_TIMEOUT_S:g}s" in text, (name, text)
            if name == "big":
                assert NOT_APPLIED in text, text
            else:
                assert UNKNOWN in text or NOT_APPLIED in text, (name, text)
                if UNKNOWN in text:
                    unknown.append(name)
        assert "first" in unknown
        cluster.wait_for_leader()
        wait_until(lambda: _rpush_ok(conn), 60, "writes after the resume")
        values = [v.decode() for v in _list(conn, "l")]
        assert values[-1] == "after"
        applied = [v for v in values if v != "after"]  # an unknown "after" may be in twice
        assert len(applied) == len(set(applied)), values  # none applied twice
        assert set(applied) <= set(unknown), (applied, unknown)  # none marked not applied
        assert conn.exists("big") == 0  # its last pieces were never sent
        assert conn.lrange("acked", 0, -1) == [b"before"]
    finally:
        deployment.stop()


def _rpush_ok(conn: redis.Redis) -> bool:
    try:
        return bool(conn.rpush("l", "after"))
    except redis.ResponseError:
        return False


def _list(conn: redis.Redis, key: str) -> list[bytes]:
    reply = execute(conn, "LRANGE", key, 0, -1)
    assert isinstance(reply, list)
    return [bytes(v) for v in reply]


# -- linearizable reads and writes while the shim's zone-local node is paused or killed ------

FAULT_S = 6.0  # how long a fault lasts
GAP_TARGET_S = 3.0  # issue 21: no stretch without a successful read or write over 3 s


@dataclass
class Traffic:
    """Writes through both shims and linearizable reads through the first, in threads,
    with the time of each success; reads are checked against acknowledged writes."""

    reader_port: int
    writer_port: int
    stop: threading.Event = field(default_factory=threading.Event)
    acked: int = 0  # the highest value of "c" acknowledged to the other shim's writer
    writes: list[float] = field(default_factory=list)  # successes through the first shim
    reads: list[float] = field(default_factory=list)
    stale: list[tuple[int, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for target in (self._write_other, self._write_own, self._read):
            self.threads.append(threading.Thread(target=target, daemon=True))
            self.threads[-1].start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _write_other(self) -> None:
        conn = client(self.writer_port)
        while not self.stop.is_set():
            try:
                self.acked = max(self.acked, int(conn.incr("c")))
            except redis.RedisError:
                time.sleep(0.01)

    def _write_own(self) -> None:
        conn = client(self.reader_port)
        while not self.stop.is_set():
            try:
                conn.incr("own")
                self.writes.append(time.monotonic())
            except redis.RedisError as exc:
                self.errors.append(f"write: {exc}")
                time.sleep(0.01)

    def _read(self) -> None:
        conn = client(self.reader_port)
        assert execute(conn, "MEMLOG", "READS", "LINEARIZABLE") == b"OK"
        while not self.stop.is_set():
            floor = self.acked
            try:
                value = int(conn.get("c") or 0)
            except redis.RedisError as exc:
                self.errors.append(f"read: {exc}")
                time.sleep(0.01)
                continue
            self.reads.append(time.monotonic())
            if value < floor:
                self.stale.append((value, floor))
            time.sleep(0.005)


def longest_gap(successes: list[float], start: float, end: float) -> float:
    """The longest stretch within [start, end] with no success."""
    times = [start, *(t for t in successes if start <= t <= end), end]
    return max(b - a for a, b in itertools.pairwise(times))


def _pause(deployment: Memlog, zone: str) -> Callable[[], None]:
    assert deployment.cluster is not None
    proc = deployment.cluster.processes[zone]
    proc.send_signal(signal.SIGSTOP)
    return lambda: proc.send_signal(signal.SIGCONT)


def _kill(deployment: Memlog, zone: str) -> Callable[[], None]:
    cluster = deployment.cluster
    assert cluster is not None
    cluster.kill_node(zone)
    return lambda: (cluster.start_node(zone), None)[1]


@pytest.mark.parametrize(
    ("fault", "role"),
    [("pause", "follower"), ("kill", "follower"), ("pause", "leader"), ("kill", "leader")],
)
def test_linearizable_reads_and_writes_go_on_while_the_zones_node_fails(
    tmp_path: Path, fault: str, role: str
) -> None:
    """Shim 1 reads, in linearizable mode, from the failing node's zone (a follower's, or
    the leader's); shim 2 from another. While that node is paused (SIGSTOP) or killed and
    restarted, shim 1's linearizable
    reads and its writes go on: ReadIndex asks the other nodes, the Read stream leaves the
    node that stopped delivering. Every read sees every write acknowledged before it began.
    Before the fix, with the leader as the zone's node, reads stopped for 3.0-3.1 s
    (ReadIndex gave that node 3 s) and failed at once while no node knew a leader."""
    deployment = Memlog(tmp_path / f"{fault}-{role}", shims=0, shim_args=["--write-timeout-s", "5"])
    try:
        deployment.start()
        cluster = deployment.cluster
        assert cluster is not None
        leader = cluster.node_at(cluster.wait_for_leader())
        follower = next(z for z in cluster.zones if z != leader)
        deployment.shim_zones = [follower, leader] if role == "follower" else [leader, follower]
        failing = follower if role == "follower" else leader
        deployment.start_shim(0)
        deployment.start_shim(1)
        traffic = Traffic(deployment.shim_ports[0], deployment.shim_ports[1])
        traffic.start()
        wait_until(lambda: len(traffic.reads) > 20, 30, "linearizable reads before the fault")
        started = time.monotonic()
        undo = (_pause if fault == "pause" else _kill)(deployment, failing)
        time.sleep(FAULT_S)
        undo()
        time.sleep(FAULT_S)
        ended = time.monotonic()
        traffic.finish()
        read_gap = longest_gap(traffic.reads, started, ended)
        write_gap = longest_gap(traffic.writes, started, ended)
        print(
            f"{fault} of the shim's zone node, the {role} ({FAULT_S:g}s, then {FAULT_S:g}s "
            "after): "
            f"longest stretch without a linearizable read {read_gap:.2f}s, without a write "
            f"{write_gap:.2f}s; {len(traffic.reads)} reads, {len(traffic.writes)} writes, "
            f"errors: {traffic.errors[:3]}"
        )
        assert not traffic.stale, traffic.stale[:5]
        # While there is no leader, linearizable reads wait (bounded): none fails here.
        assert not [e for e in traffic.errors if e.startswith("read")], traffic.errors[:5]
        # Reads with the leader as the zone's node: under the 3 s target (1.1 s at most
        # measured; 3.0-3.1 s before the fix). With a paused follower, the leader's own
        # ReadIndex answers were seen slow at times (up to 2.9 s without a read, the Read
        # stream having moved in 0.5 s): the log's matter, given the margin here, as the
        # writes are (two shared cores under other tests' load).
        bound = GAP_TARGET_S if role == "leader" else GAP_TARGET_S + MARGIN_S
        assert read_gap < bound, (read_gap, traffic.errors[:5])
        assert write_gap < GAP_TARGET_S + MARGIN_S, (write_gap, traffic.errors[:5])
    finally:
        deployment.stop()


# -- --max-staleness-ms: local reads refused while the shim hears nothing from the log ------

STALENESS_MS = 2000


def _info_memlog(conn: redis.Redis) -> dict[str, object]:
    info = conn.info("memlog")
    assert isinstance(info, dict)
    return info


def _get_or_error(conn: redis.Redis, key: str) -> object:
    try:
        return conn.get(key)
    except redis.ResponseError as exc:
        return exc


def test_local_reads_are_refused_past_max_staleness_and_served_again_after(
    tmp_path: Path,
) -> None:
    """--max-staleness-ms 2000: idle, the shim stays fresh (keepalives on its Read stream);
    with its zone's node paused it reads from another and goes on serving; with every log
    node paused, GET is refused with MASTERDOWN within 2 s + a margin (and not before
    about 2 s), INFO says so; after the resume, reads are served again."""
    deployment = Memlog(tmp_path / "stale", shim_args=["--max-staleness-ms", str(STALENESS_MS)])
    try:
        deployment.start()
        cluster = deployment.cluster
        assert cluster is not None
        conn = client(deployment.shim_ports[0])
        assert conn.set("k", "v")
        assert execute(conn, "CONFIG", "GET", "memlog-max-staleness-ms") == [
            b"memlog-max-staleness-ms",
            str(STALENESS_MS).encode(),
        ]
        assert b"memlog-max-staleness-ms" not in execute(conn, "CONFIG", "GET", "*")  # type: ignore[operator]
        with pytest.raises(redis.ResponseError, match="--max-staleness-ms"):
            execute(conn, "CONFIG", "SET", "memlog-max-staleness-ms", "0")
        # Idle for longer than the limit: the keepalives keep the shim fresh.
        idle_until = time.monotonic() + STALENESS_MS / 1000 + 1
        while time.monotonic() < idle_until:
            assert conn.get("k") == b"v"
            info = _info_memlog(conn)
            assert info["local_reads_refused"] == 0, info
            time.sleep(0.1)
        assert info["max_staleness_ms"] == STALENESS_MS
        assert int(str(info["log_silent_ms"])) < STALENESS_MS, info
        # The zone's node paused: the Read stream moves to another node; reads go on.
        zone = deployment.shim_zones[0] if deployment.shim_zones else cluster.zones[0]
        resume = [_pause(deployment, zone)]
        try:
            until = time.monotonic() + STALENESS_MS / 1000 + 2
            refused = 0
            while time.monotonic() < until:
                refused += isinstance(_get_or_error(conn, "k"), redis.ResponseError)
                time.sleep(0.05)
            wait_until(lambda: conn.get("k") == b"v", 10, "reads from another node")
            print(f"zone node paused: {refused} reads refused while the stream moved")
            # Every node paused: nothing comes; reads are refused once the limit passes.
            paused_at = time.monotonic()
            resume += [_pause(deployment, z) for z in cluster.zones if z != zone]
            while not isinstance(reply := _get_or_error(conn, "k"), redis.ResponseError):
                assert reply == b"v"
                assert time.monotonic() - paused_at < STALENESS_MS / 1000 + 1.5
                time.sleep(0.02)
            took = time.monotonic() - paused_at
            print(f"every node paused: reads refused after {took:.2f}s")
            # redis-py knows Redis's MASTERDOWN reply and raises its own error for it.
            assert isinstance(reply, redis.exceptions.MasterDownError), reply
            assert "replica-serve-stale-data" in str(reply), reply
            assert took > STALENESS_MS / 1000 - 0.5  # not before the limit (keepalive 0.25 s)
            info = _info_memlog(conn)
            assert info["local_reads_refused"] == 1, info
            assert int(str(info["log_silent_ms"])) > STALENESS_MS, info
            assert int(str(info["log_last_io_seconds_ago"])) >= STALENESS_MS // 1000, info
            assert conn.ping()  # not a read of data: answered
        finally:
            for undo in resume:
                undo()
        resumed_at = time.monotonic()
        wait_until(lambda: _get_or_error(conn, "k") == b"v", 30, "reads after the resume")
        print(f"served again {time.monotonic() - resumed_at:.2f}s after the resume")
        assert _info_memlog(conn)["local_reads_refused"] == 0
    finally:
        deployment.stop()


# -- leadership handed off on a graceful stop ------------------------------------------------

# logsvc serve's default timing (the harness's is faster): elections after 300-600 ms.
DEFAULT_TIMING = ["--tick-ms", "20", "--election-ticks", "15", "--heartbeat-ticks", "3"]


def _write_gap_around(deployment: Memlog, fault: Callable[[str], None]) -> float:
    """INCRs through the shim in a thread; `fault` applied to the leader's zone; the longest
    stretch without a successful INCR from the fault to 2 s after it."""
    cluster = deployment.cluster
    assert cluster is not None
    conn = client(deployment.shim_ports[0])
    successes: list[float] = []
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            try:
                conn.incr("n")
                successes.append(time.monotonic())
            except redis.RedisError:
                time.sleep(0.005)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(successes) > 20, 30, "writes before the fault")
        leader = cluster.node_at(cluster.wait_for_leader())
        started = time.monotonic()
        fault(leader)
        wait_until(lambda: bool(successes) and successes[-1] > started + 2, 30, "writes after")
        return longest_gap(successes, started, started + 2)
    finally:
        stop.set()
        thread.join(timeout=30)


def test_sigterm_of_the_leader_hands_off_without_an_election_gap(tmp_path: Path) -> None:
    """SIGTERM of the leader hands leadership to the most caught-up follower before the node
    stops (logsvc.node.LogNode.hand_off): a shim's writes go on after a round trip, not after
    an election timeout as when the leader is killed (SIGKILL), measured in the same run."""
    deployment = Memlog(tmp_path / "handoff", shims=0, log_args=DEFAULT_TIMING)
    try:
        deployment.start()
        cluster = deployment.cluster
        assert cluster is not None
        leader = cluster.node_at(cluster.wait_for_leader())
        deployment.shim_zones = [next(z for z in cluster.zones if z != leader)]
        deployment.start_shim(0)

        def terminate(zone: str) -> None:
            proc = cluster.processes[zone]
            proc.send_signal(signal.SIGTERM)

        terminated = _write_gap_around(deployment, terminate)
        stopped = cluster.processes[leader]
        assert stopped.wait(30) == 0
        cluster.start_node(leader)
        cluster.wait_for_leader()
        killed = _write_gap_around(deployment, cluster.kill_node)
        print(
            f"longest stretch without a write: {terminated:.3f}s after SIGTERM of the leader, "
            f"{killed:.3f}s after SIGKILL"
        )
        # The kill waits for an election (300-600 ms without word from the leader, then the
        # vote); the hand-off is a round trip or two, and the shim's retry.
        assert terminated < 0.3, (terminated, killed)
    finally:
        deployment.stop()
