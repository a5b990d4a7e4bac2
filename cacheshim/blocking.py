"""Blocking commands (BLPOP, BLMOVE, BZPOPMIN, ...): blocked clients as part of the applied
state, served at apply, and each shim's waiting connections.

A blocking command is a write: it goes through the log like any other. Its handler, run in
apply, either serves it (pops, moves) and returns the reply, or, when there is nothing to
serve and it is not inside MULTI/EXEC (`ctx.in_transaction`), returns `WouldBlock` and
changes nothing.

The apply side (`BlockedClients`, kept by `cacheshim.apply.Applier`): a record whose command
answered `WouldBlock` leaves its client in the applied state, on every shim: an entry (the
proposing shim's id and proposal id, the command, its keys) queued, in log order, on each
of its keys. After every record (a command, or a whole MULTI/EXEC), apply serves the clients
blocked on the keys that record set or changed in place (`Database.ready_keys`): in the
order the keys became ready, each key's clients first come first served while the key
holds a value of their kind, each by running its command again at that point of the log
(with the record's time and index). A served client leaves every queue, and what its
command changes (BLMOVE's destination) may serve more clients, until no key is ready: as
Redis's handleClientsBlockedOnKeys does before the next command. The replies go to
`Applier.served`, addressed by (shim id, proposal id). So right after `RPUSH list1 foo`
replies, a client blocked on list1 on any shim has taken foo, and every shim holds the same
keyspace and the same blocked clients at each index.

A wait ends through the log as well, so that every shim drops the entry at one index: the
owner proposes an unblock record (`Record.unblock_proposal_id`) when the client's timeout
passes, on CLIENT UNBLOCK, or when its connection closes. If the client was served first,
the served reply wins (the element left the list at that index, so the client gets it); if
not, the client gets the timeout's nil (a null array, what Redis 7.0 answers for every
blocking type) or CLIENT UNBLOCK's error. A shim that starts drops the entries its shim id
left in an earlier life (`Record.unblock_all`); entries with a timeout are dropped by apply
anyway once their deadline (the blocking record's time plus the timeout) is
`DEADLINE_GRACE_MS` past, so a shim that dies for good leaves its clients with timeout 0
behind only, each taking at most one element nobody reads.

The server side is `Blocker`, one per shim: it proposes a connection's blocking command and
answers a future of its final reply; the connection processes nothing else meanwhile (as a
blocked Redis client). `Blocker.after_apply` runs in the apply loop right after every
record, synchronously: it parks a client whose record answered `WouldBlock` (its timer runs
on the shim's clock from then, 0: forever) and answers the clients apply served.

Where this differs from Redis 7.0, and why:

- A served command runs again from the start (as Redis 7.2 does), so a client blocked on
  several keys is served from the first of them that has elements, not necessarily the one
  that woke it, and a key of the wrong type before it answers WRONGTYPE. Stream readers
  (XREAD, XREADGROUP) are told which key woke them (`Ctx.serving_blocked`) and answer for
  that stream alone, as Redis 7.0 serves them.
- A timeout or CLIENT UNBLOCK takes effect when its record is applied: an element pushed
  in between still goes to the client (CLIENT UNBLOCK has answered 1 already).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
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
    "DEADLINE_GRACE_MS",
    "BlockedClients",
    "BlockedEntry",
    "Blocker",
    "WouldBlock",
    "as_would_block",
    "parse_timeout",
    "timeout_argument",
    "timeout_ms_of",
    "unblock_record",
    "would_block",
]

LLONG_MIN: Final = -(2**63)
LLONG_MAX: Final = 2**63 - 1
# How long after its deadline apply drops a blocked client with a timeout that its shim has
# not unblocked (a shim that died): the owner's own unblock record normally comes first.
DEADLINE_GRACE_MS: Final = 10_000
# How soon an unblock record the log did not confirm is proposed again.
UNBLOCK_RETRY_S: Final = 0.5


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
    # The command the client waits in, when it is not the one it sent: XREAD's "$" means
    # the last ID when it blocked, so it waits as XREAD of that ID (None: as sent).
    args: tuple[bytes, ...] | None = None


def would_block(
    keys: Iterable[bytes],
    kind: type | None = None,
    timeout_ms: int | None = None,
    args: Iterable[bytes] | None = None,
) -> Reply:
    """A handler's `WouldBlock` answer, typed as the `Reply` handlers return (the server
    takes it before any encoder sees it)."""
    waits_as = None if args is None else tuple(args)
    return cast(Reply, WouldBlock(tuple(keys), kind, timeout_ms, waits_as))


def as_would_block(reply: object) -> WouldBlock | None:
    """The `WouldBlock` a handler answered, or None (typed for callers that hold a Reply)."""
    return reply if isinstance(reply, WouldBlock) else None


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


def timeout_ms_of(block: WouldBlock, args: list[bytes]) -> int:
    """A blocked command's timeout in milliseconds (0: forever)."""
    return block.timeout_ms if block.timeout_ms is not None else _timeout_ms(args)


def _timeout_ms(args: list[bytes]) -> int:
    try:
        return parse_timeout(timeout_argument(args))
    except CommandError:  # apply accepted it, so this does not happen; wait then
        return 0


# -- the apply side: blocked clients in the applied state ---------------------------------------


@dataclass(eq=False)  # compared and hashed by identity: an entry of the queues
class BlockedEntry:
    """A client blocked in a command that answered `WouldBlock`, as every shim holds it."""

    shim_id: str
    proposal_id: int
    db: int
    args: list[bytes]
    keys: tuple[bytes, ...]
    kind: type | None
    deadline_ms: int | None  # the record's time + timeout + DEADLINE_GRACE_MS; None: never


class BlockedClients:
    """The blocked clients of the applied state: FIFO queues per (db, key), in log order.

    Changed by apply only (deterministic): `add` when a blocking command answered
    `WouldBlock`, `remove` when one is served or unblocked. The keys with a queue are
    `Database.blocked_keys`, so the keyspace notes when one is set or changed in place
    (`Database.ready_keys`)."""

    def __init__(self, keyspace: Keyspace) -> None:
        self._keyspace = keyspace
        self.queues: dict[tuple[int, bytes], dict[BlockedEntry, None]] = {}
        self._by_owner: dict[tuple[str, int], BlockedEntry] = {}
        self._keys_per_db: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._by_owner)

    def add(self, entry: BlockedEntry) -> None:
        entry.keys = tuple(dict.fromkeys(entry.keys))  # BLPOP k k 0 waits once on k
        self._by_owner[(entry.shim_id, entry.proposal_id)] = entry
        db = self._keyspace.dbs[entry.db]
        for key in entry.keys:
            slot = (entry.db, key)
            queue = self.queues.get(slot)
            if queue is None:
                queue = self.queues[slot] = {}
                db.blocked_keys.add(key)
                self._keys_per_db[entry.db] = self._keys_per_db.get(entry.db, 0) + 1
            queue[entry] = None

    def remove(self, shim_id: str, proposal_id: int) -> BlockedEntry | None:
        entry = self._by_owner.pop((shim_id, proposal_id), None)
        if entry is None:
            return None
        db = self._keyspace.dbs[entry.db]
        for key in entry.keys:
            slot = (entry.db, key)
            queue = self.queues[slot]
            del queue[entry]
            if queue:
                continue
            del self.queues[slot]
            db.blocked_keys.discard(key)
            left = self._keys_per_db[entry.db] - 1
            if left:
                self._keys_per_db[entry.db] = left
            else:
                del self._keys_per_db[entry.db]
                db.ready_keys.clear()
        return entry

    def remove_shim(self, shim_id: str) -> int:
        """Drop every entry of shim_id (in log order, so the same way everywhere)."""
        owners = [owner for owner in self._by_owner if owner[0] == shim_id]
        for owner in owners:
            self.remove(*owner)
        return len(owners)

    def owner_known(self, shim_id: str, proposal_id: int) -> bool:
        return (shim_id, proposal_id) in self._by_owner

    def owned_by(self, shim_id: str) -> int:
        return sum(1 for owner in self._by_owner if owner[0] == shim_id)

    def take_ready(self) -> list[tuple[int, bytes]]:
        """The keys with blocked clients that were set or changed since the last call."""
        ready: list[tuple[int, bytes]] = []
        for db_index in self._keys_per_db:
            db = self._keyspace.dbs[db_index]
            if db.ready_keys:
                ready.extend((db_index, key) for key in db.ready_keys)
                db.ready_keys.clear()
        return ready


# -- the server side: this shim's waiting connections --------------------------------------------


class AppliedState(Protocol):
    """What the machinery reads of the apply side (`cacheshim.apply.Applier`)."""

    keyspace: Keyspace
    time_ms: int
    blocked: BlockedClients
    # The blocked clients served by the last record applied: (shim id, proposal id, reply).
    served: list[tuple[str, int, Reply]]


class Proposer(Protocol):
    """What the machinery needs of the log writer (`cacheshim.server.Writer`): submit sets
    the record's shim_id and proposal_id and answers the future of its apply result (or of
    an error when the log did not take it)."""

    shim_id: str

    def submit(self, record: record_pb2.Record) -> asyncio.Future[Reply]: ...


@dataclass(eq=False)
class _Waiter:
    session_id: int
    db: int
    args: list[bytes]
    result: asyncio.Future[Reply]
    proposal: int = 0  # the proposal id of its blocking record
    applied: bool = False  # its blocking record was applied (served, or blocked)
    parked: bool = False  # blocked, in the applied state
    gone: bool = False  # the connection closed
    ending: Reply = None  # the reply once its unblock record is applied (nil or UNBLOCKED)
    ending_due: bool = False  # timed out, unblocked or gone: an unblock record is due
    unblock_sent: bool = False
    timer: asyncio.TimerHandle | None = None
    keys: tuple[bytes, ...] = field(default=())


class Blocker:
    """The clients of one shim that wait in blocking commands (see the module doc)."""

    def __init__(self, applied: AppliedState, proposer: Proposer) -> None:
        self._applied = applied
        self._proposer = proposer
        self._proposals: dict[int, _Waiter] = {}  # blocking record's proposal id -> waiter
        self._by_session: dict[int, _Waiter] = {}
        # Set once the shim serves clients: the records of this shim id applied before are
        # an earlier life's (its blocked clients are dropped by an unblock_all at start).
        self.serving = False

    # -- the connection side ------------------------------------------------------------

    def execute(self, session_id: int, db: int, args: list[bytes]) -> asyncio.Future[Reply]:
        """Propose a blocking command now; the future answers its final reply."""
        waiter = _Waiter(session_id, db, list(args), asyncio.get_running_loop().create_future())
        self._by_session[session_id] = waiter
        record = record_pb2.Record(db=db, time_ms=time.time_ns() // 1_000_000)
        record.commands.add().args.extend(waiter.args)
        future = self._proposer.submit(record)
        waiter.proposal = record.proposal_id
        self._proposals[record.proposal_id] = waiter
        future.add_done_callback(partial(self._not_applied, waiter))
        return waiter.result

    def disconnected(self, session_id: int) -> None:
        """The client's connection closed: its wait ends, and it takes nothing more."""
        waiter = self._by_session.pop(session_id, None)
        if waiter is None:
            return
        waiter.gone = True
        if not waiter.result.done():
            waiter.result.set_result(NULL_ARRAY)
        self._end(waiter, NULL_ARRAY)

    def unblock(self, session_id: int, error: bool) -> bool:
        """CLIENT UNBLOCK: answer a blocked client as if it timed out, or with UNBLOCKED."""
        waiter = self._by_session.get(session_id)
        if waiter is None or not waiter.parked or waiter.ending_due:
            return False
        self._end(waiter, Error(errors.UNBLOCKED) if error else NULL_ARRAY)
        return True

    def session_of(self, proposal_id: int) -> int | None:
        """The client whose blocking record this proposal is, or None."""
        waiter = self._proposals.get(proposal_id)
        return None if waiter is None else waiter.session_id

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
            and record.shim_id == self._proposer.shim_id
            and not record.unblock_proposal_id
        ):
            waiter = self._proposals.get(record.proposal_id)
            if waiter is not None and not waiter.applied:
                waiter.applied = True
                if isinstance(reply, WouldBlock):
                    self._park(waiter, reply)
                else:
                    self._finish(waiter, cast(Reply, reply))
            elif waiter is None and self.serving and isinstance(reply, WouldBlock):
                # Blocked in the applied state, but its client was answered already (the log
                # did not confirm the write in time): no one waits for it.
                orphan = unblock_record(time.time_ns() // 1_000_000, record.proposal_id)
                self._proposer.submit(orphan)
        if self._proposals:
            mine = self._proposer.shim_id
            for shim_id, proposal_id, served in self._applied.served:
                if shim_id == mine and (waiter := self._proposals.get(proposal_id)):
                    self._finish(waiter, served)

    def _not_applied(self, waiter: _Waiter, future: asyncio.Future[Reply]) -> None:
        """The blocking record's future is done: if apply did not take it (after_apply),
        the log refused or lost the record, and the future holds the error to answer."""
        if waiter.applied or self._proposals.get(waiter.proposal) is not waiter:
            return
        if future.cancelled():
            reply: Reply = Error("ERR memlog: the write was cancelled")
        elif future.exception() is not None:
            reply = Error(f"ERR memlog: {future.exception()}")
        else:
            reply = future.result()
        self._finish(waiter, reply)

    def _park(self, waiter: _Waiter, block: WouldBlock) -> None:
        waiter.parked = True
        waiter.keys = block.keys
        if waiter.ending_due:  # timed out, unblocked or gone while its record was in flight
            self._send_unblock(waiter)
            return
        timeout_ms = block.timeout_ms if block.timeout_ms is not None else _timeout_ms(waiter.args)
        if timeout_ms > 0:
            waiter.timer = asyncio.get_running_loop().call_later(
                timeout_ms / 1000, self._timed_out, waiter
            )

    def _finish(self, waiter: _Waiter, reply: Reply) -> None:
        if waiter.timer is not None:
            waiter.timer.cancel()
            waiter.timer = None
        waiter.parked = False
        if self._proposals.get(waiter.proposal) is waiter:
            del self._proposals[waiter.proposal]
        if self._by_session.get(waiter.session_id) is waiter:
            del self._by_session[waiter.session_id]
        if not waiter.result.done():
            waiter.result.set_result(reply)

    def _end(self, waiter: _Waiter, reply: Reply) -> None:
        """Timeout, CLIENT UNBLOCK or disconnect: through the log, so that every shim drops
        the client at one index (now, or once its blocking record is applied)."""
        if waiter.ending_due:
            return
        waiter.ending_due = True
        waiter.ending = reply
        if waiter.timer is not None:
            waiter.timer.cancel()
            waiter.timer = None
        if waiter.parked:
            self._send_unblock(waiter)

    def _timed_out(self, waiter: _Waiter) -> None:
        waiter.timer = None
        if waiter.parked:
            self._end(waiter, NULL_ARRAY)

    def _send_unblock(self, waiter: _Waiter) -> None:
        if waiter.unblock_sent:
            return
        waiter.unblock_sent = True
        record = unblock_record(time.time_ns() // 1_000_000, proposal_id=waiter.proposal)
        self._proposer.submit(record).add_done_callback(partial(self._unblocked, waiter))

    def _unblocked(self, waiter: _Waiter, future: asyncio.Future[Reply]) -> None:
        """The unblock record was applied (or not confirmed by the log): unless apply served
        the client first (then it has its reply already), it gets its ending reply now."""
        if self._proposals.get(waiter.proposal) is waiter:
            self._finish(waiter, waiter.ending)
        applied = (
            not future.cancelled()
            and future.exception() is None
            and isinstance(future.result(), int)
        )
        if not applied and self._applied.blocked.owner_known(
            self._proposer.shim_id, waiter.proposal
        ):
            # Still blocked in the applied state: ask again, so it takes nothing later.
            waiter.unblock_sent = False
            asyncio.get_running_loop().call_later(UNBLOCK_RETRY_S, self._send_unblock, waiter)


def unblock_record(time_ms: int, proposal_id: int = 0, every: bool = False) -> record_pb2.Record:
    """A record that ends the wait of this shim's client blocked by proposal_id, or (every)
    of all the clients its shim id left blocked in an earlier life."""
    record = record_pb2.Record(time_ms=time_ms, unblock_proposal_id=proposal_id, unblock_all=every)
    record.commands.add().args.append(b"UNBLOCK")
    return record
