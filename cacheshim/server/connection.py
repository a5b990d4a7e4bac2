"""A client connection: the asyncio protocol around the RESP parser and encoder, the
maxclients check, the hand-off to the read fast path (GET and the common reads), pipelined
writes submitted together, replies written in order, and client-output-buffer-limit kept
as they go out."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import TYPE_CHECKING, cast

from cacheshim.acl import check as acl_check
from cacheshim.clientlimits import OutputGuard, OutputLimit, refuse
from cacheshim.commands.connection import client_line
from cacheshim.hub import Outbox
from cacheshim.protocol.errors import ProtocolError
from cacheshim.protocol.fastreads import serve_reads
from cacheshim.protocol.resp import Encoder, Error, Reply, RequestParser
from cacheshim.server import busy
from cacheshim.server.clock import wall_ms
from cacheshim.server.dispatch import Checked, check
from cacheshim.server.observed import Observed
from cacheshim.server.sessions import Session, SessionCommands
from cacheshim.server.transactions import Transactions

if TYPE_CHECKING:
    from cacheshim.server.shim import Shim

log = logging.getLogger("cacheshim.server")

READ_BUFFER_BYTES = 64 * 1024
# Their confirmations are pushes, which CLIENT REPLY OFF|SKIP does not silence.
SUBSCRIPTION_COMMANDS = frozenset(
    {"subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe"}
)
# Replies of a pipeline of reads are written out (and client-output-buffer-limit checked)
# whenever this much has piled up, not only once the whole pipeline is answered.
OUTPUT_CHECK_BYTES = 64 * 1024


class Connection(Observed, SessionCommands, Transactions, asyncio.Protocol):
    """One client connection: the asyncio protocol, the read fast path, pipelining, replies
    in order and the output limits. Dispatch, the session commands and transactions are its
    parts in `dispatch`, `sessions` and `transactions`; `observed` counts what dispatch runs."""

    def __init__(self, shim: Shim) -> None:
        self.shim = shim
        self.parser = RequestParser()
        self.encoder = Encoder()
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self._busy = False  # a task is awaiting a write; it resumes the pump after
        # A command read while gathering a pipeline of writes, run after their replies.
        self._held: Checked | None = None
        self._plain_writes: set[asyncio.Future[Reply]] = set()
        self._outbox = Outbox(self._push)  # pub/sub messages, in order with the replies
        self._fast_db_index = 0
        self._output = OutputGuard()  # client-output-buffer-limit's soft-limit clock
        self._output_recheck: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if len(self.shim.sessions) >= self.shim.server_config.int_value("maxclients"):
            refuse(cast(asyncio.Transport, transport), self.shim.stats)
            return  # never a client: no session, no transport
        # uvloop's transports implement the interface without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername") or ("?", 0)
        sock = transport.get_extra_info("sockname") or ("?", 0)
        self.session = self.shim.new_session(f"{peer[0]}:{peer[1]}", f"{sock[0]}:{sock[1]}")
        raw_socket = transport.get_extra_info("socket")
        self.session.fd = raw_socket.fileno() if raw_socket is not None else -1
        self.session.kill = self._kill
        self.session.push = self._outbox.push
        self.session.output_bytes = self._output_bytes
        self.shim.stats.connections_received += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self._output_recheck is not None:
            self._output_recheck.cancel()
        if self.session is not None:
            self.session.closing = True
            self.shim.sessions.pop(self.session.id, None)
            self.shim.pubsub.drop(self.session.id)
            self.shim.tracking.disable(self.session)
            self.shim.blocking.disconnected(self.session.id)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.transport is None:  # refused (maxclients) or closed
            return
        self.shim.stats.net_input_bytes += len(data)
        if self._fast_path_open() and self._acl_free():
            resp3 = self.encoder.protocol == 3
            keyspace = self.shim.applier.keyspace
            tally = self.shim.stats.commands.fast  # INFO's counters (cacheshim.observe)
            tally.start(resp3)
            consumed, replies, served, last = serve_reads(
                data, keyspace, self._fast_db_index, wall_ms(), resp3, tally
            )
            if served:
                self._fast_path_served(replies, served, last)
                self._fast_path_counted(tally.end(served), data, consumed)
                if consumed == len(data):
                    return
                data = data[consumed:]
        else:
            self._acl_free()  # keeps the parser's unauthenticated limits up to date
        try:
            self.parser.feed(data)
        except ProtocolError as exc:
            self._protocol_error(exc)
            return
        if not self._busy:
            self._pump()

    # -- the read fast path (cacheshim.protocol.fastreads, fastread for GET) ---------------

    def _fast_path_open(self) -> bool:
        """Whether a read may start with fast reads answered by `serve_reads`: nothing of
        this connection is pending or waiting, and no state of it changes how a read is
        answered (MULTI queues it, linearizable reads wait, CLIENT REPLY drops replies,
        CLIENT PAUSE holds it, ...)."""
        session = self.session
        if (
            session is None
            or self._busy
            or self._held is not None
            or session.in_multi
            or session.linearizable
            or session.reply_off
            or session.reply_skip_current
            or session.reply_skip_next
            or session.closing
            or session.tracking.remembers  # its reads remember keys (Dispatch._read)
            or self.shim.client_pause.end_ms
            or self.shim.loading  # GET answers LOADING (Dispatch)
            or self.shim.script_thread.active  # GET waits, or answers BUSY
            or self.shim.stale()  # GET answers MASTERDOWN (Dispatch)
            or len(self.encoder)
            or not self.parser.idle
            or self.shim.pubsub.restricts(session)
            or self._output_limited(session)
        ):
            return False
        self._fast_db_index = session.db
        return True

    def _acl_free(self) -> bool:
        """Whether this connection's user may run anything (the fast path serves only such
        connections: the default user of a shim without ACL rules, as before). Refreshed when
        the users change (their generation) or the connection authenticates."""
        session = self.session
        assert session is not None
        users = self.shim.applier.acl
        if session.acl_generation != users.generation:
            acl_check.refresh(session, users)
            self.parser.auth_required = acl_check.auth_required(session, users)
        return session.acl_free

    def _fast_path_served(self, replies: bytes, served: int, last: str) -> None:
        session = self.session
        assert session is not None and self.transport is not None
        session.last_command = last
        session.last_active_ms = wall_ms()
        stats = self.shim.stats
        stats.commands_processed += served
        stats.net_output_bytes += len(replies)
        self.transport.write(replies)
        self._check_output()

    # -- processing ----------------------------------------------------------------------

    def _pump(self) -> None:
        """Run commands in order until one must wait for the log; then a task takes over.

        Consecutive plain writes already received (a pipeline) are all submitted before
        waiting, so they travel in one Append; their replies still go out in order.
        """
        session = self.session
        assert session is not None
        while self.transport is not None and not session.closing:
            command = self._held or self._next_command()
            self._held = None
            if command is None:
                break
            if self.shim.client_pause.end_ms and self._paused(session, command.spec):
                self._held = command  # run first once the pause is over
                self._busy = True
                asyncio.get_running_loop().create_task(self._await_pause_then_pump())
                break
            if self.shim.script_thread.active and command.error is None:
                verdict = self.shim.script_thread.verdict(command.spec)
                if verdict == busy.HOLD:  # a script runs: wait up to busy-reply-threshold
                    self._held = command
                    self._busy = True
                    asyncio.get_running_loop().create_task(self._await_script_then_pump())
                    break
                if verdict != busy.RUN:  # BUSY, as Redis's rejectCommand answers it
                    name = command.args[0].lower().decode("utf-8", "surrogateescape")
                    self._refuse(session, name, verdict)
                    continue
            mark = len(self.encoder)
            waiting = self._dispatch(session, command)
            if waiting is None:
                if session.reply_off or session.reply_skip_current:
                    self._drop_reply(session, mark)
                if len(self.encoder) >= OUTPUT_CHECK_BYTES:
                    self._flush()  # checks client-output-buffer-limit as replies pile up
                continue
            pending = [waiting]
            # (Not past a CLIENT CACHING hint: the next command would use it up before this
            # write's record applies and its reads are tracked.)
            while self._is_plain_write(session, waiting) and not session.tracking.caching:
                follow = self._next_command()
                if follow is None:
                    break
                if not follow.plain_write or self._runs_locally(follow):
                    self._held = follow
                    break
                waiting = self._dispatch(session, follow)
                if waiting is None:
                    break
                pending.append(waiting)
            self._busy = True
            self._outbox.expect(pending)
            if pending[0].done():  # from the loop, not from here: that would re-enter _pump
                asyncio.get_running_loop().call_soon(self._reply_when_done, pending, 0)
            else:
                self._reply_when_done(pending, 0)  # only sets the done-callback
            break
        self._flush()
        if session.closing and self.transport is not None and not self._busy:
            self.transport.close()

    def _next_command(self) -> Checked | None:
        """The next command received, looked up and checked (`dispatch.check`), or None."""
        try:
            args = self.parser.next_command()
            self.parser.release()  # a large value's input buffer: not kept while it is written
            return None if args is None else check(args)
        except ProtocolError as exc:
            self._protocol_error(exc)
            return None

    def _replied(
        self, pending: list[asyncio.Future[Reply]], start: int, _: asyncio.Future[Reply]
    ) -> None:
        self._reply_when_done(pending, start)

    def _reply_when_done(self, pending: list[asyncio.Future[Reply]], start: int) -> None:
        """Write the replies of pending[start:] in order as they resolve, then go on with the
        next commands. A done-callback, not a task per wait: writes are the hot path."""
        for i in range(start, len(pending)):
            waiting = pending[i]
            if not waiting.done():
                waiting.add_done_callback(functools.partial(self._replied, pending, i))
                return
            if waiting.cancelled():  # never leave the client without an answer
                reply: Reply = Error("ERR memlog: the write was cancelled")
            elif (exc := waiting.exception()) is not None:
                reply = Error(f"ERR memlog: {exc}")
            else:
                reply = waiting.result()
            self._plain_writes.discard(waiting)
            mark = len(self.encoder)
            self.encoder.write(reply)
            session = self.session
            if session is not None and (session.reply_off or session.reply_skip_current):
                self._drop_reply(session, mark)
            self._outbox.replied()
        self._busy = False
        self._pump()

    async def _await_script_then_pump(self) -> None:
        await self.shim.script_thread.wait()
        self._busy = False
        self._pump()

    async def _await_pause_then_pump(self) -> None:
        await self.shim.client_pause.wait()
        self._busy = False
        self._pump()

    def _drop_reply(self, session: Session, mark: int) -> None:
        """CLIENT REPLY OFF or SKIP: take back the reply written after mark (but not a
        subscription's confirmations: Redis 7.0 sends those as pushes whatever CLIENT REPLY
        says; a SKIP is used up by the command all the same)."""
        if session.last_command not in SUBSCRIPTION_COMMANDS:
            self.encoder.write_raw(self.encoder.take()[:mark])
        session.reply_skip_current = session.reply_skip_next
        session.reply_skip_next = False

    def _push(self, message: Reply) -> None:
        """A pub/sub message (from the outbox): written between replies, never inside one,
        and sent soon (the flush checks client-output-buffer-limit)."""
        self.encoder.write(message)
        if self.transport is not None:
            asyncio.get_running_loop().call_soon(self._flush)

    def _kill(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _flush(self) -> None:
        transport = self.transport
        if transport is not None and len(self.encoder):
            data = self.encoder.take()
            if transport.is_closing():  # closed for its output buffer limit: dropped
                return
            self.shim.stats.net_output_bytes += len(data)
            transport.write(data)
            self._check_output()

    def _check_output(self) -> None:
        """client-output-buffer-limit: close this client now if its unsent output is over
        its class's limit (cacheshim.clientlimits); while it is over the soft limit, look
        again when the soft limit's seconds run out."""
        transport, session = self.transport, self.session
        if transport is None or session is None:
            return
        limit = self._output_limit(session)
        if not (limit.hard_bytes or limit.soft_bytes):
            self._output.soft_since = None
            return
        now = time.monotonic()
        used = self._output_bytes()
        if self._output.exceeded(used, limit, now):
            log.warning(
                "Client %s scheduled to be closed ASAP for overcoming of output buffer limits.",
                client_line(session, wall_ms()).rstrip("\n"),
            )
            self.shim.stats.client_output_buffer_limit_disconnections += 1
            session.closing = True
            self.encoder.take()
            transport.abort()
            return
        wait_s = self._output.recheck_after_s(limit, now)
        if wait_s is not None and self._output_recheck is None:
            self._output_recheck = asyncio.get_running_loop().call_later(
                wait_s, self._recheck_output
            )

    def _output_bytes(self) -> int:
        transport = self.transport
        return len(self.encoder) + (0 if transport is None else transport.get_write_buffer_size())

    def _output_limit(self, session: Session) -> OutputLimit:
        """This client's client-output-buffer-limit: its class's (pubsub while subscribed)."""
        limits = self.shim.output_limits
        limits.update(self.shim.server_config.values["client-output-buffer-limit"])
        return limits.pubsub if self.shim.pubsub.subscribed(session.id) else limits.normal

    def _output_limited(self, session: Session) -> bool:
        """Whether client-output-buffer-limit limits this client (then its GETs take the
        general path, which checks the limit as replies pile up)."""
        limit = self._output_limit(session)
        return bool(limit.hard_bytes or limit.soft_bytes)

    def _recheck_output(self) -> None:
        self._output_recheck = None
        self._check_output()

    def _protocol_error(self, exc: ProtocolError) -> None:
        if exc.send_reply:
            self.encoder.write(Error(exc.message))
        self._flush()
        if self.transport is not None:
            self.transport.close()
