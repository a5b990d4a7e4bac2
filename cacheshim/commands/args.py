"""Argument parsing shared by handler modules, as Redis's object.c and util.c parse."""

from __future__ import annotations

from cacheshim import errors
from cacheshim.errors import CommandError
from cacheshim.keyspace import DATABASES, string_as_int

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


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
