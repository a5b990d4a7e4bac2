"""Bitmap commands on the string type (Redis bitops.c), Redis 7.0's replies and errors.

A bitmap is a string read bit by bit, the first byte's most significant bit being bit 0.
Counting and searching run over whole byte runs in C (``int.from_bytes``, ``int.bit_count``,
``bytes.translate``); a write copies the string once (values are immutable ``bytes``).

As in Redis, SETBIT and BITFIELD count as a change (WATCH, keyspace) only when a bit changed
or the string grew; a string they touch becomes raw-encoded either way.
"""

from __future__ import annotations

from typing import Final

from cacheshim.commands import Ctx, command
from cacheshim.commands.args import option, parse_int
from cacheshim.commands.strings import STRING_BYTES_MAX, get_string
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import Reply
from cacheshim.types.keyspace import RawString, string_as_int

_GROUP: Final = "bitmap"
_U64: Final = 2**64
_BIT: Final = b"BIT"
_BYTE: Final = b"BYTE"


def parse_bit_offset(arg: bytes, hash_bits: int = 0) -> int:
    """getBitOffsetFromArgument: a non-negative bit offset below proto-max-bulk-len bytes.
    With hash_bits (BITFIELD), "#n" means n * hash_bits (multiplied as a C long long,
    wrapping as it does)."""
    use_hash = hash_bits > 0 and arg[:1] == b"#"
    offset = string_as_int(arg[1:] if use_hash else arg)
    if offset is None:
        raise CommandError(errors.BIT_OFFSET_NOT_AN_INTEGER)
    if use_hash:
        offset = (offset * hash_bits + 2**63) % _U64 - 2**63
    if offset < 0 or offset >> 3 >= STRING_BYTES_MAX:
        raise CommandError(errors.BIT_OFFSET_NOT_AN_INTEGER)
    return offset


def _writable(ctx: Ctx, key: bytes, max_bit: int) -> tuple[bytearray, bool, bool]:
    """lookupStringForBitCommand: the string at key (WRONGTYPE for another type) as a
    buffer long enough to hold max_bit; whether it was created, and whether it grew."""
    current = get_string(ctx, key)
    need = (max_bit >> 3) + 1
    if current is None:
        return bytearray(need), True, True
    buffer = bytearray(current)
    if len(buffer) < need:
        buffer.extend(bytes(need - len(buffer)))
        return buffer, False, True
    return buffer, False, False


def _store(ctx: Ctx, key: bytes, buffer: bytearray, created: bool, changed: bool) -> None:
    value = RawString(buffer)
    if created or changed:
        ctx.db.set(key, value, ctx.index, keep_ttl=True)
    else:  # the same bytes, raw-encoded now (dbUnshareStringValue): no change to WATCH
        ctx.db.data[key] = value


# -- SETBIT, GETBIT ------------------------------------------------------------------------------


@command(
    "setbit", 4, "write denyoom", (1, 1, 1), "write bitmap slow", _GROUP, "2.2.0",
    "Sets or clears the bit at an offset of the string at a key (creating or zero-padding "
    "it) and answers the bit it had.", key_flags="RW access update",
)  # fmt: skip
def setbit(ctx: Ctx, args: list[bytes]) -> Reply:
    key = args[0]
    offset = parse_bit_offset(args[1])
    on = string_as_int(args[2])
    if on is None or on not in (0, 1):
        raise CommandError(errors.BIT_NOT_AN_INTEGER)
    buffer, created, grew = _writable(ctx, key, offset)
    byte = offset >> 3
    mask = 0x80 >> (offset & 7)
    old = 1 if buffer[byte] & mask else 0
    if on:
        buffer[byte] |= mask
    else:
        buffer[byte] &= ~mask & 0xFF
    _store(ctx, key, buffer, created, grew or old != on)
    return old


@command(
    "getbit", 3, "readonly fast", (1, 1, 1), "read bitmap fast", _GROUP, "2.2.0",
    "Answers the bit at an offset of the string at a key (0 past its end or for a missing "
    "key).", key_flags="RO access",
)  # fmt: skip
def getbit(ctx: Ctx, args: list[bytes]) -> Reply:
    offset = parse_bit_offset(args[1])
    value = get_string(ctx, args[0])
    byte = offset >> 3
    if value is None or byte >= len(value):
        return 0
    return 1 if value[byte] & (0x80 >> (offset & 7)) else 0


# -- BITCOUNT, BITPOS ----------------------------------------------------------------------------


def _unit(arg: bytes) -> bool:
    """BIT (True) or BYTE (False); anything else is a syntax error."""
    word = option(arg)
    if word == _BIT:
        return True
    if word == _BYTE:
        return False
    raise CommandError(errors.SYNTAX_ERROR)


def _clamp(start: int, end: int, total: int) -> tuple[int, int]:
    """Negative indexes from the end, then clamped to [0, total - 1] as Redis does."""
    if start < 0:
        start += total
    if end < 0:
        end += total
    return max(start, 0), min(max(end, 0), total - 1)


def _bits_of(value: bytes, start_bit: int, end_bit: int) -> int:
    """The bits start_bit..end_bit (inclusive) of value as one integer, bit start_bit the
    most significant."""
    first, last = start_bit >> 3, end_bit >> 3
    number = int.from_bytes(value[first : last + 1], "big")
    number >>= 7 - (end_bit & 7)
    return number & ((1 << (end_bit - start_bit + 1)) - 1)


@command(
    "bitcount", -2, "readonly", (1, 1, 1), "read bitmap slow", _GROUP, "2.6.0",
    "Counts the set bits of the string at a key, optionally between two byte or bit "
    "offsets.", "O(N)", key_flags="RO access",
)  # fmt: skip
def bitcount(ctx: Ctx, args: list[bytes]) -> Reply:
    value = get_string(ctx, args[0])
    if value is None:
        return 0
    if len(args) == 1:
        return int.from_bytes(value, "big").bit_count()
    if len(args) not in (3, 4):
        raise CommandError(errors.SYNTAX_ERROR)
    start, end = parse_int(args[1]), parse_int(args[2])
    if start < 0 and end < 0 and start > end:
        return 0
    in_bits = _unit(args[3]) if len(args) == 4 else False
    total = len(value) * 8 if in_bits else len(value)
    start, end = _clamp(start, end, total)
    if start > end:
        return 0
    if in_bits:
        return _bits_of(value, start, end).bit_count()
    return int.from_bytes(value[start : end + 1], "big").bit_count()


def _first_bit(value: bytes, bit: int, start_bit: int, end_bit: int) -> int:
    """The position of the first bit equal to bit within start_bit..end_bit, or -1."""
    width = end_bit - start_bit + 1
    number = _bits_of(value, start_bit, end_bit)
    if not bit:
        number ^= (1 << width) - 1
    if number == 0:
        return -1
    return start_bit + width - number.bit_length()


@command(
    "bitpos", -3, "readonly", (1, 1, 1), "read bitmap slow", _GROUP, "2.8.7",
    "Answers the position of the first set or clear bit of the string at a key, optionally "
    "between two byte or bit offsets.", "O(N)", key_flags="RO access",
)  # fmt: skip
def bitpos(ctx: Ctx, args: list[bytes]) -> Reply:
    bit = parse_int(args[1])
    if bit not in (0, 1):
        raise CommandError(errors.BITPOS_BIT_NOT_0_OR_1)
    value = get_string(ctx, args[0])
    if value is None:
        return -1 if bit else 0
    if len(args) > 5:
        raise CommandError(errors.SYNTAX_ERROR)
    end_given = len(args) >= 4
    in_bits = False
    if len(args) == 2:
        start, end = 0, len(value) - 1
    else:
        start = parse_int(args[2])
        if len(args) == 5:
            in_bits = _unit(args[4])
        total = len(value) * 8 if in_bits else len(value)
        end = parse_int(args[3]) if end_given else total - 1
        start, end = _clamp(start, end, total)
    if start > end:
        return -1
    if not in_bits:
        start, end = start * 8, end * 8 + 7
    found = _first_bit(value, bit, start, end)
    if found < 0 and not bit and not end_given:
        # No clear bit in the range: the string counts as zero-padded on the right, so the
        # first bit after the range's last byte (Redis answers that only without an end).
        return (end >> 3) * 8 + 8
    return found


# -- BITOP -------------------------------------------------------------------------------------

_BITOPS: Final = {b"AND", b"OR", b"XOR", b"NOT"}


@command(
    "bitop", -4, "write denyoom", (2, -1, 1), "write bitmap slow", _GROUP, "2.6.0",
    "Stores the bitwise AND, OR, XOR of strings (or NOT of one) at a destination key and "
    "answers its length.", "O(N)", key_flags="OW update|RO access",
)  # fmt: skip
def bitop(ctx: Ctx, args: list[bytes]) -> Reply:
    op = option(args[0])
    if op not in _BITOPS:
        raise CommandError(errors.SYNTAX_ERROR)
    destination, keys = args[1], args[2:]
    if op == b"NOT" and len(keys) != 1:
        raise CommandError(errors.BITOP_NOT_ONE_KEY)
    sources = [get_string(ctx, key) or b"" for key in keys]
    size = max(len(source) for source in sources)
    if size == 0:
        ctx.db.delete(destination, ctx.index)
        return 0
    numbers = [int.from_bytes(source.ljust(size, b"\x00"), "big") for source in sources]
    result = numbers[0]
    if op == b"NOT":
        result ^= (1 << (size * 8)) - 1
    elif op == b"AND":
        for number in numbers[1:]:
            result &= number
    elif op == b"OR":
        for number in numbers[1:]:
            result |= number
    else:
        for number in numbers[1:]:
            result ^= number
    ctx.db.set(destination, RawString(result.to_bytes(size, "big")), ctx.index)
    return size


# -- BITFIELD, BITFIELD_RO -----------------------------------------------------------------------

_WRAP, _SAT, _FAIL = 0, 1, 2
_OVERFLOWS: Final = {b"WRAP": _WRAP, b"SAT": _SAT, b"FAIL": _FAIL}
_GET, _SET, _INCRBY = 0, 1, 2
_OPS: Final = {b"GET": (_GET, 2), b"SET": (_SET, 3), b"INCRBY": (_INCRBY, 3)}


def _field_type(arg: bytes) -> tuple[bool, int]:
    """getBitfieldTypeFromArgument: (signed, bits) from i1..i64 or u1..u63."""
    sign = arg[:1]
    digits = arg[1:].split(b"\x00", 1)[0]  # read as a C string
    bits = string_as_int(digits)
    if (
        sign not in (b"i", b"u")
        or bits is None
        or bits < 1
        or bits > (64 if sign == b"i" else 63)
    ):  # fmt: skip
        raise CommandError(errors.BITFIELD_INVALID_TYPE)
    return sign == b"i", bits


def _read_field(value: bytes | bytearray, offset: int, bits: int, signed: bool) -> int:
    first = offset >> 3
    window = bytes(value[first : first + 9]).ljust(9, b"\x00")
    number = int.from_bytes(window, "big") >> (72 - (offset & 7) - bits)
    number &= (1 << bits) - 1
    if signed and number >> (bits - 1):
        number -= 1 << bits
    return number


def _write_field(buffer: bytearray, offset: int, bits: int, number: int) -> None:
    first = offset >> 3
    last = (offset + bits - 1) >> 3
    span = (last - first + 1) * 8
    shift = span - (offset & 7) - bits
    window = int.from_bytes(buffer[first : last + 1], "big")
    mask = ((1 << bits) - 1) << shift
    window = (window & ~mask) | ((number << shift) & mask)
    buffer[first : last + 1] = window.to_bytes(span // 8, "big")


def _int64(number: int) -> int:
    """`number` as C's int64_t holds it after two's-complement wraparound."""
    number %= _U64
    return number - _U64 if number >> 63 else number


def _overflowed(signed: bool, bits: int, value: int, incr: int, how: int) -> tuple[int, bool]:
    """checkSignedBitfieldOverflow / checkUnsignedBitfieldOverflow: the new value of the
    field (wrapped or saturated) and whether it overflowed. An unsigned SET value is the
    64-bit pattern of the given integer, as Redis casts it.

    The checks keep Redis's int64 arithmetic on purpose: the headroom (`high - value`,
    `low - value`) is computed in 64 bits and may wrap, and Redis then decides by the wrapped
    number. So `SET i62 ... -8525994204535615259` with OVERFLOW SAT stores the field's
    maximum, not its minimum, and memlog must store the same."""
    if signed:
        high, low = (1 << (bits - 1)) - 1, -(1 << (bits - 1))
        up_room, down_room = _int64(high - value), _int64(low - value)
        up = (
            value > high
            or (bits != 64 and incr > up_room)
            or (value >= 0 and incr > 0 and incr > up_room)
        )
        down = not up and (
            value < low
            or (bits != 64 and incr < down_room)
            or (value < 0 and incr < 0 and incr < down_room)
        )
    else:
        high, low = (1 << bits) - 1, 0
        value %= _U64
        up_room, down_room = _int64(high - value), _int64(-value)
        up = value > high or (incr > 0 and incr > up_room)
        down = not up and incr < 0 and incr < down_room
    if not up and not down:
        return value + incr, False
    if how == _SAT:
        return (high if up else low), True
    wrapped = (value + incr) % (1 << bits)
    if signed and wrapped >> (bits - 1):
        wrapped -= 1 << bits
    return wrapped, True


def _bitfield(ctx: Ctx, args: list[bytes], readonly_command: bool) -> Reply:
    key = args[0]
    ops: list[tuple[int, bool, int, int, int, int]] = []  # op, signed, bits, offset, arg, how
    how = _WRAP
    highest = -1
    i = 1
    while i < len(args):
        word = option(args[i])
        left = len(args) - i - 1
        if word == b"OVERFLOW" and left >= 1:
            chosen = _OVERFLOWS.get(option(args[i + 1]))
            if chosen is None:
                raise CommandError(errors.BITFIELD_INVALID_OVERFLOW)
            how = chosen
            i += 2
            continue
        op_and_argc = _OPS.get(word)
        if op_and_argc is None or left < op_and_argc[1]:
            raise CommandError(errors.SYNTAX_ERROR)
        op, argc = op_and_argc
        signed, bits = _field_type(args[i + 1])
        offset = parse_bit_offset(args[i + 2], bits)
        number = 0
        if op != _GET:
            highest = max(highest, offset + bits - 1)
            number = parse_int(args[i + 3])
        ops.append((op, signed, bits, offset, number, how))
        i += argc + 1
    if highest < 0:  # only GETs: a read
        value = get_string(ctx, key) or b""
        return [_read_field(value, offset, bits, signed) for _, signed, bits, offset, _, _ in ops]
    if readonly_command:
        raise CommandError(errors.BITFIELD_RO_ONLY_GET)
    buffer, created, grew = _writable(ctx, key, highest)
    changes = 0
    replies: list[Reply] = []
    for op, signed, bits, offset, number, how in ops:
        old = _read_field(buffer, offset, bits, signed)
        if op == _GET:
            replies.append(old)
            continue
        if op == _INCRBY:
            new, overflow = _overflowed(signed, bits, old, number, how)
            answer = new
        else:
            new, overflow = _overflowed(signed, bits, number, 0, how)
            answer = old
        if overflow and how == _FAIL:
            replies.append(None)
            continue
        replies.append(answer)
        _write_field(buffer, offset, bits, new)
        if grew or old != new:
            changes += 1
    _store(ctx, key, buffer, created, changes > 0)
    return replies


@command(
    "bitfield", -2, "write denyoom", (1, 1, 1), "write bitmap slow", _GROUP, "3.2.0",
    "Gets, sets and increments integer fields of any width and offset in the string at a key "
    "(GET, SET, INCRBY, OVERFLOW WRAP|SAT|FAIL).", "O(1) for each subcommand specified",
    key_flags="RW access update variable_flags",
)  # fmt: skip
def bitfield(ctx: Ctx, args: list[bytes]) -> Reply:
    return _bitfield(ctx, args, readonly_command=False)


@command(
    "bitfield_ro", -2, "readonly fast", (1, 1, 1), "read bitmap fast", _GROUP, "6.0.0",
    "Gets integer fields of any width and offset in the string at a key (GET only).",
    "O(1) for each subcommand specified", key_flags="RO access",
)  # fmt: skip
def bitfield_ro(ctx: Ctx, args: list[bytes]) -> Reply:
    return _bitfield(ctx, args, readonly_command=True)
