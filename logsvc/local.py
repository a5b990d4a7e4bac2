"""A local three-zone log cluster on 127.0.0.1: one `logsvc serve` process per zone.

Used by `logsvc up` and by `memlog up` (README's run command), which adds the shims. The
processes run the same CLI with the same flags as the Kubernetes manifests. The launcher
refuses to start on a taken port or a data folder in use, says where each process logs, and
restarts a process that dies (so `kill -9` of the leader shows a failover) until Ctrl-C or
SIGTERM stops everything.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import grpc

from logsvc.auth import ClientCredentials, client_channel
from logsvc.certs import LocalCredentials, ensure_local_credentials
from logsvc.v1 import log_pb2, log_pb2_grpc

ZONES = ("a", "b", "c")


@dataclass
class LocalCluster:
    """Client ports base_port, +1, +2 (zones a, b, c); peer ports right after them."""

    data_dir: Path
    base_port: int = 7001
    zones: tuple[str, ...] = ZONES
    extra_args: list[str] = field(default_factory=list)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Peer mutual TLS and client certificates (memlog up makes them); None: plaintext.
    tls: LocalCredentials | None = None

    def address(self, node_id: str) -> str:
        return f"127.0.0.1:{self.base_port + self.zones.index(node_id)}"

    def peer_port(self, node_id: str) -> int:
        return self.base_port + len(self.zones) + self.zones.index(node_id)

    def ports(self) -> list[int]:
        """Every port the nodes listen on (client and peer)."""
        return list(range(self.base_port, self.base_port + 2 * len(self.zones)))

    def peers(self) -> str:
        return ",".join(f"{z}={self.address(z)}/{self.peer_port(z)}" for z in self.zones)

    def client_credentials(self) -> ClientCredentials | None:
        """An admin's credentials (None without TLS)."""
        if self.tls is None:
            return None
        return ClientCredentials.from_files(
            ca=str(self.tls.ca), cert=str(self.tls.admin_cert), key=str(self.tls.admin_key)
        )

    def addresses(self) -> list[str]:
        return [self.address(z) for z in self.zones]

    def command(self, node_id: str) -> list[str]:
        return [
            sys.executable, "-m", "logsvc.cli", "serve",
            "--id", node_id,
            "--zone", node_id,
            "--listen", self.address(node_id),
            "--peers", self.peers(),
            "--data-dir", str(self.data_dir / "log"),
            *(self.tls.node_args(node_id) if self.tls is not None else ()),
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> None:
        for node_id in self.zones:
            self.start_node(node_id)

    def log_path(self, node_id: str) -> Path:
        return self.data_dir / f"logsvc-{node_id}.log"

    def start_node(self, node_id: str) -> subprocess.Popen[bytes]:
        (self.data_dir / "log").mkdir(parents=True, exist_ok=True)
        with open(self.log_path(node_id), "ab") as log_file:
            proc = subprocess.Popen(
                self.command(node_id), stdout=log_file, stderr=subprocess.STDOUT
            )
        self.processes[node_id] = proc
        return proc

    def kill_node(self, node_id: str) -> None:
        """SIGKILL one node (by PID) and reap it."""
        proc = self.processes[node_id]
        proc.kill()
        proc.wait()

    def node_at(self, address: str) -> str:
        return next(z for z in self.zones if self.address(z) == address)

    def wait_for_leader(self, timeout_s: float = 60.0) -> str:
        """The leader's address, once one node leads and the others agree (a loaded machine
        can take tens of seconds to elect: the default waits a minute)."""
        return asyncio.run(self._wait_for_leader(timeout_s))

    async def _wait_for_leader(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        credentials = self.client_credentials()
        while time.monotonic() < deadline:
            # Nodes that answer must agree on one leader, and a majority must answer.
            leaders: list[str] = []
            for node_id in self.processes:
                if self.processes[node_id].poll() is not None:
                    continue
                async with client_channel(self.address(node_id), credentials, ()) as channel:
                    try:
                        st = await log_pb2_grpc.LogStub(channel).Status(
                            log_pb2.StatusRequest(), timeout=1.0
                        )
                    except grpc.aio.AioRpcError:
                        continue
                    leaders.append(st.header.leader_address)
            majority = len(self.zones) // 2 + 1
            alive = {self.address(n) for n, p in self.processes.items() if p.poll() is None}
            if len(leaders) >= majority and len(set(leaders)) == 1 and leaders[0] in alive:
                return leaders[0]
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no leader agreed on within {timeout_s}s")

    def stop(self, grace_s: float = 10.0) -> None:
        stop_processes(list(self.processes.values()), grace_s)
        self.processes.clear()


def stop_processes(processes: Sequence[subprocess.Popen[bytes]], grace_s: float = 10.0) -> None:
    """SIGTERM each (by PID), wait up to grace_s, then SIGKILL what is left."""
    for proc in processes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the local launcher: refuse what cannot work, say where logs go, restart what dies ------


class LaunchRefused(Exception):
    """The launch cannot start (a port taken, the data folder in use): one line says why."""


class StartupFailed(Exception):
    """A process died before the deployment was ready; the message names it and shows its log."""


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (empty)"


def exit_status(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def claim_data_folder(data: Path, program: str) -> TextIO:
    """Lock data/.lock for as long as the returned file stays open (the process's life);
    another run on the same folder is refused instead of fighting over RocksDB's files."""
    data.mkdir(parents=True, exist_ok=True)
    lock = open(data / ".lock", "a+")  # noqa: SIM115 (held open on purpose)
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise LaunchRefused(
            f"{program}: the data folder {data} is in use by another run (pid {holder}); "
            "stop it first, or pass another --data"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def check_ports_free(
    ports: Sequence[tuple[int, str]], program: str, host: str = "127.0.0.1"
) -> None:
    """Each (port, flag that moves it) must be free on host, or the launch is refused."""
    for port, flag in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                raise LaunchRefused(
                    f"{program}: port {port} on {host} is taken ({exc.strerror}); stop what "
                    f"listens there (another {program}? a redis-server?), or pass another {flag}"
                ) from None


@dataclass
class Managed:
    """One supervised process: how to start it and where it logs."""

    name: str
    log_path: Path
    launch: Callable[[], subprocess.Popen[bytes]]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    restart_at: float | None = None

    def start(self) -> None:
        self.proc = self.launch()
        self.started_at = time.monotonic()
        self.restart_at = None


# A process that stayed up this long is healthy again: its next death restarts it at once.
RESTART_DELAY_S_MIN = 0.5
RESTART_DELAY_S_MAX = 30.0
HEALTHY_AFTER_S = 60.0


@dataclass
class Supervisor:
    """Watches the processes of a local deployment. Before it is ready, a death is fatal
    (StartupFailed names the process, its status and its log); after, the process is
    restarted with a growing delay, and each step is said on stdout."""

    program: str
    out: Callable[[str], None] = field(default=lambda line: print(line, flush=True))
    managed: list[Managed] = field(default_factory=list)

    def add(self, managed: Managed) -> Managed:
        self.managed.append(managed)
        return managed

    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [m.proc for m in self.managed if m.proc is not None]

    def check_alive(self) -> None:
        """Before ready: every process must still run."""
        for m in self.managed:
            if m.proc is not None and m.proc.poll() is not None:
                raise StartupFailed(
                    f"{self.program}: {m.name} (pid {m.proc.pid}) stopped "
                    f"({exit_status(m.proc.returncode)}) before {self.program} was ready; "
                    f"the last lines of {m.log_path}:\n{log_tail(m.log_path)}"
                )

    def watch(self) -> None:
        """After ready: notice deaths, restart after a delay that doubles while it keeps dying."""
        now = time.monotonic()
        for m in self.managed:
            if m.proc is None:
                continue
            if m.restart_at is not None:
                if now >= m.restart_at:
                    m.start()
                    assert m.proc is not None
                    self.out(f"{self.program}: {m.name} restarted (pid {m.proc.pid})")
                continue
            if m.proc.poll() is None:
                continue
            if now - m.started_at >= HEALTHY_AFTER_S:
                m.restarts = 0
            delay = min(RESTART_DELAY_S_MAX, RESTART_DELAY_S_MIN * 2**m.restarts)
            m.restarts += 1
            m.restart_at = now + delay
            message = (
                f"{self.program}: {m.name} (pid {m.proc.pid}) stopped "
                f"({exit_status(m.proc.returncode)}); restarting it in {delay:g}s"
            )
            if m.proc.returncode > 0:  # it failed by itself: show why
                message += f"; the last lines of {m.log_path}:\n{log_tail(m.log_path)}"
            self.out(message)


class Interrupted(Exception):
    """Ctrl-C or SIGTERM while starting."""


def run_in_foreground(
    supervisor: Supervisor, start: Callable[[], str], stop: Callable[[], None]
) -> int:
    """Start (it returns the ready message), then supervise until Ctrl-C or SIGTERM; stop in
    every case. Exit status: 0 after a signal, 1 when the start failed."""
    state = {"starting": True, "signalled": False}

    def on_signal(signum: int, frame: object) -> None:
        state["signalled"] = True
        if state["starting"]:
            raise Interrupted

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    name = supervisor.program
    try:
        try:
            ready = start()
            supervisor.check_alive()
        except (StartupFailed, TimeoutError) as exc:
            print(f"{exc}" if isinstance(exc, StartupFailed) else f"{name}: {exc}", file=sys.stderr)
            return 1
        except Interrupted:
            return 0
        state["starting"] = False
        print(ready, flush=True)
        while not state["signalled"]:
            supervisor.watch()
            time.sleep(0.2)
        return 0
    finally:
        stop()
        print(f"{name} stopped", flush=True)


def launch_log_nodes(cluster: LocalCluster, supervisor: Supervisor) -> None:
    """Start every node of cluster under supervisor, saying where each logs."""
    for node_id in cluster.zones:
        managed = supervisor.add(
            Managed(
                f"log node {node_id}",
                cluster.log_path(node_id),
                functools.partial(cluster.start_node, node_id),
            )
        )
        managed.start()
        supervisor.out(
            f"{supervisor.program}: log node {node_id} on {cluster.address(node_id)} "
            f"(zone {node_id}, pid {managed.proc.pid if managed.proc else '?'}), "
            f"logging to {managed.log_path}"
        )


def wait_for_log_leader(cluster: LocalCluster, supervisor: Supervisor, timeout_s: float) -> str:
    """The leader's address; StartupFailed as soon as a node dies, TimeoutError at the end."""
    deadline = time.monotonic() + timeout_s
    while True:
        supervisor.check_alive()
        try:
            return cluster.wait_for_leader(
                timeout_s=min(1.0, max(0.1, deadline - time.monotonic()))
            )
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"the log nodes agreed on no leader within {timeout_s:g}s"
                ) from None


def local_tls(data_dir: Path, zones: Sequence[str] = ZONES) -> LocalCredentials:
    """The throwaway CA and certificates of a local deployment, made on first start."""
    return ensure_local_credentials(data_dir / "tls", zones)


def credentials_note(tls: LocalCredentials) -> str:
    """How to reach the local nodes with the logsvc tools (printed once ready)."""
    env = " ".join(f"{k}={v}" for k, v in tls.admin_env().items())
    return f"peers speak mutual TLS and clients need a certificate; logsvc tools: export {env}"


def up(data_dir: Path, base_port: int) -> int:
    """Run a local cluster in the foreground until Ctrl-C or SIGTERM."""
    program = "logsvc"
    cluster = LocalCluster(data_dir=data_dir, base_port=base_port)
    supervisor = Supervisor(program)
    try:
        lock = claim_data_folder(data_dir, program)
        check_ports_free([(p, "--base-port") for p in cluster.ports()], program)
    except LaunchRefused as exc:
        print(exc, file=sys.stderr)
        return 2
    cluster.tls = local_tls(data_dir, cluster.zones)

    def start() -> str:
        launch_log_nodes(cluster, supervisor)
        leader = wait_for_log_leader(cluster, supervisor, timeout_s=60)
        assert cluster.tls is not None
        return (
            f"logsvc ready: nodes {','.join(cluster.addresses())} (zones a, b, c), "
            f"leader {leader}, data in {data_dir}; {credentials_note(cluster.tls)}. "
            "Ctrl-C stops"
        )

    def stop() -> None:
        stop_processes(supervisor.processes())
        lock.close()

    return run_in_foreground(supervisor, start, stop)


if __name__ == "__main__":
    sys.exit(up(Path(os.environ.get("LOGSVC_DATA", "./memlog-data")), 7001))
