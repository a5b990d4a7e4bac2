"""Apply's CPU cost of plain writes (keyspace notifications' overhead, issue 22): records of
six types (SET, LPUSH, HSET, SADD, ZADD, INCR over 500 keys each) applied through `Applier`
with no hub, in CPU-seconds; the median and best of rounds.

    PYTHONPATH=<tree> .venv/bin/python bench/apply_cpu.py <label> [--rounds 5] [--flags KEA]

Run it alternately for two trees (a tree with the notify calls stripped out, made with
`git archive` and a sed, and this one; the .so files copied in) to compare them; with
--flags, the flags are set by a record first and a hub with no subscribers is given.
"""

from __future__ import annotations

import argparse
import statistics
import time

from cacheshim.apply import Applier
from cacheshim.commands import load_all
from cacheshim.hub import Hub
from cacheshim.v1 import record_pb2

RECORDS = 20_000
KINDS = (
    (b"SET", b"k%d", b"v"), (b"LPUSH", b"l%d", b"a"), (b"HSET", b"h%d", b"f", b"v"),
    (b"SADD", b"s%d", b"m"), (b"ZADD", b"z%d", b"1", b"m"), (b"INCR", b"n%d"),
)  # fmt: skip


def record(args: list[bytes], time_ms: int) -> bytes:
    rec = record_pb2.Record(db=0, time_ms=time_ms, shim_id="s", proposal_id=1)
    rec.commands.add(args=args)
    return rec.SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("label")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--flags", default="")
    options = parser.parse_args()
    load_all()
    payloads = []
    for i in range(RECORDS):
        kind = KINDS[i % len(KINDS)]
        payloads.append(record([a % (i % 500) if b"%d" in a else a for a in kind], 1000 + i))
    rates = []
    for _ in range(options.rounds):
        applier = Applier(Hub() if options.flags else None)
        index = 1
        if options.flags:
            flags = options.flags.encode()
            applier.apply(index, record([b"CONFIG", b"SET", b"notify-keyspace-events", flags], 999))
            index += 1
        started = time.process_time()
        for payload in payloads:
            applier.apply(index, payload)
            index += 1
        rates.append(RECORDS / (time.process_time() - started))
    print(
        f"{options.label}: median {statistics.median(rates):,.0f} records per CPU-second, "
        f"best {max(rates):,.0f} ({', '.join(f'{r:,.0f}' for r in rates)})"
    )


if __name__ == "__main__":
    main()
