"""A client connection's state (`Session`), and the commands that change it, run by the
connection itself: HELLO, SELECT, QUIT, RESET, WATCH (and the transaction commands, whose
state is the session's too; see `transactions`). Their declarations, for the command table
and for inside a transaction, are in `cacheshim.commands.session`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cacheshim.apply import select_index
from cacheshim.commands.args import parse_int
from cacheshim.commands.connection import valid_client_name
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import OK, Error, Reply, Status
from cacheshim.server.clock import wall_ms
from cacheshim.v1 import record_pb2

if TYPE_CHECKING:
    from cacheshim.protocol.resp import Encoder
    from cacheshim.server.shim import Shim

REDIS_VERSION = "7.0.15"
# Handled by the connection itself (they change its state), not by a table handler.
SESSION_COMMANDS = frozenset(
    {"hello", "select", "quit", "reset", "multi", "exec", "discard", "watch", "unwatch"}
)


@dataclass
class Session:
    """One client connection's state, as CLIENT LIST and friends see it."""

    id: int
    addr: str
    laddr: str
    created_ms: int
    shim: Shim
    name: bytes = b""
    db: int = 0
    protocol: int = 2
    in_multi: bool = False
    multi_error: bool = False
    queued: list[list[bytes]] = field(default_factory=list)
    # WATCH: (db, key) -> the key as the EXEC record carries it, with the index this shim
    # had applied when it was first watched (each WATCH counts from its own moment).
    watched: dict[tuple[int, bytes], record_pb2.WatchedKey] = field(default_factory=dict)
    linearizable: bool = False
    last_command: str = "NULL"
    last_active_ms: int = 0
    closing: bool = False
    # CLIENT REPLY: OFF drops every reply, SKIP the next one (see Connection._drop_reply).
    reply_off: bool = False
    reply_skip_current: bool = False
    reply_skip_next: bool = False
    no_evict: bool = False
    fd: int = -1
    # Closes the connection now (CLIENT KILL from another connection).
    kill: Callable[[], None] | None = None
    # Writes a reply value between replies: pub/sub messages (see cacheshim.hub).
    push: Callable[[Reply], None] | None = None
    # The bytes of output not yet handed to the kernel (CLIENT LIST omem).
    output_bytes: Callable[[], int] | None = None


class SessionCommands:
    """The connection's handling of the session commands (a part of `Connection`)."""

    if TYPE_CHECKING:  # what this part uses of the rest of the connection
        shim: Shim
        encoder: Encoder

        def _exec(self, session: Session) -> asyncio.Future[Reply] | None:
            raise NotImplementedError

        def _end_multi(self, session: Session) -> None:
            raise NotImplementedError

    # -- commands that change the connection -----------------------------------------------

    def _session_command(
        self, session: Session, name: str, args: list[bytes]
    ) -> asyncio.Future[Reply] | None:
        reply: Reply
        if name == "select":
            try:
                session.db = select_index(args[1])
            except CommandError as exc:
                reply = Error(exc.message)
            else:
                reply = OK
        elif name == "quit":
            reply = OK
            session.closing = True
        elif name == "reset":
            self._reset(session)
            reply = Status("RESET")
        elif name == "hello":
            reply = self._hello(session, args[1:])
        elif name == "multi":
            if session.in_multi:
                reply = Error("ERR MULTI calls can not be nested")
            else:
                session.in_multi = True
                reply = OK
        elif name == "discard":
            if not session.in_multi:
                reply = Error("ERR DISCARD without MULTI")
            else:
                self._end_multi(session)
                session.watched = {}  # DISCARD forgets the WATCHes, as EXEC does
                reply = OK
        elif name == "watch":
            if session.in_multi:
                reply = Error("ERR WATCH inside MULTI is not allowed")
            else:
                self._watch(session, args[1:])
                reply = OK
        elif name == "unwatch":
            session.watched = {}
            reply = OK
        else:  # exec
            return self._exec(session)
        self.encoder.write(reply)
        return None

    def _watch(self, session: Session, keys: list[bytes]) -> None:
        """WATCH: each key counts from this moment (this shim's applied index), unless it is
        watched already (Redis keeps a key's first WATCH). A key that has expired but is not
        removed yet is marked stale: its removal will not count as a change (Redis 7.0)."""
        applier = self.shim.applier
        db = applier.keyspace.dbs[session.db]
        now_ms = wall_ms()
        for key in keys:
            slot = (session.db, key)
            if slot not in session.watched:
                session.watched[slot] = record_pb2.WatchedKey(
                    db=session.db, key=key, index=applier.applied_index,
                    stale=db.is_expired(key, now_ms),
                )  # fmt: skip

    def _reset(self, session: Session) -> None:
        self._end_multi(session)
        session.watched = {}
        session.db = 0
        session.protocol = 2
        self.encoder.protocol = 2
        session.name = b""
        session.linearizable = self.shim.config.linearizable_reads
        session.reply_off = session.reply_skip_current = session.reply_skip_next = False
        session.no_evict = False
        self.shim.pubsub.drop(session.id)

    def _hello(self, session: Session, args: list[bytes]) -> Reply:
        protocol = session.protocol
        i = 0
        if args:
            try:
                protocol = parse_int(args[0])
            except CommandError:
                return Error("ERR Protocol version is not an integer or out of range")
            if protocol not in (2, 3):
                return Error(errors.NOPROTO)
            i = 1
        name: bytes | None = None
        while i < len(args):
            opt = args[i].upper()
            if opt == b"AUTH" and i + 2 < len(args):
                # The only user is "default", with no password (any password is accepted);
                # like SETNAME, checked as it is read, before later options.
                if args[i + 1] != b"default":
                    return Error("WRONGPASS invalid username-password pair or user is disabled.")
                i += 3
            elif opt == b"SETNAME" and i + 1 < len(args):
                try:
                    name = valid_client_name(args[i + 1])
                except CommandError as exc:
                    return Error(exc.message)
                i += 2
            else:
                return Error(
                    f"ERR Syntax error in HELLO option '{errors.text_from_bytes(args[i])}'"
                )
        if name is not None:
            session.name = name
        session.protocol = protocol
        self.encoder.protocol = protocol
        return {
            b"server": b"redis",
            b"version": REDIS_VERSION.encode(),
            b"proto": protocol,
            b"id": session.id,
            b"mode": b"standalone",
            b"role": b"master",
            b"modules": [],
        }
