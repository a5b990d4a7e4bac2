"""What counting every command costs (issue 22): redis-benchmark GET and SET against a shim
of this tree and a shim of another tree (the one before the counters), both on one log
cluster, beside redis-server, taking turns round after round; medians of requests/s.

    .venv/bin/python bench/observe_overhead.py --base /tmp/base-tree [--requests 50000]
        [--rounds 5] [--points get:1,set:16]

The base tree needs its C extensions built (copy the .so files in, or `pip install -e`):
its shim runs with PYTHONPATH pointing at it. Stops everything it started by PID.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.cacheshim.harness import (
    Memlog,
    RedisServer,
    _answers_ping,
    free_port,
    stop_process,
    wait_until,
)

POINTS = (("get", 1), ("get", 16), ("set", 1), ("set", 16))


def requests_per_s(port: int, test: str, pipeline: int, requests: int) -> float:
    binary = shutil.which("redis-benchmark")
    assert binary is not None, "redis-benchmark is missing"
    out = subprocess.run(
        [binary, "-h", "127.0.0.1", "-p", str(port), "-t", test, "-c", "50",
         "-P", str(pipeline), "-n", str(requests), "-r", "10000", "-q", "--csv"],
        capture_output=True, text=True, timeout=900, check=True,
    ).stdout  # fmt: skip
    line = [row for row in out.splitlines() if row.startswith('"')][-1]
    return float(line.split(",")[1].strip('"'))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=50000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--points", default="get:1,get:16,set:1,set:16", help="test:pipeline,...")
    args = parser.parse_args()
    points = [(t, int(p)) for t, p in (item.split(":") for item in args.points.split(","))]
    root = Path(tempfile.mkdtemp(prefix="observe-bench-"))
    deployment = Memlog(root / "memlog", shims=1)
    oracle = RedisServer(root / "redis")
    base_proc: subprocess.Popen[bytes] | None = None
    try:
        deployment.start()
        oracle.start()
        base_port = free_port()
        deployment.shim_ports.append(base_port)
        command = deployment.shim_command(1)
        command[command.index("--shim-id") + 1] = "shim-base"
        env = {**os.environ, "PYTHONPATH": str(args.base)}
        with open(root / "shim-base.log", "ab") as log_file:
            base_proc = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                         env=env, cwd=args.base)  # fmt: skip
        wait_until(lambda: _answers_ping(base_port), 60, "the base shim")
        ports = {"redis": oracle.port, "base": base_port, "this": deployment.shim_ports[0]}
        results: dict[tuple[str, str, int], list[float]] = {}
        for round_number in range(args.rounds):
            for test, pipeline in points:
                for name, port in ports.items():
                    rate = requests_per_s(port, test, pipeline, args.requests)
                    results.setdefault((name, test, pipeline), []).append(rate)
            print(f"round {round_number + 1} done", file=sys.stderr)
        print(f"load: {os.getloadavg()}")
        print("| point | redis-server | base shim | this shim | this / base |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for test, pipeline in points:
            medians = {n: statistics.median(results[(n, test, pipeline)]) for n in ports}
            print(
                f"| {test.upper()} -P {pipeline} | {medians['redis']:,.0f} | "
                f"{medians['base']:,.0f} | {medians['this']:,.0f} | "
                f"{medians['this'] / medians['base']:.2f} |"
            )
        for key, rates in sorted(results.items()):
            print(f"rounds {key}: {', '.join(f'{r:,.0f}' for r in rates)}")
    finally:
        if base_proc is not None:
            stop_process(base_proc)
        deployment.stop()
        oracle.stop()


if __name__ == "__main__":
    main()
