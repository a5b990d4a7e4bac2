"""Argument parsing shared by handler modules, as Redis's object.c and util.c parse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from cacheshim.commands.argspec import ArgSpec, valued
from cacheshim.commands.argspec import option as option  # re-exported for the handler modules
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


def long_in_range(low: int, high: int, message: str | None = None) -> Callable[[bytes], int]:
    """`parse_long_in_range` as the converter of an option's value."""
    return lambda arg: parse_long_in_range(arg, low, high, message)


_MPOP_COUNT: Final = valued(
    "COUNT", long_in_range(1, LONG_MAX, errors.COUNT_NOT_POSITIVE), once=True
)
_MPOP_OPTIONS: Final = ArgSpec(_MPOP_COUNT)


def parse_count_option(args: list[bytes], start: int) -> int | None:
    """LMPOP's and ZMPOP's tail from args[start]: nothing, or COUNT and a positive count,
    once; anything else is a syntax error. None when there is no COUNT."""
    return _MPOP_OPTIONS.parse(args, start).get(_MPOP_COUNT)


def _scan_count(arg: bytes) -> int:
    count = parse_int(arg)
    if count < 1:
        raise CommandError(errors.SYNTAX_ERROR)
    return count


_SCAN_COUNT: Final = valued("COUNT", _scan_count)
_SCAN_MATCH: Final = valued("MATCH", lambda arg: None if arg == b"*" else Pattern(arg))
_SCAN_TYPE: Final = valued("TYPE", option)
_SCAN_OPTIONS: Final = ArgSpec(_SCAN_COUNT, _SCAN_MATCH)
_SCAN_OPTIONS_WITH_TYPE: Final = ArgSpec(_SCAN_COUNT, _SCAN_MATCH, _SCAN_TYPE)


def parse_scan_options(
    args: list[bytes], with_type: bool = False
) -> tuple[int, Pattern | None, bytes | None]:
    """The options of SCAN (with_type) and of SSCAN/HSCAN/ZSCAN, as scanGenericCommand
    reads them: (COUNT, the MATCH pattern or None for none or "*", the TYPE or None)."""
    parsed = (_SCAN_OPTIONS_WITH_TYPE if with_type else _SCAN_OPTIONS).parse(args)
    return parsed.get(_SCAN_COUNT, 10), parsed.get(_SCAN_MATCH), parsed.get(_SCAN_TYPE)
