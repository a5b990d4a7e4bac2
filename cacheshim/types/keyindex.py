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
import random
from collections.abc import Iterable
from typing import Final

BITS_MIN: Final = 2  # Redis's DICT_HT_INITIAL_EXP: 4 buckets
# Shrink when fewer than one key per SHRINK_RATIO buckets.
SHRINK_RATIO: Final = 8


def key_hash(key: bytes) -> int:
    """A 64-bit hash of key that is the same in every process."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def _reverse(value: int, bits: int) -> int:
    return int(f"{value:0{bits}b}"[::-1], 2)


class KeyIndex:
    def __init__(self) -> None:
        self._bits = BITS_MIN
        # bucket -> {key: its hash}; dicts keep the order keys arrived in, like a chain.
        self._buckets: list[dict[bytes, int]] = [{} for _ in range(1 << BITS_MIN)]
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: bytes) -> bool:
        h = key_hash(key)
        return key in self._buckets[h & ((1 << self._bits) - 1)]

    def add(self, key: bytes) -> None:
        h = key_hash(key)
        bucket = self._buckets[h & ((1 << self._bits) - 1)]
        if key in bucket:
            return
        bucket[key] = h
        self._count += 1
        if self._count > len(self._buckets):
            self._resize(self._bits + 1)

    def discard(self, key: bytes) -> None:
        h = key_hash(key)
        bucket = self._buckets[h & ((1 << self._bits) - 1)]
        if bucket.pop(key, None) is None:
            return
        self._count -= 1
        if self._bits > BITS_MIN and self._count * SHRINK_RATIO < len(self._buckets):
            self._resize(max(BITS_MIN, self._count.bit_length()))

    def clear(self) -> None:
        self._bits = BITS_MIN
        self._buckets = [{} for _ in range(1 << BITS_MIN)]
        self._count = 0

    def rebuild(self, keys: Iterable[bytes]) -> None:
        self.clear()
        for key in keys:
            self.add(key)

    def _resize(self, bits: int) -> None:
        mask = (1 << bits) - 1
        buckets: list[dict[bytes, int]] = [{} for _ in range(1 << bits)]
        for bucket in self._buckets:
            for key, h in bucket.items():
                buckets[h & mask][key] = h
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
            keys.extend(self._buckets[position])
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
            if bucket:
                keys = list(bucket)
                return keys[rng.randrange(len(keys))]
