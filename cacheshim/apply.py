"""Deterministic apply: (keyspace, record, log index) -> reply.

Every shim applies every committed record in log order through `Applier.apply`; nothing in
here reads a clock or an unseeded random source. Time is the record's time, kept monotonic
along the log; randomness comes from `random.Random(index)`. So every shim at index N holds
the same keyspace (`Keyspace.digest` proves it).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from cacheshim.acl.state import Users
from cacheshim.blocking import (
    DEADLINE_GRACE_MS,
    BlockedClients,
    BlockedEntry,
    WouldBlock,
    as_would_block,
    timeout_ms_of,
)
from cacheshim.commands import Command, Ctx, lookup
from cacheshim.commands.args import parse_db_index
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import NULL_ARRAY, OK, Error, Reply
from cacheshim.scripting.engine import MoveOffLoop
from cacheshim.scripting.state import ScriptingState
from cacheshim.tracking import NOBODY, By, note_read
from cacheshim.types.keyspace import Keyspace
from cacheshim.v1 import record_pb2

if TYPE_CHECKING:
    from cacheshim.hub import Hub

log = logging.getLogger("cacheshim.apply")


class Applier:
    def __init__(self, pubsub: Hub | None = None) -> None:
        self.keyspace = Keyspace()
        # The ACL users (cacheshim.acl): replicated state like the keyspace, changed only by
        # the records of ACL SETUSER, DELUSER, LOAD and CONFIG SET requirepass.
        self.acl = Users()
        # Where PUBLISH records deliver their messages: this shim's subscribers. Outside the
        # keyspace: delivery changes no state that apply computes.
        self.pubsub = pubsub
        self.applied_index = 0
        self.time_ms = 0
        # Clients blocked in BLPOP & co., served at apply (cacheshim.blocking), and those
        # the last record served: (proposing shim id, proposal id, reply).
        self.blocked = BlockedClients(self.keyspace)
        self.served: list[tuple[str, int, Reply]] = []
        # The ACL refusals of the last record's script calls (reason, object, username):
        # the proposing shim puts them in its ACL LOG (Ctx.acl_denied).
        self.denied: list[tuple[int, bytes, bytes]] = []
        # The pieces of large records still arriving (record.proto, Chunk), by (shim_id,
        # proposal_id), oldest first: deterministic state like the keyspace.
        self._pieces: dict[tuple[str, int], _Pieces] = {}
        self._pieces_bytes = 0
        # The script cache and function libraries (cacheshim.scripting): changed by records
        # only, like the keyspace; their commands run through `run`.
        self.scripts = ScriptingState(run_spec)

    def apply(self, index: int, payload: bytes) -> tuple[record_pb2.Record | None, Reply]:
        """Apply the record at `index`: its reply, and the record when it decodes (the
        proposing shim finds its waiting client by it, also when the reply is an error).

        Never raises for what the record holds: a record that cannot run (damaged, empty,
        malformed by a foreign writer) becomes the same error reply on every shim, logged
        once with its index, and changes nothing. Raises only when called out of order.
        """
        if index != self.applied_index + 1:
            raise RuntimeError(f"record {index} applied right after {self.applied_index}")
        try:
            return self._apply(index, payload)
        except MoveOffLoop:  # its script runs again from the start on the script thread
            self.applied_index = index - 1
            raise

    def _apply(self, index: int, payload: bytes) -> tuple[record_pb2.Record | None, Reply]:
        self.applied_index = index
        self.served = []
        self.denied = []
        try:
            record = record_pb2.Record.FromString(payload)
        except Exception:  # a foreign or damaged record: skipped the same way everywhere
            return None, self._refuse(index, "undecodable log record")
        try:
            if self._pieces:
                self._drop_stale_pieces(index)
            args = plain_args(payload)  # None: not a plain one-command record
            if args is None and record.HasField("chunk"):
                # (Not moved to the script thread: its pieces are taken as it runs.)
                return self._apply_piece(index, record)
            return self._apply_decoded(index, record, args)
        except Exception as exc:
            # A bug outside the command handlers (they have their own guard in `run`): the
            # reply names the exception's type only, so it is the same on every shim.
            log.exception("log record %d failed in apply", index)
            return record, Error(f"ERR memlog internal error in apply: {type(exc).__name__}")

    def _apply_piece(
        self, index: int, piece: record_pb2.Record
    ) -> tuple[record_pb2.Record | None, Reply]:
        """Keep one piece of a large record; at its last piece, apply the whole record here.

        A piece taken and waiting for more gives no record (nobody is answered yet); a piece
        refused gives its record, so the proposing shim answers its client at once and
        stops sending the rest.
        """
        chunk = piece.chunk
        key = (piece.shim_id, piece.proposal_id)
        problem = piece_problem(piece)
        pieces = self._pieces.get(key)
        if problem is None:
            if chunk.part == 0:
                if pieces is not None:
                    self._drop_pieces(key, f"started again at log record {index}")
                pieces = self._pieces[key] = _Pieces(chunk.parts, chunk.record_bytes, index)
            elif pieces is None:
                problem = (
                    f"piece {chunk.part} of {chunk.parts} of a large record whose earlier pieces "
                    "are not held (never written, or dropped)"
                )
            elif (chunk.part, chunk.parts, chunk.record_bytes) != (
                pieces.next_part, pieces.parts, pieces.record_bytes,
            ):  # fmt: skip
                problem = f"piece {chunk.part} of {chunk.parts} of a large record out of order"
            elif len(pieces.data) + len(chunk.data) > pieces.record_bytes:
                problem = "pieces of a large record longer than the record"
        if problem is not None:
            if pieces is not None:
                self._drop_pieces(key, f"log record {index} did not continue them")
            return piece, self._refuse(index, problem)
        assert pieces is not None
        # Room for these bytes: other sequences go first, oldest first (abandoned, most
        # likely); if that is not enough, this one goes.
        for other in list(self._pieces):
            if self._pieces_bytes + len(chunk.data) <= PIECES_HELD_BYTES_MAX:
                break
            if other != key:
                self._drop_pieces(other, f"no room for log record {index}")
        if self._pieces_bytes + len(chunk.data) > PIECES_HELD_BYTES_MAX:
            self._drop_pieces(key, "no room")
            return piece, self._refuse(index, "large record over the room for pieces")
        pieces.data += chunk.data
        self._pieces_bytes += len(chunk.data)
        pieces.next_part += 1
        pieces.last_index = index
        pieces.last_time_ms = self.time_ms
        if pieces.next_part < pieces.parts:
            return None, OK
        self._drop_pieces(key, "")
        if len(pieces.data) != pieces.record_bytes:
            return piece, self._refuse(index, "pieces of a large record shorter than the record")
        try:
            whole = record_pb2.Record.FromString(pieces.data)  # type: ignore[arg-type]
        except Exception:
            return piece, self._refuse(index, "undecodable large log record")
        del pieces  # the joined bytes: the decoded record holds its own copy
        if whole.HasField("chunk") or (whole.shim_id, whole.proposal_id) != key:
            return piece, self._refuse(index, "large log record whose pieces do not match it")
        return self._apply_decoded(index, whole, movable=False)

    def _drop_pieces(self, key: tuple[str, int], why: str) -> None:
        pieces = self._pieces.pop(key)
        self._pieces_bytes -= len(pieces.data)
        if why:
            log.warning(
                "dropped %d of %d pieces (%d bytes) of large record %s/%d from log record %d: %s",
                pieces.next_part, pieces.parts, len(pieces.data), key[0], key[1],
                pieces.first_index, why,
            )  # fmt: skip

    def _drop_stale_pieces(self, index: int) -> None:
        """Pieces whose writer went silent (a shim that died mid-transfer) are dropped after
        PIECES_GAP_RECORDS_MAX records and PIECES_GAP_MS_MAX of log time: both, so neither a
        burst of writes nor a clock ahead in some shim ends a transfer still going on."""
        for key, pieces in list(self._pieces.items()):
            if (
                index - pieces.last_index > PIECES_GAP_RECORDS_MAX
                and self.time_ms - pieces.last_time_ms > PIECES_GAP_MS_MAX
            ):
                self._drop_pieces(key, f"no piece since log record {pieces.last_index}")

    def _refuse(self, index: int, problem: str) -> Error:
        log.error("log record %d refused: %s", index, problem)
        return Error(f"ERR memlog: {problem}")

    def _apply_decoded(
        self,
        index: int,
        record: record_pb2.Record,
        args: list[bytes] | None = None,
        movable: bool = True,
    ) -> tuple[record_pb2.Record | None, Reply]:
        """Apply a whole record. `args`: its command's arguments when `plain_args` found it
        plain (one command, no transaction, unblock or chunk, no unknown field: then of
        record_problem's checks only the database's range is left to make)."""
        if args is None:
            problem = record_problem(record, len(self.keyspace.dbs))
        elif record.db >= len(self.keyspace.dbs):
            problem = f"log record for database {record.db}, which does not exist"
        else:
            problem = None
        if problem is not None:
            return record, self._refuse(index, problem)
        self.time_ms = max(self.time_ms, record.time_ms)
        changes = self.keyspace.changes  # client-side caching listens (cacheshim.tracking)
        if changes is not None:
            changes.append(NOBODY)
        self.keyspace.expire_due(self.time_ms, index)
        if args is None and (record.unblock_proposal_id or record.unblock_all):
            return record, self._unblock(record)
        if changes is not None:
            changes.append(By(record.shim_id, record.proposal_id))
        ctx = Ctx(
            self.keyspace, record.db, self.time_ms, index, pubsub=self.pubsub, acl=self.acl,
            scripts=self.scripts, user=record.user or None, acl_denied=self.denied,
            script_movable=movable and len(record.commands) == 1,
        )  # fmt: skip
        if args is not None or not record.transaction:
            if args is None:
                args = list(record.commands[0].args)
            reply = run(ctx, args)
            if changes is not None and ctx.script_read:  # (a record alone reads in scripts only)
                note_read(changes, ctx, args)
            if (block := as_would_block(reply)) is not None:
                self._block(record, args, block)
            else:
                self._serve_blocked(index)
            return record, reply
        ctx.in_transaction = True
        if watch_broken(self.keyspace, record.watched, record.watch_index):
            return record, NULL_ARRAY  # EXEC aborted: a watched key changed
        if changes is None:
            replies: Reply = [run(ctx, list(c.args)) for c in record.commands]
        else:
            replies = []
            for command in record.commands:
                replies.append(run(ctx, list(command.args)))
                note_read(changes, ctx, list(command.args))
        self._serve_blocked(index)
        return record, replies

    # -- blocked clients (cacheshim.blocking) -------------------------------------------------

    def _block(self, record: record_pb2.Record, args: list[bytes], block: WouldBlock) -> None:
        """A blocking command found nothing: its client waits in the applied state."""
        if not record.proposal_id or self.blocked.owner_known(record.shim_id, record.proposal_id):
            return  # no owner to answer (a foreign writer), or the same proposal twice
        timeout_ms = timeout_ms_of(block, args)
        deadline_ms = self.time_ms + timeout_ms + DEADLINE_GRACE_MS if timeout_ms > 0 else None
        waits_as = args if block.args is None else list(block.args)
        self.blocked.add(
            BlockedEntry(
                record.shim_id, record.proposal_id, record.db, waits_as, block.keys,
                block.kind, deadline_ms,
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
                if (
                    value is None or (entry.kind is not None and not isinstance(value, entry.kind))
                ) and not _waits_for_its_group(entry):
                    continue  # not for this client (another waiting here may want it)
                ctx = Ctx(self.keyspace, entry.db, now_ms, index, pubsub=self.pubsub, acl=self.acl)
                ctx.serving_blocked = key
                changes = self.keyspace.changes
                if changes is not None:  # what it changes, it changes for its own client
                    changes.append(By(entry.shim_id, entry.proposal_id))
                reply = run(ctx, entry.args)
                if changes is not None and as_would_block(reply) is None:
                    note_read(changes, ctx, entry.args)
                if as_would_block(reply) is not None:
                    continue  # nothing for it after all: it keeps its place
                blocked.remove(entry.shim_id, entry.proposal_id)
                self.served.append((entry.shim_id, entry.proposal_id, reply))
                ready.extend(blocked.take_ready())


def _waits_for_its_group(entry: BlockedEntry) -> bool:
    """A client in XREADGROUP is answered (with an error) when its stream goes away or is
    replaced by another type, as in Redis 7.0: its group cannot come back."""
    return entry.args[0].upper() == b"XREADGROUP"


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


# How a large record travels (record.proto, Chunk; docs/large-values.md). Part of the log's
# format: every shim must use the same values, or their keyspaces could differ.
RECORD_BYTES_MAX = 1 << 30  # one whole record, joined from its pieces
PIECES_HELD_BYTES_MAX = 2 << 30  # pieces of unfinished records held at once, all writers
PIECES_GAP_RECORDS_MAX = 100_000
PIECES_GAP_MS_MAX = 120_000


@dataclass(slots=True)
class _Pieces:
    """The pieces so far of one large record."""

    parts: int
    record_bytes: int
    first_index: int
    data: bytearray = field(default_factory=bytearray)
    next_part: int = 0
    last_index: int = 0
    last_time_ms: int = 0


def piece_problem(piece: record_pb2.Record) -> str | None:
    """Why a piece of a large record is malformed (None: it is not)."""
    chunk = piece.chunk
    if unknown_fields(piece) or unknown_fields(chunk):
        return "log record piece with unknown fields: from a newer or foreign writer"
    if piece.commands or piece.watched or piece.transaction or piece.watch_index or piece.db:
        return "log record piece with fields of a whole record"
    if chunk.parts < 2 or chunk.part >= chunk.parts:
        return f"log record piece {chunk.part} of {chunk.parts}"
    if not chunk.data:
        return "log record piece without data"
    if chunk.record_bytes > RECORD_BYTES_MAX:
        return f"large log record of {chunk.record_bytes} bytes, over {RECORD_BYTES_MAX}"
    return None


def record_problem(record: record_pb2.Record, databases: int) -> str | None:
    """Why a decoded record cannot be applied (None: it can). The text becomes the error
    reply, so it says only what is in the record: the same on every shim."""
    unknown = unknown_fields(record)
    for command in record.commands:
        unknown += unknown_fields(command)
    for watched in record.watched:
        unknown += unknown_fields(watched)
    if unknown:
        fields = ", ".join(map(str, sorted(set(unknown))))
        return f"log record with unknown fields ({fields}): from a newer or foreign writer"
    if not record.commands:
        return "log record without a command"
    for i, command in enumerate(record.commands):
        if not command.args:
            return f"log record whose command {i} has no arguments"
    if record.db >= databases:
        return f"log record for database {record.db}, which does not exist"
    if record.transaction:
        for watched in record.watched:
            if watched.db >= databases:
                return f"log record watching a key of database {watched.db}, which does not exist"
        return None
    if len(record.commands) != 1:
        return f"log record with {len(record.commands)} commands outside a transaction"
    if record.watched or record.watch_index:
        return "log record with watched keys outside a transaction"
    return None


def plain_args_py(payload: bytes) -> list[bytes] | None:
    """The arguments of a plain record (one command, outside a transaction, with no
    unblock, chunk, watched or unknown field), or None: the specification of the C twin
    `_records.plain_args`, which also steps aside for encodings the shim never writes
    (fields out of order or repeated). Only for payloads that decode."""
    record = record_pb2.Record.FromString(payload)
    if (
        len(record.commands) != 1
        or record.transaction
        or record.watched
        or record.watch_index
        or record.unblock_proposal_id
        or record.unblock_all
        or record.HasField("chunk")
        or record_problem(record, record.db + 1) is not None
    ):
        return None
    return list(record.commands[0].args)


def _native_plain_args() -> Callable[[bytes], list[bytes] | None]:
    try:
        from cacheshim import _records
    except ImportError:  # MEMLOG_PURE_PYTHON=1: the general path does all records
        return lambda payload: None
    found: Callable[[bytes], list[bytes] | None] = _records.plain_args
    return found


# A plain record's arguments, read in C (None: the general path); tests/cacheshim/test_records.py.
plain_args: Callable[[bytes], list[bytes] | None] = _native_plain_args()


def run(ctx: Ctx, args: list[bytes]) -> Reply:
    """Run one command whose name and arity were checked when it was queued."""
    spec = lookup(args)
    if spec is None or spec.handler is None:
        return Error(errors.unknown_command(args[0], args[1:]))
    if not spec.arity_ok(len(args)):  # checked when queued, but a record may be foreign
        return Error(errors.wrong_number_of_arguments(spec.full_name))
    return run_spec(ctx, spec, args)


def run_spec(ctx: Ctx, spec: Command, args: list[bytes]) -> Reply:
    """Run a command looked up and checked already (`run`, a script's redis.call)."""
    rest = args[2:] if spec.container else args[1:]
    assert spec.handler is not None
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


def unknown_fields(message: Message) -> list[int]:
    """The numbers of the fields a message carries that its schema here does not know."""
    found = UnknownFieldSet(message)
    return [found[i].field_number for i in range(len(found))]
