"""A client connection's state (`Session`), and the connection's side of the commands that
change it (HELLO, SELECT, QUIT, RESET, WATCH and the transaction commands; see also
`transactions`). Each is declared, with the handler the connection runs, in
`cacheshim.commands.session`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import Error, Reply
from cacheshim.server.clock import wall_ms
from cacheshim.tracking import ClientTracking
from cacheshim.v1 import record_pb2

if TYPE_CHECKING:
    from cacheshim.commands.serverview import ConnectionHandler
    from cacheshim.protocol.resp import Encoder
    from cacheshim.server.shim import Shim


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
    queued_writes: bool = False  # one of the queued commands writes (looked up as queued)
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
    # ACL (cacheshim.acl.check): set up by Shim.new_session.
    user: bytes = b"default"
    authenticated: bool = False
    acl_generation: int = -1
    acl_free: bool = False
    # Closes the connection now (CLIENT KILL from another connection).
    kill: Callable[[], None] | None = None
    # Writes a reply value between replies: pub/sub messages (see cacheshim.hub).
    push: Callable[[Reply], None] | None = None
    # The bytes of output not yet handed to the kernel (CLIENT LIST omem).
    output_bytes: Callable[[], int] | None = None
    # CLIENT TRACKING (cacheshim.tracking).
    tracking: ClientTracking = field(default_factory=ClientTracking)


class SessionCommands:
    """The connection's side of the session commands (a part of `Connection`): it runs the
    handler each declares (`cacheshim.commands.session`), and is the `ConnectionView` that
    handler changes."""

    if TYPE_CHECKING:  # what this part uses of the rest of the connection
        shim: Shim
        encoder: Encoder
        session: Session | None

        def _exec(self, session: Session) -> Reply | asyncio.Future[Reply]:
            raise NotImplementedError

        def _end_multi(self, session: Session) -> None:
            raise NotImplementedError

    def _session_command(
        self, session: Session, handler: ConnectionHandler, args: list[bytes]
    ) -> asyncio.Future[Reply] | None:
        """Run a session command: its reply is written now (None), or its future returned."""
        try:
            reply = handler(self, session, args)
        except CommandError as exc:
            reply = Error(exc.message)
        if isinstance(reply, asyncio.Future):
            return reply
        self.encoder.write(reply)
        return None

    # -- the ConnectionView: on this connection's own session ------------------------------

    def _own(self) -> Session:
        session = self.session
        assert session is not None  # a session command runs on a connection set up
        return session

    def set_protocol(self, protocol: int) -> None:
        self._own().protocol = protocol
        self.encoder.protocol = protocol

    def exec_transaction(self) -> Reply | asyncio.Future[Reply]:
        return self._exec(self._own())

    def discard_transaction(self) -> None:
        session = self._own()
        self._end_multi(session)
        session.watched = {}  # DISCARD forgets the WATCHes, as EXEC does

    def unwatch_keys(self) -> None:
        self._own().watched = {}

    def watch_keys(self, keys: list[bytes]) -> None:
        """Each key counts from this moment (this shim's applied index), unless it is
        watched already (Redis keeps a key's first WATCH). A key that has expired but is not
        removed yet is marked stale: its removal will not count as a change (Redis 7.0)."""
        session = self._own()
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

    def reset_session(self) -> None:
        session = self._own()
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
        self.shim.tracking.disable(session)
        # Back to the default user, authenticated only if it needs no password (Redis's
        # clientSetDefaultAuth).
        default = self.shim.applier.acl.default
        session.user = b"default"
        session.authenticated = default.nopass and default.enabled
        session.acl_generation = -1
