"""A harness of real `logsvc serve` processes on 127.0.0.1 for integration tests.

    cluster = Cluster(tmp_path, ("a", "b", "c"))
    cluster.start_all()
    leader = cluster.leader()             # polls Status until exactly one leader, agreed on
    cluster.kill(leader)                  # SIGKILL by PID
    cluster.wait_until(lambda: ..., 10, "the others elect a new leader")
    cluster.close()                       # SIGCONT + SIGKILL every process still running

Every node listens on a free port (found by binding port 0), keeps its RocksDB under
`<tmp>/data/<id>/rocksdb` and writes its log to `<tmp>/logs/<id>.log` (appended across
restarts). The harness talks to the nodes with blocking gRPC calls, so async tests call
its waiting methods through `asyncio.to_thread`.

Over 500 lines: one harness of real processes: start, stop, faults, and the status polling
they all rely on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2

from logsvc.auth import ClientCredentials, tls_options
from logsvc.certs import LocalCredentials
from logsvc.v1 import log_pb2, log_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parents[2]
LOGSVC = [sys.executable, "-m", "logsvc.cli"]
# Fast Raft timing: a 10 ms tick, elections after 150-300 ms, heartbeats every 30 ms.
FAST_TIMING = ("--tick-ms", "10", "--election-ticks", "15", "--heartbeat-ticks", "3")
ZONES = ("a", "b", "c", "d", "e")
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 250),
]
STATUS_TIMEOUT_S = 1.0
STOP_TIMEOUT_S = 15.0
# argv: LIMIT PROGRAM ARGS...: no file may grow past LIMIT bytes, then exec PROGRAM.
LIMIT_FILES_AND_EXEC = (
    "import os, resource, sys; n = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); os.execv(sys.argv[2], sys.argv[2:])"
)

T = TypeVar("T")


def free_ports(count: int) -> list[int]:
    """Ports nobody listens on: bind port 0 (all at once, so they differ), then release."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: no stray LOGSVC_* settings of the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSVC_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.02,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Poll predicate until it returns something truthy (which is returned), or fail.

    Exceptions raised by predicate count as "not yet" (the last one is reported), except
    AssertionError, which fails at once.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except AssertionError:
            raise
        except Exception as exc:
            value = None
            last = exc
        else:
            last = value
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = on_timeout() if on_timeout is not None else ""
            raise AssertionError(
                f"timed out after {timeout:.1f}s waiting until {what} (last: {last!r}){extra}"
            )
        time.sleep(interval)


@dataclass
class Node:
    id: str
    zone: str
    port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False
    starts: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def peer_address(self) -> str:
        return f"127.0.0.1:{self.peer_port}"

    @property
    def rocksdb_path(self) -> Path:
        return self.data_dir / self.id / "rocksdb"

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"node {self.id} was never started"
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Cluster:
    """N `logsvc serve` processes, zones a, b, c, ... (ids are the zone names)."""

    tmp_path: Path
    ids: Sequence[str] = ("a", "b", "c")
    extra_args: Sequence[str] = ()
    # Pass every `serve` flag as its LOGSVC_* environment variable instead of argv.
    flags_in_env: bool = False
    # A node's disk "fills up" once it writes a file past this many bytes: started with
    # RLIMIT_FSIZE, the process gets EFBIG ("File too large") for such a write (Python
    # ignores SIGXFSZ), so RocksDB fails the write as it would on a full disk.
    file_bytes_max: dict[str, int] = field(default_factory=dict)
    # Peer mutual TLS and client certificates, as `memlog up` runs them (clusters(tls=True));
    # None: plaintext on loopback, nobody checked.
    tls: LocalCredentials | None = None
    # Flags of one node only (a port of its own: --metrics-listen).
    node_args: dict[str, Sequence[str]] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    _channels: dict[str, grpc.Channel] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ports = free_ports(2 * len(self.ids))
        data_dir = self.tmp_path / "data"
        logs = self.tmp_path / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for i, node_id in enumerate(self.ids):
            self.nodes[node_id] = Node(
                id=node_id,
                zone=node_id if node_id in ZONES else "",
                port=ports[2 * i],
                peer_port=ports[2 * i + 1],
                data_dir=data_dir,
                log_path=logs / f"{node_id}.log",
            )

    # -- addresses ---------------------------------------------------------------------

    @property
    def addresses(self) -> list[str]:
        return [n.address for n in self.nodes.values()]

    @property
    def addr(self) -> str:
        """Every address, comma separated (the CLI's --addr)."""
        return ",".join(self.addresses)

    def address(self, node_id: str) -> str:
        return self.nodes[node_id].address

    def peers(self) -> str:
        return ",".join(f"{n.id}={n.address}/{n.peer_port}" for n in self.nodes.values())

    def client_credentials(self) -> ClientCredentials | None:
        """An admin's credentials for LogClient (None without TLS)."""
        if self.tls is None:
            return None
        return ClientCredentials.from_files(
            ca=str(self.tls.ca), cert=str(self.tls.admin_cert), key=str(self.tls.admin_key)
        )

    def client_env(self) -> dict[str, str]:
        """An admin's credentials for the logsvc tools, as LOGSVC_* variables."""
        return self.tls.admin_env() if self.tls is not None else {}

    def serve_args(self, node_id: str) -> list[str]:
        node = self.nodes[node_id]
        return [
            "serve",
            "--id",
            node.id,
            "--zone",
            node.zone,
            "--listen",
            node.address,
            "--peers",
            self.peers(),
            "--data-dir",
            str(node.data_dir),
            *FAST_TIMING,
            *(self.tls.node_args(node_id) if self.tls is not None else ()),
            *self.extra_args,
            *self.node_args.get(node_id, ()),
        ]

    def serve_env(self, node_id: str) -> dict[str, str]:
        """The serve flags as environment variables (--data-dir x -> LOGSVC_DATA_DIR=x)."""
        args = self.serve_args(node_id)[1:]
        flags, values = args[0::2], args[1::2]
        assert all(f.startswith("--") for f in flags), args
        return {
            "LOGSVC_" + f[2:].replace("-", "_").upper(): v
            for f, v in zip(flags, values, strict=True)
        }

    # -- processes -----------------------------------------------------------------------

    def start(self, node_id: str) -> None:
        node = self.nodes[node_id]
        assert not node.running(), f"node {node_id} is already running"
        node.starts += 1
        with node.log_path.open("ab") as log_file:
            log_file.write(f"===== harness: start #{node.starts} of {node_id} =====\n".encode())
            log_file.flush()
            if self.flags_in_env:
                argv, env = [*LOGSVC, "serve"], clean_env(self.serve_env(node_id))
            else:
                argv, env = [*LOGSVC, *self.serve_args(node_id)], clean_env()
            limit = self.file_bytes_max.get(node_id)
            if limit is not None:
                # Set in a tiny Python that then execs the node (same PID): a preexec_fn
                # runs after fork in a process with gRPC's threads, which can crash it.
                argv = [sys.executable, "-c", LIMIT_FILES_AND_EXEC, str(limit), *argv]
            node.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=env,
            )
        node.paused = False

    def start_all(self, wait_leader: bool = True) -> str | None:
        for node_id in self.nodes:
            self.start(node_id)
        for node_id in self.nodes:
            self.wait_serving(node_id)
        return self.leader() if wait_leader else None

    def kill(self, node_id: str) -> None:
        """SIGKILL by PID (works on a paused process too) and reap it."""
        node = self.nodes[node_id]
        assert node.proc is not None
        if node.proc.poll() is None:
            os.kill(node.proc.pid, signal.SIGKILL)
        node.proc.wait(STOP_TIMEOUT_S)
        node.paused = False

    def stop(self, node_id: str, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM by PID and wait for a graceful exit; returns the exit code."""
        self.terminate(node_id)
        return self._wait_exit(node_id, timeout)

    def stop_all(self, timeout: float = STOP_TIMEOUT_S) -> dict[str, int]:
        """SIGTERM every running node at once, then wait for each; returns exit codes."""
        running = [n.id for n in self.nodes.values() if n.running()]
        for node_id in running:
            self.terminate(node_id)
        return {node_id: self._wait_exit(node_id, timeout) for node_id in running}

    def terminate(self, node_id: str) -> None:
        """Send one SIGTERM, without waiting (a second one, during shutdown, would be a
        hard kill once the node's event loop is gone)."""
        node = self.nodes[node_id]
        assert node.proc is not None
        if node.proc.poll() is None:
            if node.paused:
                os.kill(node.proc.pid, signal.SIGCONT)
                node.paused = False
            os.kill(node.proc.pid, signal.SIGTERM)

    def _wait_exit(self, node_id: str, timeout: float) -> int:
        node = self.nodes[node_id]
        assert node.proc is not None
        try:
            return node.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(node.proc.pid, signal.SIGKILL)
            node.proc.wait(STOP_TIMEOUT_S)
            raise AssertionError(
                f"node {node_id} did not exit within {timeout}s of SIGTERM{self.log_tails()}"
            ) from None

    def pause(self, node_id: str) -> None:
        node = self.nodes[node_id]
        assert node.running(), f"node {node_id} is not running"
        os.kill(node.pid, signal.SIGSTOP)
        node.paused = True

    def resume(self, node_id: str) -> None:
        node = self.nodes[node_id]
        os.kill(node.pid, signal.SIGCONT)
        node.paused = False

    def restart(self, node_id: str, graceful: bool = True) -> None:
        if graceful:
            self.stop(node_id)
        else:
            self.kill(node_id)
        self.start(node_id)
        self.wait_serving(node_id)

    def close(self) -> None:
        """Stop every process by PID (SIGCONT first for paused ones); close channels."""
        for node in self.nodes.values():
            proc = node.proc
            if proc is None or proc.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                if node.paused:
                    os.kill(proc.pid, signal.SIGCONT)
                os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_TIMEOUT_S)
            node.paused = False
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    # -- logs ------------------------------------------------------------------------------

    def log_text(self, node_id: str) -> str:
        path = self.nodes[node_id].log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, node_id: str, lines: int = 40) -> str:
        return "\n".join(self.log_text(node_id).splitlines()[-lines:])

    def log_tails(self, lines: int = 40) -> str:
        parts = []
        for node in self.nodes.values():
            state = "not started"
            if node.proc is not None:
                code = node.proc.poll()
                state = f"pid {node.proc.pid}, " + (
                    "running" + (" (paused)" if node.paused else "")
                    if code is None
                    else f"exited {code}"
                )
            parts.append(f"\n--- node {node.id} ({state}): {node.log_path} ---\n")
            parts.append(self.log_tail(node.id, lines))
        return "".join(parts)

    # -- gRPC ---------------------------------------------------------------------------------

    def channel(self, node_id: str) -> grpc.Channel:
        channel = self._channels.get(node_id)
        if channel is None:
            if self.tls is None:
                channel = grpc.insecure_channel(self.address(node_id), options=CHANNEL_OPTIONS)
            else:
                creds = grpc.ssl_channel_credentials(
                    root_certificates=self.tls.ca.read_bytes(),
                    private_key=self.tls.admin_key.read_bytes(),
                    certificate_chain=self.tls.admin_cert.read_bytes(),
                )
                options = tls_options(CHANNEL_OPTIONS)
                channel = grpc.secure_channel(self.address(node_id), creds, options=options)
            self._channels[node_id] = channel
        return channel

    def peer_channel(self, node_id: str) -> grpc.Channel:
        """A plaintext channel to the node's peer port (no certificate: with TLS on, the
        handshake fails)."""
        key = f"peer:{node_id}"
        channel = self._channels.get(key)
        if channel is None:
            channel = grpc.insecure_channel(self.nodes[node_id].peer_address, CHANNEL_OPTIONS)
            self._channels[key] = channel
        return channel

    def stub(self, node_id: str) -> log_pb2_grpc.LogStub:
        return log_pb2_grpc.LogStub(self.channel(node_id))

    def status(self, node_id: str, timeout: float = STATUS_TIMEOUT_S) -> log_pb2.StatusResponse:
        return self.stub(node_id).Status(log_pb2.StatusRequest(), timeout=timeout)

    def health(self, node_id: str, service: str = "") -> int:
        """grpc.health.v1 Health/Check: the ServingStatus of service on node_id."""
        # Called by its method path: types-grpcio-health-checking types no stub methods.
        check = self.channel(node_id).unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        request = health_pb2.HealthCheckRequest(service=service)
        response: health_pb2.HealthCheckResponse = check(request, timeout=STATUS_TIMEOUT_S)
        return response.status

    def wait_health_serving(self, node_id: str, service: str = "", timeout: float = 60.0) -> None:
        serving = health_pb2.HealthCheckResponse.SERVING
        self.wait_until(
            lambda: self.health(node_id, service) == serving,
            timeout,
            f"node {node_id} reports {service or 'the server'} SERVING",
        )

    def try_status(self, node_id: str) -> log_pb2.StatusResponse | None:
        """Status, or None when the node is down, paused or not answering."""
        node = self.nodes[node_id]
        if not node.running() or node.paused:
            return None
        try:
            return self.status(node_id)
        except grpc.RpcError:
            if self.tls is not None:
                # A blocking TLS channel made before the node listened never connects on
                # gRPC's older client stack (logsvc turns the EventEngine client off; asyncio
                # channels are fine): the next call makes a new one.
                channel = self._channels.pop(node_id, None)
                if channel is not None:
                    channel.close()
            return None

    def live(self) -> list[str]:
        return [n.id for n in self.nodes.values() if n.running() and not n.paused]

    # -- waiting -----------------------------------------------------------------------------

    def wait_until(
        self, predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.02
    ) -> T:
        """Poll with a deadline; on timeout fail with `what` and every node's log tail."""
        return wait_until(predicate, timeout, what, interval, on_timeout=self.log_tails)

    def wait_serving(self, node_id: str, timeout: float = 60.0) -> log_pb2.StatusResponse:
        node = self.nodes[node_id]

        def answers() -> log_pb2.StatusResponse | None:
            if node.proc is not None and node.proc.poll() is not None:
                raise AssertionError(
                    f"node {node_id} exited with {node.proc.returncode}{self.log_tails()}"
                )
            return self.try_status(node_id)

        return self.wait_until(answers, timeout, f"node {node_id} answers Status")

    def agreed_leader(self, among: Sequence[str] | None = None) -> str | None:
        """The leader when exactly one node of `among` (default: the live ones) leads and
        every other one names it, in the same term; else None."""
        ids = list(among) if among is not None else self.live()
        statuses: dict[str, log_pb2.StatusResponse] = {}
        for i in ids:
            st = self.try_status(i)
            if st is None:
                return None
            statuses[i] = st
        leaders = [i for i, st in statuses.items() if st.role == "leader"]
        if len(leaders) != 1:
            return None
        leader = leaders[0]
        term = statuses[leader].header.term
        if all(
            st.header.leader_id == leader and st.header.term == term for st in statuses.values()
        ):
            return leader
        return None

    def leader(self, timeout: float = 30.0, among: Sequence[str] | None = None) -> str:
        """Poll Status until exactly one node is leader and the others agree on it."""
        return self.wait_until(
            lambda: self.agreed_leader(among), timeout, "exactly one agreed leader"
        )

    def new_leader(self, old: str, timeout: float = 30.0) -> str:
        """A leader other than `old`, agreed on by the live nodes except `old`."""
        among = [i for i in self.live() if i != old]
        return self.wait_until(
            lambda: lead if (lead := self.agreed_leader(among)) != old else None,
            timeout,
            f"a leader other than {old} agreed on by {among}",
        )

    def wait_last_index(
        self, index: int, ids: Sequence[str] | None = None, timeout: float = 20.0
    ) -> None:
        """Wait until every node of ids (default: live) has applied records up to index."""
        targets = list(ids) if ids is not None else self.live()

        def behind() -> list[str]:
            out = []
            for i in targets:
                st = self.try_status(i)
                if st is None or st.last_index < index or st.commit_index < index:
                    out.append(i)
            return out

        self.wait_until(lambda: not behind(), timeout, f"nodes {targets} reach index {index}")

    def read_all(self, node_id: str, from_index: int = 1) -> list[tuple[int, bytes]]:
        """Every committed record from from_index on, read from node_id (no follow)."""
        out: list[tuple[int, bytes]] = []
        for response in self.stub(node_id).Read(
            log_pb2.ReadRequest(from_index=from_index, follow=False), timeout=20
        ):
            out.extend((r.index, r.payload) for r in response.records)
        return out

    # -- the CLI -----------------------------------------------------------------------------

    def cli(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        stdin: bytes | None = None,
        timeout: float = 30.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run `logsvc ARGS` to completion; with check, fail with its stderr on non-zero."""
        result = subprocess.run(
            [*LOGSVC, *args],
            input=stdin,
            capture_output=True,
            cwd=REPO_ROOT,
            env=clean_env(env),
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"logsvc {' '.join(args)} exited {result.returncode}:\n"
                f"stdout: {result.stdout.decode(errors='replace')}\n"
                f"stderr: {result.stderr.decode(errors='replace')}"
            )
        return result


@dataclass(frozen=True)
class RpcFailure:
    """What a failed gRPC call said: its code, details and trailing metadata."""

    code: grpc.StatusCode
    details: str
    metadata: dict[str, str]

    @property
    def kind(self) -> str:
        """The `logsvc-error-kind` trailing metadata ("" when absent)."""
        return self.metadata.get("logsvc-error-kind", "")

    @classmethod
    def of(cls, exc: grpc.RpcError) -> RpcFailure:
        metadata: dict[str, str] = {}
        for item in exc.trailing_metadata() or ():
            value = item.value
            metadata[item.key] = value.decode() if isinstance(value, bytes) else str(value)
        return cls(exc.code(), exc.details() or "", metadata)


def rpc_failure(call: Callable[[], object]) -> RpcFailure:
    """Run a blocking gRPC call that must fail; returns how it failed."""
    try:
        result = call()
    except grpc.RpcError as exc:
        return RpcFailure.of(exc)
    raise AssertionError(f"the call succeeded, an error was expected: {result!r}")
