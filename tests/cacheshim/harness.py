"""Real processes for the shim's tests: a Debian `redis-server` as the oracle, and a memlog
deployment (three log nodes + shims) on free ports of 127.0.0.1. Everything is stopped by
PID when the fixture ends.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from logsvc.local import LocalCluster, local_tls
from tests.logsvc.cluster import free_ports

# Short Raft timing for tests: 10 ms ticks, elections after 150 ms, heartbeats every 30 ms.
TIMING_FLAGS = ("--tick-ms", "10", "--election-ticks", "15", "--heartbeat-ticks", "3")


def free_port() -> int:
    return free_ports(1)[0]


def free_port_block(count: int) -> int:
    """A first port with count free ports after it (checked, not reserved)."""
    for _ in range(50):
        base = free_port()
        try:
            for offset in range(count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no block of free ports found")


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")


def _answers_ping(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
        return False


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class RedisServer:
    """The oracle: Debian's redis-server, in-memory only."""

    root: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self, extra: Sequence[str] = ()) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(lambda: _answers_ping(self.port), 20, f"redis-server on {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


# How many port blocks Memlog.start tries when a node could not bind its port.
PORT_ATTEMPTS = 3


def _port_was_taken(cluster: LocalCluster, zone: str) -> bool:
    """Whether the node of `zone` exited because its port was in use."""
    proc = cluster.processes.get(zone)
    if proc is None or proc.poll() is None:
        return False
    log = cluster.log_path(zone)
    return log.exists() and "Address already in use" in log.read_text(errors="replace")


@dataclass
class Memlog:
    """Three log nodes (zones a, b, c) and `shims` shims, as `memlog up` runs them."""

    root: Path
    shims: int = 1
    shim_args: list[str] = field(default_factory=list)
    # More flags for the log nodes (after the harness's own timing flags).
    log_args: list[str] = field(default_factory=list)
    # The zone of each shim (its local log node); by default a, b, c, a, ... in turn.
    shim_zones: list[str] = field(default_factory=list)
    # Peer mutual TLS and client certificates, as `memlog up` runs them.
    tls: bool = False
    cluster: LocalCluster | None = None
    shim_ports: list[int] = field(default_factory=list)
    shim_procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.cluster = LocalCluster(
                data_dir=self.root,
                base_port=free_port_block(6),  # client ports, then peer ports
                extra_args=[*TIMING_FLAGS, *self.log_args],
                tls=local_tls(self.root) if self.tls else None,
            )
            self.cluster.start()
            try:
                self.cluster.wait_for_leader()
                break
            except TimeoutError:
                # A port found free can be taken by another test's process before a node
                # binds it (tests run on several workers): start over on other ports.
                lost = [z for z in self.cluster.zones if _port_was_taken(self.cluster, z)]
                self.cluster.stop()
                if not lost or attempt == PORT_ATTEMPTS:
                    raise
                for zone in self.cluster.zones:
                    log = self.cluster.log_path(zone)
                    if log.exists():
                        log.rename(log.with_suffix(f".attempt{attempt}.log"))
                shutil.rmtree(self.root / "log", ignore_errors=True)
        for i in range(self.shims):
            self.start_shim(i)

    def shim_command(self, i: int) -> list[str]:
        assert self.cluster is not None
        zones = self.cluster.zones
        zone = self.shim_zones[i] if i < len(self.shim_zones) else zones[i % len(zones)]
        return [
            sys.executable, "-m", "cacheshim.cli", "serve",
            "--listen", f"127.0.0.1:{self.shim_ports[i]}",
            "--log", ",".join(self.cluster.addresses()),
            "--local-log", self.cluster.address(zone),
            "--shim-id", f"shim-{i + 1}", "--zone", zone,
            *(self.cluster.tls.shim_args() if self.cluster.tls is not None else ()),
            *self.shim_args,
        ]  # fmt: skip

    def start_shim(self, i: int) -> None:
        if i == len(self.shim_ports):
            self.shim_ports.append(free_port())
            self.shim_procs.append(None)  # type: ignore[arg-type]
        log_file = open(self.root / f"shim-{i + 1}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(self.shim_command(i), stdout=log_file, stderr=subprocess.STDOUT)
        log_file.close()
        self.shim_procs[i] = proc
        port = self.shim_ports[i]
        wait_until(lambda: _answers_ping(port) or proc.poll() is not None, 60, f"shim {i + 1}")
        if proc.poll() is not None:
            raise RuntimeError(f"shim {i + 1} exited: {self.log_tail(f'shim-{i + 1}.log')}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.root / name
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        for proc in self.shim_procs:
            if proc is not None:
                stop_process(proc)
        if self.cluster is not None:
            self.cluster.stop()


def client(port: int, protocol: int = 2) -> redis.Redis:
    return redis.Redis(port=port, protocol=protocol, socket_timeout=15)


Outcome = tuple[str, object]


def execute(conn: redis.Redis | redis.client.Pipeline, *args: object) -> object:
    """redis-py's execute_command, typed (redis-py leaves it untyped)."""
    return conn.execute_command(*args)  # type: ignore[no-untyped-call]


def outcome(conn: redis.Redis, args: Sequence[object]) -> Outcome:
    """("ok", reply) or ("err", message): what a command did, comparable across servers."""
    try:
        return ("ok", execute(conn, *args))
    except redis.ResponseError as exc:
        return ("err", str(exc))


def compare(
    oracle: redis.Redis, subject: redis.Redis, commands: Sequence[Sequence[object]]
) -> None:
    """Send each command to both servers; replies and errors must match exactly."""
    for args in commands:
        want = outcome(oracle, args)
        got = outcome(subject, args)
        assert got == want, f"{list(args)!r}: redis-server said {want!r}, memlog said {got!r}"


# -- determinism: shims at one index, and apply replayed in other interpreters -------------------


def applied_index(conn: redis.Redis) -> int:
    """The log index this connection's shim has applied (MEMLOG STATUS)."""
    reply = execute(conn, "MEMLOG", "STATUS")
    assert isinstance(reply, list)
    index = dict(zip(reply[::2], reply[1::2], strict=True))[b"applied_index"]
    assert isinstance(index, int)
    return index


def play_beside_redis(
    shims: Sequence[redis.Redis],
    oracle: redis.Redis,
    log: Sequence[Sequence[Sequence[object]]],
    pick: Callable[[Sequence[redis.Redis]], redis.Redis],
    timeout_s: float = 30,
) -> None:
    """Send each entry of `log` (one command, or several as one MULTI/EXEC) to one of the
    shims, chosen by `pick`, and to redis-server, in order, after FLUSHALL on both; then wait
    until every shim has applied the same index with one DEBUG DIGEST. Connections should be
    without_callbacks (replies compared as bytes)."""
    for conn in (shims[0], oracle):
        execute(conn, "FLUSHALL")
    for entry in log:
        for conn in (pick(shims), oracle):
            if len(entry) == 1:
                outcome(conn, entry[0])
            else:
                pipe = conn.pipeline(transaction=True)
                for args in entry:
                    execute(pipe, *args)
                pipe.execute(raise_on_error=False)
    wait_until(
        lambda: len({execute(c, "DEBUG", "DIGEST") for c in shims}) == 1
        and len({applied_index(c) for c in shims}) == 1,
        timeout_s, "the shims at one index and one digest",
    )  # fmt: skip


def same_index(conns: Sequence[redis.Redis], timeout_s: float = 10) -> None:
    """Wait until every connection's shim has applied the same log index."""
    wait_until(
        lambda: len({applied_index(c) for c in conns}) == 1, timeout_s, "shims at one log index"
    )


_REPLAY_SCRIPT = r"""
import json, sys
from cacheshim.apply import Applier
from cacheshim.commands import load_all
from cacheshim.protocol.resp import encode
from cacheshim.v1 import record_pb2

load_all()
applier = Applier()
out = []
for index, batch in enumerate(json.load(sys.stdin), 1):
    record = record_pb2.Record(db=0, time_ms=1_700_000_000_000 + index)
    record.transaction = len(batch) > 1
    for args in batch:
        record.commands.add(args=[a.encode("latin-1") for a in args])
    _, reply = applier.apply(index, record.SerializeToString())
    out.append([(encode(reply, 2) + encode(reply, 3)).hex(), applier.keyspace.digest()])
print(json.dumps(out))
"""


def replay(log: Sequence[Sequence[Sequence[str]]], hash_seed: str) -> list[tuple[bytes, str]]:
    """Apply `log` (records of one command, or of several: a MULTI/EXEC) from index 1 in a
    fresh interpreter with PYTHONHASHSEED=hash_seed; each record's reply (RESP2 then RESP3
    bytes) and the keyspace digest after it."""
    done = subprocess.run(
        [sys.executable, "-c", _REPLAY_SCRIPT], input=json.dumps(log), capture_output=True,
        text=True, env={**os.environ, "PYTHONHASHSEED": hash_seed}, timeout=120, check=True,
    )  # fmt: skip
    return [(bytes.fromhex(reply), digest) for reply, digest in json.loads(done.stdout)]


def compare_sorted(
    oracle: redis.Redis,
    subject: redis.Redis,
    commands: Sequence[Sequence[object]],
    lists_only: bool = False,
) -> None:
    """Like compare, for replies whose order Redis leaves to its hash table: list replies are
    compared sorted. lists_only: both servers must answer each command with a list."""
    for args in commands:
        want = outcome(oracle, args)
        got = outcome(subject, args)
        if lists_only:
            assert isinstance(want[1], list) and isinstance(got[1], list), (args, want, got)
        if want[0] == "ok" and isinstance(want[1], list):
            want = ("ok", sorted(want[1]))
        if got[0] == "ok" and isinstance(got[1], list):
            got = ("ok", sorted(got[1]))
        assert got == want, f"{list(args)!r}: redis-server said {want!r}, memlog said {got!r}"


def arity_probes(names: Sequence[str]) -> list[list[object]]:
    """For each command of the table: a call one argument short, and for a fixed arity one
    argument too many (Redis's wrong-number-of-arguments errors)."""
    from cacheshim.commands import COMMANDS, load_all

    load_all()
    probes: list[list[object]] = []
    for name in names:
        arity = COMMANDS[name].arity
        if abs(arity) > 1:
            probes.append([name.upper(), *["k"] * (abs(arity) - 2)])  # one argument short
        if arity > 0:
            probes.append([name, *["k"] * arity])  # one too many
    return probes
