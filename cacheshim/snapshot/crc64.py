"""CRC-64 as Redis computes it for RDB files (its ``crc64.c``): the "Jones" polynomial
0xad93d23594c935a9, bit-reflected, initial value 0, no final xor. The check value, the CRC
of ``b"123456789"``, is 0xe9c6d914c4b8d9ca.

`crc64(crc, data)` continues a running CRC over more data, so a file is checksummed chunk by
chunk as it streams. The C extension ``cacheshim.snapshot._native`` (built by ``pip install``
when a compiler is present) does it at memory speed; the Python below, a table per byte
position ("slicing by 8"), is its specification and the fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

POLY_REFLECTED: Final = 0x95AC9329AC4BC9B5  # 0xad93d23594c935a9 with its 64 bits reversed
MASK64: Final = (1 << 64) - 1


def _tables() -> list[list[int]]:
    first = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ POLY_REFLECTED if crc & 1 else crc >> 1
        first.append(crc)
    tables = [first]
    for _ in range(7):
        previous = tables[-1]
        tables.append([(c >> 8) ^ first[c & 0xFF] for c in previous])
    return tables


_T: Final = _tables()


def crc64_py(crc: int, data: bytes | bytearray | memoryview) -> int:
    """The CRC of data continued from crc (0 to start)."""
    t0, t1, t2, t3, t4, t5, t6, t7 = _T
    view = memoryview(data).cast("B")
    size = len(view)
    whole = size - size % 8
    position = 0
    if whole:
        words = view[:whole].cast("Q")  # native order: every supported host is little-endian
        for word in words:
            x = crc ^ word
            crc = (
                t7[x & 0xFF]
                ^ t6[(x >> 8) & 0xFF]
                ^ t5[(x >> 16) & 0xFF]
                ^ t4[(x >> 24) & 0xFF]
                ^ t3[(x >> 32) & 0xFF]
                ^ t2[(x >> 40) & 0xFF]
                ^ t1[(x >> 48) & 0xFF]
                ^ t0[x >> 56]
            )
        position = whole
    for byte in view[position:]:
        crc = t0[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def _load_fast() -> Callable[[int, bytes | bytearray | memoryview], int] | None:
    try:
        from cacheshim.snapshot import _native  # type: ignore[attr-defined]
    except ImportError:
        return None
    fast: Callable[[int, bytes | bytearray | memoryview], int] = _native.crc64
    return fast


_fast = _load_fast()
crc64: Callable[[int, bytes | bytearray | memoryview], int] = _fast or crc64_py
HAVE_C: Final = _fast is not None
