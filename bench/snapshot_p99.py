"""GET and SET latency of a shim with and without snapshots being written, in one run.

    .venv/bin/python bench/snapshot_p99.py [--keys 100000] [--requests 20000] [--rounds 5]
        [--priority low,idle,normal] [--cadence-s 300] [--cadence-requests 5000]
        [--out docs/bench-snapshot-p99.md]

A memlog deployment (three log nodes, one shim) is filled with --keys strings (100 bytes).
Then two measurements, each with redis-benchmark (GET and SET, -c 50, random keys over the
same range, --requests per run):

1. Back to back: rounds of phases, alternately no snapshotter at all and a snapshotter that
   writes a new snapshot as soon as the last one is stored (`memlog snapshot --every-s 0.2
   --min-records 1`), once per --priority value (the snapshotter's `--priority`); each
   phase's median p50/p99 over the rounds. Also the CPU seconds each process used per phase
   (/proc/PID/stat), which says where the time went whatever else runs on the machine.
2. At `memlog up`'s cadence (--cadence-s seconds; 0 skips it): the snapshotter runs with the
   launcher's own command line (a snapshot a minute when 10,000 records came) while the
   benchmark runs back to back (--cadence-requests per run); each run is classed by whether
   a snapshot was being written or put while it ran (from the snapshotter's log: "written in
   X s, put in Y s"), and the table gives each class's median.

The machine this runs on is shared: medians of alternating phases in one run are the point.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cacheshim.launcher import snapshotter_command
from tests.cacheshim.harness import Memlog, stop_process

TESTS = ("get", "set")
CLK_TCK = os.sysconf("SC_CLK_TCK")
# "2026-12-07 18:12:01,029 INFO cacheshim.snapshot.tools: snapshot 123 stored: ... written in
# 0.52s (CPU 0.50s), put in 0.31s" (older snapshotters gave no CPU)
STORED = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .* stored.*written in ([\d.]+)s"
    r"(?: \(CPU [\d.]+s\))?, put in ([\d.]+)s"
)
SIZES = re.compile(r" stored.*: \d+ keys, (\d+) bytes, written in ([\d.]+)s.*put in ([\d.]+)s")


def snapshot_sizes(log_text: str) -> str:
    """Median size, write and put time of the snapshots a snapshotter's log says it stored."""
    found = [m.groups() for m in map(SIZES.search, log_text.splitlines()) if m]
    if not found:
        return "no snapshot stored"
    size, wrote, put = (statistics.median(float(f[i]) for f in found) for i in range(3))
    return (
        f"{len(found)} snapshots stored, median {size / (1 << 20):.1f} MiB, written in "
        f"{wrote:.2f} s, put in {put:.2f} s"
    )


def bench(port: int, test: str, requests: int, keys: int) -> tuple[float, float]:
    """(p50, p99) in ms of one redis-benchmark run."""
    done = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", test, "-n", str(requests), "-c", "50",
         "-r", str(keys), "-d", "100", "--csv"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    return float(rows[0]["p50_latency_ms"]), float(rows[0]["p99_latency_ms"])


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Phase:
    latencies: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)  # process -> CPU s per round
    seconds: list[float] = field(default_factory=list)


def start_snapshotter(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


def wait_for_line(proc: subprocess.Popen[bytes], log_path: Path, text: str, count: int) -> None:
    while log_path.read_text().count(text) < count:
        if proc.poll() is not None:
            raise RuntimeError(log_path.read_text())
        time.sleep(0.1)


def back_to_back(m: Memlog, root: Path, args: argparse.Namespace) -> tuple[dict[str, Phase], str]:
    assert m.cluster is not None
    port = m.shim_ports[0]
    log_addrs = ",".join(m.cluster.addresses())
    procs = {f"log node {z}": p.pid for z, p in m.cluster.processes.items()}
    procs["shim"] = m.shim_procs[0].pid
    names = ["alone", *(f"snapshotting, priority {n}" for n in args.priority)]
    phases = {name: Phase() for name in names}
    snap_log = root / "snapshotter.log"
    stored = 0
    for _ in range(args.rounds):
        for name, priority in zip(names, [None, *args.priority], strict=True):
            snapshotter = None
            if priority is not None:
                snapshotter = start_snapshotter(
                    [sys.executable, "-m", "cacheshim.launcher", "snapshot", "--log", log_addrs,
                     "--every-s", "0.2", "--min-records", "1", "--temp-dir", str(root),
                     "--priority", priority],
                    snap_log,
                )  # fmt: skip
                # Until it has restored and stored its first snapshot: writing from then on.
                wait_for_line(snapshotter, snap_log, " stored: ", stored + 1)
            phase = phases[name]
            pids = dict(procs)
            if snapshotter is not None:
                pids["snapshotter"] = snapshotter.pid
            before = {p: cpu_s(pid) for p, pid in pids.items()}
            started = time.monotonic()
            for test in TESTS:
                phase.latencies.setdefault(test, []).append(
                    bench(port, test, args.requests, args.keys)
                )
            phase.seconds.append(time.monotonic() - started)
            for p, pid in pids.items():
                phase.cpu.setdefault(p, []).append(cpu_s(pid) - before[p])
            if snapshotter is not None:
                stop_process(snapshotter)
                stored = snap_log.read_text().count(" stored: ")
            print(name, {t: phase.latencies[t][-1] for t in TESTS}, flush=True)
    return phases, snapshot_sizes(snap_log.read_text())


def parse_time(date: str, ms: str) -> float:
    return datetime.strptime(date, "%Y-%m-%d %H:%M:%S").timestamp() + int(ms) / 1000


def at_cadence(
    m: Memlog, root: Path, args: argparse.Namespace
) -> tuple[dict[str, Phase], str, str]:
    """The benchmark back to back for args.cadence_s while memlog up's snapshotter runs; runs
    classed by whether a snapshot was written or put while they ran."""
    assert m.cluster is not None
    port = m.shim_ports[0]
    temp = root / "cadence-tmp"
    temp.mkdir()
    command = snapshotter_command(m.cluster, temp)
    snap_log = root / "snapshotter-cadence.log"
    snapshotter = start_snapshotter(command, snap_log)
    runs: list[tuple[float, float, str, tuple[float, float]]] = []
    try:
        wait_for_line(snapshotter, snap_log, "at index", 1)
        end = time.monotonic() + args.cadence_s
        while time.monotonic() < end:
            for test in TESTS:
                t0 = time.time()
                result = bench(port, test, args.cadence_requests, args.keys)
                runs.append((t0, time.time(), test, result))
    finally:
        stop_process(snapshotter)
    busy: list[tuple[float, float]] = []
    for line in snap_log.read_text().splitlines():
        match = STORED.match(line)
        if match:
            t = parse_time(match.group(1), match.group(2))
            busy.append((t - float(match.group(3)) - float(match.group(4)), t))
    phases = {"no snapshot in progress": Phase(), "a snapshot written or put": Phase()}
    for t0, t1, test, result in runs:
        overlaps = any(b0 < t1 and t0 < b1 for b0, b1 in busy)
        name = "a snapshot written or put" if overlaps else "no snapshot in progress"
        phases[name].latencies.setdefault(test, []).append(result)
    shown = " ".join(command[1:]).replace(str(temp), "TMP")
    shown = shown.replace(",".join(m.cluster.addresses()), "ADDRS")
    return phases, snapshot_sizes(snap_log.read_text()), shown


def table(phases: dict[str, Phase]) -> list[str]:
    lines = [
        "| phase | runs | GET p50 ms | GET p99 ms | SET p50 ms | SET p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for name, phase in phases.items():
        if not phase.latencies:
            lines.append(f"| {name} | 0 | | | | |")
            continue
        cells = []
        for test in TESTS:
            got = phase.latencies.get(test, [])
            cells += [
                f"{statistics.median(p for p, _ in got):.2f}" if got else "",
                f"{statistics.median(p for _, p in got):.2f}" if got else "",
            ]
        runs = min(len(phase.latencies.get(t, [])) for t in TESTS)
        lines.append(f"| {name} | {runs} | " + " | ".join(cells) + " |")
    return lines


def spread(phases: dict[str, Phase]) -> list[str]:
    lines = []
    for name, phase in phases.items():
        cells = []
        for test in TESTS:
            got = sorted(p for _, p in phase.latencies.get(test, []))
            if got:
                p90 = got[min(len(got) - 1, int(0.9 * len(got)))]
                cells.append(f"{test.upper()} {got[0]:.1f} / {p90:.1f} / {got[-1]:.1f}")
        lines.append(f"- {name}: " + ", ".join(cells))
    return lines


def cpu_table(phases: dict[str, Phase]) -> list[str]:
    procs = sorted({p for phase in phases.values() for p in phase.cpu})
    lines = [
        "| phase | seconds | " + " | ".join(procs) + " |",
        "|---|---|" + "---|" * len(procs),
    ]
    for name, phase in phases.items():
        cells = [f"{statistics.median(phase.cpu[p]):.1f}" if p in phase.cpu else "-" for p in procs]
        lines.append(
            f"| {name} | {statistics.median(phase.seconds):.1f} | " + " | ".join(cells) + " |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--priority", default="low,idle,normal", help="the snapshotter's --priority per phase"
    )
    parser.add_argument("--cadence-s", type=float, default=300.0)
    parser.add_argument("--cadence-requests", type=int, default=5_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.priority = [p.strip() for p in str(args.priority).split(",") if p.strip()]
    root = Path(tempfile.mkdtemp(prefix="memlog-bench-p99-"))
    m = Memlog(root)
    load_at_start = os.getloadavg()[0]
    try:
        m.start()
        subprocess.run(
            ["redis-benchmark", "-p", str(m.shim_ports[0]), "-t", "set", "-n",
             str(args.keys * 2), "-c", "50", "-P", "16", "-r", str(args.keys), "-d", "100", "-q"],
            check=True, capture_output=True,
        )  # fmt: skip
        phases, stored = back_to_back(m, root, args)
        cadence = at_cadence(m, root, args) if args.cadence_s > 0 else None
    finally:
        m.stop()
        shutil.rmtree(root, ignore_errors=True)
    lines = [
        f"# Shim latency during snapshots: {args.keys:,} keys",
        "",
        f"`bench/snapshot_p99.py --keys {args.keys} --requests {args.requests} --rounds "
        f"{args.rounds} --priority {','.join(args.priority)} --cadence-s {args.cadence_s:g} "
        f"--cadence-requests {args.cadence_requests}`, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} "
        f"cores (shared), Python {platform.python_version()}, load average "
        f"{load_at_start:.1f} at the start and {os.getloadavg()[0]:.1f} at the end.",
        "",
        "## Snapshots back to back",
        "",
        f"`memlog snapshot --every-s 0.2 --min-records 1 --priority P`; medians over "
        f"{args.rounds} rounds; {stored}.",
        "",
        *table(phases),
        "",
        "CPU seconds used per phase (median over the rounds):",
        "",
        *cpu_table(phases),
        "",
    ]
    if cadence is not None:
        cphases, snapshots, command = cadence
        lines += [
            f"## At `memlog up`'s cadence, {args.cadence_s:g} s",
            "",
            f"`{command}` running throughout; {snapshots}. Each benchmark "
            "run is classed by whether a snapshot was written or put while it ran.",
            "",
            *table(cphases),
            "",
            "Spread of the runs' p99 per class (ms, min / 90th percentile / max):",
            "",
            *spread(cphases),
            "",
        ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
