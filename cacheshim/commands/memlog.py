"""MEMLOG: memlog's own commands (read consistency of a connection, the shim's log position)."""

from __future__ import annotations

from cacheshim.commands import Ctx, command, container
from cacheshim.commands.serverview import Session
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import OK, Reply

container(
    "memlog", -2, "slow connection", "server", "0.1.0",
    "memlog's own commands: read consistency and the shim's position in the log.",
)  # fmt: skip


def _session(ctx: Ctx) -> Session:
    if ctx.session is None:
        raise CommandError("ERR MEMLOG is only available to a client connection")
    return ctx.session


@command(
    "reads", -2, "noscript loading stale fast", (0, 0, 0), "fast connection", "server",
    "0.1.0",
    "MEMLOG READS [LINEARIZABLE|LOCAL]: gets or sets this connection's read consistency.",
    container="memlog",
)  # fmt: skip
def reads(ctx: Ctx, args: list[bytes]) -> Reply:
    session = _session(ctx)
    if not args:
        return b"linearizable" if session.linearizable else b"local"
    if len(args) > 1:
        raise CommandError(errors.SYNTAX_ERROR)
    mode = args[0].upper()
    if mode not in (b"LINEARIZABLE", b"LOCAL"):
        raise CommandError(errors.SYNTAX_ERROR)
    session.linearizable = mode == b"LINEARIZABLE"
    return OK


@command(
    "status", 2, "loading stale fast", (0, 0, 0), "fast connection", "server", "0.1.0",
    "MEMLOG STATUS: the shim's applied log index and where it reads the log from.",
    container="memlog",
)  # fmt: skip
def status(ctx: Ctx, args: list[bytes]) -> Reply:
    shim = _session(ctx).shim
    return {
        b"shim_id": shim.config.shim_id.encode(),
        b"zone": shim.config.zone.encode(),
        b"applied_index": shim.applier.applied_index,
        b"caught_up_index": shim.caught_up_index,
        b"local_log": shim.config.local_log_address.encode(),
        b"linearizable_reads_default": shim.config.linearizable_reads,
    }
