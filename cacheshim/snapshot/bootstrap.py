"""Rebuilding an applier from the snapshot store and the log: a shim's start, the snapshotter,
export and point-in-time restore all come through here.

    recover(applier, client, target_index, apply)

1. lists the durable snapshots (`ListSnapshots`, newest first) and takes the newest one at or
   below `at_most` (no limit: the newest) that loads: fetched a chunk at a time into a temp
   file from any node (SHA-256 checked on the way), read with `read_rdb` (its CRC-64 checked),
   and only a memlog snapshot of the index the catalog names is restored. A snapshot that fails
   any of this is logged and the next older one is tried;
2. replays the log after it up to `target_index` through `apply` (the caller's apply step);
3. when no snapshot is usable it replays from index 1; when the records it needs were trimmed
   it says so, names the first index the log keeps, and starts again from step 1 after a
   pause (a newer snapshot, or a node's fresh copy of a corrupt one, may come), never
   returning with partial state. The applier is reset in place between attempts, so the
   objects that hold it (the shim's Blocker) keep seeing the same one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import grpc

from cacheshim.snapshot.rdb import LoadResult, RdbError, read_rdb, restore
from logsvc.client import LogClient, LogClientError, TrimmedError
from logsvc.v1 import log_pb2

if TYPE_CHECKING:
    from cacheshim.apply import Applier

log = logging.getLogger("cacheshim.snapshot.bootstrap")

# What `memlog up` looks for while a shim prepares (cacheshim/launcher.py CATCH_UP_MARK).
CATCH_UP_MARK = "catching up:"
RETRY_S = 2.0
PROGRESS_EVERY_S = 1.0
GET_TIMEOUT_S = 600.0


class SnapshotUnusable(Exception):
    """One snapshot could not be used (the message says why); an older one may be."""


@dataclass(frozen=True, slots=True)
class Recovered:
    snapshot_index: int  # 0: replayed from index 1
    applied_index: int
    replayed_records: int


async def list_snapshots_any(client: LogClient) -> list[log_pb2.SnapshotInfo]:
    """The snapshot catalog, newest first: the union of what the nodes that answer list (the
    catalog is applied state, so a node behind may not list the newest yet). Raises
    LogClientError when no node answers."""

    async def ask(address: str) -> log_pb2.ListSnapshotsResponse | str:
        try:
            return await client.stub(address).ListSnapshots(
                log_pb2.ListSnapshotsRequest(), timeout=client.attempt_timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            return f"{address}: {exc.code().name} {exc.details()}"

    answers = await asyncio.gather(*(ask(address) for address in client.addresses))
    errors = [answer for answer in answers if isinstance(answer, str)]
    if len(errors) == len(answers):
        raise LogClientError("no log node listed its snapshots: " + "; ".join(errors))
    merged: dict[tuple[int, bytes], log_pb2.SnapshotInfo] = {}
    for answer in answers:
        if not isinstance(answer, str):
            for info in answer.snapshots:
                merged.setdefault((info.index, info.sha256), info)
    return sorted(merged.values(), key=lambda s: s.index, reverse=True)


async def fetch_snapshot(
    client: LogClient, info: log_pb2.SnapshotInfo, path: Path
) -> log_pb2.SnapshotInfo:
    """Stream snapshot `info.index` from the first node that serves a good copy into path
    (never the whole blob in memory), checking size and SHA-256 against the catalog's."""
    errors: list[str] = []
    for address in client.addresses:
        try:
            got = await _fetch_from(client, address, info, path)
        except (grpc.aio.AioRpcError, SnapshotUnusable, OSError) as exc:
            if isinstance(exc, grpc.aio.AioRpcError):
                why = f"{exc.code().name} {exc.details()}"
                if exc.code() is grpc.StatusCode.NOT_FOUND:  # gone from the catalog
                    raise SnapshotUnusable(f"{address}: {why}") from exc
            else:
                why = str(exc)
            errors.append(f"{address}: {why}")
            continue
        return got
    raise SnapshotUnusable("no node served a good copy: " + "; ".join(errors))


async def _fetch_from(
    client: LogClient, address: str, want: log_pb2.SnapshotInfo, path: Path
) -> log_pb2.SnapshotInfo:
    digest = hashlib.sha256()
    size = 0
    info: log_pb2.SnapshotInfo | None = None
    with path.open("wb") as out:
        call = client.stub(address).GetSnapshot(
            log_pb2.GetSnapshotRequest(index=want.index), timeout=GET_TIMEOUT_S
        )
        async for chunk in call:
            if info is None:
                info = chunk.info
            digest.update(chunk.data)
            size += len(chunk.data)
            out.write(chunk.data)
    if info is None:
        raise SnapshotUnusable("the node sent nothing")
    if info.index != want.index or info.sha256 != want.sha256:
        raise SnapshotUnusable(f"the node sent snapshot {info.index}, not {want.index}")
    if size != info.size_bytes or digest.digest() != info.sha256:
        raise SnapshotUnusable(
            f"{size} bytes whose SHA-256 does not match the catalog's ({info.size_bytes} bytes)"
        )
    return info


def load_snapshot_file(path: Path, index: int) -> LoadResult:
    """read_rdb of a fetched snapshot, refused unless it is a memlog snapshot of `index`."""
    try:
        with path.open("rb") as f:
            result = read_rdb(f, lazy=True)  # collections decoded on first touch
    except RdbError as exc:
        raise SnapshotUnusable(f"not loadable: {exc}") from exc
    if result.state is None:
        raise SnapshotUnusable("not a memlog snapshot (no memlog-index): a plain RDB file")
    if result.state.index != index:
        raise SnapshotUnusable(f"the file says index {result.state.index}, the catalog {index}")
    return result


async def restore_newest(
    applier: Applier,
    client: LogClient,
    at_most: int | None = None,
    temp_dir: str | None = None,
) -> int:
    """Restore the newest usable snapshot (at or below at_most) into a fresh applier; its
    index, or 0 when none is usable (the applier is left fresh)."""
    catalog = await list_snapshots_any(client)
    for info in catalog:
        if at_most is not None and info.index > at_most:
            continue
        started = time.monotonic()
        cpu = time.process_time()
        fd, name = tempfile.mkstemp(prefix=f"memlog-snap-{info.index}-", dir=temp_dir)
        os.close(fd)
        path = Path(name)
        try:
            got = await fetch_snapshot(client, info, path)
            fetched, fetched_cpu = time.monotonic(), time.process_time()
            result = await asyncio.to_thread(load_snapshot_file, path, info.index)
        except SnapshotUnusable as exc:
            log.warning("snapshot %d is unusable (%s); trying an older one", info.index, exc)
            continue
        finally:
            path.unlink(missing_ok=True)
        restore(applier, result)
        now, now_cpu = time.monotonic(), time.process_time()
        log.info(
            "restored snapshot %d (%d bytes, %d keys) in %.2fs (fetch %.2fs, CPU %.2fs; "
            "read and restore %.2fs, CPU %.2fs)",
            info.index, got.size_bytes, result.keys, now - started, fetched - started,
            fetched_cpu - cpu, now - fetched, now_cpu - fetched_cpu,
        )  # fmt: skip
        return info.index
    return 0


def reset(applier: Applier) -> None:
    """Make the applier fresh again, in place (the objects holding it keep it)."""
    type(applier).__init__(applier, applier.pubsub)


async def replay(
    applier: Applier,
    client: LogClient,
    target_index: int,
    apply: Callable[[int, bytes], None],
    address: str | None = None,
) -> int:
    """Apply the log after the applier's index up to target_index through `apply`; the
    number of records. Raises TrimmedError when the next record was trimmed."""
    start = applier.applied_index
    if start >= target_index:
        return 0
    next_report = time.monotonic() + PROGRESS_EVERY_S
    while applier.applied_index < target_index:
        try:
            reader = client.read(applier.applied_index + 1, follow=True, address=address)
            try:
                async for index, payload in reader:
                    if index > applier.applied_index:
                        apply(index, payload)
                    if applier.applied_index >= target_index:
                        break
                    if time.monotonic() >= next_report:
                        next_report = time.monotonic() + PROGRESS_EVERY_S
                        log.info(
                            "%s applied %d of %d records",
                            CATCH_UP_MARK, applier.applied_index, target_index,
                        )  # fmt: skip
            finally:
                await cast(AsyncGenerator[tuple[int, bytes], None], reader).aclose()
        except TrimmedError:
            raise
        except LogClientError as exc:
            log.warning("reading the log failed: %s; retrying", exc)
            await asyncio.sleep(0.5)
    return applier.applied_index - start


async def recover(
    applier: Applier,
    client: LogClient,
    target_index: int,
    apply: Callable[[int, bytes], None] | None = None,
    *,
    at_most: int | None = None,
    temp_dir: str | None = None,
    retry_s: float = RETRY_S,
    retry: bool = True,
) -> Recovered:
    """Bring a fresh applier to target_index (at least) from the newest usable snapshot and
    the log after it; see the module doc. Retries until it can, never returns partial
    (retry=False: raises TrimmedError instead of waiting when the records are gone)."""
    do_apply = apply if apply is not None else _plain_apply(applier)
    while True:
        reset(applier)
        try:
            snapshot_index = await restore_newest(applier, client, at_most, temp_dir)
        except LogClientError as exc:
            log.error("cannot list the snapshots: %s; retrying in %gs", exc, retry_s)
            await asyncio.sleep(retry_s)
            continue
        if snapshot_index == 0:
            log.info("no usable snapshot: replaying the log from index 1")
        try:
            replayed = await replay(applier, client, target_index, do_apply)
        except TrimmedError as exc:
            have = applier.applied_index
            where = f"snapshot {snapshot_index}" if snapshot_index else "no usable snapshot"
            log.error(
                "cannot rebuild the state: the log keeps records from index %d on, and this "
                "process holds records up to %d only (%s; records %d to %d were trimmed). It "
                "does not serve partial state; trying again in %gs (a newer snapshot, or a "
                "node's fresh copy of a damaged one, may come)",
                exc.first_index, have, where, have + 1, exc.first_index - 1, retry_s,
            )  # fmt: skip
            if not retry:
                raise
            await asyncio.sleep(retry_s)
            continue
        return Recovered(snapshot_index, applier.applied_index, replayed)


def _plain_apply(applier: Applier) -> Callable[[int, bytes], None]:
    def apply(index: int, payload: bytes) -> None:
        applier.apply(index, payload)

    return apply
