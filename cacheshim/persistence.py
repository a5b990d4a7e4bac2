"""SAVE, BGSAVE, LASTSAVE and INFO's persistence fields, in terms of the snapshot store.

A shim writes no files: every acknowledged write is in the log, and snapshots are written
off the serving path by the snapshotter (`memlog snapshot`) into logsvc's snapshot store.
So here:

- BGSAVE appends a marker record (the command BGSAVE, which apply answers and ignores);
  a snapshotter that follows the log writes a snapshot as soon as it applies one (without
  waiting for its next round). It answers "Background saving started", as Redis does.
- SAVE does the same, then waits until a snapshot at or above the index this shim had
  applied when SAVE came is durable in the store, and only then answers OK: a durable
  snapshot covers everything it had acknowledged. Without a running snapshotter none
  comes, and SAVE answers an error after SAVE_WAIT_S saying so.
- LASTSAVE: when the newest durable snapshot was recorded (the shim's start if none).
- INFO: the newest snapshot's index, age and size, the log's first index, and the records
  applied since the newest snapshot (rdb_changes_since_last_save).

The store's state comes from the zone-local log node's Status, asked every WATCH_EVERY_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cacheshim.protocol.resp import OK, Error, Reply, Status
from cacheshim.v1 import record_pb2

if TYPE_CHECKING:
    from cacheshim.commands.serverview import ShimView
    from cacheshim.server.sessions import Session
    from cacheshim.server.shim import Shim

log = logging.getLogger("cacheshim.persistence")

WATCH_EVERY_S = 1.0
SAVE_WAIT_S = 60.0
SAVE_POLL_S = 0.1
MARKER = b"BGSAVE"


@dataclass
class StoreState:
    """What this shim last learned of the snapshot store and the log's retained range."""

    snapshot_index: int = 0
    snapshot_bytes: int = 0
    snapshot_created_ms: int = 0
    log_first_index: int = 0
    seen_ms: int = 0  # when it was asked (0: never answered yet)
    snapshots_seen: int = 0  # distinct newest snapshots seen since start


_states: weakref.WeakKeyDictionary[object, StoreState] = weakref.WeakKeyDictionary()


def state_of(shim: object) -> StoreState:
    state = _states.get(shim)
    if state is None:
        state = _states[shim] = StoreState()
    return state


async def refresh(shim: Shim) -> StoreState:
    """Ask the log nodes (the zone-local first) for the store's state; the last known state
    if none answers."""
    state = state_of(shim)
    client = shim.log_reader_client
    for address in client.addresses:
        try:
            st = await client.status(address)
        except Exception:  # a node down: the next one
            continue
        newest = st.newest_snapshot
        if newest.index != state.snapshot_index and newest.index:
            state.snapshots_seen += 1
        state.snapshot_index = newest.index
        state.snapshot_bytes = newest.size_bytes
        state.snapshot_created_ms = newest.created_at_ms
        state.log_first_index = st.first_index
        state.seen_ms = time.time_ns() // 1_000_000
        break
    return state


async def watch(shim: Shim) -> None:
    """Keep the store's state fresh, forever (a task of the shim)."""
    while True:
        with contextlib.suppress(Exception):
            await refresh(shim)
        await asyncio.sleep(WATCH_EVERY_S)


def _marker(db: int) -> record_pb2.Record:
    record = record_pb2.Record(db=db, time_ms=time.time_ns() // 1_000_000)
    record.commands.add().args.append(MARKER)
    return record


def is_marker(record: record_pb2.Record | None) -> bool:
    """A snapshot request (what the snapshotter looks for in the records it applies)."""
    return (
        record is not None
        and not record.transaction
        and len(record.commands) == 1
        and len(record.commands[0].args) == 1
        and record.commands[0].args[0].upper() in (b"BGSAVE", b"SAVE")
    )


def save_command(shim: Shim, session: Session, args: list[bytes]) -> asyncio.Future[Reply]:
    """SAVE or BGSAVE from a connection (arity checked): the future of its reply."""
    return asyncio.ensure_future(_save(shim, session, args))


async def _save(shim: Shim, session: Session, args: list[bytes]) -> Reply:
    name = args[0].upper()
    if name == b"BGSAVE" and (len(args) > 2 or (len(args) == 2 and args[1].upper() != b"SCHEDULE")):
        return Error("ERR syntax error")
    wanted = shim.applier.applied_index
    reply = await shim.writer.submit(_marker(session.db), origin=session.id)
    if isinstance(reply, Error):
        return reply  # the log did not take the marker (its error says why)
    if name == b"BGSAVE":
        return Status("Background saving started")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SAVE_WAIT_S
    while True:
        state = await refresh(shim)
        if state.snapshot_index >= wanted:
            return OK
        if loop.time() >= deadline:
            return Error(
                f"ERR memlog: no snapshot covering log index {wanted} became durable within "
                f"{SAVE_WAIT_S:g}s (the newest is at {state.snapshot_index}); is a snapshotter "
                "(`memlog snapshot --every-s N`) running?"
            )
        await asyncio.sleep(SAVE_POLL_S)


def last_save_s(shim: ShimView) -> int:
    state = state_of(shim)
    if state.snapshot_created_ms:
        return state.snapshot_created_ms // 1000
    return shim.stats.started_ms // 1000


def info_fields(shim: ShimView, now_ms: int) -> list[tuple[str, int | str]]:
    """The persistence fields that have a meaning here (INFO persistence)."""
    state = state_of(shim)
    age_s = (now_ms - state.snapshot_created_ms) // 1000 if state.snapshot_created_ms else -1
    return [
        ("rdb_changes_since_last_save", max(0, shim.applier.applied_index - state.snapshot_index)),
        ("rdb_last_save_time", last_save_s(shim)),
        ("rdb_saves", state.snapshots_seen),
        ("memlog_snapshot_index", state.snapshot_index),
        ("memlog_snapshot_age_sec", age_s),
        ("memlog_snapshot_bytes", state.snapshot_bytes),
        ("memlog_log_first_index", state.log_first_index),
        ("memlog_store_seen_age_ms", now_ms - state.seen_ms if state.seen_ms else -1),
    ]
