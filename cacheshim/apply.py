"""Deterministic apply: (keyspace, record, log index) -> reply.

Every shim applies every committed record in log order through `Applier.apply`; nothing in
here reads a clock or an unseeded random source. Time is the record's time, kept monotonic
along the log; randomness comes from `random.Random(index)`. So every shim at index N holds
the same keyspace (`Keyspace.digest` proves it).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from cacheshim import errors
from cacheshim.blocking import (
    DEADLINE_GRACE_MS,
    BlockedClients,
    BlockedEntry,
    WouldBlock,
    as_would_block,
    timeout_ms_of,
)
from cacheshim.commands import Ctx, lookup
from cacheshim.commands.args import parse_db_index
from cacheshim.errors import CommandError
from cacheshim.keyspace import Keyspace
from cacheshim.resp import NULL_ARRAY, Error, Reply
from cacheshim.v1 import record_pb2

if TYPE_CHECKING:
    from cacheshim.pubsub import Hub

log = logging.getLogger("cacheshim.apply")


class Applier:
    def __init__(self, pubsub: Hub | None = None) -> None:
        self.keyspace = Keyspace()
        # Where PUBLISH records deliver their messages: this shim's subscribers. Outside the
        # keyspace: delivery changes no state that apply computes.
        self.pubsub = pubsub
        self.applied_index = 0
        self.time_ms = 0
        # Clients blocked in BLPOP & co., served at apply (cacheshim.blocking), and those
        # the last record served: (proposing shim id, proposal id, reply).
        self.blocked = BlockedClients(self.keyspace)
        self.served: list[tuple[str, int, Reply]] = []

    def apply(self, index: int, payload: bytes) -> tuple[record_pb2.Record | None, Reply]:
        if index != self.applied_index + 1:
            raise RuntimeError(f"record {index} applied right after {self.applied_index}")
        self.applied_index = index
        self.served = []
        try:
            record = record_pb2.Record.FromString(payload)
        except Exception:  # a foreign or damaged record: skipped the same way everywhere
            return None, Error("ERR memlog: undecodable log record")
        self.time_ms = max(self.time_ms, record.time_ms)
        self.keyspace.expire_due(self.time_ms, index)
        if record.unblock_proposal_id or record.unblock_all:
            return record, self._unblock(record)
        ctx = Ctx(self.keyspace, record.db, self.time_ms, index, pubsub=self.pubsub)
        if not record.transaction:
            args = list(record.commands[0].args)
            reply = run(ctx, args)
            if (block := as_would_block(reply)) is not None:
                self._block(record, args, block)
            else:
                self._serve_blocked(index)
            return record, reply
        ctx.in_transaction = True
        if watch_broken(self.keyspace, record.watched, record.watch_index):
            return record, NULL_ARRAY  # EXEC aborted: a watched key changed
        replies: Reply = [run(ctx, list(c.args)) for c in record.commands]
        self._serve_blocked(index)
        return record, replies

    # -- blocked clients (cacheshim.blocking) -------------------------------------------------

    def _block(self, record: record_pb2.Record, args: list[bytes], block: WouldBlock) -> None:
        """A blocking command found nothing: its client waits in the applied state."""
        if not record.proposal_id or self.blocked.owner_known(record.shim_id, record.proposal_id):
            return  # no owner to answer (a foreign writer), or the same proposal twice
        timeout_ms = timeout_ms_of(block, args)
        deadline_ms = self.time_ms + timeout_ms + DEADLINE_GRACE_MS if timeout_ms > 0 else None
        self.blocked.add(
            BlockedEntry(
                record.shim_id, record.proposal_id, record.db, args, block.keys, block.kind,
                deadline_ms,
            )
        )  # fmt: skip

    def _unblock(self, record: record_pb2.Record) -> Reply:
        """An unblock record: how many of its shim's clients it found still blocked."""
        if record.unblock_all:
            return self.blocked.remove_shim(record.shim_id)
        return int(self.blocked.remove(record.shim_id, record.unblock_proposal_id) is not None)

    def _serve_blocked(self, index: int) -> None:
        """Serve the clients blocked on the keys the record set or changed, as Redis does
        before its next command: key by key in the order they became ready, each key's
        clients first come first served while it holds a value of their kind, each by
        running its command again here; what a served command changes (BLMOVE's
        destination) makes more keys ready."""
        blocked = self.blocked
        if not blocked.queues:
            return
        ready = deque(blocked.take_ready())
        now_ms = self.time_ms
        while ready:
            db_index, key = ready.popleft()
            db = self.keyspace.dbs[db_index]
            for entry in list(blocked.queues.get((db_index, key), ())):
                if entry not in blocked.queues.get((db_index, key), ()):
                    continue  # served meanwhile (through another of its keys)
                if entry.deadline_ms is not None and entry.deadline_ms <= now_ms:
                    blocked.remove(entry.shim_id, entry.proposal_id)  # its shim is gone
                    continue
                value = db.get(key, now_ms)
                if value is None or (entry.kind is not None and not isinstance(value, entry.kind)):
                    break
                ctx = Ctx(self.keyspace, entry.db, now_ms, index, pubsub=self.pubsub)
                reply = run(ctx, entry.args)
                if as_would_block(reply) is not None:
                    continue  # nothing for it after all: it keeps its place
                blocked.remove(entry.shim_id, entry.proposal_id)
                self.served.append((entry.shim_id, entry.proposal_id, reply))
                ready.extend(blocked.take_ready())


def watch_broken(
    keyspace: Keyspace, watched: Iterable[record_pb2.WatchedKey], watch_index: int = 0
) -> bool:
    """Whether a watched key changed after its WATCH (Redis 7.0's rules, see
    `Database.last_change`). Expiry is seen through the keyspace: apply removes the keys
    expired as of the record's time before it looks; a read served from memory must check
    the keys expired by its own clock first (`expired_since_watch`)."""
    for key in watched:
        if key.db >= len(keyspace.dbs):  # no such database: never a valid WATCH
            return True
        since = key.index or watch_index  # watch_index: records from before WatchedKey.index
        if keyspace.dbs[key.db].last_change(key.key, key.stale) > since:
            return True
    return False


def expired_since_watch(
    keyspace: Keyspace, watched: Iterable[record_pb2.WatchedKey], now_ms: int
) -> bool:
    """Whether a key that was live (or missing) when watched has expired by now_ms but is
    not removed yet: Redis 7.0's EXEC aborts on it (isWatchedKeyExpired)."""
    return any(
        not key.stale
        and key.db < len(keyspace.dbs)
        and keyspace.dbs[key.db].is_expired(key.key, now_ms)
        for key in watched
    )


def run(ctx: Ctx, args: list[bytes]) -> Reply:
    """Run one command whose name and arity were checked when it was queued."""
    spec = lookup(args)
    if spec is None or spec.handler is None:
        return Error(errors.unknown_command(args[0], args[1:]))
    rest = args[2:] if spec.container else args[1:]
    try:
        if spec.name == "select" and not spec.container:
            # SELECT inside MULTI/EXEC changes the database of the commands after it.
            ctx.db_index = select_index(rest[0])
        return spec.handler(ctx, rest)
    except CommandError as exc:
        return Error(exc.message)
    except Exception as exc:
        # A handler bug must not stop the apply loop (every shim would stop at this record,
        # again on every replay). The reply is the same on every shim: it names no address.
        log.exception("command %r failed in apply", args[:1])
        return Error(f"ERR memlog internal error in '{spec.full_name}': {type(exc).__name__}")


def select_index(arg: bytes) -> int:
    """SELECT's database number, parsed as Redis does (no "+1", " 1" or "1_0")."""
    return parse_db_index(arg)
