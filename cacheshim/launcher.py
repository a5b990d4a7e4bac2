"""`memlog up`: a whole local deployment on 127.0.0.1, in the foreground.

Three log nodes (zones a, b, c) and the shims (the first on --port, the next ones on the
following ports, each reading from the log node of its zone), data under one folder and
kept across restarts, each process logging to a file there. A process that dies is
restarted (the failover demo: `kill -9` the leader); Ctrl-C or SIGTERM stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import functools
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from logsvc.auth import AuthConfigError
from logsvc.cli import add_client_credentials, client_credentials
from logsvc.local import (
    LaunchRefused,
    LocalCluster,
    Managed,
    StartupFailed,
    Supervisor,
    check_ports_free,
    claim_data_folder,
    credentials_note,
    launch_log_nodes,
    local_tls,
    log_tail,
    run_in_foreground,
    stop_processes,
    wait_for_log_leader,
)

if TYPE_CHECKING:
    from cacheshim.snapshot.tools import Cadence


def answers_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class LogFollower:
    """The lines a process adds to its log file from now on (for progress reports)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def new_lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        return data[:end].decode(errors="replace").splitlines()


# What a shim logs while it replays the log before opening its port (cacheshim/server/shim.py).
CATCH_UP_MARK = "catching up:"


def wait_for_shim(
    managed: Managed, port: int, supervisor: Supervisor, follower: LogFollower, timeout_s: float
) -> None:
    """Until the shim answers PING; its catch-up progress is repeated on stdout meanwhile.
    The timeout restarts whenever the shim reports progress: a long replay is not a hang."""
    deadline = time.monotonic() + timeout_s
    while not answers_ping("127.0.0.1", port):
        supervisor.check_alive()
        for line in follower.new_lines():
            if CATCH_UP_MARK in line:
                progress = line[line.index(CATCH_UP_MARK) :]
                supervisor.out(f"{supervisor.program}: {managed.name} {progress}")
                deadline = time.monotonic() + timeout_s
        if time.monotonic() > deadline:
            raise StartupFailed(
                f"{supervisor.program}: {managed.name} did not answer PING within {timeout_s:g}s "
                f"and reported no progress; the last lines of {managed.log_path}:\n"
                f"{log_tail(managed.log_path)}"
            )
        time.sleep(0.1)


def shim_command(cluster: LocalCluster, index: int, port: int) -> list[str]:
    zone = cluster.zones[index % len(cluster.zones)]
    return [
        sys.executable, "-m", "cacheshim.cli", "serve",
        "--listen", f"127.0.0.1:{port}",
        "--log", ",".join(cluster.addresses()),
        "--local-log", cluster.address(zone),
        "--shim-id", f"shim-{index + 1}",
        "--zone", zone,
        *(cluster.tls.shim_args() if cluster.tls is not None else ()),
    ]  # fmt: skip


# The snapshotter `memlog up` runs: resident (--follow: it applies the log as it commits,
# so a snapshot costs one write, not a restore and a replay), a round a minute, a snapshot
# when 10,000 records came since the newest one, and at once when 500,000 came (a bound on
# what a restarting shim replays at a high write rate). The log trims below the newest
# snapshot, keeping --trim-keep-entries/-seconds.
SNAPSHOT_EVERY_S = 60
SNAPSHOT_MIN_RECORDS = 10_000
SNAPSHOT_EVERY_RECORDS = 500_000
# ...but a snapshot by records never starts sooner than this after the last one ended: each
# costs the log nodes about 20 ms of CPU per MiB stored (received, hashed, synced, sent to
# the peers; docs/bench-snapshot-p99.md), paid once per snapshot, so back to back under a
# heavy write load they would take a core's share for as long as the load lasts.
SNAPSHOT_MIN_INTERVAL_S = 10.0
# The snapshotter yields the CPU to everything else of the machine (docs/bench-snapshot-p99.md).
PRIORITIES = ("idle", "low", "normal")
SNAPSHOT_PRIORITY = "low"


# ioprio_set(2)/ioprio_get(2), which Python's os module lacks, by machine (the generic
# syscall table elsewhere); the value is class << 13 | level.
_IOPRIO_SYSCALLS = {"x86_64": (251, 252), "aarch64": (30, 31), "i686": (289, 290)}
IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASS_BE = 2
IOPRIO_CLASS_IDLE = 3
IOPRIO_CLASS_SHIFT = 13


def _ioprio_syscall(which: int, *args: int) -> int:
    """ioprio_set (which 0) or ioprio_get (which 1) for this thread; -1 where unknown."""
    numbers = _IOPRIO_SYSCALLS.get(platform.machine())
    if numbers is None or sys.platform != "linux":
        return -1
    libc = ctypes.CDLL(None, use_errno=True)
    result = int(libc.syscall(numbers[which], IOPRIO_WHO_PROCESS, *args))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def get_ioprio(tid: int = 0) -> int:
    """A thread's I/O priority value (class << 13 | level); -1 where unknown."""
    return _ioprio_syscall(1, tid)


def lower_priority(priority: str) -> None:
    """Lower this process's CPU and disk priority (an unprivileged process may). low:
    niceness 19 and the lowest best-effort I/O level (7); idle: SCHED_IDLE, whose threads any
    other thread that wakes up preempts at once (niceness only lowers a share, and a waking
    shim or log node may still wait a scheduler tick behind it), and the idle I/O class;
    where the kernel refuses SCHED_IDLE or the idle class, niceness 19 and level 7. Both
    apply to the calling thread and to the threads it starts afterwards: call it before any
    (gRPC's, asyncio's executor). The I/O class counts with an I/O scheduler that honours
    it (mq-deadline, BFQ; not `none`) and for what the process itself writes and syncs, not
    for the kernel's background writeback."""
    if priority == "normal":
        return
    os.nice(19 - os.nice(0))
    best_effort = IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT | 7
    with contextlib.suppress(OSError):
        _ioprio_syscall(0, 0, best_effort)
    if priority == "idle":
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        with contextlib.suppress(OSError):
            _ioprio_syscall(0, 0, IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT)


def snapshotter_command(cluster: LocalCluster, temp_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "cacheshim.launcher", "snapshot",
        "--log", ",".join(cluster.addresses()),
        "--follow",
        "--every-s", str(SNAPSHOT_EVERY_S),
        "--every-records", str(SNAPSHOT_EVERY_RECORDS),
        "--min-records", str(SNAPSHOT_MIN_RECORDS),
        "--temp-dir", str(temp_dir),
        *(cluster.tls.shim_args() if cluster.tls is not None else ()),
    ]  # fmt: skip


def launch_shim(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)


def up(port: int, data: Path, shims: int, log_base_port: int) -> int:
    program = "memlog"
    cluster = LocalCluster(data_dir=data, base_port=log_base_port)
    supervisor = Supervisor(program)
    try:
        lock = claim_data_folder(data, program)
        check_ports_free(
            [(port + i, "--port") for i in range(shims)]
            + [(p, "--log-base-port") for p in cluster.ports()],
            program,
        )
    except LaunchRefused as exc:
        print(exc, file=sys.stderr)
        return 2
    # Peers speak mutual TLS, and the shims, the snapshotter and the tools show certificates.
    cluster.tls = local_tls(data, cluster.zones)

    def start() -> str:
        launch_log_nodes(cluster, supervisor)
        wait_for_log_leader(cluster, supervisor, timeout_s=60)
        started: list[tuple[Managed, int, LogFollower]] = []
        for i in range(shims):
            log_path = data / f"shim-{i + 1}.log"
            follower = LogFollower(log_path)
            managed = supervisor.add(
                Managed(
                    f"shim {i + 1}",
                    log_path,
                    functools.partial(launch_shim, shim_command(cluster, i, port + i), log_path),
                )
            )
            managed.start()
            pid = managed.proc.pid if managed.proc else "?"
            supervisor.out(
                f"{program}: shim {i + 1} on 127.0.0.1:{port + i} (pid {pid}), "
                f"logging to {log_path}"
            )
            started.append((managed, port + i, follower))
        for managed, shim_port, follower in started:
            wait_for_shim(managed, shim_port, supervisor, follower, timeout_s=120)
        snap_log = data / "snapshotter.log"
        snap_tmp = data / "snapshotter-tmp"
        snap_tmp.mkdir(exist_ok=True)
        snapshotter = supervisor.add(
            Managed(
                "snapshotter",
                snap_log,
                functools.partial(launch_shim, snapshotter_command(cluster, snap_tmp), snap_log),
            )
        )
        snapshotter.start()
        pid = snapshotter.proc.pid if snapshotter.proc else "?"
        supervisor.out(
            f"{program}: snapshotter (pid {pid}, every {SNAPSHOT_EVERY_S}s), logging to {snap_log}"
        )
        ports = ", ".join(f"127.0.0.1:{port + i}" for i in range(shims))
        assert cluster.tls is not None
        return (
            f"memlog ready: redis on {ports}; log nodes {', '.join(cluster.addresses())} "
            f"(zones a, b, c); data and logs in {data}; {credentials_note(cluster.tls)}. "
            "Ctrl-C stops."
        )

    def stop() -> None:
        stop_processes(supervisor.processes())
        lock.close()

    return run_in_foreground(supervisor, start, stop)


def build_parser() -> argparse.ArgumentParser:
    """`memlog`'s parser (also read by tests/deploy, which parse the manifests' command lines)."""
    parser = argparse.ArgumentParser(prog="memlog", description="memlog, locally")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start three log nodes and the shims; Ctrl-C stops")
    p_up.add_argument("--port", type=int, default=6379, help="the first shim's port")
    p_up.add_argument("--data", type=Path, default=Path("./memlog-data"), help="data folder")
    p_up.add_argument("--shims", type=int, default=1, help="how many shims")
    p_up.add_argument("--log-base-port", type=int, default=7001, help="zone a's log port")
    p_tail = sub.add_parser("tail", help="print the log's records as Redis commands")
    p_tail.add_argument(
        "--addr",
        default="127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003",
        help="log node address(es), comma separated",
    )
    p_tail.add_argument("--from", dest="from_index", type=int, default=1, help="first index")
    p_tail.add_argument("--follow", action="store_true", help="keep printing new records")
    p_tail.add_argument(
        "--timeout-s",
        type=float,
        default=30.0,
        help="without --follow: give up after this long with no log node answering",
    )
    p_tail.add_argument(
        "--format", choices=("text", "json"), default="text", help="INDEX<TAB>COMMAND, or JSON"
    )
    default_log = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
    p_snap = sub.add_parser(
        "snapshot",
        help="write the next snapshot from the newest one and the log (once, or --follow)",
    )
    p_snap.add_argument("--log", default=default_log, help="log node addresses, comma separated")
    p_snap.add_argument(
        "--follow",
        action="store_true",
        help="stay resident: apply the log as it commits and write a snapshot at the cadence "
        "--every-s and/or --every-records give (each costs the new records and one write)",
    )
    p_snap.add_argument(
        "--every-s",
        type=float,
        default=None,
        help="with --follow: a round every N s (a snapshot if --min-records came); alone it "
        "implies --follow",
    )
    p_snap.add_argument(
        "--every-records",
        type=int,
        default=None,
        help="with --follow: a snapshot as soon as N records came since the newest one",
    )
    p_snap.add_argument(
        "--min-records", type=int, default=1, help="records since the newest snapshot to write one"
    )
    p_snap.add_argument(
        "--min-interval-s",
        type=float,
        default=SNAPSHOT_MIN_INTERVAL_S,
        help="with --follow: a snapshot by --every-records waits until N s after the last one "
        "ended (--every-s counts from the end of the last round). Default "
        f"{SNAPSHOT_MIN_INTERVAL_S:g}",
    )
    p_snap.add_argument("--temp-dir", default=None, help="where snapshot files are written first")
    p_snap.add_argument(
        "--priority",
        choices=PRIORITIES,
        default=SNAPSHOT_PRIORITY,
        help="its CPU priority: idle (SCHED_IDLE: it runs when nothing else of the machine "
        "wants the CPU, and yields the moment something does), low (niceness 19), normal "
        f"(as started). Default {SNAPSHOT_PRIORITY}",
    )
    p_export = sub.add_parser("export", help="write the current state as a Redis RDB file")
    p_export.add_argument("--rdb", type=Path, required=True, help="the RDB file to write")
    p_export.add_argument("--log", default=default_log, help="log node addresses")
    p_export.add_argument("--temp-dir", default=None, help="where fetched snapshots go first")
    p_import = sub.add_parser("import", help="load a Redis RDB file through a shim (the log)")
    p_import.add_argument("--rdb", type=Path, required=True, help="the RDB file to load")
    p_import.add_argument("--addr", default="127.0.0.1:6379", help="a shim's host:port")
    p_restore = sub.add_parser("restore", help="the state at a log index or time, as an RDB file")
    p_restore.add_argument("--rdb", type=Path, required=True, help="the RDB file to write")
    p_restore.add_argument("--log", default=default_log, help="log node addresses")
    point = p_restore.add_mutually_exclusive_group(required=True)
    point.add_argument("--to-index", type=int, help="the last log index to include")
    point.add_argument(
        "--to-time", type=int, help="ms since the epoch: the last record whose time is <= it"
    )
    p_restore.add_argument("--temp-dir", default=None, help="where fetched snapshots go first")
    # Credentials for the log nodes: --log-tls-ca & co., or MEMLOG_LOG_TLS_CA & co.
    for log_client in (p_tail, p_snap, p_export, p_restore):
        add_client_credentials(log_client, "MEMLOG_", "--log-")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("snapshot", "export", "import", "restore"):
        return _snapshot_tools(args)
    if args.command == "tail":
        from cacheshim.tail import tail
        from logsvc.client import LogClientError

        try:
            addresses = [a.strip() for a in str(args.addr).split(",") if a.strip()]
            credentials = client_credentials(args, "log_")
            if args.timeout_s <= 0:
                raise LogClientError(f"--timeout-s must be positive, not {args.timeout_s:g}")
            return asyncio.run(
                tail(
                    addresses,
                    args.from_index,
                    args.follow,
                    args.format,
                    credentials,
                    timeout_s=args.timeout_s,
                )
            )
        except (LogClientError, AuthConfigError) as exc:
            print(f"memlog tail: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
    args.data.mkdir(parents=True, exist_ok=True)
    return up(args.port, args.data, args.shims, args.log_base_port)


def snapshot_cadence(args: argparse.Namespace) -> Cadence | None:
    """`memlog snapshot`'s mode: None once; a Cadence when resident (--follow, or --every-s
    alone, as before it). Raises ValueError for --every-records alone, or a bad cadence."""
    from cacheshim.snapshot.tools import Cadence

    follow = bool(args.follow) or args.every_s is not None
    if not follow:
        if args.every_records is not None:
            raise ValueError("--every-records needs --follow (a one-shot run writes one snapshot)")
        return None
    cadence = Cadence(args.every_s, args.every_records, args.min_records, args.min_interval_s)
    cadence.validate()
    return cadence


def _snapshot_tools(args: argparse.Namespace) -> int:
    import logging

    from cacheshim.snapshot import tools
    from cacheshim.snapshot.rdb import RdbError
    from logsvc.client import LogClientError

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    command = str(args.command)
    try:
        if command == "import":
            return tools.import_main(args.rdb, args.addr)
        addresses = [a.strip() for a in str(args.log).split(",") if a.strip()]
        credentials = client_credentials(args, "log_")
        if command == "snapshot":
            cadence = snapshot_cadence(args)
            lower_priority(str(args.priority))
            return asyncio.run(
                tools.snapshot_main(
                    addresses, cadence, args.min_records, args.temp_dir, credentials
                )
            )
        if command == "export":
            return asyncio.run(tools.export_main(addresses, args.rdb, args.temp_dir, credentials))
        return asyncio.run(
            tools.restore_main(
                addresses, args.rdb, args.to_index, args.to_time, args.temp_dir, credentials
            )
        )
    except (LogClientError, RdbError, OSError, AuthConfigError, ValueError) as exc:
        print(f"memlog {command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
