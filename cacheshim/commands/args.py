"""Argument parsing shared by handler modules, as Redis's object.c and util.c parse."""

from __future__ import annotations

from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.types.glob import Pattern
from cacheshim.types.keyspace import DATABASES, string_as_int

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
LONG_MAX = 2**63 - 1


def parse_int(arg: bytes) -> int:
    """A 64-bit signed integer as Redis's string2ll accepts it (getLongLongFromObject)."""
    value = string_as_int(arg)
    if value is None:
        raise CommandError(errors.NOT_AN_INTEGER)
    return value


def parse_int32(arg: bytes) -> int:
    """A C int (getIntFromObjectOrReply): a 64-bit integer first, then the int range."""
    value = parse_int(arg)
    if not INT32_MIN <= value <= INT32_MAX:
        raise CommandError(errors.NOT_AN_INT32)
    return value


def parse_db_index(arg: bytes) -> int:
    """A database number for MOVE and COPY ... DB."""
    db = parse_int32(arg)
    if not 0 <= db < DATABASES:
        raise CommandError(errors.DB_INDEX_OUT_OF_RANGE)
    return db


def option(arg: bytes) -> bytes:
    """An option name as Redis compares it (strcasecmp on a C string): upper-cased, and
    cut at the first NUL byte."""
    nul = arg.find(0)
    return (arg if nul < 0 else arg[:nul]).upper()


def index_span(size: int, start: int, end: int) -> tuple[int, int] | None:
    """Redis's sanitising of an inclusive [start, end] over size elements, negatives counted
    from the end (LRANGE, ZRANGE by rank, ZREMRANGEBYRANK): the (first, last) positions,
    both inside, or None when nothing is selected (a start past the end or after the end)."""
    if start < 0:
        start += size
    if end < 0:
        end += size
    start = max(start, 0)
    if start > end or start >= size:
        return None
    return start, min(end, size - 1)


def parse_long_in_range(arg: bytes, low: int, high: int, message: str | None = None) -> int:
    """getRangeLongFromObjectOrReply: a 64-bit integer within [low, high]. With message,
    that text answers both a non-number and a number out of range."""
    try:
        value = parse_int(arg)
    except CommandError:
        raise CommandError(message or errors.NOT_AN_INTEGER) from None
    if not low <= value <= high:
        raise CommandError(message or errors.long_out_of_range(low, high))
    return value


def parse_count_option(args: list[bytes], start: int) -> int | None:
    """LMPOP's and ZMPOP's tail from args[start]: nothing, or COUNT and a positive count,
    once; anything else is a syntax error. None when there is no COUNT."""
    count: int | None = None
    i = start
    while i < len(args):
        if count is None and option(args[i]) == b"COUNT" and i + 1 < len(args):
            count = parse_long_in_range(args[i + 1], 1, LONG_MAX, errors.COUNT_NOT_POSITIVE)
            i += 2
        else:
            raise CommandError(errors.SYNTAX_ERROR)
    return count


def parse_scan_options(
    args: list[bytes], with_type: bool = False
) -> tuple[int, Pattern | None, bytes | None]:
    """The options of SCAN (with_type) and of SSCAN/HSCAN/ZSCAN, as scanGenericCommand
    reads them: (COUNT, the MATCH pattern or None for none or "*", the TYPE or None)."""
    count = 10
    pattern: Pattern | None = None
    type_name: bytes | None = None
    i = 0
    while i < len(args):
        opt = option(args[i])
        has_value = i + 1 < len(args)
        if opt == b"COUNT" and has_value:
            count = parse_int(args[i + 1])
            if count < 1:
                raise CommandError(errors.SYNTAX_ERROR)
        elif opt == b"MATCH" and has_value:
            pattern = None if args[i + 1] == b"*" else Pattern(args[i + 1])
        elif opt == b"TYPE" and has_value and with_type:
            type_name = option(args[i + 1])
        else:
            raise CommandError(errors.SYNTAX_ERROR)
        i += 2
    return count, pattern, type_name
