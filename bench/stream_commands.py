"""XADD, XRANGE and XLEN through one shim of a local three-node log, beside a redis-server
started in the same run: redis-benchmark -c 20, the median of 3 rounds each (issue 20,
docs/compatibility.md).

usage: .venv/bin/python bench/stream_commands.py
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.cacheshim.harness import Memlog, RedisServer

CASES = [
    ("XADD bs * f v", 3000, ["XADD", "bs", "*", "f", "v"]),
    ("XRANGE bs - + COUNT 10", 20000, ["XRANGE", "bs", "-", "+", "COUNT", "10"]),
    ("XLEN bs", 20000, ["XLEN", "bs"]),
]


def requests_per_second(port: int, count: int, command: list[str]) -> float:
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-n", str(count), "-c", "20", "-q", *command],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return float(re.findall(r"([\d.]+) requests per second", out)[-1])


def main() -> None:
    memlog = Memlog(Path(tempfile.mkdtemp(prefix="bench-streams-")), shims=1)
    oracle = RedisServer(Path(tempfile.mkdtemp(prefix="bench-streams-redis-")))
    memlog.start()
    oracle.start()
    try:
        print("load:", os.getloadavg())
        for name, count, command in CASES:
            rates = {}
            for label, port in (("memlog", memlog.shim_ports[0]), ("redis-server", oracle.port)):
                rounds = [requests_per_second(port, count, command) for _ in range(3)]
                rates[label] = statistics.median(rounds)
            print(f"{name}: memlog {rates['memlog']:.0f}/s, redis {rates['redis-server']:.0f}/s")
    finally:
        memlog.stop()
        oracle.stop()


if __name__ == "__main__":
    main()
