"""`memlog up`: a whole local deployment on 127.0.0.1, in the foreground.

Three log nodes (zones a, b, c) and the shims (the first on --port, the next ones on the
following ports, each reading from the log node of its zone), data under one folder and
kept across restarts. Ctrl-C or SIGTERM stops everything cleanly.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from logsvc.local import LocalCluster, run_in_foreground, stop_processes


def wait_for_port(host: str, port: int, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"shim on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"shim on port {port} not ready within {timeout_s}s")


def shim_command(cluster: LocalCluster, index: int, port: int) -> list[str]:
    zone = cluster.zones[index % len(cluster.zones)]
    return [
        sys.executable, "-m", "cacheshim.cli", "serve",
        "--listen", f"127.0.0.1:{port}",
        "--log", ",".join(cluster.addresses()),
        "--local-log", cluster.address(zone),
        "--shim-id", f"shim-{index + 1}",
        "--zone", zone,
    ]  # fmt: skip


def up(port: int, data: Path, shims: int, log_base_port: int) -> int:
    cluster = LocalCluster(data_dir=data, base_port=log_base_port)
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> str:
        cluster.start()
        cluster.wait_for_leader()
        for i in range(shims):
            log_file = open(data / f"shim-{i + 1}.log", "ab")  # noqa: SIM115
            processes.append(
                subprocess.Popen(
                    shim_command(cluster, i, port + i), stdout=log_file, stderr=subprocess.STDOUT
                )
            )
            log_file.close()
        for i, proc in enumerate(processes):
            wait_for_port("127.0.0.1", port + i, proc, timeout_s=120)
        ports = ", ".join(f"127.0.0.1:{port + i}" for i in range(shims))
        return (
            f"memlog ready: redis on {ports}; log nodes {', '.join(cluster.addresses())} "
            f"(zones a, b, c); data in {data}. Ctrl-C stops."
        )

    def stop() -> None:
        stop_processes(processes)
        cluster.stop()

    return run_in_foreground(
        start, lambda: [*processes, *cluster.processes.values()], stop, "memlog"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memlog", description="memlog, locally")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start three log nodes and the shims; Ctrl-C stops")
    p_up.add_argument("--port", type=int, default=6379, help="the first shim's port")
    p_up.add_argument("--data", type=Path, default=Path("./memlog-data"), help="data folder")
    p_up.add_argument("--shims", type=int, default=1, help="how many shims")
    p_up.add_argument("--log-base-port", type=int, default=7001, help="zone a's log port")
    args = parser.parse_args(argv)
    args.data.mkdir(parents=True, exist_ok=True)
    return up(args.port, args.data, args.shims, args.log_base_port)


if __name__ == "__main__":
    sys.exit(main())
