"""Snapshots of the keyspace, and RDB in and out: one serializer for both.

- `rdb`: `write_rdb` / `read_rdb` (a Redis 7.0 RDB file; with a `SnapshotState`, also a
  memlog snapshot carrying the apply state in ``memlog-*`` AUX fields), `restore` into a fresh
  `Applier`. The format: docs/snapshot-format.md.
- `model`: the only module that touches memlog's keyspace and value types.
- `packed`, `lzf`, `crc64`: Redis's packed blobs, LZF decompression, CRC-64.
- `redisdigest`: Redis's own DEBUG DIGEST over a memlog keyspace.
"""

from cacheshim.snapshot.rdb import (
    ChecksumError,
    LoadResult,
    RdbError,
    SnapshotState,
    WriteResult,
    read_rdb,
    restore,
    snapshot_state,
    write_rdb,
)

__all__ = [
    "ChecksumError",
    "LoadResult",
    "RdbError",
    "SnapshotState",
    "WriteResult",
    "read_rdb",
    "restore",
    "snapshot_state",
    "write_rdb",
]
