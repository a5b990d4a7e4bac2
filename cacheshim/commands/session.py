"""Commands that change the connection itself: declared here for the table (arity, flags,
docs, COMMAND); the connection (`cacheshim.server.sessions`) carries them out.

The handlers below only run when one of these commands was queued in MULTI and EXEC runs
it, in the apply loop (a transaction that writes) or on the connection (one that only
reads). They must answer, never raise anything but CommandError: an exception in apply
would stop the apply loop of every shim at that record.
"""

from __future__ import annotations

from typing import Final

from cacheshim.commands import Ctx, command
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import OK, Reply

NOT_IN_TRANSACTION: Final = "ERR memlog: this command cannot run inside MULTI/EXEC"


def _handled_by_connection(ctx: Ctx, args: list[bytes]) -> Reply:
    # QUIT, RESET, MULTI, EXEC, DISCARD and WATCH are never queued; HELLO would change the
    # protocol in the middle of EXEC's reply.
    raise CommandError(NOT_IN_TRANSACTION)


def _select_in_transaction(ctx: Ctx, args: list[bytes]) -> Reply:
    return OK  # apply.run has already moved ctx to the database


def _unwatch_in_transaction(ctx: Ctx, args: list[bytes]) -> Reply:
    return OK  # as in Redis: EXEC forgets the watched keys anyway


_SESSION = [
    ("hello", -1, "noscript loading stale fast no_auth allow_busy", "fast connection",
     "connection", "6.0.0", "Picks the protocol version (2 or 3), optionally authenticates and "
     "names the connection, and answers facts about the server."),
    ("select", 2, "loading stale fast", "fast connection", "connection", "1.0.0",
     "Makes another database (0-15) the connection's current one."),
    ("quit", -1, "noscript loading stale fast no_auth allow_busy", "fast connection",
     "connection", "1.0.0", "Answers OK and closes the connection."),
    ("reset", 1, "noscript loading stale fast no_auth allow_busy", "fast connection",
     "connection", "6.2.0", "Puts the connection back in its initial state."),
    ("multi", 1, "noscript loading stale fast allow_busy", "fast transaction",
     "transactions", "1.2.0", "Begins queueing commands for EXEC."),
    ("exec", 1, "noscript loading stale skip_slowlog", "slow transaction", "transactions",
     "1.2.0", "Runs the commands queued since MULTI, all at once, unless a watched key "
     "changed."),
    ("discard", 1, "noscript loading stale fast allow_busy", "fast transaction",
     "transactions", "2.0.0", "Drops the commands queued since MULTI."),
    ("watch", -2, "noscript loading stale fast allow_busy", "fast transaction",
     "transactions", "2.2.0", "Makes the next EXEC fail if one of these keys changes before "
     "it."),
    ("unwatch", 1, "noscript loading stale fast allow_busy", "fast transaction",
     "transactions", "2.2.0", "Forgets every key this connection watches."),
]  # fmt: skip

_IN_TRANSACTION = {"select": _select_in_transaction, "unwatch": _unwatch_in_transaction}

for _name, _arity, _flags, _acl, _group, _since, _summary in _SESSION:
    _keys = (1, -1, 1) if _name == "watch" else (0, 0, 0)
    _key_flags = "RO" if _name == "watch" else ""
    command(_name, _arity, _flags, _keys, _acl, _group, _since, _summary, key_flags=_key_flags)(
        _IN_TRANSACTION.get(_name, _handled_by_connection)
    )
