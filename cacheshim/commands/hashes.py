"""Hash commands (Redis t_hash.c), Redis 7.0's replies and errors.

The value is a :class:`cacheshim.types.hashvalue.HashValue` (encodings, reply order and the
determinism of random picks are described there). Write handlers run only inside apply.
HRANDFIELD is a read: served from memory it picks with the shim's own generator, inside
MULTI/EXEC (in apply) with the log's, seeded by the log index.

HRANDFIELD ... WITHVALUES answers a flat list in RESP2 and a list of [field, value] pairs in
RESP3: a `Pairs` reply (cacheshim.protocol.resp, shared with the sorted sets' WITHSCORES) renders
both, also inside MULTI/EXEC, where apply does not know the client's protocol.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Final, cast

from cacheshim.commands import Ctx, command
from cacheshim.commands.args import (
    LONG_MAX,
    option,
    parse_int,
    parse_long_in_range,
    parse_scan_options,
)
from cacheshim.commands.keys import parse_cursor
from cacheshim.notify import GENERIC, HASH, notify
from cacheshim.picks import distinct_positions, repeated_positions
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import OK, Pairs, Picks, Reply
from cacheshim.types import longdouble
from cacheshim.types.hashvalue import HashValue
from cacheshim.types.keyspace import string_as_int

__all__ = ["get_hash"]

LLONG_MIN: Final = -(2**63)
LLONG_MAX: Final = 2**63 - 1


def get_hash(ctx: Ctx, key: bytes) -> HashValue | None:
    """The live hash at key, None if there is no key; WRONGTYPE for another type."""
    return ctx.db.get_typed(key, ctx.now_ms, HashValue)


def _hash_for_write(ctx: Ctx, key: bytes) -> HashValue:
    """The hash at key, created (and stored) when there is none (hashTypeLookupWriteOrCreate)."""
    value = get_hash(ctx, key)
    if value is None:
        value = HashValue()
        ctx.db.set(key, value, ctx.index)
    return value


# -- setting ---------------------------------------------------------------------------------


def _hset(ctx: Ctx, args: list[bytes], name: str) -> int:
    if len(args) % 2 == 0:
        raise CommandError(errors.wrong_number_of_arguments(name))
    value = _hash_for_write(ctx, args[0])
    created = 0
    for i in range(1, len(args), 2):
        if value.set(args[i], args[i + 1]):
            created += 1
    ctx.db.touch_changed(args[0], ctx.index)
    notify(ctx, HASH, b"hset", args[0])
    return created


@command(
    "hset", -4, "write denyoom fast", (1, 1, 1), "write hash fast", "hash", "2.0.0",
    "Sets fields of a hash (creating it) and answers how many fields were new.",
    "O(1) for each field set.",
)  # fmt: skip
def hset(ctx: Ctx, args: list[bytes]) -> Reply:
    return _hset(ctx, args, "hset")


@command(
    "hmset", -4, "write denyoom fast", (1, 1, 1), "write hash fast", "hash", "2.0.0",
    "Sets fields of a hash, creating it (deprecated: HSET).", "O(N) where N is the number of "
    "fields set.",
)  # fmt: skip
def hmset(ctx: Ctx, args: list[bytes]) -> Reply:
    _hset(ctx, args, "hmset")
    return OK


@command(
    "hsetnx", 4, "write denyoom fast", (1, 1, 1), "write hash fast", "hash", "2.0.0",
    "Sets a field of a hash only if the field does not exist yet (1 if it was set).",
    key_flags="RW insert",
)  # fmt: skip
def hsetnx(ctx: Ctx, args: list[bytes]) -> Reply:
    key, field, item = args
    value = _hash_for_write(ctx, key)
    if field in value:
        return 0
    value.set(field, item)
    ctx.db.touch_changed(key, ctx.index)
    notify(ctx, HASH, b"hset", key)
    return 1


@command(
    "hdel", -3, "write fast", (1, 1, 1), "write hash fast", "hash", "2.0.0",
    "Removes fields of a hash and answers how many were there; an emptied hash is deleted.",
    "O(N) where N is the number of fields to remove.", key_flags="RW delete",
)  # fmt: skip
def hdel(ctx: Ctx, args: list[bytes]) -> Reply:
    key = args[0]
    value = get_hash(ctx, key)
    if value is None:
        return 0
    deleted = 0
    for field in args[1:]:
        if value.delete(field):
            deleted += 1
            if not len(value):
                ctx.db.delete(key, ctx.index)
                notify(ctx, HASH, b"hdel", key)
                notify(ctx, GENERIC, b"del", key)
                return deleted
    if deleted:
        ctx.db.touch_changed(key, ctx.index)
        notify(ctx, HASH, b"hdel", key)
    return deleted


# -- counters -------------------------------------------------------------------------------


@command(
    "hincrby", 4, "write denyoom fast", (1, 1, 1), "write hash fast", "hash", "2.0.0",
    "Adds an integer to the integer in a field of a hash (a missing field counts as 0).",
    key_flags="RW access update",
)  # fmt: skip
def hincrby(ctx: Ctx, args: list[bytes]) -> Reply:
    key, field = args[0], args[1]
    increment = parse_int(args[2])
    value = _hash_for_write(ctx, key)
    current = value.get_value(field)
    number = 0
    if current is not None:
        parsed = string_as_int(current)
        if parsed is None:
            raise CommandError(errors.HASH_VALUE_NOT_AN_INTEGER)
        number = parsed
    if (increment < 0 and number < 0 and increment < LLONG_MIN - number) or (
        increment > 0 and number > 0 and increment > LLONG_MAX - number
    ):
        raise CommandError(errors.INCR_OVERFLOW)
    number += increment
    value.set(field, b"%d" % number)
    ctx.db.touch_changed(key, ctx.index)
    notify(ctx, HASH, b"hincrby", key)
    return number


@command(
    "hincrbyfloat", 4, "write denyoom fast", (1, 1, 1), "write hash fast", "hash", "2.6.0",
    "Adds a floating-point number to the number in a field of a hash (a missing field counts "
    "as 0).", key_flags="RW access update",
)  # fmt: skip
def hincrbyfloat(ctx: Ctx, args: list[bytes]) -> Reply:
    key, field = args[0], args[1]
    increment = longdouble.parse(args[2])
    if increment is None:
        raise CommandError(errors.NOT_A_VALID_FLOAT)
    if isinstance(increment, float):  # infinite
        raise CommandError(errors.VALUE_IS_NAN_OR_INFINITY)
    value = _hash_for_write(ctx, key)
    current = value.get_value(field)
    number: longdouble.LongDouble = Fraction(0)
    if current is not None:
        parsed = longdouble.parse(current)
        if parsed is None:
            raise CommandError(errors.HASH_VALUE_NOT_A_FLOAT)
        number = parsed
    total = longdouble.add(number, increment)
    if isinstance(total, float):
        raise CommandError(errors.INCR_NAN_OR_INFINITY)
    text = longdouble.format_human(total)
    value.set(field, text)
    ctx.db.touch_changed(key, ctx.index)
    notify(ctx, HASH, b"hincrbyfloat", key)
    return text


# -- reading ---------------------------------------------------------------------------------


@command(
    "hget", 3, "readonly fast", (1, 1, 1), "read hash fast", "hash", "2.0.0",
    "Answers the value of a field of a hash (nil for a missing field or key).",
)  # fmt: skip
def hget(ctx: Ctx, args: list[bytes]) -> Reply:
    value = get_hash(ctx, args[0])
    return None if value is None else value.get_value(args[1])


@command(
    "hmget", -3, "readonly fast", (1, 1, 1), "read hash fast", "hash", "2.0.0",
    "Answers the values of several fields of a hash (nil for each missing one).",
    "O(N) where N is the number of fields asked for.",
)  # fmt: skip
def hmget(ctx: Ctx, args: list[bytes]) -> Reply:
    value = get_hash(ctx, args[0])
    if value is None:
        return [None] * (len(args) - 1)
    return [value.get_value(field) for field in args[1:]]


@command(
    "hexists", 3, "readonly fast", (1, 1, 1), "read hash fast", "hash", "2.0.0",
    "Tells whether a field exists in a hash (1) or not (0).", key_flags="RO",
)  # fmt: skip
def hexists(ctx: Ctx, args: list[bytes]) -> Reply:
    value = get_hash(ctx, args[0])
    return int(value is not None and args[1] in value)


@command(
    "hlen", 2, "readonly fast", (1, 1, 1), "read hash fast", "hash", "2.0.0",
    "Answers the number of fields of a hash (0 for a missing key).", key_flags="RO",
)  # fmt: skip
def hlen(ctx: Ctx, args: list[bytes]) -> Reply:
    value = get_hash(ctx, args[0])
    return 0 if value is None else len(value)


@command(
    "hstrlen", 3, "readonly fast", (1, 1, 1), "read hash fast", "hash", "3.2.0",
    "Answers the length in bytes of the value of a field of a hash (0 if missing).",
    key_flags="RO",
)  # fmt: skip
def hstrlen(ctx: Ctx, args: list[bytes]) -> Reply:
    value = get_hash(ctx, args[0])
    item = None if value is None else value.get_value(args[1])
    return 0 if item is None else len(item)


_WHOLE_HASH: Final = "O(N) where N is the number of fields of the hash."


@command(
    "hkeys", 2, "readonly", (1, 1, 1), "read hash slow", "hash", "2.0.0",
    "Answers every field of a hash.", _WHOLE_HASH, tips="nondeterministic_output_order",
)  # fmt: skip
def hkeys(ctx: Ctx, args: list[bytes]) -> Reply:
    value = get_hash(ctx, args[0])
    return [] if value is None else list(value)


@command(
    "hvals", 2, "readonly", (1, 1, 1), "read hash slow", "hash", "2.0.0",
    "Answers every value of a hash.", _WHOLE_HASH, tips="nondeterministic_output_order",
)  # fmt: skip
def hvals(ctx: Ctx, args: list[bytes]) -> Reply:
    value = get_hash(ctx, args[0])
    return [] if value is None else list(value.as_dict().values())


@command(
    "hgetall", 2, "readonly", (1, 1, 1), "read hash slow", "hash", "2.0.0",
    "Answers every field and value of a hash.", _WHOLE_HASH,
    tips="nondeterministic_output_order",
)  # fmt: skip
def hgetall(ctx: Ctx, args: list[bytes]) -> Reply:
    value = get_hash(ctx, args[0])
    return {} if value is None else cast(Reply, value.as_dict())


# -- HRANDFIELD, HSCAN -----------------------------------------------------------------------


@command(
    "hrandfield", -2, "readonly", (1, 1, 1), "read hash slow", "hash", "6.2.0",
    "Answers a field picked at random; with a count, that many distinct fields, or with a "
    "negative count that many picks that may repeat (WITHVALUES: with their values).",
    "O(N) where N is the number of fields answered.", tips="nondeterministic_output",
)  # fmt: skip
def hrandfield(ctx: Ctx, args: list[bytes]) -> Reply:
    key = args[0]
    if len(args) == 1:
        value = get_hash(ctx, key)
        return None if value is None else value.random_field(ctx.random())
    count = parse_long_in_range(args[1], -LONG_MAX, LONG_MAX)
    if len(args) > 3 or (len(args) == 3 and option(args[2]) != b"WITHVALUES"):
        raise CommandError(errors.SYNTAX_ERROR)
    with_values = len(args) == 3
    if with_values and not -(LONG_MAX // 2) <= count <= LONG_MAX // 2:
        raise CommandError(errors.VALUE_OUT_OF_RANGE)
    value = get_hash(ctx, key)
    if value is None or count == 0:
        return []
    fields = value.fields_for_picks()
    size = len(fields)
    rng = ctx.random()
    if count < 0 or count == 1:
        positions = repeated_positions(rng, size, abs(count))
        if len(positions) >= size:  # each field encoded once, the reply joined from those
            if with_values:
                return Picks([(field, value[field]) for field in fields], positions, rows=True)
            return Picks(list(fields), positions)
        chosen = [fields[i] for i in positions]
    elif count >= size:
        chosen = list(value)
    else:
        chosen = [fields[i] for i in distinct_positions(rng, size, count)]
    if not with_values:
        return chosen
    return Pairs([(field, value[field]) for field in chosen])


@command(
    "hscan", -3, "readonly", (1, 1, 1), "read hash slow", "hash", "2.8.0",
    "Walks the fields and values of a hash a few at a time with a cursor (MATCH, COUNT).",
    "O(1) per call; O(N) for a whole walk of N fields.", tips="nondeterministic_output",
)  # fmt: skip
def hscan(ctx: Ctx, args: list[bytes]) -> Reply:
    cursor = parse_cursor(args[1])
    value = get_hash(ctx, args[0])
    if value is None:
        return [b"0", []]
    count, pattern, _ = parse_scan_options(args[2:])
    cursor, fields = value.scan(cursor, count)
    out: list[Reply] = []
    for field in fields:
        if pattern is None or pattern.match(field):
            out += [field, value[field]]
    return [b"%d" % cursor, out]
