"""CPU time of applying one EVALSHA record (the script of bench/script_benchmark.py), without
the log, the network or a shim: what apply itself costs a script write.

    .venv/bin/python bench/script_apply_cpu.py [--records 5000] [--rounds 5]

Prints the CPU microseconds per record of each round (`time.process_time`, so other jobs on
a loaded machine weigh less than in wall time). To compare two trees, run it with
PYTHONPATH pointing at the other tree's copy of `cacheshim/`, in turn with this one.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cacheshim.apply import Applier
from cacheshim.commands import load_all
from cacheshim.v1 import record_pb2

SCRIPT = b"redis.call('incr', KEYS[1]); return redis.call('get', KEYS[1])"


def one_round(records: int) -> float:
    applier = Applier()
    load = record_pb2.Record(db=0, time_ms=1)
    load.commands.add(args=[b"SCRIPT", b"LOAD", SCRIPT])
    applier.apply(1, load.SerializeToString())
    sha = hashlib.sha1(SCRIPT).hexdigest().encode()
    payloads = []
    for i in range(records):
        record = record_pb2.Record(db=0, time_ms=2 + i, shim_id="s", proposal_id=i + 1)
        record.user = b"default"  # (a shim names the sender of every script record)
        record.commands.add(args=[b"EVALSHA", sha, b"1", b"counter:%d" % (i % 1000)])
        payloads.append(record.SerializeToString())
    started = time.process_time()
    for index, payload in enumerate(payloads, 2):
        applier.apply(index, payload)
    return (time.process_time() - started) / records * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    load_all()
    rounds = [one_round(args.records) for _ in range(args.rounds)]
    print("us of CPU per EVALSHA record:", ", ".join(f"{r:.1f}" for r in rounds))


if __name__ == "__main__":
    main()
