"""Blocking commands (BLPOP, BLMOVE, BZPOPMIN, ...): the contract between apply and the server,
and the server's waiting clients.

A blocking command is a write: it goes through the log like any other. Its handler, run in
apply, either serves it (pops, moves) and returns the reply, or, when there is nothing to
serve and it is not inside MULTI/EXEC (`ctx.in_transaction`), returns `WouldBlock` and
changes nothing. The shim that proposed the record then parks the client, locally, until one
of the keys changes (by any shim's write) or its timeout passes, and proposes the command
again. Nothing about waiting clients is replicated, so a shim that dies leaves no ghosts.

The server side is `Blocker`, one per shim:

- `Blocker.execute` proposes a blocking command for a connection and answers a future of its
  final reply. The connection processes nothing else meanwhile (as a blocked Redis client),
  but its socket closing is noticed (`Blocker.disconnected`): the client is dropped and takes
  nothing from then on.
- `Blocker.after_apply` runs in the apply loop right after every record, synchronously, so
  no change can slip between a `WouldBlock` and the parking of its client: it parks a client
  whose record answered `WouldBlock` (in a FIFO per (db, key), in log order, as Redis queues
  them), settles re-proposed records, and looks at the keys that changed.
- A change is noticed through a hook of `cacheshim.types.keyspace.Database`: `set` and
  `touch_changed` of a key in `Database.blocked_keys` note it in `Database.ready_keys`. For
  each such key that now holds a value (of the waiters' kind, see `WouldBlock.kind`), the
  parked clients of that key are proposed again in FIFO order: as many as the value has
  elements, counting those already in flight, in one batch (one Append, contiguous in the
  log). A client whose record answers `WouldBlock` again keeps its place in every queue; one
  that is served leaves them all, and its other keys are looked at again (its proposal may
  have held back the clients behind it there).
- Timeouts run on the shim's clock from when the client first blocked (0: forever). When one
  passes, or CLIENT UNBLOCK arrives, while a record of the client is in flight, its result
  decides: served, the client gets it; `WouldBlock`, it gets the timeout's nil (a null
  array, what Redis 7.0 answers for every blocking type) or CLIENT UNBLOCK's error.

Where this differs from Redis 7.0, and why:

- Redis serves a woken client in the same event-loop turn as the push, so a command that
  arrives later cannot take the element first. Here the re-proposed record and a newer
  command (LPOP from another client, or a first BLPOP) race through the log, and log order
  decides; the woken client then keeps its place and waits again. FIFO holds among the
  clients parked on one shim; between shims, log order decides.
- A re-proposed command runs again from the start (as Redis 7.2 does), so a client blocked on
  several keys is served from the first of them that has elements, not necessarily the one
  that woke it, and a key of the wrong type before it answers WRONGTYPE.
- A client that disconnects while its re-proposed record is in flight may take an element
  that no one reads (Redis loses a reply to a dying connection the same way).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Sized
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import Final, Protocol, cast

from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import NULL_ARRAY, Error, Reply
from cacheshim.types import longdouble
from cacheshim.types.keyspace import Keyspace
from cacheshim.v1 import record_pb2

__all__ = [
    "Blocker",
    "WouldBlock",
    "parse_timeout",
    "timeout_argument",
    "would_block",
]

LLONG_MIN: Final = -(2**63)
LLONG_MAX: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class WouldBlock:
    """Apply's answer to a blocking command with nothing to serve: wait for these keys.

    kind: only a change that leaves a value of this Python type at a key wakes the client
    (Redis 7.0 serves a BLPOP client only when its key holds a list, a BZPOPMIN client only
    for a sorted set); None: any change does.
    timeout_ms: the command's timeout (`parse_timeout`); None: the server parses it from
    the command (`timeout_argument`).
    """

    keys: tuple[bytes, ...]
    kind: type | None = None
    timeout_ms: int | None = None


def would_block(
    keys: Iterable[bytes], kind: type | None = None, timeout_ms: int | None = None
) -> Reply:
    """A handler's `WouldBlock` answer, typed as the `Reply` handlers return (the server
    takes it before any encoder sees it)."""
    return cast(Reply, WouldBlock(tuple(keys), kind, timeout_ms))


def parse_timeout(arg: bytes) -> int:
    """A blocking command's timeout in seconds, as Redis 7.0.15's getTimeoutFromObjectOrReply
    reads it, in milliseconds (0: block forever).

    strtold's grammar (`longdouble.parse`), times 1000 in long double, rounded up to a whole
    millisecond (ceill: 0.0001 waits 1 ms, -0.0001 is 0, forever) and converted to a long
    long, where infinity and anything beyond 64 bits become LLONG_MIN (x87's "integer
    indefinite"), hence "timeout is negative" for them.
    """
    value = longdouble.parse(arg)
    if value is None:
        raise CommandError(errors.TIMEOUT_NOT_A_FLOAT)
    millis = LLONG_MIN
    if isinstance(value, Fraction):
        try:
            product: Fraction | None = longdouble.round_to_long_double(value * 1000)
        except longdouble.Underflow:  # only 0 rounds to 0, and that returns early
            product = Fraction(0)
        except longdouble.Overflow:
            product = None
        if product is not None and LLONG_MIN <= math.ceil(product) <= LLONG_MAX:
            millis = math.ceil(product)
    if millis < 0:
        raise CommandError(errors.TIMEOUT_IS_NEGATIVE)
    return millis


def timeout_argument(args: list[bytes]) -> bytes:
    """Where a blocking command (name first) has its timeout: right after the name for
    BLMPOP and BZMPOP (timeout numkeys key ...), last for the others."""
    return args[1] if args[0].lower().endswith(b"mpop") else args[-1]


def _timeout_ms(args: list[bytes]) -> int:
    try:
        return parse_timeout(timeout_argument(args))
    except CommandError:  # apply accepted it, so this does not happen; wait then
        return 0


# -- the server side ------------------------------------------------------------------------


class AppliedState(Protocol):
    """What the machinery reads of the apply side (`cacheshim.apply.Applier`)."""

    keyspace: Keyspace
    time_ms: int


class Proposer(Protocol):
    """What the machinery needs of the log writer (`cacheshim.server.Writer`): submit sets
    the record's shim_id and proposal_id and answers the future of its apply result (or of
    an error when the log did not take it)."""

    shim_id: str

    def submit(self, record: record_pb2.Record) -> asyncio.Future[Reply]: ...


@dataclass(eq=False)  # compared and hashed by identity: an entry of the queues
class _Waiter:
    session_id: int
    db: int
    args: list[bytes]
    result: asyncio.Future[Reply]
    keys: tuple[bytes, ...] = ()
    kind: type | None = None
    parked: bool = False
    gone: bool = False  # the connection closed
    proposal: int = 0  # the proposal id of its record in flight; 0: none
    ending_due: bool = False  # timed out or unblocked while a record was in flight
    ending: Reply = None
    timer: asyncio.TimerHandle | None = None


class Blocker:
    """The clients of one shim that wait in blocking commands (see the module doc)."""

    def __init__(self, applied: AppliedState, proposer: Proposer) -> None:
        self._applied = applied
        self._proposer = proposer
        # (db, key) -> its parked clients in FIFO order (a dict as an ordered set).
        self._queues: dict[tuple[int, bytes], dict[_Waiter, None]] = {}
        # db -> how many of its keys have a queue (the databases to look at after apply).
        self._keys_per_db: dict[int, int] = {}
        self._proposals: dict[int, _Waiter] = {}
        self._by_session: dict[int, _Waiter] = {}
        # Keys to look at again at the next drain, besides those the keyspace noted.
        self._recheck: list[tuple[int, bytes]] = []

    # -- the connection side ------------------------------------------------------------

    def execute(self, session_id: int, db: int, args: list[bytes]) -> asyncio.Future[Reply]:
        """Propose a blocking command now; the future answers its final reply."""
        waiter = _Waiter(session_id, db, list(args), asyncio.get_running_loop().create_future())
        self._by_session[session_id] = waiter
        self._propose(waiter)
        return waiter.result

    def disconnected(self, session_id: int) -> None:
        """The client's connection closed: it leaves every queue and takes nothing more."""
        waiter = self._by_session.pop(session_id, None)
        if waiter is None:
            return
        waiter.gone = True
        self._unpark(waiter)
        if not waiter.result.done():
            waiter.result.set_result(NULL_ARRAY)

    def unblock(self, session_id: int, error: bool) -> bool:
        """CLIENT UNBLOCK: answer a parked client as if it timed out, or with UNBLOCKED."""
        waiter = self._by_session.get(session_id)
        if waiter is None or not waiter.parked or waiter.ending_due:
            return False
        self._end(waiter, Error(errors.UNBLOCKED) if error else NULL_ARRAY)
        return True

    def is_blocked(self, session_id: int) -> bool:
        waiter = self._by_session.get(session_id)
        return waiter is not None and waiter.parked

    @property
    def blocked_clients(self) -> int:
        return sum(1 for waiter in self._by_session.values() if waiter.parked)

    @property
    def clients_in_timeout_table(self) -> int:
        return sum(1 for w in self._by_session.values() if w.parked and w.timer is not None)

    # -- the apply side -----------------------------------------------------------------

    def after_apply(self, record: record_pb2.Record | None, reply: object) -> None:
        """Called by the apply loop right after each record (synchronously)."""
        if (
            record is not None
            and self._proposals
            and record.shim_id == self._proposer.shim_id
            and (waiter := self._proposals.pop(record.proposal_id, None)) is not None
        ):
            self._settle(waiter, reply)
        if self._queues or self._recheck:
            self._drain()

    def _settle(self, waiter: _Waiter, reply: object) -> None:
        """The result of a record proposed for waiter."""
        waiter.proposal = 0
        if isinstance(reply, WouldBlock):
            if waiter.gone:
                return
            if waiter.ending_due:
                self._finish(waiter, waiter.ending)
            elif not waiter.parked:
                self._park(waiter, reply)
            return  # else: parked already, it keeps its place
        # Served, or an error: done. Its other keys may hold elements that its record, in
        # flight, held back from the clients behind it.
        self._recheck.extend((waiter.db, key) for key in waiter.keys)
        if not waiter.gone:
            self._finish(waiter, cast(Reply, reply))

    def _not_applied(self, proposal_id: int, future: asyncio.Future[Reply]) -> None:
        """A proposal's future is done: if apply did not take it (after_apply), the log
        refused or lost the record, and the future holds the error to answer."""
        waiter = self._proposals.pop(proposal_id, None)
        if waiter is None:
            return
        if future.cancelled():
            reply: Reply = Error("ERR memlog: the write was cancelled")
        elif future.exception() is not None:
            reply = Error(f"ERR memlog: {future.exception()}")
        else:
            reply = future.result()
        self._settle(waiter, reply)
        if self._queues or self._recheck:
            self._drain()

    def _park(self, waiter: _Waiter, block: WouldBlock) -> None:
        waiter.keys = tuple(dict.fromkeys(block.keys))  # BLPOP k k 0 waits once on k
        waiter.kind = block.kind
        db = self._applied.keyspace.dbs[waiter.db]
        for key in waiter.keys:
            slot = (waiter.db, key)
            queue = self._queues.get(slot)
            if queue is None:
                queue = self._queues[slot] = {}
                db.blocked_keys.add(key)
                self._keys_per_db[waiter.db] = self._keys_per_db.get(waiter.db, 0) + 1
            queue[waiter] = None
        waiter.parked = True
        timeout_ms = block.timeout_ms if block.timeout_ms is not None else _timeout_ms(waiter.args)
        if timeout_ms > 0:
            waiter.timer = asyncio.get_running_loop().call_later(
                timeout_ms / 1000, self._timed_out, waiter
            )

    def _unpark(self, waiter: _Waiter) -> None:
        if waiter.timer is not None:
            waiter.timer.cancel()
            waiter.timer = None
        if not waiter.parked:
            return
        waiter.parked = False
        db = self._applied.keyspace.dbs[waiter.db]
        for key in waiter.keys:
            slot = (waiter.db, key)
            queue = self._queues.get(slot)
            if queue is None:
                continue
            queue.pop(waiter, None)
            if queue:
                continue
            del self._queues[slot]
            db.blocked_keys.discard(key)
            left = self._keys_per_db[waiter.db] - 1
            if left:
                self._keys_per_db[waiter.db] = left
            else:
                del self._keys_per_db[waiter.db]
                db.ready_keys.clear()

    def _finish(self, waiter: _Waiter, reply: Reply) -> None:
        self._unpark(waiter)
        if self._by_session.get(waiter.session_id) is waiter:
            del self._by_session[waiter.session_id]
        if not waiter.result.done():
            waiter.result.set_result(reply)

    def _end(self, waiter: _Waiter, reply: Reply) -> None:
        """Timeout or CLIENT UNBLOCK: now, or when the record in flight comes back."""
        if waiter.proposal:
            waiter.ending_due = True
            waiter.ending = reply
        else:
            self._finish(waiter, reply)

    def _timed_out(self, waiter: _Waiter) -> None:
        waiter.timer = None
        if waiter.parked and not waiter.ending_due:
            self._end(waiter, NULL_ARRAY)

    def _propose(self, waiter: _Waiter) -> None:
        record = record_pb2.Record(db=waiter.db, time_ms=time.time_ns() // 1_000_000)
        record.commands.add().args.extend(waiter.args)
        future = self._proposer.submit(record)
        waiter.proposal = record.proposal_id
        self._proposals[record.proposal_id] = waiter
        future.add_done_callback(partial(self._not_applied, record.proposal_id))

    def _drain(self) -> None:
        """Propose again the parked clients of the keys that changed (see the module doc)."""
        keyspace = self._applied.keyspace
        ready, self._recheck = self._recheck, []
        for db_index in self._keys_per_db:
            db = keyspace.dbs[db_index]
            if db.ready_keys:
                ready.extend((db_index, key) for key in db.ready_keys)
                db.ready_keys.clear()
        now_ms = self._applied.time_ms
        seen: set[tuple[int, bytes]] = set()  # membership only: the order is ready's
        for slot in ready:
            if slot in seen:
                continue
            seen.add(slot)
            queue = self._queues.get(slot)
            if not queue:
                continue
            value = keyspace.dbs[slot[0]].get(slot[1], now_ms)
            if value is None:
                continue
            wanted = len(value) if isinstance(value, Sized) else 1
            for waiter in queue:
                if wanted <= 0:
                    break
                if waiter.proposal:  # in flight: it will see this value
                    wanted -= 1
                elif not waiter.ending_due and (
                    waiter.kind is None or isinstance(value, waiter.kind)
                ):
                    self._propose(waiter)
                    wanted -= 1
