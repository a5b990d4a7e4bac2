"""A local three-zone log cluster on 127.0.0.1: one `logsvc serve` process per zone.

Used by `logsvc up` (README's run command) and by `memlog up`, which adds the shims. The
processes run the same CLI with the same flags as the Kubernetes manifests.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from logsvc.v1 import log_pb2, log_pb2_grpc

ZONES = ("a", "b", "c")


@dataclass
class LocalCluster:
    data_dir: Path
    base_port: int = 7001
    zones: tuple[str, ...] = ZONES
    extra_args: list[str] = field(default_factory=list)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def address(self, node_id: str) -> str:
        return f"127.0.0.1:{self.base_port + self.zones.index(node_id)}"

    def peers(self) -> str:
        return ",".join(f"{z}={self.address(z)}" for z in self.zones)

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
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> None:
        for node_id in self.zones:
            self.start_node(node_id)

    def start_node(self, node_id: str) -> None:
        (self.data_dir / "log").mkdir(parents=True, exist_ok=True)
        log_file = open(self.data_dir / f"logsvc-{node_id}.log", "ab")  # noqa: SIM115
        self.processes[node_id] = subprocess.Popen(
            self.command(node_id), stdout=log_file, stderr=subprocess.STDOUT
        )
        log_file.close()

    def kill_node(self, node_id: str) -> None:
        """SIGKILL one node (by PID) and reap it."""
        proc = self.processes[node_id]
        proc.kill()
        proc.wait()

    def node_at(self, address: str) -> str:
        return next(z for z in self.zones if self.address(z) == address)

    def wait_for_leader(self, timeout_s: float = 20.0) -> str:
        """The leader's address, once one node leads and the others agree."""
        return asyncio.run(self._wait_for_leader(timeout_s))

    async def _wait_for_leader(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            # Nodes that answer must agree on one leader, and a majority must answer.
            leaders: list[str] = []
            for node_id in self.processes:
                if self.processes[node_id].poll() is not None:
                    continue
                async with grpc.aio.insecure_channel(self.address(node_id)) as channel:
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


def run_in_foreground(
    start: Callable[[], str],
    processes: Callable[[], Sequence[subprocess.Popen[bytes]]],
    stop: Callable[[], None],
    name: str,
) -> int:
    """Start (it returns the ready message), then watch until Ctrl-C, SIGTERM or a process
    exiting; stop in every case."""
    signalled = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal signalled
        signalled = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        print(start(), flush=True)
        while not signalled:
            for proc in processes():
                if proc.poll() is not None:
                    print(f"{name}: a process exited with {proc.returncode}", file=sys.stderr)
                    return 1
            time.sleep(0.2)
        return 0
    finally:
        stop()
        print(f"{name} stopped", flush=True)


def up(data_dir: Path, base_port: int) -> int:
    """Run a local cluster in the foreground until Ctrl-C or SIGTERM."""
    cluster = LocalCluster(data_dir=data_dir, base_port=base_port)

    def start() -> str:
        cluster.start()
        leader = cluster.wait_for_leader()
        return (
            f"logsvc ready: nodes {','.join(cluster.addresses())} (zones a, b, c), "
            f"leader {leader}, data in {data_dir}; Ctrl-C stops"
        )

    return run_in_foreground(
        start, lambda: list(cluster.processes.values()), cluster.stop, "logsvc"
    )


if __name__ == "__main__":
    sys.exit(up(Path(os.environ.get("LOGSVC_DATA", "./memlog-data")), 7001))
