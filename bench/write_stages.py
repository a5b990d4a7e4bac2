"""The shim's per-write work, stage by stage, without sockets or an event loop.

    .venv/bin/python bench/write_stages.py [--writes 20000] [--rounds 5]

Times, per write, in one process: parsing a pipeline of SETs (`RequestParser`), the checks
of `dispatch.check`, making the record (as the Writer does: `writer.encode_record`, in C
when built; and, beside it, the protobuf `Record` the Writer built before, `record_for` +
`SerializeToString`), applying it (`Applier.apply`: decode, the record's checks, the
handler), and encoding the reply (`Encoder`). The best of `--rounds`; one core, nothing
else measured. Used to compare ways of making the hot path cheaper
(docs/decisions/0005-shim-hot-path.md); the socket reads and writes and the event loop,
which this leaves out, are measured by bench/instant_log_writes.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cacheshim.apply import Applier
from cacheshim.commands import load_all
from cacheshim.protocol.resp import Encoder, RequestParser, encode_command
from cacheshim.server.dispatch import check
from cacheshim.server.writer import encode_record, record_for

COMMANDS: dict[str, Callable[[int], list[bytes]]] = {
    "SET": lambda i: [b"SET", b"key:%012d" % (i % 10000), b"xxx"],
    "INCR": lambda i: [b"INCR", b"counter:%d" % (i % 10000)],
    "LPUSH": lambda i: [b"LPUSH", b"mylist", b"xxx"],
    "HSET": lambda i: [b"HSET", b"myhash", b"element:%d" % (i % 10000), b"xxx"],
    "ZADD": lambda i: [b"ZADD", b"myzset", b"%d" % (i % 1000), b"element:%d" % (i % 10000)],
}


def best_us(rounds: int, writes: int, stage: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        stage()
        best = min(best, time.process_time() - start)
    return best * 1e6 / writes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    load_all()
    n = args.writes
    print(
        "| command | parse | check | record | apply | reply | total (us per write) "
        "| record, protobuf |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, make in COMMANDS.items():
        commands = [make(i) for i in range(n)]
        wire = b"".join(encode_command(c) for c in commands)

        def parse(wire: bytes = wire) -> None:
            p = RequestParser()
            p.feed(wire)
            while p.next_command() is not None:
                pass

        def checks(commands: list[list[bytes]] = commands) -> None:
            for c in commands:
                check(c)

        def records(commands: list[list[bytes]] = commands) -> None:
            for i, c in enumerate(commands, 1):
                encode_record(0, 1_700_000_000_000 + i, "shim-1", i, c, None)

        def protobuf_records(commands: list[list[bytes]] = commands) -> None:
            for i, c in enumerate(commands, 1):
                record = record_for(0, [c], transaction=False)
                record.shim_id, record.proposal_id = "shim-1", i
                record.SerializeToString()

        payloads = []
        for i, c in enumerate(commands):
            record = record_for(0, [c], transaction=False)
            record.shim_id, record.proposal_id = "shim-1", i + 1
            payloads.append(record.SerializeToString())

        def apply(payloads: list[bytes] = payloads) -> None:
            applier = Applier()
            for i, payload in enumerate(payloads, 1):
                applier.apply(i, payload)

        replies = [Applier().apply(i, p)[1] for i, p in enumerate(payloads[:1], 1)] * n

        def reply(replies: list[object] = replies) -> None:
            encoder = Encoder()
            for r in replies:
                encoder.write(r)  # type: ignore[arg-type]
                encoder.take()

        times = [best_us(args.rounds, n, s) for s in (parse, checks, records, apply, reply)]
        protobuf = best_us(args.rounds, n, protobuf_records)
        cells = " | ".join(f"{t:.2f}" for t in times)
        print(f"| {name} | {cells} | {sum(times):.2f} | {protobuf:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
