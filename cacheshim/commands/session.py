"""Commands that change the connection itself: HELLO, SELECT, QUIT, RESET and the
transaction commands. Each is declared here for the table (arity, flags, docs, COMMAND)
with the handler the connection runs (`on_connection`), through the `ConnectionView` and
`Session` protocols; `cacheshim.server.dispatch` calls it.

The table handlers (`_handled_by_connection` and the two below it) only run when one of
these commands was queued in MULTI and EXEC runs it, in the apply loop (a transaction that
writes) or on the connection (one that only reads). They must answer, never raise anything
but CommandError: an exception in apply would stop the apply loop of every shim at that
record.
"""

from __future__ import annotations

import asyncio
from typing import Final

from cacheshim.acl import check as acl_check
from cacheshim.commands import Ctx, command
from cacheshim.commands.args import parse_db_index, parse_int
from cacheshim.commands.connection import valid_client_name
from cacheshim.commands.serverview import ConnectionHandler, ConnectionView, Session
from cacheshim.config.defaults import REDIS_VERSION
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import OK, Reply, Status

HELLO_NOAUTH: Final = (
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
    "AUTH <user> <pass> option can be used to authenticate the client and select the RESP "
    "protocol version at the same time"
)
NOT_IN_TRANSACTION: Final = "ERR memlog: this command cannot run inside MULTI/EXEC"


def _handled_by_connection(ctx: Ctx, args: list[bytes]) -> Reply:
    # QUIT, RESET, MULTI, EXEC, DISCARD and WATCH are never queued; HELLO would change the
    # protocol in the middle of EXEC's reply.
    raise CommandError(NOT_IN_TRANSACTION)


def _select_in_transaction(ctx: Ctx, args: list[bytes]) -> Reply:
    return OK  # apply.run has already moved ctx to the database


def _unwatch_in_transaction(ctx: Ctx, args: list[bytes]) -> Reply:
    return OK  # as in Redis: EXEC forgets the watched keys anyway


# -- on the connection ---------------------------------------------------------------------


def _hello(conn: ConnectionView, session: Session, args: list[bytes]) -> Reply:
    protocol = session.protocol
    i = 1
    if len(args) > 1:
        try:
            protocol = parse_int(args[1])
        except CommandError:
            raise CommandError("ERR Protocol version is not an integer or out of range") from None
        if protocol not in (2, 3):
            raise CommandError(errors.NOPROTO)
        i = 2
    name: bytes | None = None
    users = session.shim.applier.acl
    while i < len(args):
        opt = args[i].upper()
        if opt == b"AUTH" and i + 2 < len(args):
            # As in Redis, each option is acted on as it is read: a wrong password is
            # refused before a later option is even looked at.
            acl_check.authenticate(session, users, args[i + 1], args[i + 2])
            i += 3
        elif opt == b"SETNAME" and i + 1 < len(args):
            name = valid_client_name(args[i + 1])
            i += 2
        else:
            raise CommandError(
                f"ERR Syntax error in HELLO option '{errors.text_from_bytes(args[i])}'"
            )
    if name is not None:
        session.name = name
    if acl_check.auth_required(session, users):
        raise CommandError(HELLO_NOAUTH)
    conn.set_protocol(protocol)
    return {
        b"server": b"redis",
        b"version": REDIS_VERSION.encode(),
        b"proto": protocol,
        b"id": session.id,
        b"mode": b"standalone",
        b"role": b"master",
        b"modules": [],
    }


def _select(conn: ConnectionView, session: Session, args: list[bytes]) -> Reply:
    session.db = parse_db_index(args[1])
    return OK


def _quit(conn: ConnectionView, session: Session, args: list[bytes]) -> Reply:
    session.closing = True
    return OK


def _reset(conn: ConnectionView, session: Session, args: list[bytes]) -> Reply:
    conn.reset_session()
    return Status("RESET")


def _multi(conn: ConnectionView, session: Session, args: list[bytes]) -> Reply:
    if session.in_multi:
        raise CommandError("ERR MULTI calls can not be nested")
    session.in_multi = True
    return OK


def _exec(
    conn: ConnectionView, session: Session, args: list[bytes]
) -> Reply | asyncio.Future[Reply]:
    return conn.exec_transaction()


def _discard(conn: ConnectionView, session: Session, args: list[bytes]) -> Reply:
    if not session.in_multi:
        raise CommandError("ERR DISCARD without MULTI")
    conn.discard_transaction()
    return OK


def _watch(conn: ConnectionView, session: Session, args: list[bytes]) -> Reply:
    if session.in_multi:
        raise CommandError("ERR WATCH inside MULTI is not allowed")
    conn.watch_keys(args[1:])
    return OK


def _unwatch(conn: ConnectionView, session: Session, args: list[bytes]) -> Reply:
    conn.unwatch_keys()
    return OK


# -- the declarations --------------------------------------------------------------------

_SESSION: list[tuple[str, int, str, str, str, str, str, ConnectionHandler]] = [
    ("hello", -1, "noscript loading stale fast no_auth allow_busy", "fast connection",
     "connection", "6.0.0", "Picks the protocol version (2 or 3), optionally authenticates and "
     "names the connection, and answers facts about the server.", _hello),
    ("select", 2, "loading stale fast", "fast connection", "connection", "1.0.0",
     "Makes another database (0-15) the connection's current one.", _select),
    ("quit", -1, "noscript loading stale fast no_auth allow_busy", "fast connection",
     "connection", "1.0.0", "Answers OK and closes the connection.", _quit),
    ("reset", 1, "noscript loading stale fast no_auth allow_busy", "fast connection",
     "connection", "6.2.0", "Puts the connection back in its initial state.", _reset),
    ("multi", 1, "noscript loading stale fast allow_busy", "fast transaction",
     "transactions", "1.2.0", "Begins queueing commands for EXEC.", _multi),
    ("exec", 1, "noscript loading stale skip_slowlog", "slow transaction", "transactions",
     "1.2.0", "Runs the commands queued since MULTI, all at once, unless a watched key "
     "changed.", _exec),
    ("discard", 1, "noscript loading stale fast allow_busy", "fast transaction",
     "transactions", "2.0.0", "Drops the commands queued since MULTI.", _discard),
    ("watch", -2, "noscript loading stale fast allow_busy", "fast transaction",
     "transactions", "2.2.0", "Makes the next EXEC fail if one of these keys changes before "
     "it.", _watch),
    ("unwatch", 1, "noscript loading stale fast allow_busy", "fast transaction",
     "transactions", "2.2.0", "Forgets every key this connection watches.", _unwatch),
]  # fmt: skip

_IN_TRANSACTION = {"select": _select_in_transaction, "unwatch": _unwatch_in_transaction}

# Inside MULTI these run at once instead of being queued (as Redis's processCommand does).
RUN_IN_MULTI: Final = frozenset({"exec", "discard", "multi", "watch", "quit", "reset"})

for _name, _arity, _flags, _acl, _group, _since, _summary, _on_connection in _SESSION:
    _keys = (1, -1, 1) if _name == "watch" else (0, 0, 0)
    _key_flags = "RO" if _name == "watch" else ""
    command(
        _name, _arity, _flags, _keys, _acl, _group, _since, _summary,
        key_flags=_key_flags, on_connection=_on_connection,
    )(_IN_TRANSACTION.get(_name, _handled_by_connection))  # fmt: skip
