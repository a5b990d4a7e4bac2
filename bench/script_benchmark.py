"""redis-benchmark EVALSHA (a script doing INCR then GET) against a memlog shim and against
redis-server with appendfsync always, in the same run (issue 19).

    .venv/bin/python bench/script_benchmark.py [--requests 20000] [--rounds 3]
        [--out docs/bench-scripts.md]

Starts, on 127.0.0.1: a memlog deployment (three log nodes, one shim) and a
`redis-server --appendonly yes --appendfsync always` (every write fsync'd before its reply).
Loads the script on both (SCRIPT LOAD), then runs Debian's `redis-benchmark -c 50` with
`EVALSHA <sha> 1 counter:__rand_int__` (and, for scale, SET) at -P 1 and -P 16, the two
servers taking turns for `--rounds` rounds; the table gives each one's median requests/s
and their ratio (target: memlog at least 0.5x). On memlog every call is one log record (the
script may write), run at apply: the figure includes the replicated, fsync'd log write.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

from tests.cacheshim.harness import Memlog, RedisServer

SCRIPT = "redis.call('incr', KEYS[1]); return redis.call('get', KEYS[1])"
TARGET = 0.5


def rate(port: int, command: list[str], pipeline: int, requests: int) -> float:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise SystemExit("redis-benchmark is missing: apt-get install redis-tools")
    out = subprocess.run(
        [binary, "-h", "127.0.0.1", "-p", str(port), "-c", "50", "-P", str(pipeline),
         "-n", str(requests), "-r", "10000", "-q", "--csv", *command],
        capture_output=True, text=True, timeout=900, check=True,
    ).stdout  # fmt: skip
    match = re.search(r'"' + command[0] + r'[^"]*","([0-9.]+)"', out)
    if match is None:
        raise RuntimeError(f"redis-benchmark gave no result: {out!r}")
    return float(match.group(1))


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of these processes so far (/proc/<pid>/stat)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    load_before = f"{os.getloadavg()[0]:.2f}"
    with tempfile.TemporaryDirectory(prefix="memlog-script-bench-") as tmp:
        root = Path(tmp)
        memlog = Memlog(root / "memlog")
        fsync = RedisServer(root / "redis-fsync")
        try:
            memlog.start()
            fsync.start(["--appendonly", "yes", "--appendfsync", "always"])
            ports = {"memlog": memlog.shim_ports[0], "redis-server (fsync always)": fsync.port}
            shas = {}
            for name, port in ports.items():
                conn = redis.Redis(port=port)
                shas[name] = conn.script_load(SCRIPT)
                conn.close()
            rows = []
            shim_pids = [proc.pid for proc in memlog.shim_procs]
            assert memlog.cluster is not None
            log_pids = [proc.pid for proc in memlog.cluster.processes.values()]
            cpu: dict[tuple[str, int], tuple[list[float], list[float]]] = {}
            for label, pipeline in (("EVALSHA", 1), ("EVALSHA", 16), ("SET", 1), ("SET", 16)):
                rates: dict[str, list[float]] = {name: [] for name in ports}
                shim_us, log_us = cpu.setdefault((label, pipeline), ([], []))
                for _ in range(args.rounds):
                    for name, port in ports.items():
                        command = (
                            ["EVALSHA", shas[name], "1", "counter:__rand_int__"]
                            if label == "EVALSHA"
                            else ["SET", "key:__rand_int__", "xxx"]
                        )
                        before = cpu_seconds(shim_pids), cpu_seconds(log_pids)
                        rates[name].append(rate(port, command, pipeline, args.requests))
                        if name == "memlog":
                            shim_us.append((cpu_seconds(shim_pids) - before[0]) / args.requests)
                            log_us.append((cpu_seconds(log_pids) - before[1]) / args.requests)
                medians = {name: statistics.median(r) for name, r in rates.items()}
                ratio = medians["memlog"] / medians["redis-server (fsync always)"]
                rows.append((label, pipeline, medians, ratio, rates))
        finally:
            memlog.stop()
            fsync.stop()
    lines = [
        "# EVALSHA: memlog vs redis-server with appendfsync always",
        "",
        f"`bench/script_benchmark.py --requests {args.requests} --rounds {args.rounds}`, "
        f"{datetime.date.today()}, {platform.machine()}, {platform.python_version()}.",
        "",
        f"The script: `{SCRIPT}` (EVALSHA with one key, `counter:__rand_int__`, -c 50).",
        "",
        "SET (a plain write) runs in the same rounds, for scale: what any write costs here.",
        "",
        "| command | -P | memlog req/s | redis-server fsync always req/s | ratio | target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, pipeline, medians, ratio, _ in rows:
        target = f"{TARGET}x" if label == "EVALSHA" else ""
        lines.append(
            f"| {label} | {pipeline} | {medians['memlog']:.0f} | "
            f"{medians['redis-server (fsync always)']:.0f} | {ratio:.2f}x | {target} |"
        )
    lines.append("")
    lines.append(
        "CPU per request on memlog's side (median of the rounds; user + system time of the "
        "shim process and of the three log nodes together, from /proc):"
    )
    lines.append("")
    lines.append("| command | -P | shim CPU us/request | log nodes CPU us/request |")
    lines.append("| --- | --- | --- | --- |")
    for (label, pipeline), (shim_us, log_us) in cpu.items():
        lines.append(
            f"| {label} | {pipeline} | {statistics.median(shim_us) * 1e6:.0f} | "
            f"{statistics.median(log_us) * 1e6:.0f} |"
        )
    lines.append("")
    lines.append(f"Load average before and after: {load_before}, {os.getloadavg()[0]:.2f}.")
    lines.append("")
    lines.append("Every round (requests/s):")
    lines.append("")
    for label, pipeline, _, _, rates in rows:
        for name, values in rates.items():
            lines.append(
                f"- {label} -P {pipeline}, {name}: " + ", ".join(f"{v:.0f}" for v in values)
            )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
