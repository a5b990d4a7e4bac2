"""LZF decompression, for the strings Redis compresses in RDB files (``rdbcompression yes``,
its default: strings over 20 bytes that shrink by at least 4).

The format (liblzf's): a control byte below 32 starts a run of that many plus one literal
bytes; any other control byte is a back reference, its top 3 bits the length minus 2 (7
means a further byte adds to it) and its low 5 bits with the next byte the distance minus 1
back into the output. A reference may overlap the bytes it produces (a repeating pattern).

`decompress` is the C twin in ``cacheshim.snapshot._native`` when it is built, else
`decompress_py` below, its specification.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final


class LzfError(ValueError):
    pass


def decompress_py(data: bytes, expected_bytes: int) -> bytes:
    """The expected_bytes that data expands to; LzfError if it does not."""
    out = bytearray()
    position = 0
    size = len(data)
    while position < size:
        ctrl = data[position]
        position += 1
        if ctrl < 32:  # literal run
            end = position + ctrl + 1
            if end > size:
                raise LzfError("literal run past the end of the input")
            out += data[position:end]
            position = end
            continue
        length = ctrl >> 5
        if length == 7:
            if position >= size:
                raise LzfError("truncated back reference")
            length += data[position]
            position += 1
        if position >= size:
            raise LzfError("truncated back reference")
        distance = ((ctrl & 0x1F) << 8) + data[position] + 1
        position += 1
        length += 2
        start = len(out) - distance
        if start < 0:
            raise LzfError("back reference before the start of the output")
        if distance >= length:
            out += out[start : start + length]
        else:  # overlapping: the pattern of `distance` bytes repeats
            pattern = bytes(out[start:])
            whole, part = divmod(length, distance)
            out += pattern * whole + pattern[:part]
        if len(out) > expected_bytes:
            break
    if len(out) != expected_bytes:
        raise LzfError(f"expanded to {len(out)} bytes, expected {expected_bytes}")
    return bytes(out)


def _load_fast() -> Callable[[bytes, int], bytes] | None:
    try:
        from cacheshim.snapshot import _native  # type: ignore[attr-defined]
    except ImportError:
        return None
    native: Callable[[bytes, int], bytes] = _native.lzf_decompress

    def decompress_c(data: bytes, expected_bytes: int) -> bytes:
        try:
            return native(data, expected_bytes)
        except ValueError as exc:
            raise LzfError(str(exc)) from None

    return decompress_c


_fast = _load_fast()
decompress: Final[Callable[[bytes, int], bytes]] = _fast or decompress_py
HAVE_C: Final = _fast is not None
