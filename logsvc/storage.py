"""Durable Raft state of one node in RocksDB (rocksdict), and what of it the core sees.

Layout (raw byte keys):
    b"e" + index (8 bytes, big endian)  ->  crc32 (4 bytes) + RaftEntry (protobuf)
    b"m/hard"                           ->  crc32 + HardStateRecord
    b"m/boundary"                       ->  crc32 + BoundaryRecord (the trim boundary)

Every `write` is one WriteBatch made durable with a WAL sync (entries, term, vote and
commit together).
`write`, `trim` and `load` block: the node runs them on its single writer thread, never on
the event loop; `read_entries` blocks too and runs on the node's reader thread. The core
reads `memory`, a WindowStorage (logsvc/window.py) that holds the newest synced entries and
the terms of all of them; older entries are read from RocksDB when needed.

RocksDB's own memory is bounded as well: memtables of MEMTABLE_BYTES (at most
MEMTABLES_MAX of them) and a block cache of BLOCK_CACHE_BYTES.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteOptions

from logsvc.raft import ConfState, Entry, EntryType, HardState, SnapshotMeta
from logsvc.v1 import entry_pb2, peer_pb2
from logsvc.window import TermRuns, WindowStorage

log = logging.getLogger("logsvc.storage")

T = TypeVar("T")
_Job = tuple[
    Callable[..., Any],
    tuple[object, ...],
    "asyncio.Future[Any] | None",
    "asyncio.AbstractEventLoop | None",
]

ENTRY_PREFIX = b"e"
HARD_STATE_KEY = b"m/hard"
BOUNDARY_KEY = b"m/boundary"

# RocksDB's memory: a log is written once, read back rarely (a lagging follower, an old
# read), so small memtables and a small block cache are enough.
MEMTABLE_BYTES = 16 << 20
MEMTABLES_MAX = 2
BLOCK_CACHE_BYTES = 8 << 20


class CorruptLog(Exception):
    """A stored value failed its checksum or the log has a hole: never served."""


def entry_key(index: int) -> bytes:
    return ENTRY_PREFIX + index.to_bytes(8, "big")


def seal(body: bytes) -> bytes:
    return zlib.crc32(body).to_bytes(4, "big") + body


def unseal(value: bytes, what: str) -> bytes:
    if len(value) < 4:
        raise CorruptLog(f"{what}: value of {len(value)} bytes is torn")
    body = value[4:]
    if zlib.crc32(body) != int.from_bytes(value[:4], "big"):
        raise CorruptLog(f"{what}: checksum mismatch")
    return body


def encode_entry(entry: Entry) -> bytes:
    return peer_pb2.RaftEntry(
        term=entry.term, index=entry.index, type=int(entry.type), data=entry.data
    ).SerializeToString()


def decode_entry(body: bytes) -> Entry:
    pb = peer_pb2.RaftEntry.FromString(body)
    return Entry(term=pb.term, index=pb.index, data=pb.data, type=EntryType(pb.type))


class DurableLog:
    def __init__(
        self,
        path: Path,
        window_entries: int = 10_000,
        window_bytes: int = 64 << 20,
        read_cache_bytes: int = 16 << 20,
    ) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(MEMTABLE_BYTES)
        options.set_max_write_buffer_number(MEMTABLES_MAX)
        table = BlockBasedOptions()
        table.set_block_cache(Cache(BLOCK_CACHE_BYTES))
        options.set_block_based_table_factory(table)
        self.db = Rdict(str(path / "rocksdb"), options)
        self._nosync = WriteOptions()
        self._window = (window_entries, window_bytes, read_cache_bytes)
        self.memory = WindowStorage(*self._window)
        # The membership stored with the trim boundary (None: the configured one), and the
        # addresses to store with the next boundary written (the node keeps them current).
        self.boundary_membership: entry_pb2.Membership | None = None
        self.addresses: dict[str, tuple[str, str]] = {}
        # What is on disk (maintained by the writer thread).
        self._first_index = 1
        self._last_index = 0

    # -- writer thread ------------------------------------------------------------

    def load(self) -> None:
        """Check everything synced and set up `memory` from it (the newest entries, every
        term); raises CorruptLog on a bad value or a hole."""
        boundary = SnapshotMeta()
        raw = self.db.get(BOUNDARY_KEY)
        if raw is not None:
            pb = entry_pb2.BoundaryRecord.FromString(unseal(raw, "trim boundary"))
            conf = None
            if pb.HasField("membership"):
                self.boundary_membership = pb.membership
                m = pb.membership
                conf = ConfState(tuple(m.voters), tuple(m.learners), m.conf_index)
            boundary = SnapshotMeta(index=pb.index, term=pb.term, conf=conf)
        hard = HardState()
        raw = self.db.get(HARD_STATE_KEY)
        if raw is not None:
            hs = entry_pb2.HardStateRecord.FromString(unseal(raw, "hard state"))
            hard = HardState(term=hs.term, vote=hs.vote or None, commit=hs.commit)
        # One pass over the log: check every value, note the terms, keep the newest ones.
        window_entries, window_bytes, _ = self._window
        terms = TermRuns()
        newest: deque[Entry] = deque()
        newest_bytes = 0
        expected = boundary.index + 1
        it = self.db.iter()
        it.seek(entry_key(expected))
        while it.valid():
            key = it.key()
            if not key.startswith(ENTRY_PREFIX):
                break
            index = int.from_bytes(key[1:], "big")
            entry = decode_entry(unseal(it.value(), f"entry {index}"))
            if index != expected or entry.index != index:
                raise CorruptLog(f"entry {expected} expected, found {index} (a hole in the log)")
            terms.extend((entry,))
            newest.append(entry)
            newest_bytes += entry.size_bytes()
            while len(newest) > window_entries or newest_bytes > window_bytes:
                newest_bytes -= newest.popleft().size_bytes()
            expected += 1
            it.next()
        del it
        last = expected - 1
        # A commit index is written without a sync, a trim with one: entries up to the
        # boundary are committed whatever the stored commit index says.
        hard = HardState(term=hard.term, vote=hard.vote, commit=max(hard.commit, boundary.index))
        if hard.commit > last:
            raise CorruptLog(
                f"commit {hard.commit} is past the last stored entry {last}: "
                "synced entries are missing"
            )
        # Entries past the commit index stay in memory whatever the window: the core hands
        # them to the node once they commit.
        window_first = newest[0].index if newest else last + 1
        if window_first > hard.commit + 1:
            older = self.read_entries(hard.commit + 1, window_first, None)
            newest.extendleft(reversed(older))
        memory = WindowStorage(*self._window)
        memory.restore(boundary, hard, last, terms, list(newest))
        self.memory = memory
        self._first_index = boundary.index + 1
        self._last_index = last

    def read_entries(self, lo: int, hi: int, bytes_max: int | None) -> list[Entry]:
        """Synced entries [lo, hi) as stored, cut at bytes_max (at least one entry), and
        at the first index missing (trimmed or never written). Blocks: not on the loop."""
        out: list[Entry] = []
        total = 0
        it = self.db.iter()
        it.seek(entry_key(lo))
        index = lo
        while index < hi and it.valid():
            key = it.key()
            if key != entry_key(index):
                break
            entry = decode_entry(unseal(it.value(), f"entry {index}"))
            total += entry.size_bytes()
            if out and bytes_max is not None and total > bytes_max:
                break
            out.append(entry)
            index += 1
            it.next()
        del it
        return out

    def write(
        self,
        boundary: SnapshotMeta | None,
        entries: Sequence[Entry],
        hard_state: HardState | None,
        sync: bool = True,
    ) -> None:
        batch = WriteBatch(raw_mode=True)
        if boundary is not None:
            batch.delete_range(entry_key(0), entry_key(max(self._last_index, boundary.index) + 1))
            batch.put(BOUNDARY_KEY, seal(_boundary_bytes(boundary, dict(self.addresses))))
            self._first_index = boundary.index + 1
            self._last_index = boundary.index
        if entries:
            first = entries[0].index
            if first <= self._last_index:
                batch.delete_range(entry_key(first), entry_key(self._last_index + 1))
            for entry in entries:
                batch.put(entry_key(entry.index), seal(encode_entry(entry)))
            self._last_index = entries[-1].index
        if hard_state is not None:
            hs = entry_pb2.HardStateRecord(
                term=hard_state.term, vote=hard_state.vote or "", commit=hard_state.commit
            )
            batch.put(HARD_STATE_KEY, seal(hs.SerializeToString()))
        self._write(batch, sync)

    def _write(self, batch: WriteBatch, sync: bool) -> None:
        # rocksdict holds the GIL through a synced write, which would stall the event loop
        # for every fsync; writing unsynced and then syncing the WAL releases it (see
        # bench/rocksdict_gil.py) and is just as durable once flush_wal returns.
        self.db.write(batch, self._nosync)
        if sync:
            self.db.flush_wal(True)

    def trim(self, boundary: SnapshotMeta) -> None:
        """Drop entries up to and including boundary.index (synced)."""
        if boundary.index < self._first_index:
            return
        batch = WriteBatch(raw_mode=True)
        batch.delete_range(entry_key(0), entry_key(boundary.index + 1))
        batch.put(BOUNDARY_KEY, seal(_boundary_bytes(boundary, dict(self.addresses))))
        self._write(batch, sync=True)
        self._first_index = boundary.index + 1

    def close(self) -> None:
        self.db.close()

    # -- event loop ---------------------------------------------------------------

    def mirror(
        self,
        boundary: SnapshotMeta | None,
        entries: Sequence[Entry],
        hard_state: HardState | None,
    ) -> None:
        """After `write` returned: let `memory` hold what is now synced."""
        if boundary is not None:
            self.memory.apply_snapshot(boundary)
        if entries:
            self.memory.append(entries)
        if hard_state is not None:
            self.memory.set_hard_state(hard_state)


def membership_record(
    conf: ConfState, addresses: dict[str, tuple[str, str]]
) -> entry_pb2.Membership:
    return entry_pb2.Membership(
        voters=conf.voters,
        learners=conf.learners,
        conf_index=conf.index,
        addresses=[
            entry_pb2.MemberAddress(id=node_id, address=client, peer_address=peer)
            for node_id, (client, peer) in sorted(addresses.items())
        ],
    )


def _boundary_bytes(boundary: SnapshotMeta, addresses: dict[str, tuple[str, str]]) -> bytes:
    record = entry_pb2.BoundaryRecord(index=boundary.index, term=boundary.term)
    if boundary.conf is not None:
        record.membership.CopyFrom(membership_record(boundary.conf, addresses))
    return record.SerializeToString()


class WriterThread:
    """The one thread that runs a node's blocking storage calls, in the order they come.

    `run` answers on the event loop with an asyncio future; `submit` does not answer. It does
    what a one-thread ThreadPoolExecutor with `run_in_executor` does, with fewer locks and
    objects per call: a synced write per Raft round on every node goes through here.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def run(self, fn: Callable[..., T], *args: object) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, args, future, loop))
        return future

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        self._jobs.put((fn, args, None, None))

    def stop(self) -> None:
        """Run what is queued, then end the thread (blocks until it has ended)."""
        self._jobs.put(None)
        self._thread.join()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, args, future, loop = job
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the caller, who decides
                if future is None or loop is None:
                    log.exception("a storage call without a caller failed")
                else:
                    _answer(loop, _fail, future, exc)
            else:
                if future is not None and loop is not None:
                    _answer(loop, _succeed, future, result)


def _answer(
    loop: asyncio.AbstractEventLoop,
    how: Callable[[asyncio.Future[Any], Any], None],
    future: asyncio.Future[Any],
    value: object,
) -> None:
    # A loop closed meanwhile has nobody left to tell; the thread goes on with the queue.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(how, future, value)


def _succeed(future: asyncio.Future[T], result: T) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[object], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
