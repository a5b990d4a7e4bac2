"""Where one client's SET spends its time, stage by stage, across the shim and the log nodes.

    git apply bench/one_write_trace.patch        # temporary stamps; never commit them
    .venv/bin/python bench/one_write_trace.py [--requests 2000]
    git apply -R bench/one_write_trace.patch

The patch makes the shim's Writer and each log node append `time.monotonic_ns()` stamps
(one clock for every process of a machine) to files in $MEMLOG_TRACE_DIR: the shim's Append
sent and answered; on each node a proposal, an entry's arrival, the synced write's start and
end as the event loop sees them and inside the writer thread, a follower's answer arriving,
and the commit. This script starts the harness's deployment (three log nodes, one shim) with
that variable set, runs `redis-benchmark -c 1 -t set`, and joins the stamps by order (one
client: one write at a time; the first 200 writes are left out), printing each stage's median
and 90th percentile in ms. Findings: docs/shim-performance.md, "One client's SET".
"""

from __future__ import annotations

import argparse
import bisect
import collections
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from write_path import bench  # bench/ is on sys.path when run as a script

from tests.cacheshim.harness import Memlog

Stamps = dict[tuple[str, str], dict[int, int]]


def read_traces(folder: Path) -> tuple[Stamps, list[tuple[int, str, int]]]:
    """{(process, event): {index: first stamp}}, and the shim's stamps in file order."""
    stamps: Stamps = collections.defaultdict(dict)
    shim: list[tuple[int, str, int]] = []
    for path in folder.glob("*.trace"):
        process = path.name.split("-")[0]
        for line in path.read_text().splitlines():
            t, event, index = line.split()
            stamps[(process, event)].setdefault(int(index), int(t))
            if process == "shim":
                shim.append((int(t), event, int(index)))
    return stamps, shim


def stages(stamps: Stamps, shim: list[tuple[int, str, int]]) -> dict[str, list[int]]:
    processes = {process for process, _ in stamps}
    leader = next(p for p in processes if stamps.get((p, "proposed")))
    followers = sorted(processes - {leader, "shim"})
    proposed = sorted((t, i) for i, t in stamps[(leader, "proposed")].items())
    times = [t for t, _ in proposed]
    backs = {i: t for t, e, i in shim if e == "back"}
    out: dict[str, list[int]] = collections.defaultdict(list)
    for sent, log_index in [(t, i) for t, e, i in shim if e == "send"][200:]:
        k = bisect.bisect_left(times, sent)
        if k == len(times):
            continue
        at, raft = proposed[k]
        back = backs.get(log_index)
        committed = stamps[(leader, "committed")].get(raft)
        if back is None or committed is None or at - sent > 20_000_000:
            continue

        def on(process: str, event: str, raft: int = raft) -> int | None:
            return stamps[(process, event)].get(raft)

        row = {
            "shim sends -> leader proposed": at - sent,
            "leader proposed -> sync start": on(leader, "sync_start"),
            "leader sync, as the loop sees it": on(leader, "sync_end"),
            "  to the writer thread": on(leader, "disk_start"),
            "  RocksDB write + fsync": on(leader, "disk_end"),
            "leader committed -> shim answered": back - committed,
            "shim: Append sent -> answered": back - sent,
        }
        start, end = on(leader, "sync_start"), on(leader, "sync_end")
        disk0, disk1 = on(leader, "disk_start"), on(leader, "disk_end")
        if None in (start, end, disk0, disk1):
            continue
        assert start is not None and end is not None and disk0 is not None and disk1 is not None
        row["leader proposed -> sync start"] = start - at
        row["leader sync, as the loop sees it"] = end - start
        row["  to the writer thread"] = disk0 - start
        row["  RocksDB write + fsync"] = disk1 - disk0
        firsts = []
        for follower in followers:
            got = on(follower, "recv_entry")
            f0, f1 = on(follower, "sync_start"), on(follower, "sync_end")
            d0, d1 = on(follower, "disk_start"), on(follower, "disk_end")
            answers = stamps[(leader, f"recv_APPEND_RESPONSE_{follower}")]
            answer = next((answers[j] for j in range(raft, raft + 3) if j in answers), None)
            if None in (got, f0, f1, d0, d1, answer):
                continue
            firsts.append((answer, got, f0, f1, d0, d1))
        if not firsts:
            continue
        answer, got, f0, f1, d0, d1 = min(firsts)  # type: ignore[type-var]
        row.update({
            "leader proposed -> first follower has it": got - at,
            "follower: arrival -> sync start": f0 - got,
            "follower sync, as its loop sees it": f1 - f0,
            "  RocksDB write + fsync (follower)": d1 - d0,
            "follower's answer -> on the leader": answer - f1,
            "leader: first answer -> committed": committed - answer,
        })  # fmt: skip
        for name, value in row.items():
            out[name].append(int(value or 0))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="memlog-trace-"))
    traces = root / "traces"
    traces.mkdir()
    os.environ["MEMLOG_TRACE_DIR"] = str(traces)
    memlog = Memlog(root / "memlog")
    memlog.start()
    try:
        rate, p50, p99 = bench(memlog.shim_ports[0], "set", 1, 1, args.requests)["SET"]
    finally:
        memlog.stop()
    print(f"redis-benchmark -c 1 -t set: {rate:,.0f}/s, p50 {p50} ms, p99 {p99} ms; "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    found = stages(*read_traces(traces))
    if not found:
        print("no stamps: is bench/one_write_trace.patch applied?")
        return 1
    print(f"{len(found['shim: Append sent -> answered'])} writes; ms, median (p90)")
    for name, values in found.items():
        values.sort()
        print(f"{name:45s} {statistics.median(values) / 1e6:7.3f} "
              f"({values[int(len(values) * 0.9)] / 1e6:.3f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
