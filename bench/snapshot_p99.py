"""GET and SET latency of a shim with and without a snapshotter writing snapshots, one run.

    .venv/bin/python bench/snapshot_p99.py [--keys 100000] [--requests 20000] [--rounds 3]
        [--out docs/bench-snapshot-p99.md]

A memlog deployment (three log nodes, one shim) is filled with --keys strings (100 bytes);
then redis-benchmark (GET and SET, -c 50, random keys over the same range) runs in rounds,
alternately alone and while a snapshotter (`memlog snapshot --every-s 0.2 --min-records 1`:
a new snapshot as soon as the last one is stored) runs, and the table gives each phase's
median p50/p99 over the rounds. The snapshotter is another process, so on a machine with
spare cores the shim does not notice it; on this shared 2-core machine it competes for CPU
with the shim, the three log nodes and redis-benchmark, so this is a worst case.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.cacheshim.harness import Memlog, stop_process


def bench(port: int, test: str, requests: int, keys: int) -> tuple[float, float]:
    """(p50, p99) in ms of one redis-benchmark run."""
    done = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", test, "-n", str(requests), "-c", "50",
         "-r", str(keys), "-d", "100", "--csv"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    return float(rows[0]["p50_latency_ms"]), float(rows[0]["p99_latency_ms"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="memlog-bench-p99-"))
    m = Memlog(root)
    snapshotter: subprocess.Popen[bytes] | None = None
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    snapshots = 0
    try:
        m.start()
        port = m.shim_ports[0]
        subprocess.run(
            ["redis-benchmark", "-p", str(port), "-t", "set", "-n", str(args.keys * 2), "-c",
             "50", "-P", "16", "-r", str(args.keys), "-d", "100", "-q"],
            check=True, capture_output=True,
        )  # fmt: skip
        assert m.cluster is not None
        log_addrs = ",".join(m.cluster.addresses())
        snap_log = root / "snapshotter.log"
        for _ in range(args.rounds):
            for phase in ("alone", "snapshotting"):
                if phase == "snapshotting":
                    with open(snap_log, "ab") as out:
                        snapshotter = subprocess.Popen(
                            [sys.executable, "-m", "cacheshim.launcher", "snapshot", "--log",
                             log_addrs, "--every-s", "0.2", "--min-records", "1",
                             "--temp-dir", str(root)],
                            stdout=out, stderr=subprocess.STDOUT,
                        )  # fmt: skip
                    # Until it has restored and stored its first snapshot: writing from then on.
                    while snap_log.read_text().count(" stored: ") <= snapshots:
                        if snapshotter.poll() is not None:
                            raise RuntimeError(snap_log.read_text())
                        subprocess.run(["sleep", "0.1"], check=True)
                for test in ("get", "set"):
                    results.setdefault((phase, test), []).append(
                        bench(port, test, args.requests, args.keys)
                    )
                if snapshotter is not None:
                    stop_process(snapshotter)
                    snapshotter = None
                    snapshots = snap_log.read_text().count(" stored: ")
    finally:
        if snapshotter is not None:
            stop_process(snapshotter)
        m.stop()
        shutil.rmtree(root, ignore_errors=True)
    lines = [
        f"# Shim latency during snapshots: {args.keys:,} keys",
        "",
        f"`bench/snapshot_p99.py --keys {args.keys} --requests {args.requests} "
        f"--rounds {args.rounds}`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.machine()}, {os.cpu_count()} cores (shared), "
        f"Python {platform.python_version()}. {snapshots} snapshots stored during the runs.",
        "",
        "| test | p50 ms alone | p50 ms snapshotting | p99 ms alone | p99 ms snapshotting |",
        "|---|---|---|---|---|",
    ]
    for test in ("get", "set"):
        alone, busy = results[("alone", test)], results[("snapshotting", test)]
        lines.append(
            f"| {test.upper()} | {statistics.median(p for p, _ in alone):.2f} | "
            f"{statistics.median(p for p, _ in busy):.2f} | "
            f"{statistics.median(p for _, p in alone):.2f} | "
            f"{statistics.median(p for _, p in busy):.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
