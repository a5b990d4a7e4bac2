"""A database's keys in hash buckets, for SCAN's cursor and RANDOMKEY (Redis dict.c).

Keys sit in a table of 2**bits buckets, chosen by the low bits of a stable 64-bit hash
(BLAKE2b: the same in every process and on every shim, unlike Python's ``hash``). The table
doubles when there are more keys than buckets and shrinks when fewer than an eighth are
used, so buckets hold about one key and SCAN's COUNT means about what it means in Redis.

:meth:`KeyIndex.scan` walks buckets with Redis's reverse-binary cursor (``dictScan``): the
cursor's bits are incremented from the top, so the buckets already visited under one table
size are exactly the ones already visited under any other. A key present from the first
call to the last is returned at least once however the table resizes in between; a key
added or removed meanwhile may or may not be; a key may come back twice after a shrink.
As the whole index is a function of the keys applied in log order, every shim at the same
log index answers SCAN with the same keys and cursors.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Final

BITS_MIN: Final = 2  # Redis's DICT_HT_INITIAL_EXP: 4 buckets
# Shrink when fewer than one key per SHRINK_RATIO buckets.
SHRINK_RATIO: Final = 8


def key_hash(key: bytes) -> int:
    """A 64-bit hash of key that is the same in every process."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def _reverse(value: int, bits: int) -> int:
    return int(f"{value:0{bits}b}"[::-1], 2)


# A bucket: no key, one key, or a chain of two keys or more (see KeyIndex).
Bucket = bytes | tuple[bytes, ...] | None

_rehash: Callable[[list[Bucket], int], list[Bucket]] | None = None
_rehash_looked_up = False


def _native_rehash() -> Callable[[list[Bucket], int], list[Bucket]] | None:
    """The C resize (cacheshim/snapshot/_native.c: index_rehash), or None without the
    extension or with MEMLOG_PURE_PYTHON=1. Looked up on the first resize, not at import:
    the extension's package imports this module."""
    global _rehash, _rehash_looked_up
    if not _rehash_looked_up:
        _rehash_looked_up = True
        if os.environ.get("MEMLOG_PURE_PYTHON") != "1":
            try:
                from cacheshim.snapshot import _native  # type: ignore[attr-defined]
            except ImportError:
                pass
            else:
                _rehash = getattr(_native, "index_rehash", None)
    return _rehash


class KeyIndex:
    """The table: ``_buckets[h & mask]`` is None (no key), the key itself (one key), or a
    tuple of two keys or more in the order they arrived (a chain, as a dict would keep
    them). Hashes are not stored: a resize hashes every key again (in C when the extension
    is built). One key per bucket costs no object of its own, so a table of 1M keys costs
    its list and about a quarter of a million small tuples, built in one pass by the
    snapshot loader (cacheshim/snapshot/_native.c: load_keys)."""

    __slots__ = ("_bits", "_buckets", "_count")

    def __init__(self, bits: int = BITS_MIN) -> None:
        self._bits = bits
        self._buckets: list[Bucket] = [None] * (1 << bits)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: bytes) -> bool:
        bucket = self._buckets[key_hash(key) & ((1 << self._bits) - 1)]
        if bucket is None:
            return False
        if isinstance(bucket, tuple):
            return key in bucket
        return bucket == key

    def add(self, key: bytes) -> None:
        buckets = self._buckets
        position = key_hash(key) & ((1 << self._bits) - 1)
        bucket = buckets[position]
        if bucket is None:
            buckets[position] = key
        elif isinstance(bucket, tuple):
            if key in bucket:
                return
            buckets[position] = (*bucket, key)
        else:
            if bucket == key:
                return
            buckets[position] = (bucket, key)
        self._count += 1
        if self._count > len(buckets):
            self._resize(self._bits + 1)

    def discard(self, key: bytes) -> None:
        buckets = self._buckets
        position = key_hash(key) & ((1 << self._bits) - 1)
        bucket = buckets[position]
        if bucket is None:
            return
        if isinstance(bucket, tuple):
            if key not in bucket:
                return
            rest = tuple(k for k in bucket if k != key)
            buckets[position] = rest if len(rest) > 1 else rest[0]
        elif bucket == key:
            buckets[position] = None
        else:
            return
        self._count -= 1
        if self._bits > BITS_MIN and self._count * SHRINK_RATIO < len(buckets):
            self._resize(max(BITS_MIN, self._count.bit_length()))

    def clear(self) -> None:
        self._bits = BITS_MIN
        self._buckets = [None] * (1 << BITS_MIN)
        self._count = 0

    def rebuild(self, keys: Iterable[bytes]) -> None:
        self.clear()
        for key in keys:
            self.add(key)

    def chains(self) -> Iterator[tuple[bytes, ...]]:
        """The keys of each non-empty bucket, bucket by bucket, in their order."""
        for bucket in self._buckets:
            if bucket is not None:
                yield bucket if isinstance(bucket, tuple) else (bucket,)

    def _resize(self, bits: int) -> None:
        rehash = _native_rehash()
        if rehash is not None:
            self._buckets = rehash(self._buckets, bits)
            self._bits = bits
            return
        mask = (1 << bits) - 1
        buckets: list[Bucket] = [None] * (1 << bits)
        for chain in self.chains():
            for key in chain:
                position = key_hash(key) & mask
                there = buckets[position]
                if there is None:
                    buckets[position] = key
                elif isinstance(there, tuple):
                    buckets[position] = (*there, key)
                else:
                    buckets[position] = (there, key)
        self._bits = bits
        self._buckets = buckets

    def scan(self, cursor: int, count: int) -> tuple[int, list[bytes]]:
        """Keys from cursor on, bucket by bucket, until about count keys; and the cursor to
        continue from (0 when the walk is over).

        Like Redis, a call visits at most count*10 + 1 buckets, so it may return nothing but
        a cursor on a sparse table; every returned bucket is returned whole.
        """
        bits = self._bits
        mask = (1 << bits) - 1
        keys: list[bytes] = []
        visits_left = count * 10
        position = cursor & mask
        while True:
            bucket = self._buckets[position]
            if bucket is not None:
                if isinstance(bucket, tuple):
                    keys.extend(bucket)
                else:
                    keys.append(bucket)
            # Increment the cursor from its top bit down (Redis's reverse-binary step).
            reversed_next = _reverse(position, bits) + 1
            if reversed_next > mask:
                return 0, keys
            position = _reverse(reversed_next, bits)
            if visits_left == 0 or len(keys) >= count:
                return position, keys
            visits_left -= 1

    def random_key(self, rng: random.Random) -> bytes | None:
        """A key picked at random (a random bucket, then a random key in it), or None."""
        if self._count == 0:
            return None
        while True:  # at least one bucket in SHRINK_RATIO holds a key
            bucket = self._buckets[rng.randrange(len(self._buckets))]
            if bucket is not None:
                if isinstance(bucket, tuple):
                    return bucket[rng.randrange(len(bucket))]
                rng.randrange(1)  # as for a chain of one: the same draws on every shim
                return bucket
