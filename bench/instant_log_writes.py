"""The shim's own cost per write: the instant-log shim beside redis-server appendfsync always.

    .venv/bin/python bench/instant_log_writes.py [--requests 100000] [--rounds 3]
        [--tests set,incr,lpush,hset,zadd] [--pipelines 1,16] [--baseline DIR]

Starts `bench/instant_log_shim.py` (the real shim, its log an in-process list: no gRPC, no
Raft, no disk) and a `redis-server --appendonly yes --appendfsync always`, then runs
`redis-benchmark -c 50 -P N -r 10000 -t TEST` against each, the two taking turns, `--rounds`
times. For each point it prints both servers' requests/s and CPU time per request (user +
system of the server process, from /proc/PID/stat before and after), each the median of the
rounds, and the ratio. With `--baseline DIR` (a checkout of another commit, e.g. from
`git archive`, with the C extensions copied in), the instant-log shim of that tree runs in the
same rounds too, as "before". Issue 18's targets: the shim at least 2x of appendfsync always, under
10 us of CPU per write. Everything on 127.0.0.1, stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.shim_redis_benchmark import run_benchmark
from tests.cacheshim.harness import RedisServer, _answers_ping, free_port, stop_process, wait_until

CLOCK_TICKS_S = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process pid so far (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_S


def start_instant_log_shim(tree: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """bench/instant_log_shim.py of the source tree `tree`."""
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(tree / "bench" / "instant_log_shim.py"), "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    wait_until(lambda: _answers_ping(port) or proc.poll() is not None, 120, "instant-log shim")
    if proc.poll() is not None:
        raise RuntimeError(f"the instant-log shim exited: see {log_path}")
    return proc, port


def measure(pid: int, port: int, test: str, pipeline: int, requests: int) -> tuple[float, float]:
    """(requests/s, CPU microseconds per request) of one redis-benchmark run."""
    before = cpu_s(pid)
    rate = run_benchmark(port, test, pipeline, requests)
    return rate, (cpu_s(pid) - before) * 1e6 / requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tests", default="set,incr,lpush,hset,zadd")
    parser.add_argument("--pipelines", default="1,16")
    parser.add_argument("--baseline", type=Path, default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="memlog-instant-"))
    always = RedisServer(root / "redis-always")
    shims: list[subprocess.Popen[bytes]] = []
    try:
        always.start(["--appendonly", "yes", "--appendfsync", "always"])
        assert always.proc is not None
        servers: list[tuple[str, int, int]] = []
        trees = [("shim", Path(__file__).resolve().parents[1])]
        if args.baseline is not None:
            trees.append(("before", args.baseline.resolve()))
        for label, tree in trees:
            proc, port = start_instant_log_shim(tree, root / f"{label}.log")
            shims.append(proc)
            servers.append((label, proc.pid, port))
        servers.append(("always", always.proc.pid, always.port))
        labels = [label for label, _, _ in servers]
        print("| test | -P | " + " | ".join(f"{x} req/s | {x} CPU us/req" for x in labels)
              + " | shim/always | rounds (req/s) |")  # fmt: skip
        print("| --- | ---: |" + " ---: |" * (2 * len(labels) + 1) + " --- |")
        for pipeline in map(int, args.pipelines.split(",")):
            for test in args.tests.upper().split(","):
                runs: list[list[tuple[float, float]]] = [[] for _ in servers]
                n = args.requests * (4 if pipeline > 1 else 1)
                for _ in range(args.rounds):
                    for samples, (_, pid, port) in zip(runs, servers, strict=True):
                        samples.append(measure(pid, port, test, pipeline, n))
                medians = [
                    (statistics.median(r for r, _ in s), statistics.median(c for _, c in s))
                    for s in runs
                ]
                cells = " | ".join(f"{rate:,.0f} | {cpu:.1f}" for rate, cpu in medians)
                rounds = "; ".join(
                    f"{label} " + ", ".join(f"{r:,.0f}" for r, _ in s)
                    for label, s in zip(labels, runs, strict=True)
                )
                ratio = medians[0][0] / medians[-1][0]
                print(f"| {test} | {pipeline} | {cells} | {ratio:.2f} | {rounds} |", flush=True)
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    finally:
        always.stop()
        for proc in shims:
            stop_process(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
