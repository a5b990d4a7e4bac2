"""The shim's own cost per write: the instant-log shim beside redis-server appendfsync always.

    .venv/bin/python bench/instant_log_writes.py [--requests 100000] [--rounds 3]
        [--tests set,incr,lpush,hset,zadd] [--pipelines 1,16]

Starts `bench/instant_log_shim.py` (the real shim, its log an in-process list: no gRPC, no
Raft, no disk) and a `redis-server --appendonly yes --appendfsync always`, then runs
`redis-benchmark -c 50 -P N -r 10000 -t TEST` against each, the two taking turns, `--rounds`
times. For each point it prints both servers' requests/s and CPU time per request (user +
system of the server process, from /proc/PID/stat before and after), each the median of the
rounds, and the ratio. Issue 18's targets: the shim at least 2x of appendfsync always, under
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

from bench.shim_redis_benchmark import run_benchmark, start_instant_log_shim
from tests.cacheshim.harness import RedisServer, stop_process

CLOCK_TICKS_S = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process pid so far (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_S


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
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="memlog-instant-"))
    always = RedisServer(root / "redis-always")
    instant: subprocess.Popen[bytes] | None = None
    try:
        always.start(["--appendonly", "yes", "--appendfsync", "always"])
        assert always.proc is not None
        instant, instant_port = start_instant_log_shim(root)
        servers = [("shim", instant.pid, instant_port), ("always", always.proc.pid, always.port)]
        print("| test | -P | shim req/s | shim CPU us/req | always req/s | always CPU us/req "
              "| ratio | rounds (shim/always req/s) |")  # fmt: skip
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for pipeline in map(int, args.pipelines.split(",")):
            for test in args.tests.upper().split(","):
                runs: list[list[tuple[float, float]]] = [[], []]
                for _ in range(args.rounds):
                    for samples, (_, pid, port) in zip(runs, servers, strict=True):
                        samples.append(measure(pid, port, test, pipeline, args.requests))
                (rate, cpu), (rate_a, cpu_a) = (
                    (statistics.median(r for r, _ in s), statistics.median(c for _, c in s))
                    for s in runs
                )
                rounds = ", ".join(
                    f"{a:,.0f}/{b:,.0f}" for (a, _), (b, _) in zip(runs[0], runs[1], strict=True)
                )
                print(f"| {test} | {pipeline} | {rate:,.0f} | {cpu:.1f} | {rate_a:,.0f} | "
                      f"{cpu_a:.1f} | {rate / rate_a:.2f} | {rounds} |", flush=True)  # fmt: skip
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    finally:
        always.stop()
        if instant is not None:
            stop_process(instant)
    return 0


if __name__ == "__main__":
    sys.exit(main())
