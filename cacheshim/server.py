"""The shim: a Redis server whose writes go through the log and whose reads come from memory.

    connections --(writes: records)--> Writer --Append--> logsvc leader
    logsvc (zone-local node) --Read(follow)--> apply loop --> Applier (keyspace)
                                                   '--> the waiting client's reply

A write's reply is the result of applying its record in this shim after commit, so a
client's later reads on this shim always see it. Reads run against local memory at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import grpc

from cacheshim import errors, persistence
from cacheshim.apply import (
    RECORD_BYTES_MAX,
    Applier,
    expired_since_watch,
    run,
    select_index,
    watch_broken,
)
from cacheshim.blocking import Blocker, unblock_record
from cacheshim.commands import Command, Ctx, load_all, lookup
from cacheshim.commands.args import parse_int
from cacheshim.commands.connection import valid_client_name
from cacheshim.errors import CommandError, ProtocolError
from cacheshim.fastread import serve_gets
from cacheshim.keyspace import Database
from cacheshim.pubsub import Hub, Outbox
from cacheshim.resp import NULL_ARRAY, OK, Encoder, Error, Reply, RequestParser, Status
from cacheshim.serverconfig import ServerConfig
from cacheshim.serverstate import ClientPause, ServerStats
from cacheshim.snapshot import bootstrap
from cacheshim.v1 import record_pb2
from logsvc.client import AppendOutcomeUnknown, LogClient, LogClientError

log = logging.getLogger("cacheshim.server")

REDIS_VERSION = "7.0.15"
# Handled by the connection itself (they change its state), not by a table handler.
SESSION_COMMANDS = frozenset(
    {"hello", "select", "quit", "reset", "multi", "exec", "discard", "watch", "unwatch"}
)
READ_BUFFER_BYTES = 64 * 1024
# Their confirmations are pushes, which CLIENT REPLY OFF|SKIP does not silence.
SUBSCRIPTION_COMMANDS = frozenset(
    {"subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe"}
)
# One Append at a time: the writes that arrive meanwhile wait and go together in the next.
# Each Append costs the log leader about a millisecond of CPU whatever its size, so fewer,
# bigger Appends win under load: redis-benchmark SET -c 50 gave 5.8k/s with 1 in flight,
# 4.7k with 2, 4.3k with 4, 3.0k with 16 (docs/bench-shim.md).
APPENDS_IN_FLIGHT_MAX = 1
# When fewer writes wait than the last Append carried, wait this long at most for the rest:
# the writers just answered are sending their next writes. Sent at once, the first of them
# would go in an Append of its own while the others wait a whole round trip for the next,
# and under steady load the halves never merge again (batches of 49 and 1 alternated).
# redis-benchmark SET -c 50 -P 1, paired runs: Appends carry 49 writes on average instead
# of 27; SET/s went 4.1-5.0k -> 6.5-9.5k in one series and 5.8-6.4k -> 5.7-6.8k in another
# (0.25, 1 and 1.5 ms did no better than 0.5).
APPEND_LINGER_S = 0.0005
# Large records travel in pieces of at most PIECE_BYTES each (record.proto, Chunk), well
# under the log's limit per record (logsvc --record-bytes-max, 1 MiB by default), and one
# Append carries at most APPEND_BYTES_MAX (a single record may be more: always one), so a big
# value never becomes one huge Raft entry that holds up heartbeats.
PIECE_BYTES = 256 * 1024
APPEND_BYTES_MAX = 1024 * 1024
APPEND_RECORDS_MAX = 10_000
# The largest write one record may carry, whole: what apply joins at most (RECORD_BYTES_MAX).
WRITE_BYTES_MAX = RECORD_BYTES_MAX
# Records per message of the apply loop's Read stream: the node bounds a message by records
# only, so 32 records of up to 1 MiB (the log's default limit) stay well under gRPC's 64 MiB.
READ_BATCH_RECORDS_MAX = 32
# Redis's default hard client-output-buffer-limit for pubsub clients (32mb).
PUBSUB_OUTPUT_BYTES_MAX = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ShimConfig:
    host: str
    port: int
    log_addresses: tuple[str, ...]
    # The zone-local log node the apply loop reads from (first choice).
    local_log_address: str
    shim_id: str
    zone: str = ""
    linearizable_reads: bool = False
    write_timeout_s: float = 10.0


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


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
    # Writes a reply value between replies: pub/sub messages (see cacheshim.pubsub).
    push: Callable[[Reply], None] | None = None


@dataclass(slots=True)
class _Write:
    """One write in the Writer's queue: a record sent whole, or in pieces (`parts` > 1)."""

    proposal_id: int
    future: asyncio.Future[Reply]
    # The connection it came from: its later writes never overtake it. None: nothing after
    # it overtakes it (a record whose order against others is not known here).
    origin: int | None
    data: bytes  # the serialized record
    time_ms: int = 0
    parts: int = 1
    sent: int = 0  # pieces taken into Appends so far

    def take(self, shim_id: str, data_bytes: int) -> bytes:
        """The next record to append for this write: the whole of it, or its next piece."""
        part = self.sent
        self.sent += 1
        if self.parts == 1:
            payload = self.data
        else:
            payload = record_pb2.Record(
                shim_id=shim_id,
                proposal_id=self.proposal_id,
                time_ms=self.time_ms,
                chunk=record_pb2.Chunk(
                    part=part,
                    parts=self.parts,
                    record_bytes=len(self.data),
                    data=self.data[part * data_bytes : (part + 1) * data_bytes],
                ),
            ).SerializeToString()
        if self.sent == self.parts:
            self.data = b""  # all of it is on its way: let the big bytes go
        return payload


class Writer:
    """Batches the records of all connections into one Append at a time, in order.

    An Append carries at most APPEND_BYTES_MAX: a record over PIECE_BYTES travels as pieces
    (record.proto, Chunk), a few per Append, so a big value never makes one huge Raft entry
    and the writes of other connections go on between its pieces. Each write's fate is its
    own: one over WRITE_BYTES_MAX fails before it is queued, and when the log refuses an
    Append for what it holds, its writes are sent again one by one, so that only the write
    the log refuses fails, with the log's reason.
    """

    def __init__(
        self,
        client: LogClient,
        shim_id: str,
        timeout_s: float,
        committed: Callable[[int, list[bytes]], None] | None = None,
        piece_bytes: int = PIECE_BYTES,
        append_bytes_max: int = APPEND_BYTES_MAX,
        write_bytes_max: int = WRITE_BYTES_MAX,
    ) -> None:
        self.client = client
        self.shim_id = shim_id
        self.timeout_s = timeout_s
        # Told (first index, payloads) of every Append the log confirmed, before anything
        # else runs: the shim applies them there if they are next in line.
        self.committed = committed
        self.piece_bytes = piece_bytes
        self.append_bytes_max = append_bytes_max
        self.write_bytes_max = write_bytes_max
        self._piece_data_bytes = piece_bytes - _piece_envelope_bytes(shim_id)
        if self._piece_data_bytes < 1:
            raise ValueError(f"a piece of {piece_bytes} bytes has no room for data")
        self._queue: list[_Write] = []
        self._waiting: dict[int, asyncio.Future[Reply]] = {}
        self._ids = itertools.count(1)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._appending: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._expected = 0  # writes in the last Append: the writers that will come back

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="writer")

    def submit(self, record: record_pb2.Record, origin: int | None = None) -> asyncio.Future[Reply]:
        record.shim_id = self.shim_id
        record.proposal_id = next(self._ids)
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        size = record.ByteSize()
        if size > self.write_bytes_max:  # refused before it joins any Append
            fut.set_result(self._too_big(size))
            return fut
        self._queue_write(
            record.proposal_id, fut, origin, record.SerializeToString(), record.time_ms
        )
        return fut

    def submit_command(
        self, db: int, args: list[bytes], origin: int | None = None
    ) -> asyncio.Future[Reply]:
        """Submit one command outside a transaction. A large one is encoded straight from
        its arguments, with no Record in between: a big value is copied once less, and
        protobuf's serializer (which copies twice) is not involved."""
        if sum(map(len, args)) <= self.piece_bytes:
            return self.submit(record_for(db, [args], transaction=False), origin)
        proposal_id = next(self._ids)
        time_ms = wall_ms()
        data = encode_command_record(db, time_ms, self.shim_id, proposal_id, args)
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        if len(data) > self.write_bytes_max:
            fut.set_result(self._too_big(len(data)))
        else:
            self._queue_write(proposal_id, fut, origin, data, time_ms)
        return fut

    def _too_big(self, size: int) -> Error:
        return Error(
            f"ERR memlog: the write is {size} bytes as a log record, over the "
            f"{self.write_bytes_max} bytes one write may carry; nothing was applied"
        )

    def _queue_write(
        self,
        proposal_id: int,
        fut: asyncio.Future[Reply],
        origin: int | None,
        data: bytes,
        time_ms: int,
    ) -> None:
        write = _Write(proposal_id, fut, origin, data)
        if len(data) > self.piece_bytes:
            write.parts = -(-len(data) // self._piece_data_bytes)
            write.time_ms = time_ms
        self._queue.append(write)
        self._waiting[proposal_id] = fut
        self._wake.set()

    def applied(self, record: record_pb2.Record, reply: Reply) -> None:
        if record.shim_id != self.shim_id:
            return
        fut = self._waiting.pop(record.proposal_id, None)
        if fut is not None and not fut.done():
            fut.set_result(reply)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                # Several Appends may be in flight: a connection never has writes in two of
                # them (it waits for its replies before submitting more), so order holds.
                while self._queue and self._in_flight < APPENDS_IN_FLIGHT_MAX:
                    if len(self._queue) < self._expected:
                        await self._linger(loop.time() + APPEND_LINGER_S)
                    batch = self._take_batch()
                    if not batch:
                        continue
                    self._expected = len({id(write) for write, _ in batch})
                    self._in_flight += 1
                    task = asyncio.create_task(self._append(batch))
                    self._appending.add(task)  # a reference, so the task is not collected
                    task.add_done_callback(self._appending.discard)
            except Exception:  # never leave the queue unserved: log, and go on
                log.exception("the writer failed; going on")
                self._wake.set()
                await asyncio.sleep(0.01)  # not a busy loop if it keeps failing

    def _take_batch(self) -> list[tuple[_Write, bytes]]:
        """The next Append, up to append_bytes_max (at least one record): first the writes
        sent whole, in queue order, then pieces of large writes with the room left (some
        always kept for them, so neither starves the other).

        Order holds per connection: a write that stays queued (a large one whose pieces go
        on in later Appends, or one that did not fit) holds back the writes its connection
        sent after it; other connections' writes go past it.
        """
        live = [write for write in self._queue if not write.future.done()]  # done: refused
        large = [write for write in live if write.parts > 1]
        room = self.append_bytes_max - (self.piece_bytes if large else 0)
        batch: list[tuple[_Write, bytes]] = []
        size = 0
        ready: list[_Write] = []  # large writes whose pieces may go now
        held: set[int] = set()
        hold_all = False
        for write in live:
            free = not (hold_all or write.origin in held or (write.origin is None and held))
            if free and write.parts == 1:
                if not batch or (
                    size + len(write.data) <= room and len(batch) < APPEND_RECORDS_MAX
                ):
                    payload = write.take(self.shim_id, self._piece_data_bytes)
                    batch.append((write, payload))
                    size += len(payload)
                    continue
                free = False
            if free:
                ready.append(write)
            if write.origin is None:
                hold_all = True
            else:
                held.add(write.origin)
        for write in ready:
            while write.sent < write.parts and (
                not batch
                or (
                    size + self.piece_bytes <= self.append_bytes_max
                    and len(batch) < APPEND_RECORDS_MAX
                )
            ):
                payload = write.take(self.shim_id, self._piece_data_bytes)
                batch.append((write, payload))
                size += len(payload)
        self._queue = [write for write in live if write.sent < write.parts]
        return batch

    async def _linger(self, deadline: float) -> None:
        """Until the deadline at most, wait for as many writes as the last Append had."""
        loop = asyncio.get_running_loop()
        while len(self._queue) < self._expected and (remaining := deadline - loop.time()) > 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wake.wait()

    async def _append(self, batch: list[tuple[_Write, bytes]]) -> None:
        try:
            groups = _by_write(batch)
            try:
                await self._send(batch, alone=len(groups) == 1)
            except LogClientError as exc:
                if len(groups) > 1 and _refused_for_contents(exc):
                    # Nothing of it was appended: each write again on its own, in order, so
                    # that only the write the log refuses fails (with the log's reason).
                    for group in groups:
                        with contextlib.suppress(LogClientError):  # _send failed its write
                            await self._send(group, alone=True)
        except Exception:
            log.exception("an Append failed")
            self._fail(batch, "ERR memlog: the write failed in this shim; it may still be applied")
        finally:
            # Free the slot before waking the loop: a done-callback would run too late,
            # after the loop had already looked, found no slot and gone back to sleep.
            self._in_flight -= 1
            self._wake.set()

    async def _send(self, batch: list[tuple[_Write, bytes]], alone: bool) -> None:
        """One Append. If it fails, its writes get the error (unless the log refused what
        it holds and it carries several writes: the caller sends them apart), and the
        LogClientError is raised."""
        payloads = [payload for _, payload in batch]
        try:
            result = await self.client.append(payloads)
        except LogClientError as exc:
            if alone or not _refused_for_contents(exc):
                self._fail(batch, _append_error(exc, batch, self.timeout_s))
            raise
        try:
            if self.committed is not None and result.last_index - result.first_index + 1 == len(
                payloads
            ):
                self.committed(result.first_index, payloads)
        except Exception:  # the Read stream brings the records all the same
            log.exception("applying our own Append at %d failed", result.first_index)

    def _fail(self, batch: list[tuple[_Write, bytes]], message: str) -> None:
        error = Error(message.replace("\r", " ").replace("\n", " "))
        for write, _ in batch:
            self._waiting.pop(write.proposal_id, None)
            if not write.future.done():
                write.future.set_result(error)


def _by_write(batch: list[tuple[_Write, bytes]]) -> list[list[tuple[_Write, bytes]]]:
    """The batch cut into runs of one write each (a write's pieces are next to each other)."""
    groups: list[list[tuple[_Write, bytes]]] = []
    for entry in batch:
        if groups and groups[-1][0][0] is entry[0]:
            groups[-1].append(entry)
        else:
            groups.append([entry])
    return groups


def _refused_for_contents(exc: LogClientError) -> bool:
    """The log refused an Append for what it holds (nothing of it was appended)."""
    return exc.code is grpc.StatusCode.INVALID_ARGUMENT and not isinstance(
        exc, AppendOutcomeUnknown
    )


def _append_error(exc: LogClientError, batch: list[tuple[_Write, bytes]], timeout_s: float) -> str:
    """The error a failed Append's writes answer: true to what is known of their fate."""
    if isinstance(exc, AppendOutcomeUnknown):
        # A write whose last piece was not in this Append is never applied: its pieces
        # are never all in the log, and apply drops an unfinished sequence.
        complete = all(write.sent == write.parts for write, _ in batch)
        fate = "it may still be applied" if complete else "it will not be applied"
        return (
            f"ERR memlog: the write was not confirmed by the log within {timeout_s:g}s "
            f"(no leader?); {fate}: {exc}"
        )
    return f"ERR memlog: the log refused the write; nothing of it was applied: {exc}"


def _piece_envelope_bytes(shim_id: str) -> int:
    """The most bytes a piece record takes beyond its data (the largest field values, and
    room for the data's length prefix)."""
    envelope = record_pb2.Record(
        shim_id=shim_id,
        proposal_id=2**64 - 1,
        time_ms=-1,
        chunk=record_pb2.Chunk(part=2**32 - 1, parts=2**32 - 1, record_bytes=2**64 - 1),
    )
    return envelope.ByteSize() + 1 + 5 + 5  # data's tag and length, chunk's longer length


class Shim:
    def __init__(self, config: ShimConfig) -> None:
        load_all()
        self.config = config
        self.pubsub = Hub()  # this shim's subscribers; PUBLISH records deliver to them
        self.applier = Applier(self.pubsub)
        local_first = [config.local_log_address] + [
            a for a in config.log_addresses if a != config.local_log_address
        ]
        self.log_writer_client = LogClient(
            list(config.log_addresses),
            producer_id=f"{config.shim_id}-{os.getpid()}-{wall_ms()}",
            timeout_s=config.write_timeout_s,
        )
        self.log_reader_client = LogClient(local_first)
        self.writer = Writer(
            self.log_writer_client,
            config.shim_id,
            config.write_timeout_s,
            committed=self._apply_committed,
        )
        # Clients waiting in BLPOP & co. (cacheshim.blocking), told about every applied record.
        self.blocking = Blocker(self.applier, self.writer)
        self.sessions: dict[int, Session] = {}
        self._client_ids = itertools.count(1)
        # wait_applied's callers: (index, ticket, future), a heap by index.
        self._index_waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._tickets = itertools.count()
        self.started_ms = wall_ms()
        self.read_rng = random.Random()
        self.server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.caught_up_index = 0
        self.log_leader = ""
        self.log_commit_index = 0
        # CONFIG, INFO and CLIENT PAUSE state (local to this shim, never logged).
        self.server_config = ServerConfig.for_shim(config.host, config.port)
        self.stats = ServerStats()
        self.client_pause = ClientPause()
        self.run_id = os.urandom(20).hex()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Restore the newest snapshot, replay the log after it up to the commit index seen
        now, then start serving."""
        target = await self._commit_index()
        # The newest usable snapshot, then the log after it up to target (issue 16).
        await bootstrap.recover(self.applier, self.log_reader_client, target, self._apply)
        self._tasks.append(asyncio.create_task(persistence.watch(self), name="store-watch"))
        self.writer.start()
        self._tasks.append(asyncio.create_task(self._apply_loop(), name="apply-loop"))
        while self.applier.applied_index < target:
            try:
                await self.wait_applied(target, timeout_s=1.0)
            except TimeoutError:
                # `memlog up` repeats this line (cacheshim/launcher.py looks for its words).
                log.info(
                    "catching up: applied %d of %d records", self.applier.applied_index, target
                )
        self.caught_up_index = target
        if self.applier.blocked.owned_by(self.config.shim_id):
            # Clients of an earlier life of this shim, blocked in the applied state: no one
            # waits for them any more (cacheshim.blocking).
            await self.writer.submit(unblock_record(wall_ms(), every=True))
        self.blocking.serving = True
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: Connection(self), self.config.host, self.config.port, reuse_address=True
        )
        log.info(
            "shim %s serving on %s:%d after replaying %d records",
            self.config.shim_id, self.config.host, self.config.port, target,
        )  # fmt: skip

    async def _commit_index(self) -> int:
        deadline = time.monotonic() + 60
        while True:
            for address in self.log_reader_client.addresses:
                try:
                    st = await self.log_reader_client.status(address)
                except Exception:  # a node down: ask the next one
                    continue
                self.log_leader = st.header.leader_address
                return st.commit_index
            if time.monotonic() > deadline:
                raise RuntimeError("no log node answered Status within 60s")
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in self._tasks:
            task.cancel()
        await self.log_writer_client.close()
        await self.log_reader_client.close()

    async def _apply_loop(self) -> None:
        """Apply every committed record in order, forever: a failure is logged and the loop
        goes on from the next record it has not applied (it never dies silently)."""
        while True:
            try:
                async for index, payload in self.log_reader_client.read(
                    self.applier.applied_index + 1,
                    follow=True,
                    batch_records_max=READ_BATCH_RECORDS_MAX,
                ):
                    if index > self.applier.applied_index:  # else applied by _apply_committed
                        self._apply(index, payload)
            except LogClientError as exc:
                log.error("reading the log failed: %s; retrying", exc)
                await asyncio.sleep(0.5)
            except Exception:
                log.exception(
                    "the apply loop failed after record %d; going on", self.applier.applied_index
                )
                await asyncio.sleep(0.5)

    def _apply(self, index: int, payload: bytes) -> None:
        record, reply = self.applier.apply(index, payload)
        # What follows only tells waiting clients: a failure there must not keep the
        # others waiting (the index waiters below are released whatever happens).
        try:
            if record is not None:
                self.writer.applied(record, reply)
        except Exception:
            log.exception("answering the writer of record %d failed", index)
        try:
            self.blocking.after_apply(record, reply)
        except Exception:
            log.exception("serving blocked clients after record %d failed", index)
        waiters = self._index_waiters
        while waiters and waiters[0][0] <= index:
            waiter = heapq.heappop(waiters)[2]
            if not waiter.done():
                waiter.set_result(None)

    def _apply_committed(self, first_index: int, payloads: list[bytes]) -> None:
        """Our own Append was committed at first_index..: if nothing comes before it that
        this shim has not applied, apply it now instead of waiting for the local node's Read
        stream to bring it (the stream's copies are skipped). The bytes are the log's: an
        Append's records are stored as sent, also when a retry is answered as a duplicate."""
        if self.applier.applied_index != first_index - 1:
            return  # others' records come first: the Read stream brings all in order
        for offset, payload in enumerate(payloads):
            self._apply(first_index + offset, payload)

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
        """Linearizable reads: apply up to a quorum-confirmed commit index first."""
        index = await self.log_reader_client.read_index(self.config.local_log_address)
        await self.wait_applied(index, self.config.write_timeout_s)

    def new_session(self, addr: str, laddr: str) -> Session:
        session = Session(
            id=next(self._client_ids), addr=addr, laddr=laddr, created_ms=wall_ms(), shim=self,
            linearizable=self.config.linearizable_reads,
        )  # fmt: skip
        self.sessions[session.id] = session
        return session


def encode_command_record(
    db: int, time_ms: int, shim_id: str, proposal_id: int, args: Sequence[bytes]
) -> bytes:
    """The protobuf encoding of a Record of one command (record.proto), written by hand so
    that a large argument is copied once, into the result."""
    command: list[bytes] = []
    for arg in args:
        command += (b"\x0a", _varint(len(arg)), arg)  # Command.args (1)
    shim = shim_id.encode()
    parts: list[bytes] = []
    if db:
        parts += (b"\x08", _varint(db))  # db (1)
    if time_ms:
        parts += (b"\x10", _varint(time_ms))  # time_ms (2)
    if shim:
        parts += (b"\x1a", _varint(len(shim)), shim)  # shim_id (3)
    if proposal_id:
        parts += (b"\x20", _varint(proposal_id))  # proposal_id (4)
    parts += (b"\x2a", _varint(sum(map(len, command))), *command)  # commands (5)
    return b"".join(parts)


def _varint(value: int) -> bytes:
    """A protobuf varint; negative numbers as their 64-bit two's complement (int64)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def record_for(db: int, commands: Sequence[list[bytes]], transaction: bool) -> record_pb2.Record:
    record = record_pb2.Record(db=db, time_ms=wall_ms(), transaction=transaction)
    for args in commands:
        record.commands.add().args.extend(args)
    return record


class Connection(asyncio.Protocol):
    def __init__(self, shim: Shim) -> None:
        self.shim = shim
        self.parser = RequestParser()
        self.encoder = Encoder()
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self._busy = False  # a task is awaiting a write; it resumes the pump after
        # A command read while gathering a pipeline of writes, run after their replies.
        self._held: list[bytes] | None = None
        self._plain_writes: set[asyncio.Future[Reply]] = set()
        self._outbox = Outbox(self._push)  # pub/sub messages, in order with the replies
        self._fast_db: Database = shim.applier.keyspace.dbs[0]

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername") or ("?", 0)
        sock = transport.get_extra_info("sockname") or ("?", 0)
        self.session = self.shim.new_session(f"{peer[0]}:{peer[1]}", f"{sock[0]}:{sock[1]}")
        raw_socket = transport.get_extra_info("socket")
        self.session.fd = raw_socket.fileno() if raw_socket is not None else -1
        self.session.kill = self._kill
        self.session.push = self._outbox.push
        self.shim.stats.connections_received += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            self.session.closing = True
            self.shim.sessions.pop(self.session.id, None)
            self.shim.pubsub.drop(self.session.id)
            self.shim.blocking.disconnected(self.session.id)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.shim.stats.net_input_bytes += len(data)
        if self._fast_path_open():
            db = self._fast_db
            resp3 = self.encoder.protocol == 3
            consumed, replies, served = serve_gets(data, db.data, db.expires, wall_ms(), resp3)
            if served:
                self._fast_path_served(replies, served)
                if consumed == len(data):
                    return
                data = data[consumed:]
        try:
            self.parser.feed(data)
        except ProtocolError as exc:
            self._protocol_error(exc)
            return
        if not self._busy:
            self._pump()

    # -- the GET fast path (cacheshim.fastread) ------------------------------------------

    def _fast_path_open(self) -> bool:
        """Whether a read may start with plain GETs answered by `serve_gets`: nothing of
        this connection is pending or waiting, and no state of it changes how a GET is
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
            or self.shim.client_pause.end_ms
            or len(self.encoder)
            or not self.parser.idle
            or self.shim.pubsub.restricts(session)
        ):
            return False
        self._fast_db = self.shim.applier.keyspace.dbs[session.db]
        return True

    def _fast_path_served(self, replies: bytes, served: int) -> None:
        session = self.session
        assert session is not None and self.transport is not None
        session.last_command = "get"
        session.last_active_ms = wall_ms()
        stats = self.shim.stats
        stats.commands_processed += served
        stats.net_output_bytes += len(replies)
        self.transport.write(replies)

    # -- processing ----------------------------------------------------------------------

    def _pump(self) -> None:
        """Run commands in order until one must wait for the log; then a task takes over.

        Consecutive plain writes already received (a pipeline) are all submitted before
        waiting, so they travel in one Append; their replies still go out in order.
        """
        session = self.session
        assert session is not None
        while self.transport is not None and not session.closing:
            args = self._held or self._next_command()
            self._held = None
            if args is None:
                break
            if self.shim.client_pause.end_ms and self._paused(session, args):
                self._held = args  # run first once the pause is over
                self._busy = True
                asyncio.get_running_loop().create_task(self._await_pause_then_pump())
                break
            mark = len(self.encoder)
            waiting = self._dispatch(session, args)
            if waiting is None:
                if session.reply_off or session.reply_skip_current:
                    self._drop_reply(session, mark)
                continue
            pending = [waiting]
            while self._is_plain_write(session, waiting):
                follow = self._next_command()
                if follow is None:
                    break
                spec = lookup(follow)
                if (
                    spec is None
                    or not spec.is_write
                    or spec.container
                    or self._check(spec, follow) is not None
                ):
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

    def _next_command(self) -> list[bytes] | None:
        try:
            args = self.parser.next_command()
            self.parser.release()  # a large value's input buffer: not kept while it is written
            return args
        except ProtocolError as exc:
            self._protocol_error(exc)
            return None

    def _is_plain_write(self, session: Session, waiting: asyncio.Future[Reply]) -> bool:
        return not session.in_multi and waiting in self._plain_writes

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

    async def _await_pause_then_pump(self) -> None:
        await self.shim.client_pause.wait()
        self._busy = False
        self._pump()

    def _paused(self, session: Session, args: list[bytes]) -> bool:
        """CLIENT PAUSE: whether this command waits (every command, or the writes)."""
        spec = lookup(args)
        is_write = spec is not None and spec.is_write
        if spec is not None and spec.name == "exec" and not spec.container:
            is_write = any((s := lookup(a)) is not None and s.is_write for a in session.queued)
        return self.shim.client_pause.holds(is_write)

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
        and sent soon. A client that lets more than PUBSUB_OUTPUT_BYTES_MAX pile up unread
        is closed, as Redis's client-output-buffer-limit for pubsub clients does."""
        self.encoder.write(message)
        transport = self.transport
        if transport is not None:
            if transport.get_write_buffer_size() > PUBSUB_OUTPUT_BYTES_MAX:
                transport.abort()
            else:
                asyncio.get_running_loop().call_soon(self._flush)

    def _kill(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _flush(self) -> None:
        if self.transport is not None and len(self.encoder):
            data = self.encoder.take()
            self.shim.stats.net_output_bytes += len(data)
            self.transport.write(data)

    def _protocol_error(self, exc: ProtocolError) -> None:
        if exc.send_reply:
            self.encoder.write(Error(exc.message))
        self._flush()
        if self.transport is not None:
            self.transport.close()

    def _dispatch(self, session: Session, args: list[bytes]) -> asyncio.Future[Reply] | None:
        """Answer a command now (None) or return the future of its reply."""
        spec = lookup(args)
        name = args[0].lower().decode("utf-8", "surrogateescape")
        session.last_command = spec.full_name if spec else name
        session.last_active_ms = wall_ms()
        self.shim.stats.commands_processed += 1
        error = self._check(spec, args) or self.shim.pubsub.refusal(session, session.last_command)
        if session.in_multi and name not in ("exec", "discard", "multi", "watch", "quit", "reset"):
            if error is None and spec is not None and "no_multi" in spec.flags:
                error = "ERR Command not allowed inside a transaction"
            if error is not None:
                session.multi_error = True
                self.encoder.write(Error(error))
            else:
                session.queued.append(args)
                self.encoder.write(Status("QUEUED"))
            return None
        if error is not None:
            self._refuse(session, name, error)
            return None
        assert spec is not None
        if name in SESSION_COMMANDS and not spec.container:
            return self._session_command(session, name, args)
        if name in ("save", "bgsave") and not spec.container:  # through the snapshot store
            return persistence.save_command(self.shim, session, args)
        if spec.is_write and "blocking" in spec.flags:
            # Not a plain write: it may wait, and nothing after it runs until it answers.
            return self.shim.blocking.execute(session.id, session.db, args)
        if spec.is_write:
            waiting = self.shim.writer.submit_command(session.db, args, origin=session.id)
            self._plain_writes.add(waiting)
            return waiting
        if session.linearizable:
            return self._after_barrier(session, args)
        self.encoder.write(self._read(session, args))
        return None

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

    def _check(self, spec: Command | None, args: list[bytes]) -> str | None:
        """Redis's central checks (processCommand): unknown command, arity."""
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

    def _read(self, session: Session, args: list[bytes]) -> Reply:
        ctx = Ctx(self.shim.applier.keyspace, session.db, wall_ms(), 0, self.shim.read_rng)
        ctx.session = session
        reply = run(ctx, args)
        session.db = ctx.db_index  # SELECT queued in a transaction that only reads
        return reply

    def _after_barrier(self, session: Session, args: list[bytes]) -> asyncio.Future[Reply]:
        async def barrier_then_read() -> Reply:
            await self.shim.read_barrier()
            return self._read(session, args)

        return asyncio.ensure_future(barrier_then_read())

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

    def _exec(self, session: Session) -> asyncio.Future[Reply] | None:
        if not session.in_multi:
            self.encoder.write(Error("ERR EXEC without MULTI"))
            return None
        queued, watched = session.queued, list(session.watched.values())
        failed = session.multi_error
        self._end_multi(session)
        session.watched = {}
        if failed:
            self.encoder.write(Error("EXECABORT Transaction discarded because of previous errors."))
            return None
        writes = any((spec := lookup(a)) is not None and spec.is_write for a in queued)
        if not writes:
            # Only reads: run them here, atomically (nothing else runs meanwhile).
            keyspace = self.shim.applier.keyspace
            if watch_broken(keyspace, watched) or expired_since_watch(keyspace, watched, wall_ms()):
                self.encoder.write(NULL_ARRAY)
            else:
                self.encoder.write([self._read(session, a) for a in queued])
            return None
        record = record_for(session.db, queued, transaction=True)
        record.watched.extend(watched)  # apply checks them (cacheshim.apply.watch_broken)
        for args in queued:  # SELECT inside the transaction moves the connection too
            if args[0].lower() == b"select":
                with contextlib.suppress(CommandError):
                    session.db = select_index(args[1])
        return self.shim.writer.submit(record, origin=session.id)

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

    def _end_multi(self, session: Session) -> None:
        session.in_multi = False
        session.multi_error = False
        session.queued = []

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
