"""Deterministic apply: (keyspace, record, log index) -> reply.

Every shim applies every committed record in log order through `Applier.apply`; nothing in
here reads a clock or an unseeded random source. Time is the record's time, kept monotonic
along the log; randomness comes from `random.Random(index)`. So every shim at index N holds
the same keyspace (`Keyspace.digest` proves it).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cacheshim.commands import Ctx, lookup
from cacheshim.commands.args import parse_db_index
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import NULL_ARRAY, Error, Reply
from cacheshim.types.keyspace import Keyspace
from cacheshim.v1 import record_pb2

if TYPE_CHECKING:
    from cacheshim.hub import Hub

log = logging.getLogger("cacheshim.apply")


class Applier:
    def __init__(self, pubsub: Hub | None = None) -> None:
        self.keyspace = Keyspace()
        # Where PUBLISH records deliver their messages: this shim's subscribers. Outside the
        # keyspace: delivery changes no state that apply computes.
        self.pubsub = pubsub
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
        ctx = Ctx(self.keyspace, record.db, self.time_ms, index, pubsub=self.pubsub)
        if not record.transaction:
            return record, run(ctx, list(record.commands[0].args))
        ctx.in_transaction = True
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
    except Exception as exc:
        # A handler bug must not stop the apply loop (every shim would stop at this record,
        # again on every replay). The reply is the same on every shim: it names no address.
        log.exception("command %r failed in apply", args[:1])
        return Error(f"ERR memlog internal error in '{spec.full_name}': {type(exc).__name__}")


def select_index(arg: bytes) -> int:
    """SELECT's database number, parsed as Redis does (no "+1", " 1" or "1_0")."""
    return parse_db_index(arg)
