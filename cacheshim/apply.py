"""Deterministic apply: (keyspace, record, log index) -> reply.

Every shim applies every committed record in log order through `Applier.apply`; nothing in
here reads a clock or an unseeded random source. Time is the record's time, kept monotonic
along the log; randomness comes from `random.Random(index)`. So every shim at index N holds
the same keyspace (`Keyspace.digest` proves it).
"""

from __future__ import annotations

import random

from cacheshim import errors
from cacheshim.commands import Ctx, lookup
from cacheshim.errors import CommandError
from cacheshim.keyspace import DATABASES, Keyspace
from cacheshim.resp import NULL_ARRAY, Error, Reply
from cacheshim.v1 import record_pb2


class Applier:
    def __init__(self) -> None:
        self.keyspace = Keyspace()
        self.applied_index = 0
        self.time_ms = 0

    def apply(self, index: int, payload: bytes) -> tuple[record_pb2.Record | None, Reply]:
        if index != self.applied_index + 1:
            raise RuntimeError(f"record {index} applied right after {self.applied_index}")
        self.applied_index = index
        try:
            record = record_pb2.Record.FromString(payload)
        except Exception:  # a foreign or damaged record: skipped the same way everywhere
            return None, Error("ERR memlog: undecodable log record")
        self.time_ms = max(self.time_ms, record.time_ms)
        self.keyspace.expire_due(self.time_ms, index)
        ctx = Ctx(self.keyspace, record.db, self.time_ms, index, random.Random(index))
        if not record.transaction:
            return record, run(ctx, list(record.commands[0].args))
        for watched in record.watched:
            if self.keyspace.dbs[watched.db].last_change(watched.key) > record.watch_index:
                return record, NULL_ARRAY  # EXEC aborted: a watched key changed
        return record, [run(ctx, list(c.args)) for c in record.commands]


def run(ctx: Ctx, args: list[bytes]) -> Reply:
    """Run one command whose name and arity were checked when it was queued."""
    spec = lookup(args)
    if spec is None or spec.handler is None:
        return Error(errors.unknown_command(args[0], args[1:]))
    rest = args[2:] if spec.container else args[1:]
    try:
        if spec.name == "select" and not spec.container:
            # SELECT inside MULTI/EXEC changes the database of the commands after it.
            ctx.db_index = select_index(rest[0])
        return spec.handler(ctx, rest)
    except CommandError as exc:
        return Error(exc.message)


def select_index(arg: bytes) -> int:
    try:
        db = int(arg)
    except ValueError:
        raise CommandError(errors.NOT_AN_INTEGER) from None
    if not 0 <= db < DATABASES:
        raise CommandError(errors.DB_INDEX_OUT_OF_RANGE)
    return db
