"""Log-node RSS over a timed write run, as `memlog up` runs the deployment (snapshotter included).

    .venv/bin/python bench/logsvc_memory_run.py [--minutes 10] [--requests 50000]
        [--sample-s 30] [--out FILE]

Starts three `logsvc serve` nodes with their default settings (window 10,000 entries / 64 MiB,
automatic trim with its default floors), one shim, and the snapshotter with `memlog up`'s
command line (`cacheshim.launcher.snapshotter_command`), then runs Debian's `redis-benchmark
-t set -r 1000 -d 100 -c 50 -n REQUESTS` back to back for --minutes. Every --sample-s it
samples each log node's RSS (/proc/PID/status VmRSS), the leader's raft last index and the
log's first index. The report gives the RSS once the window is full (raft last index past
--full-entries) and the largest rise of a node's RSS after that point; the target of issue 16
is 10%. Every process is stopped by PID and the data removed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cacheshim.launcher import SNAPSHOT_EVERY_S, SNAPSHOT_MIN_RECORDS, snapshotter_command
from logsvc.local import LocalCluster
from tests.cacheshim.harness import Memlog, free_port_block, stop_process


@dataclass
class Sample:
    elapsed_s: float
    sets: int
    raft_last: int
    first_index: int
    rss_mib: dict[str, float] = field(default_factory=dict)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def log_indexes(cluster: LocalCluster) -> tuple[int, int]:
    """(the highest raft last index, the highest first retained index) the nodes report."""
    last = first = 0
    for node_id in cluster.zones:
        out = subprocess.run(
            [sys.executable, "-m", "logsvc.cli", "status", "--addr", cluster.address(node_id)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        if out.returncode == 0:
            status = json.loads(out.stdout)
            last = max(last, int(status.get("raftLastIndex", 0)))
            first = max(first, int(status.get("firstIndex", 0)))
    return last, first


def run(root: Path, minutes: float, requests: int, sample_s: float) -> tuple[list[Sample], int]:
    memlog = Memlog(root)
    root.mkdir(parents=True, exist_ok=True)
    memlog.cluster = LocalCluster(data_dir=root, base_port=free_port_block(3))
    samples: list[Sample] = []
    snapshotter: subprocess.Popen[bytes] | None = None
    snap_log = root / "snapshotter.log"
    try:
        memlog.cluster.start()
        memlog.cluster.wait_for_leader()
        memlog.start_shim(0)
        (root / "snapshotter-tmp").mkdir()
        with snap_log.open("ab") as out:
            snapshotter = subprocess.Popen(
                snapshotter_command(memlog.cluster, root / "snapshotter-tmp"),
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        port = memlog.shim_ports[0]
        pids = {z: p.pid for z, p in memlog.cluster.processes.items()}

        def sample(elapsed: float, sets: int) -> None:
            last, first = log_indexes(memlog.cluster)  # type: ignore[arg-type]
            s = Sample(elapsed, sets, last, first, {z: rss_mib(p) for z, p in pids.items()})
            samples.append(s)
            print(
                f"  {elapsed:6.0f}s {sets:>9} SETs  raft last {last:>8}  first {first:>8}  RSS "
                + " ".join(f"{z}={v:.1f}" for z, v in s.rss_mib.items()),
                flush=True,
            )

        started = time.monotonic()
        sample(0, 0)
        sets = 0
        next_sample = sample_s
        while time.monotonic() - started < minutes * 60:
            subprocess.run(
                ["redis-benchmark", "-p", str(port), "-t", "set", "-r", "1000", "-d", "100",
                 "-c", "50", "-n", str(requests), "-q"],
                check=True, capture_output=True, timeout=600,
            )  # fmt: skip
            sets += requests
            elapsed = time.monotonic() - started
            if elapsed >= next_sample:
                sample(elapsed, sets)
                next_sample = elapsed + sample_s
    finally:
        if snapshotter is not None:
            stop_process(snapshotter)
        memlog.stop()
    stored = snap_log.read_text().count(" stored: ") if snap_log.exists() else 0
    return samples, stored


def report(samples: list[Sample], snapshots: int, args: argparse.Namespace) -> str:
    lines = [
        f"## A {args.minutes:g}-minute write run, as `memlog up` runs it",
        "",
        f"`bench/logsvc_memory_run.py --minutes {args.minutes:g} --requests {args.requests} "
        f"--sample-s {args.sample_s:g}` on {datetime.date.today()} ({platform.machine()}, "
        f"Python {platform.python_version()}, 2 shared cores). Log nodes with default settings, "
        f"one shim, the snapshotter of `memlog up` (every {SNAPSHOT_EVERY_S}s, at least "
        f"{SNAPSHOT_MIN_RECORDS:,} records; {snapshots} snapshots stored); `redis-benchmark -t "
        "set -r 1000 -d 100 -c 50` back to back.",
        "",
        "| time | SETs | raft last index | first index | RSS a | RSS b | RSS c |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in samples:
        lines.append(
            f"| {s.elapsed_s:.0f} s | {s.sets:,} | {s.raft_last:,} | {s.first_index:,} | "
            + " | ".join(f"{s.rss_mib[z]:.1f} MiB" for z in sorted(s.rss_mib))
            + " |"
        )
    full = next((s for s in samples if s.raft_last >= args.full_entries), None)
    lines.append("")
    if full is None or full is samples[-1]:
        lines.append(f"The log never passed {args.full_entries:,} entries: no verdict.")
    else:
        after = samples[samples.index(full) :]
        rise = max(
            (max(s.rss_mib[z] for s in after) - full.rss_mib[z]) / full.rss_mib[z]
            for z in full.rss_mib
        )
        span = after[-1].elapsed_s - full.elapsed_s
        lines.append(
            f"The window was full ({args.full_entries:,} entries) at {full.elapsed_s:.0f} s; over "
            f"the {span / 60:.1f} minutes after it the largest rise of a node's RSS above its "
            f"value then: {rise:.1%} (target: within 10%)."
        )
        # The entries of the first window were still being dropped around that point; after
        # twice the window's entries, what remains is the node's steady state.
        settled = [s for s in samples if s.raft_last >= 2 * args.full_entries]
        if len(settled) > 1:
            ranges = {
                z: (min(s.rss_mib[z] for s in settled), max(s.rss_mib[z] for s in settled))
                for z in sorted(settled[0].rss_mib)
            }
            spreads = ", ".join(
                f"{z} {lo:.1f}-{hi:.1f} MiB ({hi / lo - 1:.1%})" for z, (lo, hi) in ranges.items()
            )
            lines.append(
                f"From {settled[0].elapsed_s:.0f} s on (the log past twice the window), each "
                f"node's RSS range (max/min - 1): {spreads}."
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=50_000, help="SETs per benchmark run")
    parser.add_argument("--sample-s", type=float, default=30.0)
    parser.add_argument("--full-entries", type=int, default=10_000, help="the window's entries")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if shutil.which("redis-benchmark") is None:
        print("redis-benchmark is not installed", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="memlog-memory-run-") as tmp:
        samples, snapshots = run(Path(tmp), args.minutes, args.requests, args.sample_s)
    text = report(samples, snapshots, args)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
