"""The in-memory keyspace: 16 databases of keys with absolute expiry times.

Values are plain Python objects by Redis type: `bytes` for strings (later: lists, hashes,
sets, sorted sets). Expiry times are absolute unix milliseconds. Reads hide keys expired by
the reader's clock without touching the keyspace; apply (`expire_due`) deletes keys expired
as of the record's time, in a deterministic order, so every shim reclaims the same memory.

Every change to a key records the log index that made it (`changed_at`), for WATCH.
"""

from __future__ import annotations

import hashlib
import heapq

DATABASES = 16

Value = bytes  # grows a union as types arrive


class Database:
    def __init__(self, index: int) -> None:
        self.index = index
        self.data: dict[bytes, Value] = {}
        self.expires: dict[bytes, int] = {}
        # (when, key) for every expiry ever set; stale pairs are skipped when popped.
        self._expiry_heap: list[tuple[int, bytes]] = []
        # key -> log index of its last change; flushed_at covers keys changed by a flush.
        self.changed_at: dict[bytes, int] = {}
        self.flushed_at = 0

    # -- reads (never change anything) -------------------------------------------------

    def is_expired(self, key: bytes, now_ms: int) -> bool:
        when = self.expires.get(key)
        return when is not None and when <= now_ms

    def get(self, key: bytes, now_ms: int) -> Value | None:
        value = self.data.get(key)
        if value is None or self.is_expired(key, now_ms):
            return None
        return value

    def contains(self, key: bytes, now_ms: int) -> bool:
        return key in self.data and not self.is_expired(key, now_ms)

    def ttl_ms(self, key: bytes) -> int | None:
        return self.expires.get(key)

    def live_keys(self, now_ms: int) -> list[bytes]:
        return [k for k in self.data if not self.is_expired(k, now_ms)]

    def size(self, now_ms: int) -> int:
        expired = sum(1 for when in self.expires.values() if when <= now_ms)
        return len(self.data) - expired

    def last_change(self, key: bytes) -> int:
        return max(self.changed_at.get(key, 0), self.flushed_at)

    # -- writes (apply only) ---------------------------------------------------------

    def set(self, key: bytes, value: Value, index: int, keep_ttl: bool = False) -> None:
        self.data[key] = value
        if not keep_ttl:
            self.expires.pop(key, None)
        self.changed_at[key] = index

    def delete(self, key: bytes, index: int) -> bool:
        if self.data.pop(key, None) is None:
            return False
        self.expires.pop(key, None)
        self.changed_at[key] = index
        return True

    def set_expiry(self, key: bytes, when_ms: int, index: int) -> None:
        self.expires[key] = when_ms
        heapq.heappush(self._expiry_heap, (when_ms, key))
        self.changed_at[key] = index

    def persist(self, key: bytes, index: int) -> bool:
        if self.expires.pop(key, None) is None:
            return False
        self.changed_at[key] = index
        return True

    def touch_changed(self, key: bytes, index: int) -> None:
        self.changed_at[key] = index

    def expire_due(self, now_ms: int, index: int) -> int:
        """Delete every key whose expiry is <= now_ms (apply only); returns how many."""
        removed = 0
        heap = self._expiry_heap
        while heap and heap[0][0] <= now_ms:
            when, key = heapq.heappop(heap)
            if self.expires.get(key) == when:
                self.delete(key, index)
                removed += 1
        return removed

    def flush(self, index: int) -> None:
        self.data.clear()
        self.expires.clear()
        self._expiry_heap.clear()
        self.changed_at.clear()
        self.flushed_at = index


class Keyspace:
    def __init__(self) -> None:
        self.dbs = [Database(i) for i in range(DATABASES)]

    def expire_due(self, now_ms: int, index: int) -> None:
        for db in self.dbs:
            if db.expires:
                db.expire_due(now_ms, index)

    def digest(self) -> str:
        """A digest of every database's keys, values and expiry times (as DEBUG DIGEST).

        Order-independent (XOR of per-key hashes), so it needs no sorting; all zeros for
        an empty keyspace, as in Redis.
        """
        acc = 0
        for db in self.dbs:
            for key in db.data:
                acc ^= int.from_bytes(key_digest(db, key), "big")
        return f"{acc:040x}"


def key_digest(db: Database, key: bytes) -> bytes:
    h = hashlib.sha1()
    h.update(db.index.to_bytes(4, "big"))
    h.update(len(key).to_bytes(8, "big"))
    h.update(key)
    h.update(value_digest(db.data[key], db.expires.get(key)))
    return h.digest()


def value_digest(value: Value, expires_ms: int | None) -> bytes:
    h = hashlib.sha1()
    h.update(b"string")
    h.update(value)
    h.update(b"" if expires_ms is None else expires_ms.to_bytes(8, "big", signed=True))
    return h.digest()
