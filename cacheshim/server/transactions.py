"""MULTI/EXEC on a connection: a transaction that writes becomes one record (with the keys
it watched and the applied index each was watched at; apply checks them); one that only
reads runs here, at once."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from cacheshim.apply import expired_since_watch, select_index, watch_broken
from cacheshim.commands.scripting import runs_script
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import NULL_ARRAY, Error, Reply
from cacheshim.server.clock import wall_ms
from cacheshim.server.sessions import Session
from cacheshim.server.writer import record_for

if TYPE_CHECKING:
    from cacheshim.protocol.resp import Encoder
    from cacheshim.server.shim import Shim


class Transactions:
    """EXEC and the end of a transaction (a part of `Connection`)."""

    if TYPE_CHECKING:  # what this part uses of the rest of the connection
        shim: Shim
        encoder: Encoder

        def _read(self, session: Session, args: list[bytes], movable: bool = True) -> Reply:
            raise NotImplementedError

    def _exec(self, session: Session) -> Reply | asyncio.Future[Reply]:
        """EXEC (`cacheshim.commands.session`): the reply, or its future if it writes."""
        if not session.in_multi:
            return Error("ERR EXEC without MULTI")
        queued, watched = session.queued, list(session.watched.values())
        failed, writes = session.multi_error, session.queued_writes
        self._end_multi(session)
        session.watched = {}
        if failed:
            return Error("EXECABORT Transaction discarded because of previous errors.")
        if not writes:
            # Only reads: run them here, atomically (nothing else runs meanwhile).
            keyspace = self.shim.applier.keyspace
            if watch_broken(keyspace, watched) or expired_since_watch(keyspace, watched, wall_ms()):
                return NULL_ARRAY
            return [self._read(session, a, movable=False) for a in queued]
        record = record_for(session.db, queued, transaction=True)
        record.watched.extend(watched)  # apply checks them (cacheshim.apply.watch_broken)
        if any(runs_script(args) for args in queued):  # its calls are checked at apply
            record.user = session.user
        for args in queued:  # SELECT inside the transaction moves the connection too
            if args[0].lower() == b"select":
                with contextlib.suppress(CommandError):
                    session.db = select_index(args[1])
        return self.shim.writer.submit(record, origin=session.id)

    def _end_multi(self, session: Session) -> None:
        session.in_multi = False
        session.multi_error = False
        session.queued = []
        session.queued_writes = False
