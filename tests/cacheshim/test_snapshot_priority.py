"""The snapshotter's --priority reaches every thread it runs, for the CPU and the disk: a
process that lowers its priority as `memlog snapshot` does, then starts what the snapshotter
starts (gRPC's threads, asyncio's executor), reports each thread's niceness, scheduling
policy and I/O priority from the kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cacheshim.launcher import IOPRIO_CLASS_BE, IOPRIO_CLASS_IDLE, IOPRIO_CLASS_SHIFT

PROBE = r"""
import asyncio, json, os, sys
from pathlib import Path
from cacheshim.launcher import get_ioprio, lower_priority

lower_priority(sys.argv[1])

from logsvc.client import LogClient

async def main() -> None:
    async with LogClient(["127.0.0.1:1"], timeout_s=0.5) as client:
        try:
            await client.status("127.0.0.1:1")  # a channel, and gRPC's threads
        except Exception:
            pass
        await asyncio.to_thread(lambda: None)  # the default executor's thread
        threads = {}
        for task in Path("/proc/self/task").iterdir():
            tid = int(task.name)
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            threads[tid] = {
                "nice": int(fields[16]),
                "policy": os.sched_getscheduler(tid),
                "ioprio": get_ioprio(tid),
            }
        print(json.dumps(threads))

asyncio.run(main())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread priorities are Linux's")
@pytest.mark.parametrize("priority", ["low", "idle"])
def test_every_thread_of_a_low_priority_snapshotter_is_lowered(priority: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, priority], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    threads = json.loads(done.stdout)
    assert len(threads) >= 3, threads  # the main one, gRPC's, the executor's
    if priority == "low":
        want = {
            "nice": 19,
            "policy": os.SCHED_OTHER,
            "ioprio": IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT | 7,
        }
    else:
        want = {
            "nice": 19,
            "policy": os.SCHED_IDLE,
            "ioprio": IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        }
    for tid, got in threads.items():
        assert got == want, (tid, got, threads)
