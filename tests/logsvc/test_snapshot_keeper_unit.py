"""Which missing snapshot copies the keeper fetches, and when (no processes, no clock: the
time is passed in)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from logsvc.snapshots import PUSH_GRACE_S, SnapshotCatalog, SnapshotManager
from logsvc.v1 import entry_pb2


def durable(index: int) -> entry_pb2.SnapshotDurable:
    return entry_pb2.SnapshotDurable(
        index=index, term=1, size_bytes=10, sha256=bytes([index]) * 32, created_at_ms=1, retain=3
    )


def manager(tmp_path: Path, catalog: SnapshotCatalog) -> SnapshotManager:
    node = SimpleNamespace(
        config=SimpleNamespace(peers={"a": "", "b": "", "c": ""}),
        records=SimpleNamespace(snapshots=catalog),
    )
    return SnapshotManager(cast(Any, node), tmp_path)


def indexes(m: SnapshotManager, now: float) -> list[int]:
    return [e.index for e in m._to_fetch(now)]


def test_the_newest_snapshot_is_left_to_its_push_for_a_grace_period(tmp_path: Path) -> None:
    catalog = SnapshotCatalog()
    m = manager(tmp_path, catalog)
    catalog.add(durable(10))
    catalog.add(durable(20))
    # The older copy is fetched at once; the newest waits for the leader's push...
    assert indexes(m, 100.0) == [10]
    assert indexes(m, 100.0 + PUSH_GRACE_S / 2) == [10]
    # ...and is fetched once the grace has passed without it.
    assert indexes(m, 100.0 + PUSH_GRACE_S) == [10, 20]
    # A copy being pushed here now is never fetched besides.
    m._incoming.add(catalog.entries[0].key)
    assert indexes(m, 200.0) == [20]
    m._incoming.clear()
    # Once stored here, a copy is not missing.
    m.blobs.verified[catalog.entries[0].key] = 10
    m.blobs.verified[catalog.entries[1].key] = 10
    assert indexes(m, 300.0) == []
    # A newer snapshot has a grace of its own, counted from when the keeper first saw it.
    catalog.add(durable(30))
    assert indexes(m, 400.0) == []
    assert indexes(m, 400.0 + PUSH_GRACE_S) == [30]
    # Entries retention dropped (here snapshot 10, retain 3) are forgotten.
    catalog.add(durable(40))
    assert indexes(m, 500.0) == [30]
    assert set(m._seen_at) == {e.key for e in catalog.entries}
    assert [e.index for e in catalog.entries] == [20, 30, 40]
