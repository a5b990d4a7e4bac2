"""Server commands (Redis server.c, db.c): keyspace-wide operations and introspection."""

from __future__ import annotations

from cacheshim import errors
from cacheshim.commands import Ctx, command
from cacheshim.errors import CommandError
from cacheshim.resp import OK, Reply


def _flush_mode(args: list[bytes]) -> None:
    if len(args) > 1 or (args and args[0].upper() not in (b"SYNC", b"ASYNC")):
        raise CommandError(errors.SYNTAX_ERROR)


@command(
    "flushdb", -1, "write", (0, 0, 0), "keyspace write slow dangerous", "server", "1.0.0",
    "Removes all keys from the current database.",
    "O(N) where N is the number of keys in the selected database",
)  # fmt: skip
def flushdb(ctx: Ctx, args: list[bytes]) -> Reply:
    _flush_mode(args)
    ctx.db.flush(ctx.index)
    return OK


@command(
    "flushall", -1, "write", (0, 0, 0), "keyspace write slow dangerous", "server", "1.0.0",
    "Removes all keys from all databases.",
    "O(N) where N is the total number of keys in all databases",
)  # fmt: skip
def flushall(ctx: Ctx, args: list[bytes]) -> Reply:
    _flush_mode(args)
    for db in ctx.keyspace.dbs:
        db.flush(ctx.index)
    return OK
