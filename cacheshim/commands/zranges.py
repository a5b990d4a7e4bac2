"""Sorted-set ranges (Redis t_zset.c): counting them (ZCOUNT, ZLEXCOUNT), reading them (ZRANGE,
ZRANGESTORE and the older ZREVRANGE, ZRANGEBYSCORE, ZRANGEBYLEX and their REV forms) and
removing them (ZREMRANGEBYRANK, ZREMRANGEBYSCORE, ZREMRANGEBYLEX). A range is by rank, by
score or by member in byte order; bounds are read as `cacheshim.commands.zsets` reads them.
"""

from __future__ import annotations

from typing import Final

from cacheshim.commands import Ctx, command
from cacheshim.commands.args import index_span, parse_int
from cacheshim.commands.argspec import ArgSpec, multi, token
from cacheshim.commands.zsets import (
    GROUP,
    changed,
    get_zset,
    lex_range,
    rows,
    score_range,
    store_result,
)
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import Reply
from cacheshim.types.zsetvalue import LexRange, ScoreRange, ZSet

# -- counting ranges ---------------------------------------------------------------------------


@command(
    "zcount", 4, "readonly fast", (1, 1, 1), "read sortedset fast", GROUP, "2.0.0",
    "Counts the members of a sorted set whose score lies in a range.",
    "O(log(N)) with N being the number of elements in the sorted set.",
)  # fmt: skip
def zcount(ctx: Ctx, args: list[bytes]) -> Reply:
    spec = score_range(args[1], args[2])
    zset = get_zset(ctx, args[0])
    if zset is None:
        return 0
    lo, hi = zset.score_span(spec)
    return hi - lo


def _lex_run_forward(zset: ZSet, start: int, spec: LexRange) -> int:
    """How many members from position start on stay at or below the range's max."""
    run = 0
    for _, member in zset.entries(start):
        if not spec.below_max(member):
            break
        run += 1
    return run


@command(
    "zlexcount", 4, "readonly fast", (1, 1, 1), "read sortedset fast", GROUP, "2.8.9",
    "Counts the members of a sorted set between two members in byte order (all scores equal).",
    "O(log(N)) with N being the number of elements in the sorted set.",
)  # fmt: skip
def zlexcount(ctx: Ctx, args: list[bytes]) -> Reply:
    spec = lex_range(args[1], args[2])
    zset = get_zset(ctx, args[0])
    if zset is None:
        return 0
    first = zset.lex_first(spec)
    if first is None:
        return 0
    if zset.listpack:  # Redis walks a listpack from the first member in range
        return _lex_run_forward(zset, first, spec)
    last = zset.lex_last(spec)  # a skiplist: the ranks of the first and the last
    return len(zset) - first if last is None else max(0, last - first + 1)


# -- ZRANGE and its family ---------------------------------------------------------------------

_RANK: Final = "rank"
_SCORE: Final = "score"
_LEX: Final = "lex"


_WITHSCORES, _REV = token("WITHSCORES"), token("REV", once=True)
_BYLEX, _BYSCORE = token("BYLEX", once=True), token("BYSCORE", once=True)
_LIMIT: Final = multi("LIMIT", 2, parse_int)
_ZRANGE_OPTIONS: Final = ArgSpec(
    _WITHSCORES, _LIMIT, _REV, _BYLEX, _BYSCORE, exclusive=[(_BYLEX, _BYSCORE)]
)
_ZRANGESTORE_OPTIONS: Final = _ZRANGE_OPTIONS.without(_WITHSCORES)
# ZREVRANGE, ZRANGEBYSCORE, ...: the name says the kind of range and the direction.
_ZRANGE_BY_NAME_OPTIONS: Final = ArgSpec(_WITHSCORES, _LIMIT)


def _range_entries(
    zset: ZSet, reverse: bool, bounds: tuple[int, int] | ScoreRange | LexRange, offset: int,
    limit: int,
) -> list[tuple[float, bytes]]:  # fmt: skip
    """The entries a range names, in reply order (genericZrangeby{rank,score,lex}Command)."""
    size = len(zset)
    if isinstance(bounds, tuple):
        span = index_span(size, *bounds)
        if span is None:
            return []
        first, last = span
        if reverse:
            return list(zset.entries(size - 1 - last, size - first, reverse=True))
        return list(zset.entries(first, last + 1))
    if offset < 0 or limit == 0:
        return []  # Redis steps a negative offset off the end
    if isinstance(bounds, ScoreRange):
        if offset > 0 and offset >= size:
            return []
        lo, hi = zset.score_span(bounds)
        if reverse:
            top = hi - 1 - offset
            bottom = lo if limit < 0 else max(lo, top - limit + 1)
            return list(zset.entries(bottom, top + 1, reverse=True)) if top >= bottom else []
        start = lo + offset
        stop = hi if limit < 0 else min(hi, start + limit)
        return list(zset.entries(start, stop)) if start < stop else []
    # Lexicographic: from the first (or last) member in range, skip offset members, then
    # take members while they stay in range.
    start_at = zset.lex_last(bounds) if reverse else zset.lex_first(bounds)
    if start_at is None:
        return []
    out: list[tuple[float, bytes]] = []
    if reverse:
        if start_at - offset < 0:
            return []
        walk = zset.entries(0, start_at - offset + 1, reverse=True)
    else:
        if start_at + offset >= size:
            return []
        walk = zset.entries(start_at + offset)
    for entry in walk:
        if limit >= 0 and len(out) == limit:
            break
        in_range = bounds.above_min(entry[1]) if reverse else bounds.below_max(entry[1])
        if not in_range:
            break
        out.append(entry)
    return out


def _zrange(
    ctx: Ctx, args: list[bytes], destination: bytes | None, kind: str | None,
    reverse: bool | None,
) -> Reply:  # fmt: skip
    """zrangeGenericCommand: args start at the source key; kind and reverse are fixed by
    the old commands (ZRANGEBYSCORE, ZREVRANGE, ...) and None for ZRANGE/ZRANGESTORE."""
    key, min_arg, max_arg = args[0], args[1], args[2]
    if kind is not None:
        spec = _ZRANGE_BY_NAME_OPTIONS
    else:
        spec = _ZRANGE_OPTIONS if destination is None else _ZRANGESTORE_OPTIONS
    parsed = spec.parse(args, 3)
    withscores = _WITHSCORES in parsed
    offset, limit = parsed.get(_LIMIT, [0, -1])
    reverse = bool(reverse) or _REV in parsed
    kind = kind or (_LEX if _BYLEX in parsed else _SCORE if _BYSCORE in parsed else _RANK)
    if limit != -1 and kind == _RANK:
        raise CommandError(errors.ZRANGE_LIMIT_WITH_RANK)
    if withscores and kind == _LEX:
        raise CommandError(errors.ZRANGE_WITHSCORES_WITH_LEX)
    if reverse and kind != _RANK:
        min_arg, max_arg = max_arg, min_arg  # given as max, min
    bounds: tuple[int, int] | ScoreRange | LexRange
    if kind == _RANK:
        bounds = (parse_int(min_arg), parse_int(max_arg))
    elif kind == _SCORE:
        bounds = score_range(min_arg, max_arg)
    else:
        bounds = lex_range(min_arg, max_arg)
    zset = get_zset(ctx, key)
    entries = [] if zset is None else _range_entries(zset, reverse, bounds, offset, limit)
    if destination is None:
        return rows(entries, withscores)
    # Redis adds the range to a new listpack one by one, in reply order, converting it when
    # it outgrows the limits: the same encoding and the same scores (-0 stored as 0 while
    # a listpack) as inserting them here in that order.
    result = ZSet()
    for score, member in entries:
        result.insert(member, score)
    return store_result(ctx, destination, result, b"zrangestore")


_RANGE_COMPLEXITY: Final = (
    "O(log(N)+M) with N being the number of elements in the sorted set and M the number of "
    "elements returned."
)
_RANGE_BY_COMPLEXITY: Final = (
    "O(log(N)+M) with N being the number of elements in the sorted set and M the number of "
    "elements being returned. If M is constant (e.g. always asking for the first 10 elements "
    "with LIMIT), you can consider it O(log(N))."
)


@command(
    "zrange", -4, "readonly", (1, 1, 1), "read sortedset", GROUP, "1.2.0",
    "Answers the members of a sorted set between two ranks, scores, or members in byte "
    "order.", _RANGE_COMPLEXITY,
)  # fmt: skip
def zrange(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zrange(ctx, args, None, None, None)


@command(
    "zrangestore", -5, "write denyoom", (1, 2, 1), "write sortedset", GROUP, "6.2.0",
    "Stores a ZRANGE selection of one sorted set at another key.",
    "O(log(N)+M) with N being the number of elements in the sorted set and M the number of "
    "elements stored into the destination key.", key_flags="OW update|RO access",
)  # fmt: skip
def zrangestore(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zrange(ctx, args[1:], args[0], None, None)


@command(
    "zrevrange", -4, "readonly", (1, 1, 1), "read sortedset", GROUP, "1.2.0",
    "Answers the members between two positions, highest score first (deprecated: ZRANGE ... REV).",
    _RANGE_COMPLEXITY,
)  # fmt: skip
def zrevrange(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zrange(ctx, args, None, _RANK, True)


@command(
    "zrangebyscore", -4, "readonly", (1, 1, 1), "read sortedset", GROUP, "1.0.5",
    "Answers the members whose score lies in a range (deprecated: ZRANGE ... "
    "BYSCORE).", _RANGE_BY_COMPLEXITY,
)  # fmt: skip
def zrangebyscore(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zrange(ctx, args, None, _SCORE, False)


@command(
    "zrevrangebyscore", -4, "readonly", (1, 1, 1), "read sortedset", GROUP, "2.2.0",
    "Answers the members whose score lies in a range, highest first (deprecated: ZRANGE ... "
    "BYSCORE REV).",
    _RANGE_BY_COMPLEXITY,
)  # fmt: skip
def zrevrangebyscore(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zrange(ctx, args, None, _SCORE, True)


@command(
    "zrangebylex", -4, "readonly", (1, 1, 1), "read sortedset", GROUP, "2.8.9",
    "Answers the members between two members in byte order (deprecated: ZRANGE ... BYLEX).",
    _RANGE_BY_COMPLEXITY,
)  # fmt: skip
def zrangebylex(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zrange(ctx, args, None, _LEX, False)


@command(
    "zrevrangebylex", -4, "readonly", (1, 1, 1), "read sortedset", GROUP, "2.8.9",
    "Answers the members between two members in reverse byte order (deprecated: ZRANGE ... "
    "BYLEX REV).", _RANGE_BY_COMPLEXITY,
)  # fmt: skip
def zrevrangebylex(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zrange(ctx, args, None, _LEX, True)


# -- removing ranges --------------------------------------------------------------------------

_REMRANGE_COMPLEXITY: Final = (
    "O(log(N)+M) with N being the number of elements in the sorted set and M the number of "
    "elements removed by the operation."
)


@command(
    "zremrangebyrank", 4, "write", (1, 1, 1), "write sortedset", GROUP, "2.0.0",
    "Removes the members between two positions.", _REMRANGE_COMPLEXITY,
    key_flags="RW delete",
)  # fmt: skip
def zremrangebyrank(ctx: Ctx, args: list[bytes]) -> Reply:
    start, end = parse_int(args[1]), parse_int(args[2])
    zset = get_zset(ctx, args[0])
    if zset is None:
        return 0
    span = index_span(len(zset), start, end)
    if span is None:
        return 0
    removed = zset.remove_positions(span[0], span[1] + 1)
    changed(ctx, args[0], zset, b"zremrangebyrank")
    return removed


@command(
    "zremrangebyscore", 4, "write", (1, 1, 1), "write sortedset", GROUP, "1.2.0",
    "Removes the members whose score lies in a range.", _REMRANGE_COMPLEXITY,
    key_flags="RW delete",
)  # fmt: skip
def zremrangebyscore(ctx: Ctx, args: list[bytes]) -> Reply:
    spec = score_range(args[1], args[2])
    zset = get_zset(ctx, args[0])
    if zset is None:
        return 0
    removed = zset.remove_positions(*zset.score_span(spec))
    if removed:
        changed(ctx, args[0], zset, b"zremrangebyscore")
    return removed


@command(
    "zremrangebylex", 4, "write", (1, 1, 1), "write sortedset", GROUP, "2.8.9",
    "Removes the members between two members in byte order.",
    _REMRANGE_COMPLEXITY, key_flags="RW delete",
)  # fmt: skip
def zremrangebylex(ctx: Ctx, args: list[bytes]) -> Reply:
    spec = lex_range(args[1], args[2])
    zset = get_zset(ctx, args[0])
    if zset is None:
        return 0
    first = zset.lex_first(spec)
    if first is None:
        return 0
    removed = zset.remove_positions(first, first + _lex_run_forward(zset, first, spec))
    if removed:
        changed(ctx, args[0], zset, b"zremrangebylex")
    return removed
