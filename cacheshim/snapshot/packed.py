"""The packed blobs Redis stores inside RDB values, decoded to lists of byte strings (an
integer entry comes back as its decimal spelling, which is what Redis would reply with):

- listpack (Redis 7: small hashes, sorted sets, the nodes of a list, 7.2's small sets);
- ziplist (Redis 3.2 to 6.2: the same roles; still read by Redis 7 from old files);
- intset (small sets of integers, any version);
- zipmap (small hashes before Redis 2.6).

And one encoder, for listpacks, which memlog writes as the nodes of its lists. Every
decoder checks its bounds and raises `PackedError` on a malformed blob.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from cacheshim.snapshot.model import strict_int


class PackedError(ValueError):
    pass


_U16: Final = struct.Struct("<H")
_I16: Final = struct.Struct("<h")
_U32: Final = struct.Struct("<I")
_I32: Final = struct.Struct("<i")
_I64: Final = struct.Struct("<q")
_BE_U16: Final = struct.Struct(">H")
_BE_U32: Final = struct.Struct(">I")

LISTPACK_HEADER_BYTES: Final = 6
LISTPACK_END: Final = 0xFF


# -- listpack ---------------------------------------------------------------------------------


def _backlen_bytes(entry_bytes: int) -> int:
    """How many bytes a listpack entry's trailing length takes (Redis's thresholds)."""
    if entry_bytes <= 127:
        return 1
    if entry_bytes < 16383:
        return 2
    if entry_bytes < 2097151:
        return 3
    if entry_bytes < 268435455:
        return 4
    return 5


def _backlen(entry_bytes: int) -> bytes:
    """The entry's length written to be read backwards, 7 bits a byte: the last byte holds
    the lowest bits, and every byte but the first has its top bit set (more precede it)."""
    count = _backlen_bytes(entry_bytes)
    out = bytearray(count)
    for i in range(count):
        shift = 7 * (count - 1 - i)
        out[i] = ((entry_bytes >> shift) & 0x7F) | (0x80 if i else 0)
    return bytes(out)


def _encode_int(number: int) -> bytes:
    if 0 <= number <= 127:
        return bytes((number,))
    if -4096 <= number <= 4095:
        unsigned = number & 0x1FFF
        return bytes((0xC0 | (unsigned >> 8), unsigned & 0xFF))
    if -32768 <= number <= 32767:
        return b"\xf1" + _I16.pack(number)
    if -8388608 <= number <= 8388607:
        return b"\xf2" + (number & 0xFFFFFF).to_bytes(3, "little")
    if -2147483648 <= number <= 2147483647:
        return b"\xf3" + _I32.pack(number)
    return b"\xf4" + _I64.pack(number)


def _encode_str(item: bytes) -> bytes:
    size = len(item)
    if size < 64:
        return bytes((0x80 | size,)) + item
    if size < 4096:
        return bytes((0xE0 | (size >> 8), size & 0xFF)) + item
    return b"\xf0" + _U32.pack(size) + item


def listpack_entry(item: bytes) -> bytes:
    """One entry: an integer in Redis's strict spelling is stored as one, as Redis does."""
    # Cheap tests first: an integer ends in a digit and starts with one or "-".
    maybe = item and 0x30 <= item[-1] <= 0x39 and 0x2D <= item[0] <= 0x39
    number = strict_int(item) if maybe else None
    body = _encode_int(number) if number is not None else _encode_str(item)
    if len(body) < 128:  # the common case, inline
        return body + bytes((len(body),))
    return body + _backlen(len(body))


def join_listpack(entries: Sequence[bytes]) -> bytes:
    """A listpack of entries already encoded by `listpack_entry`."""
    body = b"".join(entries)
    total = LISTPACK_HEADER_BYTES + len(body) + 1
    count = len(entries) if len(entries) < 65535 else 65535
    return _U32.pack(total) + _U16.pack(count) + body + b"\xff"


def encode_listpack(items: Sequence[bytes]) -> bytes:
    return join_listpack([listpack_entry(item) for item in items])


def decode_listpack(blob: bytes) -> list[bytes]:
    size = len(blob)
    if size < LISTPACK_HEADER_BYTES + 1:
        raise PackedError("listpack shorter than its header")
    total = _U32.unpack_from(blob, 0)[0]
    if total != size or blob[-1] != LISTPACK_END:
        raise PackedError("listpack size or terminator is wrong")
    count = _U16.unpack_from(blob, 4)[0]
    out: list[bytes] = []
    p = LISTPACK_HEADER_BYTES
    end = size - 1
    while p < end:
        b = blob[p]
        start = p
        if b < 0x80:  # 7-bit unsigned integer
            item = b"%d" % b
            p += 1
        elif b < 0xC0:  # string up to 63 bytes
            length = b & 0x3F
            item = blob[p + 1 : p + 1 + length]
            p += 1 + length
        elif b < 0xE0:  # 13-bit signed integer
            if p + 2 > end:
                raise PackedError("listpack entry runs past the end")
            number = ((b & 0x1F) << 8) | blob[p + 1]
            if number >= 4096:
                number -= 8192
            item = b"%d" % number
            p += 2
        elif b < 0xF0:  # string up to 4095 bytes
            if p + 2 > end:
                raise PackedError("listpack entry runs past the end")
            length = ((b & 0x0F) << 8) | blob[p + 1]
            item = blob[p + 2 : p + 2 + length]
            p += 2 + length
        elif b == 0xF0:
            if p + 5 > end:
                raise PackedError("listpack entry runs past the end")
            length = _U32.unpack_from(blob, p + 1)[0]
            item = blob[p + 5 : p + 5 + length]
            p += 5 + length
        elif b == 0xF1:
            item = b"%d" % _I16.unpack_from(blob, p + 1)[0]
            p += 3
        elif b == 0xF2:
            number = int.from_bytes(blob[p + 1 : p + 4], "little", signed=True)
            item = b"%d" % number
            p += 4
        elif b == 0xF3:
            item = b"%d" % _I32.unpack_from(blob, p + 1)[0]
            p += 5
        elif b == 0xF4:
            item = b"%d" % _I64.unpack_from(blob, p + 1)[0]
            p += 9
        else:
            raise PackedError(f"unknown listpack encoding byte 0x{b:02x}")
        if p > end:
            raise PackedError("listpack entry runs past the end")
        p += _backlen_bytes(p - start)
        out.append(item)
    if p != end:
        raise PackedError("listpack entries overrun the terminator")
    if count != 65535 and count != len(out):
        raise PackedError(f"listpack says {count} entries, holds {len(out)}")
    return out


# -- ziplist ----------------------------------------------------------------------------------


def decode_ziplist(blob: bytes) -> list[bytes]:
    size = len(blob)
    if size < 11:
        raise PackedError("ziplist shorter than its header")
    total = _U32.unpack_from(blob, 0)[0]
    if total != size or blob[-1] != 0xFF:
        raise PackedError("ziplist size or terminator is wrong")
    count = _U16.unpack_from(blob, 8)[0]
    out: list[bytes] = []
    p = 10
    end = size - 1
    while p < end:
        p += 5 if blob[p] == 0xFE else 1  # the previous entry's length
        if p >= end:
            raise PackedError("ziplist entry runs past the end")
        b = blob[p]
        kind = b >> 6
        if kind == 0:
            length = b & 0x3F
            item = blob[p + 1 : p + 1 + length]
            p += 1 + length
        elif kind == 1:
            length = ((b & 0x3F) << 8) | blob[p + 1]
            item = blob[p + 2 : p + 2 + length]
            p += 2 + length
        elif kind == 2:
            length = _BE_U32.unpack_from(blob, p + 1)[0]
            item = blob[p + 5 : p + 5 + length]
            p += 5 + length
        elif b == 0xC0:
            item = b"%d" % _I16.unpack_from(blob, p + 1)[0]
            p += 3
        elif b == 0xD0:
            item = b"%d" % _I32.unpack_from(blob, p + 1)[0]
            p += 5
        elif b == 0xE0:
            item = b"%d" % _I64.unpack_from(blob, p + 1)[0]
            p += 9
        elif b == 0xF0:
            item = b"%d" % int.from_bytes(blob[p + 1 : p + 4], "little", signed=True)
            p += 4
        elif b == 0xFE:
            item = b"%d" % int.from_bytes(blob[p + 1 : p + 2], "little", signed=True)
            p += 2
        elif 0xF1 <= b <= 0xFD:  # an immediate 0..12
            item = b"%d" % ((b & 0x0F) - 1)
            p += 1
        else:
            raise PackedError(f"unknown ziplist encoding byte 0x{b:02x}")
        if p > end:
            raise PackedError("ziplist entry runs past the end")
        out.append(item)
    if count != 65535 and count != len(out):
        raise PackedError(f"ziplist says {count} entries, holds {len(out)}")
    return out


# -- intset -----------------------------------------------------------------------------------

_INTSET_FORMATS: Final = {2: "h", 4: "i", 8: "q"}


def decode_intset(blob: bytes) -> list[bytes]:
    if len(blob) < 8:
        raise PackedError("intset shorter than its header")
    width, count = struct.unpack_from("<II", blob, 0)
    code = _INTSET_FORMATS.get(width)
    if code is None:
        raise PackedError(f"intset with {width}-byte integers")
    if len(blob) != 8 + width * count:
        raise PackedError("intset size does not match its count")
    numbers = struct.unpack_from(f"<{count}{code}", blob, 8)
    return [b"%d" % n for n in numbers]


# -- zipmap -----------------------------------------------------------------------------------


def decode_zipmap(blob: bytes) -> list[bytes]:
    """Field, value, field, value, ... of a zipmap (Redis before 2.6)."""
    out: list[bytes] = []
    p = 1  # the entry count byte (a hint only)
    size = len(blob)

    def length_at(position: int) -> tuple[int, int]:
        if position >= size:
            raise PackedError("zipmap runs past the end")
        first = blob[position]
        if first < 254:
            return first, position + 1
        if first == 254:
            return _U32.unpack_from(blob, position + 1)[0], position + 5
        raise PackedError("zipmap length byte 255 inside an entry")

    while True:
        if p >= size:
            raise PackedError("zipmap without its terminator")
        if blob[p] == 0xFF:
            break
        length, p = length_at(p)
        out.append(blob[p : p + length])
        p += length
        length, p = length_at(p)
        free = blob[p]
        p += 1
        out.append(blob[p : p + length])
        p += length + free
    return out
