"""The off-box tools on the snapshot store: `memlog snapshot`, `export`, `import`, `restore`.

All of them rebuild the keyspace the way a shim does at start (`bootstrap.recover`: the
newest usable snapshot, then the log through the same `Applier`), so what they write is what
a shim holds at that index.

- The snapshotter writes the next snapshot (a memlog RDB with its state) into a temp file,
  reads it back to check it (size and CRC-64), and stores it with `put_snapshot`. Resident
  (`--follow`, a `Cadence`) it keeps its applier in memory and follows the log, and writes
  one every `every_s` seconds when at least `min_records` came since the newest snapshot,
  and at once when `every_records` came. It is a process of its own: serving shims never
  pause for it.
- export: a plain Redis RDB file (no memlog fields) of the state at the commit index.
- import: a Redis RDB file loaded through the log, as ordinary writes sent to a shim.
- restore: the state at a log index, or at the last record whose time is <= T, as an RDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import tempfile
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from cacheshim import persistence
from cacheshim.apply import Applier
from cacheshim.commands import load_all
from cacheshim.snapshot import bootstrap, model
from cacheshim.snapshot.crc64 import crc64
from cacheshim.snapshot.rdb import (
    LoadResult,
    WriteResult,
    dump_payload,
    read_rdb,
    restore,
    snapshot_state,
    write_rdb,
)
from cacheshim.types.hashvalue import HashValue
from cacheshim.types.listvalue import ListValue
from cacheshim.types.setvalue import SetValue
from cacheshim.types.zsetvalue import ZSet
from cacheshim.v1 import record_pb2
from logsvc.auth import ClientCredentials
from logsvc.client import LogClient, LogClientError, TrimmedError, put_snapshot

log = logging.getLogger("cacheshim.snapshot.tools")


async def commit_index(client: LogClient) -> int:
    """The commit index of the first node that answers Status."""
    errors: list[str] = []
    for address in client.addresses:
        try:
            return (await client.status(address)).commit_index
        except LogClientError as exc:
            errors.append(str(exc))
    raise LogClientError("no log node answered Status: " + "; ".join(errors))


TEMP_PREFIX = "memlog-snapshotter-"
VERIFY_CHUNK_BYTES = 1 << 20


def _temp_path(temp_dir: str | None, prefix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=prefix, dir=temp_dir)
    os.close(fd)
    return Path(name)


# -- the snapshotter --------------------------------------------------------------------------


class SnapshotUnverified(Exception):
    """The file just written does not read back as written: it is not stored."""


def verify_written(path: Path, written: WriteResult) -> None:
    """Read the file back and check it is what write_rdb said it wrote: its size, and its
    CRC-64 over everything before the trailer equal to the trailer and to the checksum the
    writer computed on the way (a short write, a disk or page-cache fault, a file changed
    by someone else). Raises SnapshotUnverified."""
    crc = 0
    size = 0
    tail = b""
    with path.open("rb") as f:
        while chunk := f.read(VERIFY_CHUNK_BYTES):
            size += len(chunk)
            data = tail + chunk
            crc = crc64(crc, data[:-8])
            tail = data[-8:]
    if size != written.bytes_written or len(tail) != 8:
        raise SnapshotUnverified(f"{size} bytes on disk, {written.bytes_written} written")
    trailer = int.from_bytes(tail, "little")
    if crc != written.checksum or trailer != written.checksum:
        raise SnapshotUnverified(
            f"CRC-64 {crc:016x} read back, {trailer:016x} in the trailer, "
            f"{written.checksum:016x} written"
        )


def remove_stale_temp_files(temp_dir: str | None) -> int:
    """Files a snapshotter killed mid-write left in its own temp folder (only a folder given
    with --temp-dir: the system's is shared); how many."""
    if temp_dir is None:
        return 0
    removed = 0
    for path in Path(temp_dir).glob(TEMP_PREFIX + "*"):
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    return removed


@dataclass(frozen=True, slots=True)
class Cadence:
    """When a resident snapshotter (--follow) writes: a round every_s seconds after the last
    round ended (never right after it, however long it took), writing one when at least
    min_records records came since the newest snapshot; and one when every_records came
    (None: that rule is off), but not sooner than min_interval_s after the last snapshot
    ended, so that a write rate above every_records per snapshot does not make them back
    to back. A SAVE/BGSAVE marker asks for one at once."""

    every_s: float | None = None
    every_records: int | None = None
    min_records: int = 1
    min_interval_s: float = 0.0

    def validate(self) -> None:
        if self.every_s is None and self.every_records is None:
            raise ValueError("--follow needs a cadence: --every-s and/or --every-records")
        if self.every_s is not None and not self.every_s > 0:
            raise ValueError(f"--every-s must be above 0, not {self.every_s:g}")
        if self.every_records is not None and self.every_records < 1:
            raise ValueError(f"--every-records must be at least 1, not {self.every_records}")
        if self.min_records < 1:
            raise ValueError(f"--min-records must be at least 1, not {self.min_records}")
        if not self.min_interval_s >= 0:
            raise ValueError(f"--min-interval-s must be at least 0, not {self.min_interval_s:g}")


class Snapshotter:
    """One-shot (`run(None)`): restore the newest snapshot, replay the log to the commit
    index, write and store the next one. Resident (`run(cadence)`, `memlog snapshot
    --follow`): the same start, then it keeps its applier and follows the log with the
    shims' apply code, so each later snapshot costs the new records' apply and one write.
    A log trimmed past it (it fell behind) sends it through the start again."""

    def __init__(
        self, client: LogClient, min_records: int = 1, temp_dir: str | None = None
    ) -> None:
        load_all()
        self.client = client
        self.min_records = max(1, min_records)
        self.every_records: int | None = None
        self.temp_dir = temp_dir
        self.applier = Applier()
        self.newest = 0  # the newest snapshot index known durable
        self._lock = asyncio.Lock()  # the applier: apply, recover and write never overlap
        # Set when a SAVE/BGSAVE marker was applied (cacheshim.persistence): a round now.
        self.asked = asyncio.Event()
        # Set when every_records records came since the newest snapshot.
        self.due = asyncio.Event()
        self.recoveries = 0

    async def recover(self) -> None:
        async with self._lock:
            target = await commit_index(self.client)
            done = await bootstrap.recover(
                self.applier, self.client, target, temp_dir=self.temp_dir
            )
            self.newest = max(self.newest, done.snapshot_index)
            self.recoveries += 1
            log.info(
                "at index %d (snapshot %d, then %d records of the log)",
                done.applied_index, done.snapshot_index, done.replayed_records,
            )  # fmt: skip

    async def take(self, min_records: int | None = None) -> int | None:
        """Write and store a snapshot at the applied index if enough records (min_records,
        else the snapshotter's setting) came since the newest one; its index, or None. The
        file is read back and checked before it is stored (SnapshotUnverified if not)."""
        least = self.min_records if min_records is None else min_records
        catalog = await bootstrap.list_snapshots_any(self.client)
        if catalog:
            self.newest = max(self.newest, catalog[0].index)
        path = _temp_path(self.temp_dir, TEMP_PREFIX)
        try:
            async with self._lock:
                applier = self.applier
                index = applier.applied_index
                if index == 0 or index - self.newest < least:
                    return None
                started = time.monotonic()
                cpu = time.process_time()
                # On the loop, not in a thread: the applier must not change while it is read,
                # and nothing else of this process needs the loop meanwhile.
                with path.open("wb") as out:
                    written = write_rdb(applier.keyspace, out, snapshot_state(applier))
                    out.flush()
                    os.fsync(out.fileno())
                wrote_s, wrote_cpu = time.monotonic() - started, time.process_time() - cpu
            await asyncio.to_thread(verify_written, path, written)
            started = time.monotonic()
            response = await put_snapshot(self.client, index, path)
            self.newest = max(self.newest, index)
            self.due.clear()
            log.info(
                "snapshot %d stored%s: %d keys, %d bytes, written in %.2fs (CPU %.2fs), "
                "put in %.2fs",
                index, " (a duplicate)" if response.duplicate else "", written.keys,
                written.bytes_written, wrote_s, wrote_cpu, time.monotonic() - started,
            )  # fmt: skip
            return index
        finally:
            path.unlink(missing_ok=True)

    def _applied(self, record: record_pb2.Record | None) -> None:
        if persistence.is_marker(record):
            self.asked.set()
        every = self.every_records
        if every is not None and self.applier.applied_index - self.newest >= every:
            self.due.set()

    async def follow(self) -> None:
        """Apply the log as it commits, forever; from the newest snapshot again if the log
        was trimmed past this applier (it fell behind)."""
        while True:
            try:
                async for index, payload in self.client.read(
                    self.applier.applied_index + 1, follow=True
                ):
                    async with self._lock:
                        expected = self.applier.applied_index + 1
                        if index == expected:
                            record, _ = self.applier.apply(index, payload)
                            self._applied(record)
                        elif index > expected:
                            # Never apply past a hole: read again from the next record.
                            log.warning("the log stream skipped from %d to %d", expected, index)
                            break
            except TrimmedError as exc:
                log.warning("the log was trimmed past this snapshotter (%s): recovering", exc)
                await self.recover()
            except LogClientError as exc:
                log.warning("reading the log failed: %s; retrying", exc)
                await asyncio.sleep(0.5)

    async def run(self, cadence: Cadence | None) -> int:
        removed = remove_stale_temp_files(self.temp_dir)
        if removed:
            log.info("removed %d temp files a stopped snapshotter left", removed)
        await self.recover()
        if cadence is None:
            taken = await self.take()
            print(
                f"snapshot {taken} stored"
                if taken is not None
                else f"no snapshot: at index {self.applier.applied_index}, newest snapshot "
                f"{self.newest} (fewer than {self.min_records} records since)"
            )
            return 0
        cadence.validate()
        self.min_records = cadence.min_records
        self.every_records = cadence.every_records
        follower = asyncio.create_task(self.follow(), name="snapshotter-follow")
        loop = asyncio.get_running_loop()
        next_round = None if cadence.every_s is None else loop.time() + cadence.every_s
        earliest_due = 0.0  # no round for every_records before this (min_interval_s)
        try:
            while True:
                now = loop.time()
                events = [self.asked] if now < earliest_due else [self.asked, self.due]
                deadlines = [] if next_round is None else [next_round]
                if self.due.is_set() and now < earliest_due:
                    deadlines.append(earliest_due)
                timeout = max(0.0, min(deadlines) - now) if deadlines else None
                wait = [asyncio.ensure_future(e.wait()) for e in events]
                await asyncio.wait(
                    [*wait, follower], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                for task in wait:
                    task.cancel()
                if follower.done():
                    follower.result()  # raises what ended it
                now = loop.time()
                asked = self.asked.is_set()
                due = self.due.is_set() and now >= earliest_due
                timed = next_round is not None and now >= next_round
                if not (asked or due or timed):
                    continue
                self.asked.clear()
                self.due.clear()
                taken = None
                try:
                    # Asked (SAVE, BGSAVE) or due by records: one now, whatever min_records.
                    taken = await self.take(min_records=1 if (asked or due) else None)
                except (LogClientError, SnapshotUnverified) as exc:
                    log.warning("storing a snapshot failed: %s; trying again next round", exc)
                ended = loop.time()
                if cadence.every_s is not None:
                    next_round = ended + cadence.every_s
                if taken is not None:
                    earliest_due = ended + cadence.min_interval_s
        finally:
            follower.cancel()


async def snapshot_main(
    addresses: list[str],
    cadence: Cadence | None,
    min_records: int,
    temp_dir: str | None,
    credentials: ClientCredentials | None = None,
) -> int:
    async with LogClient(addresses, credentials=credentials) as client:
        return await Snapshotter(client, min_records, temp_dir).run(cadence)


# -- export and point-in-time restore -----------------------------------------------------------


def write_plain_rdb(applier: Applier, path: Path) -> int:
    """A plain Redis RDB file (no memlog fields) of the applier's keyspace, written to a temp
    file beside path and renamed; the number of keys."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as out:
        result = write_rdb(applier.keyspace, out, None, ctime_s=applier.time_ms // 1000)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
    return result.keys


async def export_main(
    addresses: list[str],
    rdb: Path,
    temp_dir: str | None,
    credentials: ClientCredentials | None = None,
) -> int:
    load_all()
    async with LogClient(addresses, credentials=credentials) as client:
        applier = Applier()
        target = await commit_index(client)
        done = await bootstrap.recover(applier, client, target, temp_dir=temp_dir, retry=False)
        keys = write_plain_rdb(applier, rdb)
    print(
        f"exported {keys} keys at log index {done.applied_index} to {rdb} "
        f"(snapshot {done.snapshot_index} + {done.replayed_records} records)"
    )
    return 0


def record_time_ms(payload: bytes) -> int | None:
    """A record's time (None: it does not decode; apply changes nothing for it)."""
    try:
        return record_pb2.Record.FromString(payload).time_ms
    except Exception:
        return None


async def restore_main(
    addresses: list[str],
    rdb: Path,
    to_index: int | None,
    to_time_ms: int | None,
    temp_dir: str | None,
    credentials: ClientCredentials | None = None,
) -> int:
    """The state at log index to_index, or after the last record whose time (apply's,
    monotonic along the log) is <= to_time_ms, as a plain RDB file."""
    load_all()
    async with LogClient(addresses, credentials=credentials) as client:
        commit = await commit_index(client)
        applier = Applier()
        if to_index is not None:
            if to_index > commit:
                raise LogClientError(f"index {to_index} is above the commit index ({commit})")
            done = await bootstrap.recover(
                applier, client, to_index, at_most=to_index, temp_dir=temp_dir, retry=False
            )
        else:
            assert to_time_ms is not None
            done = await _recover_to_time(applier, client, commit, to_time_ms, temp_dir)
        keys = write_plain_rdb(applier, rdb)
    print(
        f"restored {keys} keys at log index {applier.applied_index} (time {applier.time_ms} ms) "
        f"to {rdb} (snapshot {done.snapshot_index} + {done.replayed_records} records)"
    )
    return 0


async def _recover_to_time(
    applier: Applier, client: LogClient, commit: int, to_time_ms: int, temp_dir: str | None
) -> bootstrap.Recovered:
    """From the newest snapshot whose apply time is <= to_time_ms, the records up to the
    first whose time would take apply's time past it."""
    catalog = await bootstrap.list_snapshots_any(client)
    snapshot_index = 0
    for info in catalog:
        bootstrap.reset(applier)
        path = _temp_path(temp_dir, f"memlog-restore-{info.index}-")
        try:
            await bootstrap.fetch_snapshot(client, info, path)
            result: LoadResult = await asyncio.to_thread(
                bootstrap.load_snapshot_file, path, info.index
            )
        except bootstrap.SnapshotUnusable as exc:
            log.warning("snapshot %d is unusable (%s); trying an older one", info.index, exc)
            continue
        finally:
            path.unlink(missing_ok=True)
        assert result.state is not None
        if result.state.time_ms <= to_time_ms:
            restore(applier, result)
            snapshot_index = info.index
            break
    start = applier.applied_index
    if start < commit:
        reader = client.read(start + 1, follow=True)
        try:
            async for index, payload in reader:
                when = record_time_ms(payload)
                if when is not None and max(applier.time_ms, when) > to_time_ms:
                    break
                applier.apply(index, payload)
                if index >= commit:
                    break
        finally:
            await cast(AsyncGenerator[tuple[int, bytes], None], reader).aclose()
    return bootstrap.Recovered(snapshot_index, applier.applied_index, applier.applied_index - start)


# -- import -------------------------------------------------------------------------------------

BATCH_ITEMS = 1000  # members per write command
PIPELINE_COMMANDS = 200  # commands per round trip


def _score(score: float) -> bytes:
    if math.isinf(score):
        return b"+inf" if score > 0 else b"-inf"
    return repr(score).encode()


def import_commands(loaded: LoadResult) -> Iterator[tuple[int, list[bytes]]]:
    """(db, command) for every key of a loaded RDB file: DEL, then its content in batches
    (a stream: RESTORE of its payload), then PEXPIREAT when it has an expiry."""
    for db in loaded.keyspace.dbs:
        for key, stored in db.items():  # decoded where a load kept them packed
            value: object = stored  # keyspace.Value says bytes; it holds every type
            yield db.index, [b"DEL", key]
            if isinstance(value, bytes):
                yield db.index, [b"SET", key, bytes(value)]
            elif isinstance(value, model.Stream):
                # Entries, node layout, groups and pending entries in one piece: the value's
                # DUMP payload (no command rebuilds a group's PEL with its delivery times).
                yield db.index, [b"RESTORE", key, b"0", dump_payload(value)]
            else:
                items: list[bytes]
                if isinstance(value, ListValue):
                    verb, items = b"RPUSH", list(value)
                elif isinstance(value, SetValue):
                    verb, items = b"SADD", list(model.set_members(value))
                elif isinstance(value, HashValue):
                    verb = b"HSET"
                    items = [x for pair in model.hash_pairs(value) for x in pair]
                else:
                    assert isinstance(value, ZSet)
                    verb = b"ZADD"
                    items = [
                        x
                        for score, member in model.zset_entries(value)
                        for x in (_score(score), member)
                    ]
                step = BATCH_ITEMS * (1 if verb in (b"RPUSH", b"SADD") else 2)
                for at in range(0, len(items), step):
                    yield db.index, [verb, key, *items[at : at + step]]
            when = db.expires.get(key)
            if when is not None:
                yield db.index, [b"PEXPIREAT", key, b"%d" % when]


def import_main(rdb: Path, addr: str) -> int:
    import redis

    with rdb.open("rb") as f:
        loaded = read_rdb(f)
    host, _, port = addr.rpartition(":")
    conn = redis.Redis(host=host or "127.0.0.1", port=int(port), socket_timeout=60)
    pipe = conn.pipeline(transaction=False)
    current_db = -1
    pending = 0
    commands = 0
    errors: list[str] = []

    def flush() -> None:
        nonlocal pending
        for reply in pipe.execute(raise_on_error=False):
            if isinstance(reply, Exception):
                errors.append(str(reply))
        pending = 0

    for db, command in import_commands(loaded):
        if db != current_db:
            pipe.execute_command("SELECT", db)  # type: ignore[no-untyped-call]
            current_db = db
        pipe.execute_command(*command)  # type: ignore[no-untyped-call]
        pending += 1
        commands += 1
        if pending >= PIPELINE_COMMANDS:
            flush()
    flush()
    conn.close()
    if errors:
        print(f"memlog import: {len(errors)} commands failed, the first: {errors[0]}")
        return 1
    print(f"imported {loaded.keys} keys from {rdb} through {addr} ({commands} writes)")
    return 0
