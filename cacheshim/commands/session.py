"""Commands that change the connection itself: declared here for the table (arity, flags,
docs, COMMAND); the connection (`cacheshim.server.Connection`) carries them out.

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
     "connection", "6.0.0", "Handshakes with the Redis server."),
    ("select", 2, "loading stale fast", "fast connection", "connection", "1.0.0",
     "Changes the selected database."),
    ("quit", -1, "noscript loading stale fast no_auth allow_busy", "fast connection",
     "connection", "1.0.0", "Closes the connection."),
    ("reset", 1, "noscript loading stale fast no_auth allow_busy", "fast connection",
     "connection", "6.2.0", "Resets the connection."),
    ("multi", 1, "noscript loading stale fast allow_busy", "fast transaction",
     "transactions", "1.2.0", "Starts a transaction."),
    ("exec", 1, "noscript loading stale skip_slowlog", "slow transaction", "transactions",
     "1.2.0", "Executes all commands in a transaction."),
    ("discard", 1, "noscript loading stale fast allow_busy", "fast transaction",
     "transactions", "2.0.0", "Discards a transaction."),
    ("watch", -2, "noscript loading stale fast allow_busy", "fast transaction",
     "transactions", "2.2.0", "Monitors changes to keys to determine the execution of a "
     "transaction."),
    ("unwatch", 1, "noscript loading stale fast allow_busy", "fast transaction",
     "transactions", "2.2.0", "Forgets about watched keys of a transaction."),
]  # fmt: skip

_IN_TRANSACTION = {"select": _select_in_transaction, "unwatch": _unwatch_in_transaction}

for _name, _arity, _flags, _acl, _group, _since, _summary in _SESSION:
    _keys = (1, -1, 1) if _name == "watch" else (0, 0, 0)
    _key_flags = "RO" if _name == "watch" else ""
    command(_name, _arity, _flags, _keys, _acl, _group, _since, _summary, key_flags=_key_flags)(
        _IN_TRANSACTION.get(_name, _handled_by_connection)
    )
