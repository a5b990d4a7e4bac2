"""redis-benchmark against a memlog shim and against redis-server, in the same run.

    .venv/bin/python bench/shim_redis_benchmark.py [--requests 20000] [--rounds 3]
        [--out docs/bench-shim.md]

Starts, on 127.0.0.1: a memlog deployment (three log nodes, one shim), a plain in-memory
`redis-server`, and a `redis-server --appendonly yes --appendfsync always` (every write
fsync'd before the reply: the durability memlog gives, on one disk instead of a majority of
three). Runs Debian's `redis-benchmark` (GET and SET, -c 50, with -P 1 and -P 16; then the
data-type tests LPUSH, LPOP, SADD, HSET, ZADD, LRANGE_100) against each, prints Markdown
tables of requests/s and the ratios, and stops everything by PID. Each GET and SET point runs
`--rounds` times, the three servers taking turns, and the tables give each server's median:
one run of a few seconds on 2 shared cores moves a ratio by 10-20%.
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

from tests.cacheshim.harness import (
    Memlog,
    RedisServer,
    _answers_ping,
    free_port,
    stop_process,
    wait_until,
)

TARGETS = {
    ("GET", 1): 0.9,
    ("GET", 16): 0.7,
}


# redis-benchmark's data-type tests (issue 5), run in one invocation in this order (LPUSH
# fills the list LPOP then empties; LRANGE_100 fills its own list first).
TYPE_TESTS = ("LPUSH", "LPOP", "SADD", "HSET", "ZADD", "LRANGE_100")


def run_tests(port: int, tests: tuple[str, ...], pipeline: int, requests: int) -> dict[str, float]:
    """requests/s of each test, by its name (LRANGE_100 for "LRANGE_100 (first 100 ...)")."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise SystemExit("redis-benchmark is missing: apt-get install redis-tools")
    out = subprocess.run(
        [binary, "-h", "127.0.0.1", "-p", str(port), "-t", ",".join(t.lower() for t in tests),
         "-c", "50", "-P", str(pipeline), "-n", str(requests), "-r", "10000", "-q", "--csv"],
        capture_output=True, text=True, timeout=900, check=True,
    ).stdout  # fmt: skip
    found: dict[str, float] = {}
    for match in re.finditer(r'"(\w+)[^"]*","([0-9.]+)"', out):
        # The first: LRANGE_100 runs its own "LPUSH (needed to benchmark LRANGE)" later.
        found.setdefault(match.group(1), float(match.group(2)))
    missing = [t for t in tests if t not in found]
    if missing:
        raise RuntimeError(f"redis-benchmark gave no result for {missing}: {out!r}")
    return {t: found[t] for t in tests}


def run_benchmark(port: int, test: str, pipeline: int, requests: int) -> float:
    return run_tests(port, (test,), pipeline, requests)[test]


def start_instant_log_shim(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    """bench/instant_log_shim.py: the shim with an instant in-process log."""
    port = free_port()
    log = (root / "instant-log-shim.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("instant_log_shim.py")), "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    log.close()
    wait_until(lambda: _answers_ping(port) or proc.poll() is not None, 60, "instant-log shim")
    if proc.poll() is not None:
        raise RuntimeError(f"the instant-log shim exited: see {root / 'instant-log-shim.log'}")
    return proc, port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs of each GET/SET point (the median is shown)"
    )
    parser.add_argument("--out", type=Path, default=Path("docs/bench-shim.md"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="memlog-bench-"))
    memlog = Memlog(root / "memlog")
    plain = RedisServer(root / "redis-plain")
    always = RedisServer(root / "redis-always")
    rows: list[tuple[str, int, float, float, float]] = []
    type_rows: list[tuple[str, int, float, float, float]] = []
    rounds_text: list[str] = []
    instant_rows: list[tuple[int, float, float, float]] = []  # -P, instant, memlog, always
    instant: subprocess.Popen[bytes] | None = None
    try:
        memlog.start()
        plain.start()
        always.start(["--appendonly", "yes", "--appendfsync", "always"])
        instant, instant_port = start_instant_log_shim(root)
        shim_port = memlog.shim_ports[0]
        for test in ("SET", "GET"):
            for pipeline in (1, 16):
                n = args.requests * (4 if pipeline > 1 else 1)
                ports = [shim_port, plain.port, always.port]
                if (test, pipeline) == ("SET", 1):
                    ports.append(instant_port)  # the shim's own ceiling, at the target's point
                runs: list[list[float]] = [[] for _ in ports]
                for _ in range(args.rounds):
                    for samples, port in zip(runs, ports, strict=True):
                        samples.append(run_benchmark(port, test, pipeline, n))
                shim, redis_plain, redis_always = (statistics.median(r) for r in runs[:3])
                rows.append((test, pipeline, shim, redis_plain, redis_always))
                rounds_text.append(
                    f"- {test} -P {pipeline}: memlog "
                    + ", ".join(f"{v:,.0f}" for v in runs[0])
                    + "; redis-server " + ", ".join(f"{v:,.0f}" for v in runs[1])
                    + "; appendfsync always " + ", ".join(f"{v:,.0f}" for v in runs[2])
                    + ("; shim with an instant log " + ", ".join(f"{v:,.0f}" for v in runs[3])
                       if len(runs) > 3 else "")
                )  # fmt: skip
                if len(runs) > 3:
                    instant_rows.append((pipeline, statistics.median(runs[3]), shim, redis_always))
                print(rounds_text[-1], flush=True)
        for pipeline in (1, 16):
            n = args.requests * (4 if pipeline > 1 else 1)
            by_server = [run_tests(port, TYPE_TESTS, pipeline, n)
                         for port in (shim_port, plain.port, always.port)]  # fmt: skip
            for test in TYPE_TESTS:
                shim, redis_plain, redis_always = (result[test] for result in by_server)
                type_rows.append((test, pipeline, shim, redis_plain, redis_always))
                print(f"{test} -P {pipeline}: shim {shim:,.0f}/s, redis {redis_plain:,.0f}/s, "
                      f"redis appendfsync always {redis_always:,.0f}/s", flush=True)  # fmt: skip
    finally:
        memlog.stop()
        plain.stop()
        always.stop()
        if instant is not None:
            stop_process(instant)
        shutil.rmtree(root, ignore_errors=True)

    lines = [
        "# memlog shim vs redis-server (redis-benchmark)",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; machine: nproc "
        f"{os.cpu_count()}, {platform.machine()}, Python {platform.python_version()}; load "
        f"average at the end {os.getloadavg()[0]:.2f}",
        "- command: `.venv/bin/python bench/shim_redis_benchmark.py --requests "
        f"{args.requests} --rounds {args.rounds}`",
        "- each: `redis-benchmark -t get|set -c 50 -P 1|16 -r 10000 -q`, everything on 127.0.0.1 "
        "(the benchmark client shares the 2 cores with the servers)",
        "- memlog: 3 log nodes + 1 shim (every SET is committed on 2 of 3 synced logs before OK)",
        "",
        "| test | -P | memlog req/s | redis-server req/s | ratio | redis appendfsync always "
        "req/s | ratio to always |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for test, pipeline, shim, redis_plain, redis_always in rows:
        lines.append(
            f"| {test} | {pipeline} | {shim:,.0f} | {redis_plain:,.0f} | "
            f"{shim / redis_plain:.2f} | {redis_always:,.0f} | {shim / redis_always:.2f} |"
        )
    lines += ["", f"Each figure above is the median of {args.rounds} rounds (req/s):", ""]
    lines += rounds_text
    lines += [
        "",
        "## The shim's own ceiling: SET through an instant log",
        "",
        "`bench/instant_log_shim.py` runs the same shim with an in-process log that commits an "
        "Append at the next turn of its event loop (no gRPC, no Raft, no disk), in the same "
        "rounds as SET -P 1 above. Its rate is the most any log could let this shim reach. "
        "With `-c 50 -P 1` at most 50 writes are outstanding, so SET/s = 50 / (the time one "
        "write takes, shim and log together): the budget is the time per write that 0.5x of "
        "appendfsync always allows; the shim alone takes 50 / its instant-log rate (one core "
        "busy, so its work for one write does not overlap with its work for another).",
        "",
        "| -P | shim, instant log req/s | ratio to always | memlog req/s | appendfsync always "
        "req/s | budget per write at 0.5x | the shim's own time per write |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for pipeline, instant_rate, shim, redis_always in instant_rows:
        lines.append(
            f"| {pipeline} | {instant_rate:,.0f} | {instant_rate / redis_always:.2f} | "
            f"{shim:,.0f} | {redis_always:,.0f} | {50 / (0.5 * redis_always) * 1000:.2f} ms | "
            f"{50 / instant_rate * 1000:.2f} ms |"
        )
    lines += [
        "",
        "## Data types (issue 5): `redis-benchmark -t lpush,lpop,sadd,hset,zadd,lrange_100`",
        "",
        "Writes go through the log like SET; LRANGE_100 is a read (100 elements per reply).",
        "",
        "| test | -P | memlog req/s | redis-server req/s | ratio | redis appendfsync always "
        "req/s | ratio to always |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for test, pipeline, shim, redis_plain, redis_always in type_rows:
        lines.append(
            f"| {test} | {pipeline} | {shim:,.0f} | {redis_plain:,.0f} | "
            f"{shim / redis_plain:.2f} | {redis_always:,.0f} | {shim / redis_always:.2f} |"
        )
    lines += ["", "Targets (issue 4): GET >= 0.9x redis-server with -P 1, >= 0.7x with -P 16; "
              "durable SET >= 0.5x redis-server with appendfsync always (-P 1).", ""]  # fmt: skip
    for test, pipeline, shim, redis_plain, redis_always in rows:
        if (test, pipeline) in TARGETS:
            want = TARGETS[(test, pipeline)]
            ratio = shim / redis_plain
            lines.append(f"- {test} -P {pipeline}: {ratio:.2f}x (target {want}x): "
                         f"{'met' if ratio >= want else 'NOT met'}")  # fmt: skip
        if test == "SET" and pipeline == 1:
            ratio = shim / redis_always
            lines.append(f"- durable SET -P 1: {ratio:.2f}x of appendfsync always (target 0.5x): "
                         f"{'met' if ratio >= 0.5 else 'NOT met'}")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
