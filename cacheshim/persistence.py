"""SAVE, BGSAVE, LASTSAVE and INFO's persistence fields, in terms of the snapshot store.

A shim writes no files: every acknowledged write is in the log, and snapshots are written
off the serving path by the snapshotter (`memlog snapshot`) into logsvc's snapshot store.
So here:

- BGSAVE appends a marker record (the command BGSAVE, which apply answers and ignores);
  a snapshotter that follows the log writes a snapshot as soon as it applies one (without
  waiting for its next round). It answers "Background saving started", as Redis does.
- SAVE does the same, then waits until a snapshot at or above the index this shim had
  applied when SAVE came is durable in the store, and only then answers OK: a durable
  snapshot covers everything it had acknowledged.
- When no snapshotter runs, or none stores a covering snapshot within SAVE_HANDOFF_S, the
  shim makes one itself, off its serving path: it starts `memlog snapshot` once (a child
  process, as Redis forks one for BGSAVE; it restores the newest snapshot, replays the log
  and stores the next one, at the low priority the snapshotter takes) and waits for it (SAVE)
  or not (BGSAVE). SAVE answers OK only once a covering snapshot is durable, an error naming
  why otherwise (never later than SAVE_CHILD_TIMEOUT_S); while one save runs, another SAVE or
  BGSAVE answers "ERR Background save already in progress" and BGSAVE SCHEDULE queues one
  more, as in Redis. INFO's rdb_bgsave_in_progress and rdb_last_bgsave_status follow it.
- LASTSAVE: when the newest durable snapshot was recorded (the shim's start if none).
- INFO: the newest snapshot's index, age and size, the log's first index, and the records
  applied since the newest snapshot (rdb_changes_since_last_save).

The store's state comes from the zone-local log node's Status, asked every WATCH_EVERY_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
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
SAVE_POLL_S = 0.1
# How long a running snapshotter gets to store the snapshot a marker asked for before the
# shim makes it itself (a snapshotter answers a marker at once; writing a big keyspace takes
# longer, and then both work: the later put is refused, the result is the same).
SAVE_HANDOFF_S = 5.0
# The longest a save made by the shim may take before it is stopped and reported failed.
SAVE_CHILD_TIMEOUT_S = 600.0
MARKER = b"BGSAVE"
IN_PROGRESS = "ERR Background save already in progress"


@dataclass
class StoreState:
    """What this shim last learned of the snapshot store and the log's retained range."""

    snapshot_index: int = 0
    snapshot_bytes: int = 0
    snapshot_created_ms: int = 0
    log_first_index: int = 0
    seen_ms: int = 0  # when it was asked (0: never answered yet)
    snapshots_seen: int = 0  # distinct newest snapshots seen since start
    # The save in progress (SAVE or BGSAVE of this shim), and what the last one came to.
    saving: asyncio.Task[str | None] | None = None
    save_started_ms: int = 0
    save_scheduled: bool = False  # BGSAVE SCHEDULE while one ran: one more after it
    last_save_ok: bool = True
    last_save_s: int = -1
    child: asyncio.subprocess.Process | None = None


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
    schedule = len(args) == 2 and args[1].upper() == b"SCHEDULE"
    if name == b"BGSAVE" and (len(args) > 2 or (len(args) == 2 and not schedule)):
        return Error("ERR syntax error")
    state = state_of(shim)
    if state.saving is not None and not state.saving.done():
        if schedule:
            state.save_scheduled = True
            return Status("Background saving scheduled")
        return Error(IN_PROGRESS)
    task = _start_save(shim, session.db, session.id)
    if name == b"BGSAVE":
        return Status("Background saving started")
    error = await asyncio.shield(task)
    return OK if error is None else Error(error)


def _start_save(shim: Shim, db: int, origin: int | None) -> asyncio.Task[str | None]:
    state = state_of(shim)
    state.save_started_ms = time.time_ns() // 1_000_000
    task = asyncio.ensure_future(_make_snapshot(shim, db, origin))
    state.saving = task
    task.add_done_callback(lambda t: _save_done(shim, t))
    return task


def _save_done(shim: Shim, task: asyncio.Task[str | None]) -> None:
    state = state_of(shim)
    error = "cancelled" if task.cancelled() else task.exception() or task.result()
    state.last_save_ok = error is None
    state.last_save_s = (time.time_ns() // 1_000_000 - state.save_started_ms) // 1000
    if error is not None:
        log.warning("a save failed: %s", error)
    if state.save_scheduled and not task.cancelled():
        state.save_scheduled = False
        _start_save(shim, 0, None)


async def _make_snapshot(shim: Shim, db: int, origin: int | None) -> str | None:
    """Make sure a durable snapshot covers what this shim has applied now: ask the
    snapshotter (a marker record), and make one in a child process if none comes within
    SAVE_HANDOFF_S. None once one is durable; else the error to answer."""
    wanted = shim.applier.applied_index
    reply = await shim.writer.submit(_marker(db), origin=origin)
    if isinstance(reply, Error):
        return reply.message  # the log did not take the marker (its error says why)
    loop = asyncio.get_running_loop()
    handoff = loop.time() + SAVE_HANDOFF_S
    while loop.time() < handoff:
        if (await refresh(shim)).snapshot_index >= wanted:
            return None
        await asyncio.sleep(SAVE_POLL_S)
    log.info(
        "no snapshot covering index %d came within %gs of asking: making one (memlog snapshot)",
        wanted, SAVE_HANDOFF_S,
    )  # fmt: skip
    state = state_of(shim)
    child = state.child = await asyncio.create_subprocess_exec(
        *snapshot_command(shim),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = asyncio.ensure_future(child.communicate())
    deadline = loop.time() + SAVE_CHILD_TIMEOUT_S
    try:
        while True:
            done = output.done()
            newest = (await refresh(shim)).snapshot_index
            if newest >= wanted:
                return None
            if done:
                said = (output.result()[0] or b"").decode(errors="replace").strip()
                last = said.splitlines()[-1] if said else "(no output)"
                return (
                    f"ERR memlog: the snapshot covering log index {wanted} was not stored "
                    f"(memlog snapshot exited with {child.returncode}: {last})"
                )
            if loop.time() >= deadline:
                return (
                    f"ERR memlog: no snapshot covering log index {wanted} became durable within "
                    f"{SAVE_CHILD_TIMEOUT_S:g}s (the newest is at {newest}); the save was stopped"
                )
            await asyncio.sleep(SAVE_POLL_S)
    finally:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
        await asyncio.gather(output, return_exceptions=True)
        state.child = None


def snapshot_command(shim: Shim) -> list[str]:
    """The one-shot snapshot the shim runs for SAVE/BGSAVE: the same CLI as the snapshotter
    (temp files in $TMPDIR)."""
    return [
        sys.executable, "-m", "cacheshim.launcher", "snapshot",
        "--log", ",".join(shim.config.log_addresses), "--min-records", "1",
    ]  # fmt: skip


def stop(shim: Shim) -> None:
    """Stop this shim's save, if one runs (the shim stops)."""
    state = state_of(shim)
    if state.saving is not None:
        state.saving.cancel()
    if state.child is not None and state.child.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            state.child.kill()


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
        ("rdb_bgsave_in_progress", int(state.saving is not None and not state.saving.done())),
        ("rdb_last_bgsave_status", "ok" if state.last_save_ok else "err"),
        ("rdb_last_bgsave_time_sec", state.last_save_s),
        ("memlog_snapshot_index", state.snapshot_index),
        ("memlog_snapshot_age_sec", age_s),
        ("memlog_snapshot_bytes", state.snapshot_bytes),
        ("memlog_log_first_index", state.log_first_index),
        ("memlog_store_seen_age_ms", now_ms - state.seen_ms if state.seen_ms else -1),
    ]
