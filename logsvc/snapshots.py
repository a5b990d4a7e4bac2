"""The snapshot store: opaque, checksummed blobs at a record index, durable like the log.

Three parts:

- `SnapshotCatalog`: which snapshots are durable. Pure and deterministic: it changes only
  when a committed entry is applied (a `SnapshotDurable`, or the copy a `TrimCommand`
  carries past the trim boundary), so every node at the same applied index holds the same
  catalog, and a node that replays its log (or restarts at a trim boundary) rebuilds it.
- `BlobStore`: this node's copies, one file per snapshot under `<data>/<id>/snapshots/`,
  named `snap-<index>-<sha256 hex>.blob`. A copy is written to a temp file, fsync'd,
  renamed, and the folder fsync'd; its SHA-256 (in its name) is checked when the node
  opens, before it is served and while it streams. A copy that fails is deleted. Blocking
  calls: run them off the event loop.
- `SnapshotManager`: the asyncio side on a node. The leader takes a PutSnapshot stream,
  stores it, pushes it to every peer (Peer.PushSnapshot) and, once a majority (itself
  included) has synced it, proposes `SnapshotDurable`; every node then serves it. A
  background keeper fetches the catalog's snapshots this node lacks from its peers
  (Peer.FetchSnapshot) and deletes copies the catalog no longer keeps.

Over 500 lines: the three parts above meet in every operation (a put writes a blob, the
catalog decides what is kept, the manager moves copies between nodes); one module keeps
their shared naming and checks in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import grpc

from logsvc.errors import (
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    LogError,
    NotFound,
    Unavailable,
)
from logsvc.v1 import entry_pb2, log_pb2, peer_pb2, peer_pb2_grpc

if TYPE_CHECKING:
    from logsvc.node import LogNode

log = logging.getLogger("logsvc.snapshots")

# Data per streamed chunk: the default and the ceiling of GetSnapshot's chunk_bytes_max, and
# what the node sends to its peers.
CHUNK_BYTES_MAX = 1 << 20
# The largest data chunk a PutSnapshot or PushSnapshot stream may carry.
PUT_CHUNK_BYTES_MAX = 4 << 20
SHA256_BYTES = 32
# A copy being written is synced every this many bytes, so that the final fsync does not
# flush the whole file at once and the log's own WAL syncs (on the same disk) never wait
# behind a burst of a whole snapshot.
SYNC_EVERY_BYTES = 8 << 20
KEEPER_INTERVAL_S = 1.0
FETCH_ATTEMPT_TIMEOUT_S = 60.0
MISSING_WARNING_S = 30.0  # a snapshot no peer can give is logged this often
# The keeper leaves a new snapshot this long to the leader's push (which starts once the
# pushes a put waits for are done) before it fetches the snapshot itself, so that a node
# receives each snapshot once, not pushed and fetched at the same time.
PUSH_GRACE_S = 3.0
_BLOB_NAME = re.compile(r"^snap-(\d{20})-([0-9a-f]{64})\.blob$")
_TEMP_PREFIX = ".tmp-"


# -- the catalog ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotEntry:
    index: int
    term: int
    size_bytes: int
    sha256: bytes
    created_at_ms: int

    @property
    def key(self) -> tuple[int, bytes]:
        return self.index, self.sha256

    @classmethod
    def from_proto(cls, pb: entry_pb2.SnapshotDurable) -> SnapshotEntry:
        return cls(pb.index, pb.term, pb.size_bytes, bytes(pb.sha256), pb.created_at_ms)

    def durable_proto(self, retain: int) -> entry_pb2.SnapshotDurable:
        return entry_pb2.SnapshotDurable(
            index=self.index,
            term=self.term,
            size_bytes=self.size_bytes,
            sha256=self.sha256,
            created_at_ms=self.created_at_ms,
            retain=retain,
        )

    def info(self, stored_here: bool = False) -> log_pb2.SnapshotInfo:
        return log_pb2.SnapshotInfo(
            index=self.index,
            term=self.term,
            size_bytes=self.size_bytes,
            sha256=self.sha256,
            created_at_ms=self.created_at_ms,
            stored_here=stored_here,
        )


class SnapshotCatalog:
    """The durable snapshots, oldest first: at most `retain` of them, one per index, each
    newer than the one before. Changed only by applying committed entries."""

    def __init__(self) -> None:
        self.entries: list[SnapshotEntry] = []
        self.retain = 1

    def newest(self) -> SnapshotEntry | None:
        return self.entries[-1] if self.entries else None

    def get(self, index: int) -> SnapshotEntry | None:
        for entry in self.entries:
            if entry.index == index:
                return entry
        return None

    def add(self, pb: entry_pb2.SnapshotDurable) -> bool:
        """Apply a SnapshotDurable entry; False when it is not newer than the newest (a
        put that lost a race with a newer one), and then nothing changes."""
        entry = SnapshotEntry.from_proto(pb)
        newest = self.newest()
        if newest is not None and entry.index <= newest.index:
            return False
        self.entries.append(entry)
        self.retain = max(1, pb.retain)
        self._enforce_retention()
        return True

    def merge(self, carried: Iterable[entry_pb2.SnapshotDurable]) -> None:
        """Fold in a trim's copy of the catalog (what a replay from the boundary lacks)."""
        known = {e.index: e for e in self.entries}
        newest_retain = 0
        newest_index = -1
        for pb in carried:
            if pb.index not in known:
                known[pb.index] = SnapshotEntry.from_proto(pb)
            if pb.index > newest_index:
                newest_index, newest_retain = pb.index, pb.retain
        self.entries = [known[i] for i in sorted(known)]
        newest = self.newest()
        if newest is not None and newest.index == newest_index and newest_retain:
            self.retain = newest_retain
        self._enforce_retention()

    def carry(self) -> list[entry_pb2.SnapshotDurable]:
        return [e.durable_proto(self.retain) for e in self.entries]

    def _enforce_retention(self) -> None:
        if len(self.entries) > self.retain:
            del self.entries[: len(self.entries) - self.retain]


# -- this node's copies -------------------------------------------------------------------


def blob_name(index: int, sha256: bytes) -> str:
    return f"snap-{index:020d}-{sha256.hex()}.blob"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: Path) -> tuple[bytes, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while block := f.read(CHUNK_BYTES_MAX):
            digest.update(block)
            size += len(block)
    return digest.digest(), size


class BlobWriter:
    """One snapshot being received: a temp file, checked against the declared size and
    SHA-256 before it becomes a blob. Every method blocks."""

    def __init__(self, store: BlobStore, index: int, size_bytes: int, sha256: bytes) -> None:
        self.store = store
        self.index = index
        self.size_bytes = size_bytes
        self.sha256 = sha256
        self.written = 0
        self._unsynced = 0
        self._digest = hashlib.sha256()
        self.temp = store.dir / f"{_TEMP_PREFIX}{index:020d}-{uuid.uuid4().hex}"
        self._file: BinaryIO | None = self.temp.open("wb")

    def write(self, data: bytes) -> None:
        assert self._file is not None
        if self.written + len(data) > self.size_bytes:
            raise DataLoss(
                f"snapshot {self.index}: more than the declared {self.size_bytes} bytes arrived"
            )
        self._file.write(data)
        self._digest.update(data)
        self.written += len(data)
        self._unsynced += len(data)
        if self._unsynced >= SYNC_EVERY_BYTES:
            self._file.flush()
            os.fdatasync(self._file.fileno())
            self._unsynced = 0

    def finish(self) -> Path:
        """Check, sync and rename: the blob is durable when this returns."""
        assert self._file is not None
        if self.written != self.size_bytes:
            raise DataLoss(
                f"snapshot {self.index}: {self.written} bytes arrived, {self.size_bytes} declared"
            )
        got = self._digest.digest()
        if got != self.sha256:
            raise DataLoss(
                f"snapshot {self.index}: checksum mismatch (SHA-256 of the bytes is "
                f"{got.hex()}, declared {self.sha256.hex()}): nothing stored"
            )
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        final = self.store.dir / blob_name(self.index, self.sha256)
        os.replace(self.temp, final)
        fsync_dir(self.store.dir)
        self.store.verified[(self.index, self.sha256)] = self.size_bytes
        return final

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()


class BlobStore:
    """The snapshot files of one node. `verified` holds the copies whose checksum held when
    last read; only those are served. Every method blocks."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.verified: dict[tuple[int, bytes], int] = {}  # (index, sha256) -> size

    def path(self, index: int, sha256: bytes) -> Path:
        return self.dir / blob_name(index, sha256)

    def load(self) -> list[str]:
        """Verify every stored copy; delete temp files and copies that fail. Returns what
        was dropped, for the log."""
        self.dir.mkdir(parents=True, exist_ok=True)
        dropped: list[str] = []
        verified: dict[tuple[int, bytes], int] = {}
        for path in sorted(self.dir.iterdir()):
            if path.name.startswith(_TEMP_PREFIX):
                path.unlink()
                continue
            match = _BLOB_NAME.match(path.name)
            if match is None:
                continue
            index, sha256 = int(match.group(1)), bytes.fromhex(match.group(2))
            got, size = file_sha256(path)
            if got != sha256:
                path.unlink()
                dropped.append(f"{path.name} (checksum mismatch: {got.hex()})")
                continue
            verified[(index, sha256)] = size
        fsync_dir(self.dir)
        self.verified = verified
        return dropped

    def writer(self, index: int, size_bytes: int, sha256: bytes) -> BlobWriter:
        return BlobWriter(self, index, size_bytes, sha256)

    def check(self, index: int, sha256: bytes) -> bool:
        """Read the copy through: True when it is there and its checksum holds; a copy that
        fails is deleted (and forgotten)."""
        key = (index, sha256)
        path = self.path(index, sha256)
        try:
            got, size = file_sha256(path)
        except FileNotFoundError:
            self.verified.pop(key, None)
            return False
        if got != sha256:
            self.drop(index, sha256)
            return False
        self.verified[key] = size
        return True

    def drop(self, index: int, sha256: bytes) -> None:
        self.verified.pop((index, sha256), None)
        with contextlib.suppress(FileNotFoundError):
            self.path(index, sha256).unlink()

    def chunks(self, index: int, sha256: bytes, chunk_bytes: int) -> Generator[bytes]:
        """The copy's bytes in chunks; the generator blocks on each read."""
        with self.path(index, sha256).open("rb") as f:
            while block := f.read(chunk_bytes):
                yield block


# -- the node side -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PutResult:
    entry: SnapshotEntry
    stored_on: list[str]
    duplicate: bool


class SnapshotManager:
    def __init__(self, node: LogNode, directory: Path) -> None:
        self.node = node
        self.config = node.config
        self.blobs = BlobStore(directory)
        self._put_lock = asyncio.Lock()
        # Snapshot streams this node sends to its peers at once: as many as a put needs for
        # its majority, no more. A put's later pushes (the peers beyond the majority) wait
        # for a slot behind the next put's, so a node never sends several whole copies at
        # once on top of its Raft traffic (which has a connection of its own).
        self._push_slots = asyncio.Semaphore(max(1, len(self.config.peers) // 2))
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[object]] = set()
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.fetched = 0  # copies this node fetched from a peer since it started
        self._warned_at: dict[int, float] = {}  # snapshot index -> when its lack was logged
        self._incoming: set[tuple[int, bytes]] = set()  # copies being pushed here now
        self._seen_at: dict[tuple[int, bytes], float] = {}  # when the keeper first saw it

    @property
    def catalog(self) -> SnapshotCatalog:
        return self.node.records.snapshots

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        dropped = await asyncio.to_thread(self.blobs.load)
        for what in dropped:
            log.error("%s: dropped a corrupt snapshot copy %s; it will be fetched again",
                      self.node.id, what)  # fmt: skip

    def start(self) -> None:
        self._task = asyncio.create_task(self._keeper(), name="snapshot-keeper")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    def catalog_changed(self) -> None:
        self._wake.set()

    def missing(self) -> list[SnapshotEntry]:
        return [e for e in self.catalog.entries if e.key not in self.blobs.verified]

    def _peer_stub(self, peer_id: str) -> peer_pb2_grpc.PeerAsyncStub:
        from logsvc.transport import peer_channel

        channel = self._channels.get(peer_id)
        if channel is None:
            address = self.node.addresses[peer_id][1]
            channel = peer_channel(peer_id, address, self.node.peer_credentials)
            self._channels[peer_id] = channel
        return peer_pb2_grpc.PeerStub(channel)

    # -- PutSnapshot (leader) ------------------------------------------------------------

    async def put(self, chunks: AsyncIterator[log_pb2.SnapshotChunk]) -> PutResult:
        first = await anext(chunks, None)
        if first is None or not first.HasField("info"):
            raise InvalidArgument("the first chunk of a PutSnapshot stream must carry info")
        info = first.info
        if info.index < 1:
            raise InvalidArgument("a snapshot's index must be at least 1")
        if len(info.sha256) != SHA256_BYTES:
            raise InvalidArgument(
                f"sha256 must be {SHA256_BYTES} bytes (a SHA-256 digest), not {len(info.sha256)}"
            )
        sha256 = bytes(info.sha256)
        node = self.node
        node.require_leader()
        newest = self.catalog.newest()
        if newest is not None and newest.key == (info.index, sha256):
            return PutResult(newest, [], duplicate=True)
        async with self._put_lock:
            term = self._check_placement(info.index)
            path_written = await self._receive(first, chunks, info.index, info.size_bytes, sha256)
            log.info("%s stored snapshot %d (%d bytes) at %s",
                     node.id, info.index, info.size_bytes, path_written.name)  # fmt: skip
            stored_on = await self._replicate(info.index, info.size_bytes, sha256)
            node.require_leader()
            entry = SnapshotEntry(
                index=info.index,
                term=term,
                size_bytes=info.size_bytes,
                sha256=sha256,
                created_at_ms=int(time.time() * 1000),
            )
            payload = entry_pb2.EntryPayload(
                snapshot=entry.durable_proto(self.config.snapshot_retain)
            )
            await node.propose_and_wait(payload, "the snapshot's entry")
        got = self.catalog.get(info.index)
        if got is None or got.sha256 != sha256:
            raise FailedPrecondition(
                f"snapshot {info.index} was stored but a newer snapshot became durable first "
                "(it supersedes this one)"
            )
        return PutResult(got, stored_on, duplicate=False)

    def _check_placement(self, index: int) -> int:
        """Refuse an index the log cannot pair with its records; returns the term of the
        entry holding record `index`."""
        records = self.node.records
        last = records.last_index()
        if index > last:
            raise FailedPrecondition(
                f"snapshot index {index} is above the commit index {last}: a snapshot covers "
                "committed records only"
            )
        first = records.first_index()
        if index + 1 < first:
            raise FailedPrecondition(
                f"snapshot index {index} is below the log's first retained index {first} - 1: "
                f"records {index + 1}..{first - 1} are trimmed, so nobody could replay from it"
            )
        newest = self.catalog.newest()
        if newest is not None and index <= newest.index:
            raise FailedPrecondition(
                f"snapshot index {index} is not above the newest durable snapshot "
                f"(index {newest.index})"
            )
        where = records.locate(index)
        if where is None:
            return 0
        return self.node.raw().raft.log.term(where[0]) or 0

    async def _receive(
        self,
        first: log_pb2.SnapshotChunk,
        rest: AsyncIterator[log_pb2.SnapshotChunk],
        index: int,
        size_bytes: int,
        sha256: bytes,
    ) -> Path:
        """Write a snapshot stream to a new blob. The event loop only moves chunks: each is
        written and hashed (SHA-256, as it arrives: there is no second pass over the file)
        on a thread while the next one is received, so at most two chunks are held, and the
        one fsync is on that thread too. Checked against size and SHA-256 before it counts."""
        writer = await asyncio.to_thread(self.blobs.writer, index, size_bytes, sha256)
        rate = self.config.snapshot_bytes_per_s
        loop = asyncio.get_running_loop()
        started = loop.time()
        queued = 0  # bytes handed to the writer thread so far
        writing: asyncio.Future[None] | None = None
        try:
            chunk: log_pb2.SnapshotChunk | None = first
            while chunk is not None:
                if rate:
                    # Slower than the wire on purpose: the log's own work comes first. The
                    # sender waits too (gRPC flow control).
                    ahead_s = queued / rate - (loop.time() - started)
                    if ahead_s > 0:
                        await asyncio.sleep(ahead_s)
                data = chunk.data  # every access to the field copies it: once
                if len(data) > PUT_CHUNK_BYTES_MAX:
                    raise InvalidArgument(
                        f"a chunk of {len(data)} bytes is over the limit of {PUT_CHUNK_BYTES_MAX}"
                    )
                if data:
                    if writing is not None:
                        await writing
                    writing = asyncio.ensure_future(asyncio.to_thread(writer.write, data))
                    queued += len(data)
                del chunk, data
                chunk = await anext(rest, None)
            if writing is not None:
                await writing
                writing = None
            return await asyncio.to_thread(writer.finish)
        except OSError as exc:  # a full or failing disk: nothing kept, say so
            await self._abort(writer, writing)
            raise Unavailable(
                f"{self.node.id} cannot store snapshot {index}: {exc.strerror or exc}"
            ) from exc
        except BaseException:
            await self._abort(writer, writing)
            raise

    @staticmethod
    async def _abort(writer: BlobWriter, writing: asyncio.Future[None] | None) -> None:
        if writing is not None:
            # The thread cannot be stopped: let its write end before the file goes.
            with contextlib.suppress(BaseException):
                await asyncio.shield(writing)
        await asyncio.to_thread(writer.abort)

    async def _replicate(self, index: int, size_bytes: int, sha256: bytes) -> list[str]:
        """Push the stored copy to every peer; returns once a majority (this node included)
        has synced it. Pushes still running then go on in the background."""
        # The voters of the membership in effect (learners fetch what they miss later).
        voters = self.node.conf.voters or tuple(sorted(self.config.peers))
        peers = [p for p in voters if p != self.node.id]
        majority = len(voters) // 2 + 1
        stored_on = [self.node.id]
        if len(stored_on) >= majority:
            for peer in peers:
                self._spawn(self._push(peer, index, size_bytes, sha256))
            return stored_on
        pending = {
            asyncio.create_task(self._push(peer, index, size_bytes, sha256)): peer for peer in peers
        }
        failures: list[str] = []
        deadline = asyncio.get_running_loop().time() + self.config.snapshot_timeout_s
        try:
            while pending and len(stored_on) < majority:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                done, _ = await asyncio.wait(
                    pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    peer = pending.pop(task)
                    exc = task.exception()
                    if exc is None:
                        stored_on.append(peer)
                    else:
                        failures.append(f"{peer}: {exc}")
        finally:
            for task in pending:
                if len(stored_on) >= majority:
                    self._adopt(task)
                else:
                    task.cancel()
        if len(stored_on) < majority:
            why = "; ".join(failures) or f"no answer within {self.config.snapshot_timeout_s}s"
            raise Unavailable(
                f"snapshot {index} is synced on {len(stored_on)} of {len(voters)} "
                f"nodes ({', '.join(stored_on)}), not on a majority: not durable, retry ({why})"
            )
        return stored_on

    async def _push(self, peer: str, index: int, size_bytes: int, sha256: bytes) -> None:
        async def transfers() -> AsyncIterator[peer_pb2.SnapshotTransfer]:
            head = log_pb2.SnapshotChunk(
                info=log_pb2.SnapshotInfo(index=index, size_bytes=size_bytes, sha256=sha256)
            )
            yield self._transfer(head)
            async for data in self._read_copy(index, sha256, CHUNK_BYTES_MAX):
                yield self._transfer(log_pb2.SnapshotChunk(data=data))

        async with self._push_slots:
            try:
                await self._peer_stub(peer).PushSnapshot(
                    transfers(), timeout=self.config.snapshot_timeout_s
                )
            except grpc.aio.AioRpcError as exc:
                raise Unavailable(f"{exc.code().name} {exc.details()}") from None

    async def _read_copy(self, index: int, sha256: bytes, chunk_bytes: int) -> AsyncIterator[bytes]:
        """The copy's bytes as they are on disk, not hashed here: the copy was hashed as it
        was written, and the peer that receives them hashes them and refuses a mismatch."""
        source = self.blobs.chunks(index, sha256, chunk_bytes)
        try:
            while (data := await asyncio.to_thread(next, source, None)) is not None:
                yield data
        finally:
            source.close()

    def _transfer(self, chunk: log_pb2.SnapshotChunk) -> peer_pb2.SnapshotTransfer:
        return peer_pb2.SnapshotTransfer(
            cluster_id=self.config.cluster_id, from_id=self.node.id, chunk=chunk
        )

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        self._adopt(asyncio.ensure_future(coro))

    def _adopt(self, task: asyncio.Task[object]) -> None:
        self._background.add(task)

        def done(t: asyncio.Task[object]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.warning("%s: a background snapshot push failed: %s", self.node.id,
                            t.exception())  # fmt: skip

        task.add_done_callback(done)

    # -- Peer.PushSnapshot (follower) ----------------------------------------------------

    async def receive_push(self, transfers: AsyncIterator[peer_pb2.SnapshotTransfer]) -> None:
        head = await anext(transfers, None)
        if head is None or not head.chunk.HasField("info"):
            raise InvalidArgument("the first message of a push must carry the snapshot's info")
        if head.cluster_id != self.config.cluster_id:
            raise FailedPrecondition(
                f"cluster id {head.cluster_id!r} is not {self.config.cluster_id!r}"
            )
        info = head.chunk.info
        sha256 = bytes(info.sha256)
        if len(sha256) != SHA256_BYTES:
            raise InvalidArgument("sha256 must be 32 bytes")
        if (info.index, sha256) in self.blobs.verified:
            return  # already synced here (a retry)

        async def chunks() -> AsyncIterator[log_pb2.SnapshotChunk]:
            async for t in transfers:
                yield t.chunk

        key = (info.index, sha256)
        self._incoming.add(key)
        try:
            await self._receive(head.chunk, chunks(), info.index, info.size_bytes, sha256)
        finally:
            self._incoming.discard(key)
        log.info("%s stored snapshot %d pushed by %s", self.node.id, info.index, head.from_id)

    # -- serving copies ----------------------------------------------------------------------

    async def _read_blob(self, index: int, sha256: bytes, chunk_bytes: int) -> AsyncIterator[bytes]:
        """The copy's bytes, checked whole before the first one and again as they go: a copy
        that fails is dropped (and re-fetched by the keeper) and never served."""
        if not await asyncio.to_thread(self.blobs.check, index, sha256):
            self._wake.set()
            raise Unavailable(
                f"{self.node.id}'s copy of snapshot {index} is missing or failed its checksum; "
                "it is being fetched again: ask another node"
            )
        digest = hashlib.sha256()
        source = self.blobs.chunks(index, sha256, chunk_bytes)

        def read_next() -> bytes | None:
            # Read and hash off the event loop: a chunk is up to a MiB, hashing it takes
            # milliseconds that the log's own work (Appends, heartbeats) should not wait for.
            data = next(source, None)
            if data is not None:
                digest.update(data)
            return data

        try:
            while (data := await asyncio.to_thread(read_next)) is not None:
                yield data
        finally:
            source.close()
        if digest.digest() != sha256:
            await asyncio.to_thread(self.blobs.drop, index, sha256)
            self._wake.set()
            raise DataLoss(
                f"{self.node.id}'s copy of snapshot {index} changed on disk while it was "
                "sent and failed its checksum: discard what was received, ask another node"
            )

    def entry_for(self, index: int) -> SnapshotEntry:
        entry = self.catalog.newest() if index == 0 else self.catalog.get(index)
        if entry is None:
            if not self.node.caught_up():
                raise Unavailable(
                    f"{self.node.id} is catching up with the log and may not know of every "
                    "snapshot yet: ask another node"
                )
            if index == 0:
                raise NotFound("no snapshot is durable yet")
            known = ", ".join(str(e.index) for e in reversed(self.catalog.entries)) or "none"
            raise NotFound(f"no durable snapshot at index {index} (durable: {known})")
        return entry

    async def get(self, index: int, chunk_bytes_max: int) -> AsyncIterator[log_pb2.SnapshotChunk]:
        entry = self.entry_for(index)
        chunk_bytes = min(chunk_bytes_max or CHUNK_BYTES_MAX, CHUNK_BYTES_MAX)
        if entry.key not in self.blobs.verified:
            self._wake.set()
            raise Unavailable(
                f"{self.node.id} has no copy of snapshot {entry.index} yet (it is fetching "
                "it from its peers): ask another node"
            )
        data = self._read_blob(entry.index, entry.sha256, chunk_bytes)
        first = await anext(data, None)  # the check runs before anything is sent
        yield log_pb2.SnapshotChunk(info=entry.info(stored_here=True), data=first or b"")
        async for block in data:
            yield log_pb2.SnapshotChunk(data=block)

    async def serve_fetch(
        self, request: peer_pb2.FetchSnapshotRequest
    ) -> AsyncIterator[log_pb2.SnapshotChunk]:
        if request.cluster_id != self.config.cluster_id:
            raise FailedPrecondition(
                f"cluster id {request.cluster_id!r} is not {self.config.cluster_id!r}"
            )
        key = (request.index, bytes(request.sha256))
        size = self.blobs.verified.get(key)
        if size is None:
            raise NotFound(f"{self.node.id} has no copy of snapshot {request.index}")
        data = self._read_blob(request.index, bytes(request.sha256), CHUNK_BYTES_MAX)
        first = await anext(data, None)
        info = log_pb2.SnapshotInfo(index=request.index, size_bytes=size, sha256=request.sha256)
        yield log_pb2.SnapshotChunk(info=info, data=first or b"")
        async for block in data:
            yield log_pb2.SnapshotChunk(data=block)

    def list(self) -> list[log_pb2.SnapshotInfo]:
        return [
            e.info(stored_here=e.key in self.blobs.verified) for e in reversed(self.catalog.entries)
        ]

    # -- the keeper ------------------------------------------------------------------------

    async def _keeper(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), KEEPER_INTERVAL_S)
            self._wake.clear()
            try:
                for entry in self._to_fetch(asyncio.get_running_loop().time()):
                    await self._fetch(entry)
                await self._collect_garbage()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: the snapshot keeper failed a round", self.node.id)

    def _to_fetch(self, now: float) -> Iterable[SnapshotEntry]:
        """The missing copies to fetch now: not one being pushed here, nor the newest
        snapshot in its first PUSH_GRACE_S (its push is likely on the way)."""
        keys = {e.key for e in self.catalog.entries}
        for key in [k for k in self._seen_at if k not in keys]:
            del self._seen_at[key]
        newest = self.catalog.newest()
        return [e for e in self.missing() if self._fetch_now(e, newest, now)]

    def _fetch_now(self, entry: SnapshotEntry, newest: SnapshotEntry | None, now: float) -> bool:
        seen = self._seen_at.setdefault(entry.key, now)
        if entry.key in self._incoming:
            return False
        return newest is None or entry.key != newest.key or now - seen >= PUSH_GRACE_S

    async def _fetch(self, entry: SnapshotEntry) -> None:
        """Fetch a copy from the first peer that has a good one (the leader first)."""
        leader, _ = self.node.leader_hint()
        members = self.node.conf.voters + self.node.conf.learners or tuple(self.config.peers)
        peers = sorted(p for p in members if p != self.node.id and p in self.node.addresses)
        peers.sort(key=lambda p: p != leader)
        errors: list[str] = []
        for peer in peers:
            try:
                await asyncio.wait_for(self._fetch_from(peer, entry), FETCH_ATTEMPT_TIMEOUT_S)
            except (LogError, grpc.aio.AioRpcError, TimeoutError) as exc:
                what = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
                errors.append(f"{peer}: {what}")
                continue
            self.fetched += 1
            log.info("%s fetched snapshot %d (%d bytes) from %s",
                     self.node.id, entry.index, entry.size_bytes, peer)  # fmt: skip
            return
        now = asyncio.get_running_loop().time()
        if now - self._warned_at.get(entry.index, -MISSING_WARNING_S) >= MISSING_WARNING_S:
            self._warned_at[entry.index] = now
            log.warning("%s lacks snapshot %d and no peer gave it yet: %s",
                        self.node.id, entry.index, "; ".join(errors))  # fmt: skip

    async def _fetch_from(self, peer: str, entry: SnapshotEntry) -> None:
        request = peer_pb2.FetchSnapshotRequest(
            cluster_id=self.config.cluster_id,
            from_id=self.node.id,
            index=entry.index,
            sha256=entry.sha256,
        )
        stream = self._peer_stub(peer).FetchSnapshot(request)

        async def chunks() -> AsyncIterator[log_pb2.SnapshotChunk]:
            async for chunk in stream:
                yield chunk

        head = log_pb2.SnapshotChunk(
            info=entry.info(),
        )
        await self._receive(head, chunks(), entry.index, entry.size_bytes, entry.sha256)

    async def _collect_garbage(self) -> None:
        """Delete copies the catalog does not keep. Only a caught-up node does it, and only
        copies older than the newest durable snapshot: a newer one may be a put in
        progress (pushed, not yet recorded)."""
        newest = self.catalog.newest()
        node = self.node.node
        if newest is None or node is None:
            return
        if self.node.records.applied_raft_index < node.raft.log.committed:
            return
        keep = {e.key for e in self.catalog.entries}
        stale = [k for k in self.blobs.verified if k not in keep and k[0] <= newest.index]
        for index, sha256 in stale:
            await asyncio.to_thread(self.blobs.drop, index, sha256)
            log.info("%s deleted snapshot %d (retention keeps %d)", self.node.id, index,
                     self.catalog.retain)  # fmt: skip
