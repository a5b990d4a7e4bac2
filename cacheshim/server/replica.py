"""The replica: the shim's copy of the data follows the log. Records arrive from the
zone-local node's Read stream, or straight from the writer when this shim's own Append is
next in line. Both go through `_receive`, the one path to apply: each record is applied
once, in log order, whichever source brings it first; `_apply` then answers the writers
waiting for it, wakes blocked clients and `wait_applied`'s callers.

A record whose script runs long is applied on the script thread (`_apply_on_script_thread`)
while later records wait (`_hold_records`), and a deferred script of this shim's client runs
as a preview (`_preview`): these stay here, beside the one path to apply they pause, which
is why the module is a little over 500 lines."""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, cast

from cacheshim.acl import check as acl_check
from cacheshim.apply import run
from cacheshim.commands import Ctx
from cacheshim.protocol.resp import Error
from cacheshim.scripting.engine import DEFERRED, MoveOffLoop, WantsWrite
from cacheshim.server.busy import HubOnLoop
from cacheshim.server.clock import wall_ms
from cacheshim.server.expirer import is_expiry_record
from cacheshim.server.writer import record_for
from cacheshim.snapshot import bootstrap
from cacheshim.types.keyspace import LOOKUPS
from cacheshim.v1 import record_pb2
from logsvc.client import LogClientError, TrimmedError
from logsvc.v1 import log_pb2

if TYPE_CHECKING:
    import random
    from collections.abc import AsyncGenerator, Iterator

    from cacheshim.apply import Applier
    from cacheshim.blocking import Blocker
    from cacheshim.hub import Hub
    from cacheshim.protocol.resp import Reply
    from cacheshim.server.busy import ScriptThread
    from cacheshim.server.sessions import Session
    from cacheshim.server.shim import ShimConfig
    from cacheshim.server.writer import Writer
    from cacheshim.serverstate import ServerStats
    from cacheshim.tracking import By, Tracking
    from cacheshim.v1 import record_pb2
    from logsvc.client import LogClient

# How long a starting shim waits for a quorum to confirm the commit index it catches up with.
READ_INDEX_AT_START_S = 5.0

STATUS_WARNING_S = 5.0
log = logging.getLogger("cacheshim.server")

# Records per message of the apply loop's Read stream: the node bounds a message by records
# only, so 32 records of up to 1 MiB (the log's default limit) stay well under gRPC's 64 MiB.
READ_BATCH_RECORDS_MAX = 32
# A Read stream that brings nothing for this long while the log has committed records this
# shim lacks is left for the next node (checked every STREAM_CHECK_S).
STREAM_STALL_S = 0.5
STREAM_CHECK_S = 0.1
# A following Read stream brings a keepalive every quarter second while there is nothing new
# (logsvc.node.READ_KEEPALIVE_S). One silent this long (no message naming a leader: the node
# is paused, cut off, or knows no leader) is left for the next node, lagging or not.
STREAM_SILENT_S = 1.0


class Replica:
    """Applying the log (a part of `Shim`)."""

    if TYPE_CHECKING:  # what this part uses of the rest of the shim
        config: ShimConfig
        applier: Applier
        writer: Writer
        blocking: Blocker
        stats: ServerStats
        sessions: dict[int, Session]
        pubsub: Hub
        script_thread: ScriptThread
        tracking: Tracking
        read_rng: random.Random
        log_reader_client: LogClient
        log_leader: str
        # True while the shim rebuilds its state after the log was trimmed past it: commands
        # are refused with LOADING (cacheshim.server.dispatch) and nothing else applies.
        loading: bool
        caught_up_index: int
        _index_waiters: list[tuple[int, int, asyncio.Future[None]]]
        _tickets: Iterator[int]

    # The Read stream's watch (`_watch_stream`): the highest index known committed (a read
    # index, an own Append), when the stream last delivered, the node to read from next.
    _known_commit = 0
    _stream_at = 0.0
    _stream_prefer = ""
    _stream: asyncio.Task[None]
    # The records held while a script call runs on the script thread, and the index the next
    # one must have (`_receive`).
    _held_records: deque[tuple[int, bytes]] | None = None
    _held_next = 0
    # When the stream last brought a record or a keepalive of a node that knows a leader.
    _stream_heard_at = 0.0
    # When the shim last heard from a live log (time.monotonic()): a record or such a
    # keepalive on its Read stream, a quorum-confirmed read index, an own Append committed.
    # The staleness --max-staleness-ms bounds (`log_silent_ms`).
    _log_heard_at = 0.0

    def _heard_from_log(self) -> None:
        self._log_heard_at = time.monotonic()

    def log_silent_ms(self) -> int:
        """How long since the shim last heard from a live log (INFO's log_silent_ms)."""
        return int((time.monotonic() - self._log_heard_at) * 1000)

    def stale(self) -> bool:
        """Whether local reads are refused: --max-staleness-ms is on and passed."""
        limit = self.config.max_staleness_ms
        return limit > 0 and self.log_silent_ms() > limit

    async def _commit_index(self) -> int:
        """The commit index to catch up with before serving. A node's Status may lag: a
        follower learns of a commit a moment after the leader, so a shim restarted right
        after another shim's acknowledged write could open without it. So: the highest
        commit index the nodes report, raised to a quorum-confirmed one (ReadIndex) when a
        quorum answers within READ_INDEX_AT_START_S; without a quorum, what the nodes say."""
        deadline = time.monotonic() + 60
        warn_at = time.monotonic() + STATUS_WARNING_S
        errors: list[str] = []
        while True:
            reported: list[int] = []
            errors.clear()
            for address in self.log_reader_client.addresses:
                try:
                    st = await self.log_reader_client.status(address)
                except Exception as exc:  # a node down: ask the next one
                    errors.append(str(exc))  # said below if none answers (bad credentials?)
                    continue
                if not reported:
                    self.log_leader = st.header.leader_address
                reported.append(st.commit_index)
            if reported:
                try:
                    async with asyncio.timeout(READ_INDEX_AT_START_S):
                        confirmed = await self.log_reader_client.read_index()
                except (LogClientError, TimeoutError) as exc:
                    log.warning("no quorum-confirmed commit index at start (%s)", exc)
                    confirmed = 0
                return max(*reported, confirmed)
            if time.monotonic() > deadline:
                raise RuntimeError("no log node answered Status within 60s: " + "; ".join(errors))
            if time.monotonic() >= warn_at:
                warn_at = time.monotonic() + STATUS_WARNING_S
                log.warning("no log node answers Status yet: %s", "; ".join(errors))
            await asyncio.sleep(0.2)

    async def _apply_loop(self) -> None:
        """Apply every committed record in order, forever: a failure is logged and the loop
        goes on from the next record it has not applied (it never dies silently). The Read
        stream runs in a task of its own, which `_watch_stream` ends when it stalls; the
        loop then reads from the next node."""
        loop = asyncio.get_running_loop()
        self._stream_at = self._stream_heard_at = loop.time()
        self._heard_from_log()  # it has just caught up with a commit index the log gave
        self._stream_prefer = self.config.local_log_address
        watch = asyncio.create_task(self._watch_stream(), name="stream-watch")
        try:
            await self._stream_loop()
        finally:
            watch.cancel()

    async def _stream_loop(self) -> None:
        while True:
            stream = self._stream = asyncio.create_task(
                self._follow_stream(self._stream_prefer), name="read-stream"
            )
            try:
                await asyncio.wait({stream})
            except asyncio.CancelledError:
                stream.cancel()
                raise
            if stream.cancelled():  # stalled: _watch_stream chose the next node
                continue
            try:
                stream.result()
            except TrimmedError as exc:
                await self._rebootstrap(exc)
            except LogClientError as exc:
                log.error("reading the log failed: %s; retrying", exc)
                await asyncio.sleep(0.5)
            except Exception:
                log.exception(
                    "the apply loop failed after record %d; going on", self.applier.applied_index
                )
                await asyncio.sleep(0.5)

    async def _follow_stream(self, prefer: str) -> None:
        loop = asyncio.get_running_loop()
        records = self.log_reader_client.read(
            self.applier.applied_index + 1,
            follow=True,
            batch_records_max=READ_BATCH_RECORDS_MAX,
            prefer=prefer,
            on_header=self._stream_header,
        )
        try:
            async for index, payload in records:
                self._stream_at = self._stream_heard_at = loop.time()
                self._heard_from_log()
                self._receive(index, payload)
        finally:  # cancelled (stalled): its gRPC call ends now, not when collected
            await cast("AsyncGenerator[tuple[int, bytes], None]", records).aclose()

    def _stream_header(self, header: log_pb2.ResponseHeader) -> None:
        """A message of the Read stream (records or a keepalive): the node's commit index
        is known committed; a node that knows a leader vouches that the log is alive."""
        self._known_commit = max(self._known_commit, header.commit_index)
        if header.leader_id:
            self._stream_heard_at = asyncio.get_running_loop().time()
            self._heard_from_log()
            self.log_leader = header.leader_address or self.log_leader

    async def _watch_stream(self) -> None:
        """A node that stops delivering (paused, cut off, restarting) while the log has
        committed records this shim has not applied (a read index, an own Append or a
        node's header said so) is left after STREAM_STALL_S: the stream goes on from the
        next node. An idle stream is left only when it is silent, its keepalives too (or
        they name no leader), for STREAM_SILENT_S."""
        loop = asyncio.get_running_loop()
        lag_since: float | None = None
        while True:
            await asyncio.sleep(STREAM_CHECK_S)
            now = loop.time()
            silent_s = now - self._stream_heard_at
            if self.loading:
                lag_since = None
                continue
            if silent_s >= STREAM_SILENT_S:
                stalled_s = silent_s
            elif (
                self._known_commit <= self.applier.applied_index
                or self._held_records is not None  # held behind a script call, not stalled
            ):
                lag_since = None
                continue
            else:
                if lag_since is None:
                    lag_since = now
                stalled_s = now - max(lag_since, self._stream_at)
                if stalled_s < STREAM_STALL_S:
                    continue
            addresses = self.log_reader_client.addresses
            current = self.log_reader_client.read_from or self._stream_prefer
            at = addresses.index(current) if current in addresses else -1
            self._stream_prefer = addresses[(at + 1) % len(addresses)]
            log.warning(
                "the Read stream from %s brought nothing for %.1fs (records up to %d are "
                "known committed, applied %d); reading from %s",
                current, stalled_s, self._known_commit, self.applier.applied_index,
                self._stream_prefer,
            )  # fmt: skip
            lag_since = now
            self._stream_at = self._stream_heard_at = now
            self._stream.cancel()

    async def _rebootstrap(self, exc: TrimmedError) -> None:
        """The log was trimmed past what this shim applied (it was paused or cut off while
        the others went on and a snapshot let the log trim): what it holds is stale and the
        records it lacks are gone. It stops serving (LOADING), restores the newest snapshot
        and replays the log after it up to the commit index confirmed now, exactly as at
        start, then serves again. Its writes acknowledged before stay acknowledged: they are
        in the log, so in the snapshot or in the records replayed after it."""
        self.loading = True
        await self.script_thread.idle()  # (a call on the script thread finishes first)
        self._held_records = None  # the replay brings them
        behind = self.applier.applied_index
        self.applier.scripts.engine.offload = False  # the replay runs every call here
        log.error(
            "the log was trimmed past this shim (it had applied %d; %s): refusing commands "
            "with LOADING while it restores the newest snapshot",
            behind, exc,
        )  # fmt: skip
        while True:  # until it holds a whole state again: never back to serving a part
            try:
                target = await self._commit_index()
                done = await bootstrap.recover(
                    self.applier, self.log_reader_client, target, self._apply
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("rebuilding the state failed; trying again")
                await asyncio.sleep(bootstrap.RETRY_S)
                continue
            break
        self._release_index_waiters()
        # What changed between the state it had and the snapshot was never applied here:
        # tracking clients drop every key, as a Redis replica's full resync tells them.
        self.tracking.deliver([(None, None)])
        self.caught_up_index = target
        self.loading = False
        self._serve_scripts()
        log.info(
            "caught up again: restored snapshot %d, replayed %d records to %d (was at %d); "
            "serving",
            done.snapshot_index, done.replayed_records, done.applied_index, behind,
        )  # fmt: skip

    def _release_index_waiters(self) -> None:
        """Wake wait_applied's callers up to the applied index (a restored snapshot may
        jump past their index without applying it here)."""
        waiters = self._index_waiters
        while waiters and waiters[0][0] <= self.applier.applied_index:
            waiter = heapq.heappop(waiters)[2]
            if not waiter.done():
                waiter.set_result(None)

    def _receive(self, index: int, payload: bytes) -> None:
        """A committed record, from the Read stream or from this shim's own Append: applied
        unless it was already (the other source brought it first). Out of order, it raises
        (`Applier.apply`), and the apply loop reads again from the next record to apply.
        While a script call runs on the script thread, records are held in order (the
        stream brings every record in order; a copy out of turn is dropped) and applied
        when it ends (`_release_records`)."""
        held = self._held_records
        if held is not None:
            if index == self._held_next:
                held.append((index, payload))
                self._held_next = index + 1
            return
        if index > self.applier.applied_index:
            self._apply(index, payload)

    def _serve_scripts(self) -> None:
        """The Lua engine as a serving shim runs it: long calls leave the event loop, and
        the commands scripts run are shown to MONITOR ("[<db> lua]" lines, as Redis shows
        them; on every shim for a script applied from the log)."""
        engine = self.applier.scripts.engine
        engine.offload = True
        monitors = self.stats.monitors
        loop = asyncio.get_running_loop()

        def feed(db: int, args: list[bytes]) -> None:
            if not monitors.watchers:
                return
            if engine.threaded:  # on the script thread: the connections are the loop's
                loop.call_soon_threadsafe(monitors.feed, db, "lua", list(args))
            else:
                monitors.feed(db, "lua", args)

        engine.monitor = feed

    def _hold_records(self, next_index: int) -> None:
        if self._held_records is None:
            self._held_records = deque()
            self._held_next = next_index

    def _hold_new_records(self) -> None:
        """A call starts on the script thread: records that come from now on wait (a local
        call's reads must not see them half applied, nor the loop enter Lua meanwhile)."""
        self._hold_records(self.applier.applied_index + 1)

    def _release_records(self) -> None:
        """The script thread is idle again: apply the records held meanwhile, in order, until
        one of them moves a call to the thread again (the rest wait behind it)."""
        held = self._held_records
        if held is None or self.script_thread.active:
            return
        self._held_records = None
        while held:
            index, payload = held.popleft()
            self._receive(index, payload)
            later = self._holding()
            if later is not None:  # that one moved to the script thread
                held.extend(later)
                self._held_records = held
                if held:
                    self._held_next = max(self._held_next, held[-1][0] + 1)
                return

    def _holding(self) -> deque[tuple[int, bytes]] | None:
        return self._held_records

    def _apply(self, index: int, payload: bytes) -> None:
        keyspace = self.applier.keyspace
        if keyspace.changes is not self.tracking.feed:  # clients track here (or no longer)
            keyspace.feed_changes(self.tracking.feed)
        found, missed = LOOKUPS  # apply's lookups are no keyspace hits (INFO)
        try:
            record, reply = self.applier.apply(index, payload)
        except MoveOffLoop:
            self._apply_on_script_thread(index, payload)
            return
        finally:
            excluded = self.stats.commands.lookups_excluded
            excluded[0] += LOOKUPS[0] - found
            excluded[1] += LOOKUPS[1] - missed
        self._applied(index, record, reply)

    def _apply_on_script_thread(self, index: int, payload: bytes) -> None:
        """A script of this record ran long without changing anything: apply the record
        again, from its start, on the script thread (cacheshim.server.busy); the records
        after it wait."""
        self._hold_records(index + 1)
        applier = self.applier
        loop = asyncio.get_running_loop()
        hub = applier.pubsub

        def work() -> tuple[record_pb2.Record | None, Reply]:
            if hub is not None:
                applier.pubsub = cast("Hub", HubOnLoop(hub, loop))
            try:
                return applier.apply(index, payload)
            finally:
                applier.pubsub = hub

        def then(future: asyncio.Future[tuple[record_pb2.Record | None, Reply]]) -> None:
            if future.cancelled() or future.exception() is not None:
                log.error("record %d failed on the script thread: %r", index, future)
                return
            record, reply = future.result()
            self._applied(index, record, reply)

        self.script_thread.run(self._record_args(payload), True, work, then)

    @staticmethod
    def _record_args(payload: bytes) -> list[bytes]:
        """The command a record holds (what FUNCTION STATS shows of a running call)."""
        try:
            record = record_pb2.Record.FromString(payload)
            return list(record.commands[0].args)
        except Exception:
            return [b"eval"]

    def _applied(self, index: int, record: record_pb2.Record | None, reply: Reply) -> None:
        if record is not None and self.stats.monitors.watchers:
            self._monitored(index, record)
        # What follows only tells waiting clients: a failure there must not keep the
        # others waiting (the index waiters below are released whatever happens).
        deferred = reply is DEFERRED and record is not None and self._waits_for(record)
        # Client-side caching: what the record changed (and read), resolved to this shim's
        # clients while the writer still knows whose proposal it was; told after the replies.
        invalidations = self.tracking.take(self._proposer_of) if self.tracking.feed else None
        try:
            if record is not None and not deferred:
                origin = self.writer.applied(record, reply)
                if self.applier.denied and origin is not None:
                    self._log_script_refusals(origin)
        except Exception:
            log.exception("answering the writer of record %d failed", index)
        try:
            self.blocking.after_apply(record, reply)
        except Exception:
            log.exception("serving blocked clients after record %d failed", index)
        if invalidations:
            try:
                self.tracking.deliver(invalidations)
            except Exception:
                log.exception("client-side caching invalidations of record %d failed", index)
        if self.applier.acl.dropped or self.applier.acl.rechannelled:
            self._close_clients_acl_revoked()
        waiters = self._index_waiters
        while waiters and waiters[0][0] <= index:
            waiter = heapq.heappop(waiters)[2]
            if not waiter.done():
                waiter.set_result(None)
        if deferred:
            assert record is not None
            self._preview(record)

    def _proposer_of(self, by: By) -> int | None:
        """This shim's client that proposed a record (or the blocked command it runs again),
        or None."""
        if by.shim_id != self.writer.shim_id:
            return None
        origin = self.writer.origin_of(by.proposal_id)
        return origin if origin is not None else self.blocking.session_of(by.proposal_id)

    def _waits_for(self, record: record_pb2.Record) -> bool:
        """Whether a client of this shim waits for this record's reply."""
        return (
            record.shim_id == self.writer.shim_id
            and record.proposal_id in self.writer._waiting  # (read only)
        )

    def _preview(self, record: record_pb2.Record) -> None:
        """A script of this shim's client was deferred at apply (it ran long without
        changing anything; every shim left it there alike): run it here, on the script
        thread, as a preview that may read but not write, which SCRIPT KILL and FUNCTION KILL
        may end. If it ends, its reply is the client's. If it comes to a write, it is
        proposed again, as a record of its own that runs to its end at apply on every shim
        (a one-command transaction: never deferred), and that record's reply is the
        client's (docs/decisions/0004-lua.md)."""
        args = list(record.commands[0].args)
        applier = self.applier
        db, user = record.db, record.user or None
        self._hold_records(applier.applied_index + 1)

        def work() -> Reply | None:
            engine = applier.scripts.engine
            ctx = Ctx(applier.keyspace, db, wall_ms(), 0, self.read_rng, acl=applier.acl)
            ctx.scripts, ctx.user = applier.scripts, user
            engine.preview = True
            try:
                return run(ctx, args)
            except WantsWrite:
                return None
            finally:
                engine.preview = False

        def then(future: asyncio.Future[Reply | None]) -> None:
            if future.cancelled() or future.exception() is not None:
                self.writer.applied(record, Error("ERR memlog: the script's preview failed"))
                return
            reply = future.result()
            if reply is not None:
                self.writer.applied(record, reply)
                return
            again = record_for(db, [args], transaction=True)
            if user is not None:
                again.user = user
            self.writer.submit(again).add_done_callback(
                lambda done: self.writer.applied(record, _only_reply(done))
            )

        self.script_thread.run(args, False, work, then)

    def _monitored(self, index: int, record: record_pb2.Record) -> None:
        """MONITOR's lines for an applied record: its commands, marked as from the log. Not
        for this shim's own single commands: they show once, as served to their clients (as
        Redis shows a command once, after it ran). A transaction of this shim's shows its
        commands here, between the served MULTI and EXEC lines, as Redis shows them at EXEC."""
        if record.shim_id == self.writer.shim_id and not record.transaction:
            return
        source = f"log:{record.shim_id or '?'}:{index}"
        for command in record.commands:
            if command.args and not is_expiry_record(list(command.args)):
                self.stats.monitors.feed(record.db, source, list(command.args))

    def _log_script_refusals(self, origin: int) -> None:
        """The ACL refusals of the script calls of a record this shim proposed, in its ACL
        LOG with the connection that sent it (the other shims log none: it is not theirs)."""
        session = self.sessions.get(origin)
        if session is None:  # gone meanwhile: no client to describe
            return
        for why, obj, username in self.applier.denied:
            acl_check.log_refusal(session, why, "lua", obj, username)

    def _close_clients_acl_revoked(self) -> None:
        """As Redis does, after the reply of the command that did it: ACL DELUSER and ACL
        LOAD close the connections of the users they removed or replaced; an ACL SETUSER
        that changed a user's channel rules closes its connections subscribed to a channel
        or pattern the user may no longer use."""
        users = self.applier.acl
        dropped, rechannelled = users.dropped, users.rechannelled
        users.dropped, users.rechannelled = set(), set()
        for session in list(self.sessions.values()):
            if not session.authenticated:
                continue
            if session.user in dropped or (
                session.user in rechannelled and self._subscriptions_revoked(session)
            ):
                session.closing = True  # a reply being written still goes out first
                if session.kill is not None:
                    asyncio.get_running_loop().call_soon(session.kill)

    def _subscriptions_revoked(self, session: Session) -> bool:
        user = self.applier.acl.get(session.user)
        if user is None:
            return True
        channels, patterns, shard_channels = self.pubsub.subscriptions(session.id)
        return any(not user.channel_allowed(c, False) for c in (*channels, *shard_channels)) or any(
            not user.channel_allowed(p, True) for p in patterns
        )

    def _apply_committed(self, first_index: int, payloads: list[bytes]) -> None:
        """Our own Append was committed at first_index..: if nothing comes before it that
        this shim has not applied, apply what of it the local node's Read stream has not
        brought yet, instead of waiting for the stream (whose copies are then skipped,
        `_receive`). The bytes are the log's: an
        Append's records are stored as sent, also when a retry is answered as a duplicate."""
        self._known_commit = max(self._known_commit, first_index + len(payloads) - 1)
        self._heard_from_log()
        if self.loading:
            return  # the state is being rebuilt (`_rebootstrap`): the replay brings it
        if self.applier.applied_index < first_index - 1:
            return  # others' records come first: the Read stream brings all in order
        for offset, payload in enumerate(payloads):
            self._receive(first_index + offset, payload)

    async def wait_applied(self, index: int, timeout_s: float | None) -> None:
        """Until this shim has applied `index` (TimeoutError after timeout_s, if given)."""
        if self.applier.applied_index >= index:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._index_waiters, (index, next(self._tickets), waiter))
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        finally:
            waiter.cancel()  # a timed-out waiter is dropped from the heap when its index comes

    async def read_barrier(self) -> None:
        """Linearizable reads: apply up to a quorum-confirmed commit index first. Any
        node may confirm it (the zone's node first); while none can (no leader), this
        waits, all of it bounded by the write timeout: then LogClientError (no index) or
        TimeoutError (not applied that far in time)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.write_timeout_s
        index = await self.log_reader_client.read_index(
            self.config.local_log_address, timeout_s=self.config.write_timeout_s
        )
        self._known_commit = max(self._known_commit, index)
        self._heard_from_log()
        await self.wait_applied(index, max(0.0, deadline - loop.time()))


def _only_reply(done: asyncio.Future[Reply]) -> Reply:
    """The reply of a one-command transaction record (a deferred script proposed again)."""
    if done.cancelled():
        return Error("ERR memlog: the write was cancelled")
    if (exc := done.exception()) is not None:
        return Error(f"ERR memlog: {exc}")
    reply: Reply = done.result()
    if isinstance(reply, list) and len(reply) == 1:
        only: Reply = reply[0]
        return only
    return reply
