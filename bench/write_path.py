"""The durable write path beside `redis-server --appendfsync always`, with CPU per write.

    .venv/bin/python bench/write_path.py [--rounds 3] [--requests 20000] [--tests set,incr,...]
        [--profile DIR]

Starts, on 127.0.0.1, a memlog deployment (three log nodes and one shim, as
tests/cacheshim/harness.py's `Memlog` runs them) and `redis-server --appendonly yes
--appendfsync always`, then, in each round, the two servers taking turns:

- `redis-benchmark -t set -c 50 -P 1|16`: requests/s, p99, and the CPU time of every process
  of each server (user + system, from /proc/PID/stat before and after) per acknowledged SET;
- the other write tests (`--tests`) at -P 1 and -P 16: requests/s and p99;
- one client (`-c 1 -P 1`) SET: p50.

Prints each round and the medians as Markdown. `--profile DIR` records, in a separate phase
after the rounds, a py-spy profile (raw, collapsed stacks) of the shim, the log leader and one
follower under SET -c 50 -P 1 load; `bench/profile_summary.py` reads them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.cacheshim.harness import Memlog, RedisServer

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / TICKS_PER_S


def bench(
    port: int, tests: str, clients: int, pipeline: int, requests: int
) -> dict[str, tuple[float, float, float]]:
    """{test: (requests/s, p50 ms, p99 ms)} from redis-benchmark's CSV."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise SystemExit("redis-benchmark is missing: apt-get install redis-tools")
    out = subprocess.run(
        [binary, "-h", "127.0.0.1", "-p", str(port), "-t", tests, "-c", str(clients),
         "-P", str(pipeline), "-n", str(requests), "-r", "10000", "-q", "--csv"],
        capture_output=True, text=True, timeout=900, check=True,
    ).stdout  # fmt: skip
    found: dict[str, tuple[float, float, float]] = {}
    for line in out.splitlines()[1:]:
        cells = [c.strip('"') for c in line.split('","')]
        name = re.match(r"\w+", cells[0])
        if name is None:
            continue
        found.setdefault(name.group(0), (float(cells[1]), float(cells[4]), float(cells[6])))
    return found


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--tests", default="incr,lpush,hset,zadd")
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--profile-s", type=int, default=8)
    parser.add_argument("--skip-rounds", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="write-path-"))
    memlog = Memlog(root / "memlog")
    always = RedisServer(root / "always")
    results: dict[tuple[str, str, int], list[float]] = {}

    def note(key: tuple[str, str, int], value: float) -> None:
        results.setdefault(key, []).append(value)

    try:
        memlog.start()
        always.start(["--appendonly", "yes", "--appendfsync", "always"])
        assert memlog.cluster is not None and always.proc is not None
        memlog_pids = [p.pid for p in memlog.cluster.processes.values()]
        memlog_pids += [p.pid for p in memlog.shim_procs]
        servers = {
            "memlog": (memlog.shim_ports[0], memlog_pids),
            "always": (always.port, [always.proc.pid]),
        }
        print(f"load at start: {load()}", flush=True)
        for rnd in range(args.rounds if not args.skip_rounds else 0):
            for name, (port, pids) in servers.items():
                for pipeline in (1, 16):
                    requests = args.requests * (4 if pipeline == 16 else 1)
                    before = cpu_s(pids)
                    rps, _, p99 = bench(port, "set", 50, pipeline, requests)["SET"]
                    used = cpu_s(pids) - before
                    note((name, "SET", pipeline), rps)
                    note((name, "SET p99", pipeline), p99)
                    note((name, "cpu us/SET", pipeline), used / requests * 1e6)
                    print(f"round {rnd + 1} {name} SET -P {pipeline}: {rps:,.0f}/s p99 "
                          f"{p99:.2f} ms, {used / requests * 1e6:.1f} us CPU per SET "
                          f"(load {load()})", flush=True)  # fmt: skip
                    found = bench(port, args.tests, 50, pipeline, requests)
                    for test, (rps, _, p99) in found.items():
                        note((name, test, pipeline), rps)
                        note((name, f"{test} p99", pipeline), p99)
                    print(f"round {rnd + 1} {name} -P {pipeline}: "
                          + ", ".join(f"{t} {r:,.0f}/s p99 {p:.2f}"
                                      for t, (r, _, p) in found.items()), flush=True)  # fmt: skip
                _, p50, _ = bench(port, "set", 1, 1, 2000)["SET"]
                note((name, "one client SET p50", 1), p50)
                print(f"round {rnd + 1} {name} one client SET p50 {p50:.3f} ms", flush=True)
        if results:
            print(f"\nload at end: {load()}\n")
            print("| measure | -P | memlog | redis appendfsync always | ratio |")
            print("| --- | ---: | ---: | ---: | ---: |")
            keys = sorted({(m, p) for (_, m, p) in results})
            for measure, pipeline in keys:
                mine = statistics.median(results[("memlog", measure, pipeline)])
                theirs = statistics.median(results[("always", measure, pipeline)])
                print(f"| {measure} | {pipeline} | {mine:,.2f} | {theirs:,.2f} | "
                      f"{mine / theirs:.2f} |")  # fmt: skip
            print("\nrounds:")
            for key, values in sorted(results.items()):
                print(f"- {key}: {', '.join(f'{v:,.2f}' for v in values)}")
        if args.profile is not None:
            profile(memlog, args.profile, args.profile_s)
    finally:
        memlog.stop()
        always.stop()
        shutil.rmtree(root, ignore_errors=True)


def profile(memlog: Memlog, out: Path, seconds: int) -> None:
    """py-spy of the shim, the leader and a follower while SET -c 50 -P 1 runs."""
    assert memlog.cluster is not None
    spy = Path(sys.executable).parent / "py-spy"
    out.mkdir(parents=True, exist_ok=True)
    leader = memlog.cluster.node_at(memlog.cluster.wait_for_leader())
    follower = next(z for z in memlog.cluster.processes if z != leader)
    targets = {
        "shim": memlog.shim_procs[0].pid,
        "leader": memlog.cluster.processes[leader].pid,
        "follower": memlog.cluster.processes[follower].pid,
    }
    port = memlog.shim_ports[0]
    spies = [
        subprocess.Popen(
            [
                str(spy),
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(seconds),
                "--rate",
                "200",
                "--format",
                "raw",
                "--nonblocking",
                "-o",
                str(out / f"{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in targets.items()
    ]
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        bench(port, "set", 50, 1, 20000)
    for proc in spies:
        proc.wait(timeout=60)
    print(f"profiles in {out} (load {load()})")


if __name__ == "__main__":
    main()
