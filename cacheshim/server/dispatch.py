"""Dispatch: one command of a connection, from its name to its answer. The central checks
run here, each once: those of the command alone (unknown command, arity) as it is read
(`check`), those of the session (pub/sub and MULTI restrictions, CLIENT PAUSE) as it runs;
then the command goes where it belongs: the session commands, a blocking write, a plain write (the
writer), a linearizable read (after the read barrier) or a read from memory."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, NamedTuple

from cacheshim import persistence
from cacheshim.acl import check as acl_check
from cacheshim.apply import run
from cacheshim.commands import Command, Ctx, Flag, lookup
from cacheshim.commands.scripting import RUNS_SCRIPTS
from cacheshim.commands.session import RUN_IN_MULTI
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import Error, Reply, Status
from cacheshim.scripting.engine import MoveOffLoop
from cacheshim.server.clock import wall_ms
from cacheshim.server.sessions import Session
from cacheshim.tracking import reads_keys, tracked_keys
from logsvc.client import LogClientError

if TYPE_CHECKING:
    from cacheshim.commands.serverview import ConnectionHandler
    from cacheshim.protocol.resp import Encoder
    from cacheshim.server.shim import Shim


class Checked(NamedTuple):
    """A command as read from the connection, looked up once and through the central checks
    that depend on it alone (unknown command, arity), however long it is held back."""

    args: list[bytes]
    spec: Command | None
    error: str | None

    @property
    def plain_write(self) -> bool:
        """Whether it may join a pipeline of writes submitted together (`Connection._pump`)."""
        spec = self.spec
        # (A call that may turn out to be a read, `local_when`, is checked again as it joins:
        # `Dispatch._runs_locally`.)
        return self.error is None and spec is not None and spec.is_write and not spec.container


def check(args: list[bytes]) -> Checked:
    """Look a command up and run Redis's central checks (processCommand) that depend on the
    command alone: unknown command, unknown subcommand, arity."""
    spec = lookup(args)
    return Checked(args, spec, _check(spec, args))


def _check(spec: Command | None, args: list[bytes]) -> str | None:
    if spec is None:
        return errors.unknown_command(args[0], args[1:])
    if spec.handler is None:  # a container without a known subcommand
        if len(args) < 2:
            return errors.wrong_number_of_arguments(spec.name)
        return errors.unknown_subcommand(args[0], args[1])
    # A subcommand's arity counts the container's name too, as in Redis
    # (object|encoding is 3: OBJECT ENCODING key).
    if not spec.arity_ok(len(args)):
        return errors.wrong_number_of_arguments(spec.full_name)
    return None


class Dispatch:
    """The routing of commands (a part of `Connection`)."""

    if TYPE_CHECKING:  # what this part uses of the rest of the connection
        shim: Shim
        encoder: Encoder
        _plain_writes: set[asyncio.Future[Reply]]

        def _session_command(
            self, session: Session, handler: ConnectionHandler, args: list[bytes]
        ) -> asyncio.Future[Reply] | None:
            raise NotImplementedError

        def _end_multi(self, session: Session) -> None:
            raise NotImplementedError

        def _oom_refusal(self, session: Session, spec: Command | None) -> str | None:
            raise NotImplementedError

    def _is_plain_write(self, session: Session, waiting: asyncio.Future[Reply]) -> bool:
        return not session.in_multi and waiting in self._plain_writes

    def _runs_locally(self, command: Checked) -> bool:
        """A logged command this call of which cannot write (`Command.local_when`): it runs
        as a read, so it cannot join a pipeline of writes (its reply would come first)."""
        spec = command.spec
        return (
            spec is not None
            and spec.local_when is not None
            and spec.local_when(self.shim.applier.scripts, command.args)
        )

    def _paused(self, session: Session, spec: Command | None) -> bool:
        """CLIENT PAUSE: whether this command waits (every command, or the writes)."""
        is_write = spec is not None and spec.is_write
        if spec is not None and spec.name == "exec" and not spec.container:
            is_write = session.queued_writes
        return self.shim.client_pause.holds(is_write)

    def _dispatch(self, session: Session, command: Checked) -> asyncio.Future[Reply] | None:
        """Answer a command now (None) or return the future of its reply. The checks that
        depend on the session (pub/sub, MULTI) run here, as it runs."""
        args, spec = command.args, command.spec
        name = args[0].lower().decode("utf-8", "surrogateescape")
        if session.tracking.caching:
            # CLIENT CACHING counts for the next command (or transaction), whatever CLIENT
            # subcommands come between: dropped once another command ran outside MULTI.
            previous = session.last_command
            if not session.in_multi and not previous.startswith("client|"):
                session.tracking.caching = False
        session.last_command = spec.full_name if spec else name
        session.last_active_ms = wall_ms()
        self.shim.stats.commands_processed += 1
        error = command.error
        if error is None and spec is not None:
            # NOAUTH, then NOPERM (cacheshim.acl.check); a connection that may run anything
            # (acl_free, cached per users' generation) skips both at once.
            users = self.shim.applier.acl
            if session.acl_generation != users.generation or not session.acl_free:
                error = acl_check.refusal(session, users, spec, args)
        error = error or self._oom_refusal(session, spec)  # maxmemory (server/observed.py)
        error = error or self.shim.pubsub.refusal(session, session.last_command)
        if (
            error is None
            and spec is not None
            and Flag.READONLY in spec.flags
            and Flag.STALE not in spec.flags
            and not session.linearizable  # those wait for a read index of their own
            and self.shim.stale()
        ):
            # --max-staleness-ms passed without word from the log (Replica.stale): a local
            # read is refused, as a Redis replica cut off from its master with
            # replica-serve-stale-data no refuses it. Writes go to the log as ever.
            error = errors.MASTERDOWN
        if session.in_multi and name not in RUN_IN_MULTI:
            if error is None and spec is not None and Flag.NO_MULTI in spec.flags:
                error = "ERR Command not allowed inside a transaction"
            if error is not None:
                session.multi_error = True
                self.encoder.write(Error(error))
            else:
                session.queued.append(args)
                if spec is not None and spec.is_write:  # EXEC goes through the log
                    session.queued_writes = True
                self.encoder.write(Status("QUEUED"))
            return None
        # The log was trimmed past this shim and it is rebuilding its state (Replica
        # ._rebootstrap): only the commands Redis runs while loading (INFO; not PING) run.
        if (
            error is None
            and self.shim.loading
            and spec is not None
            and (Flag.LOADING not in spec.flags or name == "exec")
        ):
            error = errors.LOADING
        if error is not None:
            self._refuse(session, name, error)
            return None
        assert spec is not None
        if spec.propose_as is not None:
            try:
                proposed = spec.propose_as(session, args)
            except CommandError as exc:
                self.encoder.write(Error(exc.message))
                return None
            if proposed is not None:  # checked here, then a record like any write
                return self.shim.writer.submit_command(session.db, proposed, origin=session.id)
        if spec.on_connection is not None:
            return self._session_command(session, spec.on_connection, args)
        if name in ("save", "bgsave") and not spec.container:  # through the snapshot store
            return persistence.save_command(self.shim, session, args)
        if spec.local_when is not None and spec.local_when(self.shim.applier.scripts, args):
            pass  # this call cannot write (EVAL of a no-writes script): a read
        elif spec.is_write and Flag.BLOCKING in spec.flags:
            # Not a plain write: it may wait, and nothing after it runs until it answers.
            return self.shim.blocking.execute(session.id, session.db, args)
        elif spec.is_write:
            # A script's calls are checked at apply against its sender's rules then.
            user = session.user if spec.name in RUNS_SCRIPTS else None
            waiting = self.shim.writer.submit_command(
                session.db, args, origin=session.id, user=user
            )
            self._plain_writes.add(waiting)
            return waiting
        if session.linearizable:
            return self._after_barrier(session, args)
        try:
            reply = self._read(session, args)
        except MoveOffLoop:  # a script that runs long: again, on the script thread
            return self._read_on_script_thread(session, args)
        self.encoder.write(reply)
        return None

    def _read_on_script_thread(self, session: Session, args: list[bytes]) -> asyncio.Future[Reply]:
        return self.shim.script_thread.run(args, False, lambda: self._read(session, args))

    def _refuse(self, session: Session, name: str, error: str) -> None:
        """A command the central checks refused, as Redis's rejectCommand answers it: inside
        MULTI the transaction is marked failed (also for DISCARD, WATCH, MULTI ...), and a
        refused EXEC, in MULTI or not, discards the transaction and forgets the WATCHes."""
        if name == "exec":
            self._end_multi(session)
            session.watched = {}
            reason = error[4:] if error.startswith("ERR ") else error
            self.encoder.write(Error(f"EXECABORT Transaction discarded because of: {reason}"))
            return
        if session.in_multi:
            session.multi_error = True
        self.encoder.write(Error(error))

    def _read(self, session: Session, args: list[bytes], movable: bool = True) -> Reply:
        """A read served from memory. A script call that runs long raises MoveOffLoop
        (`movable`; not inside a transaction, whose reads have run already)."""
        applier = self.shim.applier
        ctx = Ctx(applier.keyspace, session.db, wall_ms(), 0, self.shim.read_rng, acl=applier.acl)
        ctx.script_movable = movable
        ctx.session = session
        ctx.scripts = applier.scripts
        ctx.user = session.user  # a script's calls are checked against this user's rules
        denied: list[tuple[int, bytes, bytes]] = []
        ctx.acl_denied = denied
        reply = run(ctx, args)
        for why, obj, username in denied:
            acl_check.log_refusal(session, why, "lua", obj, username)
        session.db = ctx.db_index  # SELECT queued in a transaction that only reads
        if session.tracking.remembers:  # client-side caching (cacheshim.tracking)
            spec = lookup(args)
            if spec is not None and reads_keys(spec, ctx):
                self.shim.tracking.remember(session, tracked_keys(spec, args))
        return reply

    def _after_barrier(self, session: Session, args: list[bytes]) -> asyncio.Future[Reply]:
        async def barrier_then_read() -> Reply:
            try:
                await self.shim.read_barrier()
            except LogClientError as exc:
                return _barrier_error(f"the log confirmed no read index: {exc}")
            except TimeoutError:
                return _barrier_error(
                    f"this shim had not applied the log up to the read index within "
                    f"{self.shim.config.write_timeout_s:g}s"
                )
            await self.shim.script_thread.idle()  # (a call there holds the keyspace)
            try:
                return self._read(session, args)
            except MoveOffLoop:
                return await self._read_on_script_thread(session, args)

        return asyncio.ensure_future(barrier_then_read())


def _barrier_error(why: str) -> Error:
    """A linearizable read that could not be served (nothing was read)."""
    text = f"ERR memlog: {why}; the linearizable read was not served"
    return Error(text.replace("\r", " ").replace("\n", " "))
