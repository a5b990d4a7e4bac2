"""The writer: every connection's writes become records, batched into one Append at a time
(large records in pieces), and each write's reply is handed back once its record is applied.

Over 500 lines because batching, pieces, the per-write timeout and the hand-made record
encoder share one queue and its order; cut apart, each would reach into the others' state."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc

from cacheshim.apply import RECORD_BYTES_MAX
from cacheshim.protocol.resp import Error, Reply
from cacheshim.server.clock import wall_ms
from cacheshim.v1 import record_pb2
from logsvc.client import AppendOutcomeUnknown, LogClient, LogClientError

log = logging.getLogger("cacheshim.server")

# Appends in flight at once. A connection's writes are never in two of them (_take_batch
# holds back the writes of a connection that has writes in flight), so a retry of one Append
# can never put a connection's later write before an earlier one. Each Append costs the log
# a Raft proposal; the leader puts the proposals that arrive during one sync into one synced
# write and one message per follower (group commit), so a second Append overlaps the first
# one's round instead of waiting for it. bench/write_path.py, docs/bench-shim.md: 1 vs 2.
APPENDS_IN_FLIGHT_MAX = 2
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
    # When its wait ends (the event loop's clock): its arrival plus the write timeout; for a
    # large write, the last Append of its pieces the log confirmed plus the write timeout.
    deadline: float = 0.0
    progressed: bool = False  # the log confirmed some of its pieces
    # The log confirmed the Append of its last piece: it is in the log, to be applied.
    in_log: bool = False

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
        # The connection each waiting write came from (the ACL LOG of a script's refused
        # calls, which apply finds, names it).
        self._origins: dict[int, int] = {}
        self._ids = itertools.count(1)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._appending: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        # Connections with writes in an Append in flight (a count per connection; None for
        # writes whose order against others is unknown): their next writes wait.
        self._in_flight_origins: dict[int | None, int] = {}
        self._expected = 0  # writes in the last Append: the writers that will come back
        # Every write sent whole not yet answered, in arrival order (so by deadline: one
        # timeout for all); the large writes not yet answered, whose deadlines move on with
        # each Append of their pieces the log confirms (so not in arrival order); and the
        # one timer that answers those whose deadline passed (_expire).
        self._by_arrival: deque[_Write] = deque()
        self._large: list[_Write] = []
        self._expiry: asyncio.TimerHandle | None = None

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
        self, db: int, args: list[bytes], origin: int | None = None, user: bytes | None = None
    ) -> asyncio.Future[Reply]:
        """Submit one command outside a transaction. A large one is encoded straight from
        its arguments, with no Record in between: a big value is copied once less, and
        protobuf's serializer (which copies twice) is not involved."""
        if sum(map(len, args)) <= self.piece_bytes:
            record = record_for(db, [args], transaction=False)
            if user is not None:
                record.user = user
            return self.submit(record, origin)
        proposal_id = next(self._ids)
        time_ms = wall_ms()
        data = encode_command_record(db, time_ms, self.shim_id, proposal_id, args, user)
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
        loop = asyncio.get_running_loop()
        write = _Write(proposal_id, fut, origin, data, deadline=loop.time() + self.timeout_s)
        if len(data) > self.piece_bytes:
            write.parts = -(-len(data) // self._piece_data_bytes)
            write.time_ms = time_ms
        self._queue.append(write)
        self._waiting[proposal_id] = fut
        if origin is not None:
            self._origins[proposal_id] = origin
        if write.parts > 1:
            self._large = [w for w in self._large if not w.future.done()]
            self._large.append(write)
        else:
            arrivals = self._by_arrival
            while arrivals and arrivals[0].future.done():
                arrivals.popleft()
            arrivals.append(write)
        # The timer may be set for a large write's later deadline: this one may come first.
        if self._expiry is None or self._expiry.when() > write.deadline:
            if self._expiry is not None:
                self._expiry.cancel()
            self._expiry = loop.call_at(write.deadline, self._expire)
        self._wake.set()

    def _expire(self) -> None:
        """Answer every write whose wait reached the write timeout (counted from its
        arrival, wherever it is: queued, in an Append, or in the log and not yet applied
        here; for a large write, from the last Append of its pieces the log confirmed, so
        that a transfer that goes on is not cut off, and one that stalls ends), with what
        is known of its fate; then set the timer for the next one."""
        self._expiry = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        arrivals = self._by_arrival
        while arrivals and (arrivals[0].future.done() or arrivals[0].deadline <= now):
            self._answer_expired(arrivals.popleft())
        large: list[_Write] = []
        for write in self._large:
            if not write.future.done() and write.deadline <= now:
                self._answer_expired(write)
            elif not write.future.done():
                large.append(write)
        self._large = large
        deadlines = [write.deadline for write in large]
        if arrivals:
            deadlines.append(arrivals[0].deadline)
        if deadlines:
            self._expiry = loop.call_at(min(deadlines), self._expire)

    def _answer_expired(self, write: _Write) -> None:
        if not write.future.done():
            self._waiting.pop(write.proposal_id, None)
            self._origins.pop(write.proposal_id, None)
            write.future.set_result(Error(_expired_error(write, self.timeout_s)))

    def origin_of(self, proposal_id: int) -> int | None:
        """The client (session id) that proposed a record still waited for, or None."""
        return self._origins.get(proposal_id)

    def applied(self, record: record_pb2.Record, reply: Reply) -> int | None:
        """Answer the write of this record if this shim proposed it: the connection it
        came from (None: another shim's, or unknown)."""
        if record.shim_id != self.shim_id:
            return None
        origin = self._origins.pop(record.proposal_id, None)
        fut = self._waiting.pop(record.proposal_id, None)
        if fut is not None and not fut.done():
            fut.set_result(reply)
        return origin

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                # Several Appends may be in flight: a connection never has writes in two of
                # them (_take_batch holds them back), so order holds even through retries.
                while self._queue and self._in_flight < APPENDS_IN_FLIGHT_MAX:
                    if len(self._queue) < self._expected:
                        await self._linger(loop.time() + APPEND_LINGER_S)
                    batch = self._take_batch()
                    if not batch:
                        break  # all that waits is held behind an Append in flight
                    self._expected = len({id(write) for write, _ in batch})
                    self._in_flight += 1
                    self._hold_origins(batch, 1)
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
        sent after it; other connections' writes go past it. So does a connection's write in
        an Append still in flight (a write of unknown order in flight holds back all).
        """
        live = [write for write in self._queue if not write.future.done()]  # done: refused
        large = [write for write in live if write.parts > 1]
        room = self.append_bytes_max - (self.piece_bytes if large else 0)
        batch: list[tuple[_Write, bytes]] = []
        size = 0
        ready: list[_Write] = []  # large writes whose pieces may go now
        flying = self._in_flight_origins
        held: set[int] = {origin for origin in flying if origin is not None}
        hold_all = None in flying
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
            self._hold_origins(batch, -1)
            self._wake.set()

    def _hold_origins(self, batch: list[tuple[_Write, bytes]], step: int) -> None:
        """Count the connections of an Append that goes out (+1) or is over (-1)."""
        flying = self._in_flight_origins
        for origin in {write.origin for write, _ in batch}:
            count = flying.get(origin, 0) + step
            if count:
                flying[origin] = count
            else:
                flying.pop(origin, None)

    async def _send(self, batch: list[tuple[_Write, bytes]], alone: bool) -> None:
        """One Append. If it fails, its writes get the error (unless the log refused what
        it holds and it carries several writes: the caller sends them apart), and the
        LogClientError is raised."""
        payloads = [payload for _, payload in batch]
        # Long enough for the write that waits longest; each write is answered at its
        # own deadline (_expire) whatever the Append does.
        loop = asyncio.get_running_loop()
        timeout_s = max(write.deadline for write, _ in batch) - loop.time()
        try:
            result = await self.client.append(payloads, timeout_s=max(timeout_s, 0.001))
        except LogClientError as exc:
            if alone or not _refused_for_contents(exc):
                self._fail(batch, _append_error(exc, batch, self.timeout_s))
            raise
        now = loop.time()
        for write, _ in batch:
            if write.sent == write.parts:
                write.in_log = True
            if write.parts > 1:
                # Progress: its wait starts again (the timer, set earlier, finds it later).
                write.deadline = now + self.timeout_s
                write.progressed = True
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
            self._origins.pop(write.proposal_id, None)
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
        fate = (
            "its outcome is unknown: it may still be applied"
            if complete
            else "it was not applied and will not be"
        )
        return (
            f"ERR memlog: the write was not confirmed by the log within {timeout_s:g}s "
            f"(no leader?); {fate}: {exc}"
        )
    return f"ERR memlog: the log refused the write; nothing of it was applied: {exc}"


def _expired_error(write: _Write, timeout_s: float) -> str:
    """The error of a write not answered within the write timeout, by what became of it."""
    within = f"within {timeout_s:g}s of its arrival"
    if write.progressed:
        within = f"within {timeout_s:g}s of the log's last confirmation of its pieces"
    if write.in_log:
        return (
            f"ERR memlog: the write is in the log but this shim had not applied it {within}; "
            "it will be applied"
        )
    if write.sent == write.parts:
        return (
            f"ERR memlog: the write was not confirmed by the log {within} (no leader?); "
            "its outcome is unknown: it may still be applied"
        )
    # Never sent, or some pieces sent without the last: the rest is never sent now, and
    # apply drops a large record whose pieces are not all in the log.
    return (
        f"ERR memlog: the write was not sent to the log {within} (the log is slow or has "
        "no leader); it was not applied and will not be"
    )


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


def encode_command_record(
    db: int,
    time_ms: int,
    shim_id: str,
    proposal_id: int,
    args: Sequence[bytes],
    user: bytes | None = None,
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
    if user:
        parts += (b"\x62", _varint(len(user)), user)  # user (12)
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
