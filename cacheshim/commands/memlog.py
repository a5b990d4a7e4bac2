"""MEMLOG: memlog's own commands (read consistency of a connection, the shim's log position)."""

from __future__ import annotations

from cacheshim.commands import Ctx, command, container
from cacheshim.commands.connection import help_reply
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
        # yes/no, as INFO's memlog section says it (a bool would be 0/1 in RESP2).
        b"linearizable_reads_default": b"yes" if shim.config.linearizable_reads else b"no",
    }


@command(
    "expire", 2, "write noscript loading stale", (0, 0, 0), "write slow", "server", "0.1.0",
    "MEMLOG EXPIRE: a record that changes nothing, so that apply removes the keys expired by "
    "its time (a shim whose clients track keys proposes it when keys are due).",
    container="memlog",
)  # fmt: skip
def expire(ctx: Ctx, args: list[bytes]) -> Reply:
    return OK  # apply removed the keys due as of this record's time before running it


@command(
    "help", 2, "loading stale", (0, 0, 0), "slow", "server", "0.1.0",
    "Lists the MEMLOG subcommands.", container="memlog",
)  # fmt: skip
def memlog_help(ctx: Ctx, args: list[bytes]) -> Reply:
    return help_reply(
        [
            "MEMLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "READS [LINEARIZABLE|LOCAL]",
            "    This connection's reads: LOCAL (from this shim's memory, the default unless",
            "    the shim runs with --linearizable-reads) or LINEARIZABLE (after this shim has",
            "    applied the log up to an index a quorum of log nodes confirmed). No argument:",
            "    the current mode.",
            "STATUS",
            "    This shim's id, zone, applied log index, the index it caught up with at start,",
            "    the log node it reads from, and its default read mode.",
            "ACLLOAD <source> <text>, ACLSEED <source> <text>",
            "    Records of the ACL users (ACL LOAD and --aclfile propose them); not for clients.",
            "EXPIRE",
            "    A record that changes nothing: apply removes the keys expired by its time (a",
            "    shim whose clients track keys proposes it; harmless from a client).",
            "HELP",
            "    This text.",
        ]
    )
