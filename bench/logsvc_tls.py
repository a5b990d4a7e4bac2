"""Append throughput of a three-node log with mutual TLS (as `memlog up` runs it) and
without, in one run.

    .venv/bin/python bench/logsvc_tls.py [--rounds 5] [--round-s 4] [--clients 8]

Two local clusters (logsvc.local.LocalCluster, default timing flags) run side by side: one
plaintext, one with the throwaway CA of `memlog up` (peers on mutual TLS, clients showing a
certificate). Each round measures both, one after the other, for --round-s: --clients
LogClients in this process, each appending one 100-byte record at a time over its
AppendStream (the shims' pattern), so the number is records (= appends) per second. The
report gives the median of the rounds for each, their ratio, and every round (this VM's
speed drifts; interleaved rounds show how much). Every process is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from logsvc.auth import ClientCredentials
from logsvc.client import LogClient
from logsvc.local import LocalCluster, local_tls

RECORD = b"x" * 100


def free_port_block(count: int) -> int:
    """A first port with `count` free ports after it (checked, not reserved)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + count > 65535:
            continue
        try:
            held = []
            for port in range(base, base + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return base
    raise RuntimeError("no block of free ports")


async def rate(
    addresses: list[str], creds: ClientCredentials | None, clients: int, secs: float
) -> float:
    """Appends per second of `clients` one-at-a-time appenders over `secs` (after a warm-up)."""
    logs = [LogClient(addresses, credentials=creds, timeout_s=30) for _ in range(clients)]
    try:
        for log in logs:  # open every stream before the clock starts
            await log.append([RECORD])
        done = 0
        stop_at = time.monotonic() + secs

        async def run(log: LogClient) -> None:
            nonlocal done
            while time.monotonic() < stop_at:
                await log.append([RECORD])
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(run(log) for log in logs))
        return done / (time.monotonic() - started)
    finally:
        for log in logs:
            await log.close()


async def measure(
    clusters: dict[str, LocalCluster], rounds_n: int, clients: int, secs: float
) -> dict[str, list[float]]:
    """Interleaved rounds (one event loop for all, so channels close inside it)."""
    rounds: dict[str, list[float]] = {name: [] for name in clusters}
    for i in range(rounds_n):
        for name, cluster in clusters.items():
            value = await rate(cluster.addresses(), cluster.client_credentials(), clients, secs)
            rounds[name].append(value)
            print(f"round {i + 1} {name}: {value:,.0f} appends/s", flush=True)
    return rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-s", type=float, default=4.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        root = Path(tmp)
        plain = LocalCluster(root / "plain", base_port=free_port_block(6))
        secure = LocalCluster(
            root / "tls", base_port=free_port_block(6), tls=local_tls(root / "tls")
        )
        clusters = {"plaintext": plain, "mutual TLS": secure}
        try:
            for cluster in clusters.values():
                cluster.data_dir.mkdir(parents=True, exist_ok=True)
                cluster.extra_args = ["--log-level", "WARNING"]
                cluster.start()
            for cluster in clusters.values():
                cluster.wait_for_leader(timeout_s=120)
            rounds = asyncio.run(measure(clusters, args.rounds, args.clients, args.round_s))
        finally:
            for cluster in clusters.values():
                cluster.stop()
    medians = {name: statistics.median(values) for name, values in rounds.items()}
    print()
    print(f"| | median appends/s ({args.rounds} rounds of {args.round_s:g} s, "
          f"{args.clients} clients) | rounds |")  # fmt: skip
    print("|---|---|---|")
    for name, values in rounds.items():
        print(f"| {name} | {medians[name]:,.0f} | {', '.join(f'{v:,.0f}' for v in values)} |")
    ratio = medians["mutual TLS"] / medians["plaintext"]
    print(f"\nmutual TLS / plaintext: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
