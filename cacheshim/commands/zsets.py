"""Sorted set commands (Redis t_zset.c), Redis 7.0's replies and errors.

The value is a :class:`cacheshim.types.zsetvalue.ZSet` (order, encodings and the complexity of
ranges are described there). Write handlers run only inside apply. ZRANDMEMBER is a read:
served from memory it picks with the shim's own generator, inside MULTI/EXEC (in apply) with
the log's, seeded by the log index. BZPOPMIN, BZPOPMAX and BZMPOP return
:class:`cacheshim.blocking.WouldBlock` when nothing can be popped outside MULTI/EXEC.

Numbers are read the way Redis reads them, which is not Python's way:

- a score (ZADD, ZINCRBY, WEIGHTS) is ``strtod`` over the whole argument (util.c
  ``string2d``): decimal or hexadecimal, ``inf``/``infinity`` in any case, no blank first,
  nothing after, and no NaN, overflow or underflow to zero;
- a score bound (ZRANGEBYSCORE, ZCOUNT, ...) is ``strtod`` as ``zslParseRange`` calls it:
  blanks first are fine, so is overflow (to infinity), and the argument ends at a NUL byte;
  an empty bound (``""`` or ``"("``) is zero;
- replies carry scores as doubles: ``%.17g`` bulk strings in RESP2, doubles in RESP3.

Over 1000 lines: the sorted-set family is 35 commands that share range parsing (by rank,
score and member) and the ZUNION/ZINTER/ZDIFF aggregation; splitting them would split those.
The value type itself is in `cacheshim.types.zsetvalue`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import Final, cast

from cacheshim.blocking import parse_timeout, would_block
from cacheshim.commands import Ctx, command
from cacheshim.commands.args import (
    LONG_MAX,
    index_span,
    option,
    parse_count_option,
    parse_int,
    parse_long_in_range,
    parse_scan_options,
)
from cacheshim.commands.keys import parse_cursor
from cacheshim.picks import distinct_positions, repeated_positions
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import NULL_ARRAY, Pairs, Picks, Reply
from cacheshim.types.keyspace import kind_of
from cacheshim.types.zsetvalue import LexBound, LexRange, ScoreRange, ZSet, format_score

__all__ = ["get_zset", "parse_score"]

_GROUP: Final = "sorted-set"
# ZRANDMEMBER reads its picks from a list of the whole set once they are at least 1/64 of it
# (listing a million members costs about as much as 3,000 lookups by position).
_LIST_FOR_PICKS_RATIO: Final = 64


def get_zset(ctx: Ctx, key: bytes) -> ZSet | None:
    """The live sorted set at key, None if there is no key; WRONGTYPE for another type."""
    return ctx.db.get_typed(key, ctx.now_ms, ZSet)


def _store(ctx: Ctx, key: bytes, zset: ZSet) -> None:
    ctx.db.set(key, zset, ctx.index)


def _changed(ctx: Ctx, key: bytes, zset: ZSet) -> None:
    """After an in-place change: an emptied set goes, else WATCH sees the key changed."""
    if len(zset):
        ctx.db.touch_changed(key, ctx.index)
    else:
        ctx.db.delete(key, ctx.index)


# -- numbers ----------------------------------------------------------------------------------

_C_SPACE: Final = frozenset(b" \t\n\v\f\r")  # isspace() in the C locale
# What glibc's strtod reads, longest prefix first per alternative.
_STRTOD: Final = re.compile(
    rb"""[+-]?(?:
        (?P<inf>inf(?:inity)?)
      | (?P<nan>nan(?:\([0-9a-z_]*\))?)
      | 0x(?P<hex>(?:[0-9a-f]+(?:\.[0-9a-f]*)?|\.[0-9a-f]+)(?:p[+-]?[0-9]+)?)
      | (?P<dec>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[+-]?[0-9]+)?)
    )""",
    re.VERBOSE | re.IGNORECASE,
)
_NONZERO_DIGIT: Final = re.compile(rb"[1-9a-fA-F]")


def _strtod(text: bytes, pos: int = 0) -> tuple[float, int, bool] | None:
    """strtod at text[pos:] (blanks first skipped): (value, end, out of range), or None when
    nothing converts. "Out of range" is errno ERANGE with an infinite or zero result."""
    while pos < len(text) and text[pos] in _C_SPACE:
        pos += 1
    match = _STRTOD.match(text, pos)
    if match is None:
        return None
    negative = text[pos : pos + 1] == b"-"
    if match["inf"] is not None:
        return (-math.inf if negative else math.inf), match.end(), False
    if match["nan"] is not None:
        return math.nan, match.end(), False
    hexadecimal = match["hex"]
    if hexadecimal is not None:
        mantissa = hexadecimal.lower().partition(b"p")[0]
        try:
            value = float.fromhex("0x" + hexadecimal.decode("ascii"))
        except OverflowError:
            return (-math.inf if negative else math.inf), match.end(), True
    else:
        mantissa = match["dec"].lower().partition(b"e")[0]
        value = float(match["dec"])
    if negative:
        value = -value
    out_of_range = math.isinf(value) or (value == 0 and bool(_NONZERO_DIGIT.search(mantissa)))
    return value, match.end(), out_of_range


# A plain decimal (no exponent, at most 300 digits either side of the point, so it can
# neither overflow nor underflow): strtod and float() both round it correctly, to the same
# double. The common case, worth a shortcut past the full strtod grammar.
_PLAIN_DECIMAL: Final = re.compile(rb"-?[0-9]{1,300}(?:\.[0-9]{1,300})?")


def parse_score(arg: bytes, message: str = errors.NOT_A_VALID_FLOAT) -> float:
    """A double as getDoubleFromObjectOrReply reads it (string2d); else message."""
    if _PLAIN_DECIMAL.fullmatch(arg):
        return float(arg)
    if arg and arg[0] not in _C_SPACE:
        parsed = _strtod(arg)
        if parsed is not None:
            value, end, out_of_range = parsed
            if end == len(arg) and not out_of_range and not math.isnan(value):
                return value
    raise CommandError(message)


def _score_bound(arg: bytes) -> tuple[float, bool]:
    """One bound of zslParseRange: (value, exclusive); CommandError if not a float."""
    exclusive = arg[:1] == b"("
    text = arg[1:] if exclusive else arg
    nul = text.find(0)
    if nul >= 0:
        text = text[:nul]  # strtod reads a C string
    if not text:
        return 0.0, exclusive  # nothing to convert, and eptr is at the end
    parsed = _strtod(text)
    if parsed is None or parsed[1] != len(text) or math.isnan(parsed[0]):
        raise CommandError(errors.ZSET_MIN_MAX_NOT_FLOAT)
    return parsed[0], exclusive


def _score_range(min_arg: bytes, max_arg: bytes) -> ScoreRange:
    low, low_exclusive = _score_bound(min_arg)
    high, high_exclusive = _score_bound(max_arg)
    return ScoreRange(low, high, low_exclusive, high_exclusive)


def _lex_bound(arg: bytes) -> LexBound:
    first = arg[:1]
    if first in (b"+", b"-"):
        if len(arg) > 1 and arg[1] != 0:  # c[1] != '\0'
            raise CommandError(errors.ZSET_LEX_RANGE_NOT_VALID)
        return LexBound(exclusive=True, infinity=1 if first == b"+" else -1)
    if first in (b"(", b"["):
        return LexBound(arg[1:], exclusive=first == b"(")
    raise CommandError(errors.ZSET_LEX_RANGE_NOT_VALID)


def _lex_range(min_arg: bytes, max_arg: bytes) -> LexRange:
    return LexRange(_lex_bound(min_arg), _lex_bound(max_arg))


# -- replies ------------------------------------------------------------------------------------


def _reply(value: Pairs) -> Reply:
    return value


def _rows(entries: Iterable[tuple[float, bytes]], withscores: bool) -> Reply:
    """Members, or member-score rows (flat in RESP2, pairs in RESP3)."""
    if withscores:
        return _reply(Pairs([(member, score) for score, member in entries]))
    return [member for _, member in entries]


# -- ZADD, ZINCRBY, ZREM -----------------------------------------------------------------------


def _zadd(ctx: Ctx, args: list[bytes], incr: bool) -> Reply:
    """zaddGenericCommand: ZADD, and ZINCRBY as ZADD ... INCR (options parsed the same way)."""
    key = args[0]
    nx = xx = gt = lt = ch = False
    i = 1
    while i < len(args):
        opt = option(args[i])
        if opt == b"NX":
            nx = True
        elif opt == b"XX":
            xx = True
        elif opt == b"CH":
            ch = True
        elif opt == b"INCR":
            incr = True
        elif opt == b"GT":
            gt = True
        elif opt == b"LT":
            lt = True
        else:
            break
        i += 1
    pairs = args[i:]
    if not pairs or len(pairs) % 2:
        raise CommandError(errors.SYNTAX_ERROR)
    if nx and xx:
        raise CommandError(errors.ZADD_XX_AND_NX)
    if (nx and (gt or lt)) or (gt and lt):
        raise CommandError(errors.ZADD_GT_LT_NX)
    if incr and len(pairs) > 2:
        raise CommandError(errors.ZADD_INCR_ONE_PAIR)
    scores = [parse_score(pairs[j]) for j in range(0, len(pairs), 2)]
    zset = get_zset(ctx, key)
    created = zset is None
    if zset is None:
        if xx:
            return None if incr else 0
        zset = ZSet()
    added = updated = processed = 0
    last = 0.0
    try:
        for score, member in zip(scores, pairs[1::2], strict=True):
            current = zset.score(member)
            if current is None:
                if xx:
                    continue
                zset.insert(member, score)
                added += 1
            else:
                if nx:
                    continue
                if incr:
                    score += current
                    if math.isnan(score):
                        raise CommandError(errors.ZSET_SCORE_NAN)
                if (lt and score >= current) or (gt and score <= current):
                    continue
                if score != current:
                    zset.update(member, score)
                    updated += 1
            processed += 1
            last = score
    finally:
        if created and len(zset):
            _store(ctx, key, zset)
        elif added or updated:
            ctx.db.touch_changed(key, ctx.index)
    if incr:
        return last if processed else None
    return added + updated if ch else added


@command(
    "zadd", -4, "write denyoom fast", (1, 1, 1), "write sortedset fast", _GROUP, "1.2.0",
    "Adds members with scores to a sorted set, or changes their scores (NX, XX, GT, LT, CH, INCR).",
    "O(log(N)) for each item added, where N is the number of elements in the sorted set.",
)  # fmt: skip
def zadd(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zadd(ctx, args, incr=False)


@command(
    "zincrby", 4, "write denyoom fast", (1, 1, 1), "write sortedset fast", _GROUP, "1.2.0",
    "Adds to a member's score in a sorted set (a missing member starts at 0) and answers the new "
    "score.",
    "O(log(N)) where N is the number of elements in the sorted set.",
    key_flags="RW access update",
)  # fmt: skip
def zincrby(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zadd(ctx, args, incr=True)


@command(
    "zrem", -3, "write fast", (1, 1, 1), "write sortedset fast", _GROUP, "1.2.0",
    "Removes members from a sorted set and answers how many were there.",
    "O(M*log(N)) with N being the number of elements in the sorted set and M the number of "
    "elements to be removed.", key_flags="RW delete",
)  # fmt: skip
def zrem(ctx: Ctx, args: list[bytes]) -> Reply:
    key = args[0]
    zset = get_zset(ctx, key)
    if zset is None:
        return 0
    removed = 0
    for member in args[1:]:
        if zset.remove(member):
            removed += 1
        if not len(zset):
            break
    if removed:
        _changed(ctx, key, zset)
    return removed


# -- single members --------------------------------------------------------------------------


@command(
    "zscore", 3, "readonly fast", (1, 1, 1), "read sortedset fast", _GROUP, "1.2.0",
    "Answers a member's score (nil for a missing member).", "O(1)",
)  # fmt: skip
def zscore(ctx: Ctx, args: list[bytes]) -> Reply:
    zset = get_zset(ctx, args[0])
    return None if zset is None else zset.score(args[1])


@command(
    "zmscore", -3, "readonly fast", (1, 1, 1), "read sortedset fast", _GROUP, "6.2.0",
    "Answers the score of each of several members (nil for a missing one).",
    "O(N) where N is the number of members being requested.",
)  # fmt: skip
def zmscore(ctx: Ctx, args: list[bytes]) -> Reply:
    zset = get_zset(ctx, args[0])
    return [None if zset is None else zset.score(member) for member in args[1:]]


@command(
    "zcard", 2, "readonly fast", (1, 1, 1), "read sortedset fast", _GROUP, "1.2.0",
    "Answers the number of members of a sorted set (0 for a missing key).", "O(1)", key_flags="RO",
)  # fmt: skip
def zcard(ctx: Ctx, args: list[bytes]) -> Reply:
    zset = get_zset(ctx, args[0])
    return 0 if zset is None else len(zset)


def _zrank(ctx: Ctx, args: list[bytes], reverse: bool) -> Reply:
    zset = get_zset(ctx, args[0])
    if zset is None:
        return None
    rank = zset.rank(args[1])
    if rank is None:
        return None
    return len(zset) - 1 - rank if reverse else rank


@command(
    "zrank", 3, "readonly fast", (1, 1, 1), "read sortedset fast", _GROUP, "2.0.0",
    "Answers a member's position in a sorted set, lowest score first.", "O(log(N))",
)  # fmt: skip
def zrank(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zrank(ctx, args, reverse=False)


@command(
    "zrevrank", 3, "readonly fast", (1, 1, 1), "read sortedset fast", _GROUP, "2.0.0",
    "Answers a member's position in a sorted set, highest score first.",
    "O(log(N))",
)  # fmt: skip
def zrevrank(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zrank(ctx, args, reverse=True)


# -- counting ranges ---------------------------------------------------------------------------


@command(
    "zcount", 4, "readonly fast", (1, 1, 1), "read sortedset fast", _GROUP, "2.0.0",
    "Counts the members of a sorted set whose score lies in a range.",
    "O(log(N)) with N being the number of elements in the sorted set.",
)  # fmt: skip
def zcount(ctx: Ctx, args: list[bytes]) -> Reply:
    spec = _score_range(args[1], args[2])
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
    "zlexcount", 4, "readonly fast", (1, 1, 1), "read sortedset fast", _GROUP, "2.8.9",
    "Counts the members of a sorted set between two members in byte order (all scores equal).",
    "O(log(N)) with N being the number of elements in the sorted set.",
)  # fmt: skip
def zlexcount(ctx: Ctx, args: list[bytes]) -> Reply:
    spec = _lex_range(args[1], args[2])
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
    withscores = False
    offset, limit = 0, -1
    i = 3
    while i < len(args):
        opt = option(args[i])
        if destination is None and opt == b"WITHSCORES":
            withscores = True
        elif opt == b"LIMIT" and len(args) - i - 1 >= 2:
            offset = parse_int(args[i + 1])
            limit = parse_int(args[i + 2])
            i += 2
        elif reverse is None and opt == b"REV":
            reverse = True
        elif kind is None and opt == b"BYLEX":
            kind = _LEX
        elif kind is None and opt == b"BYSCORE":
            kind = _SCORE
        else:
            raise CommandError(errors.SYNTAX_ERROR)
        i += 1
    reverse = bool(reverse)
    kind = kind or _RANK
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
        bounds = _score_range(min_arg, max_arg)
    else:
        bounds = _lex_range(min_arg, max_arg)
    zset = get_zset(ctx, key)
    entries = [] if zset is None else _range_entries(zset, reverse, bounds, offset, limit)
    if destination is None:
        return _rows(entries, withscores)
    # Redis adds the range to a new listpack one by one, in reply order, converting it when
    # it outgrows the limits: the same encoding and the same scores (-0 stored as 0 while
    # a listpack) as inserting them here in that order.
    result = ZSet()
    for score, member in entries:
        result.insert(member, score)
    return _store_result(ctx, destination, result)


def _store_result(ctx: Ctx, destination: bytes, result: ZSet) -> int:
    """A STORE command's end: the new set replaces the destination (its expiry goes too), or
    an empty result deletes it."""
    if len(result):
        _store(ctx, destination, result)
    elif ctx.db.contains(destination, ctx.now_ms):
        ctx.db.delete(destination, ctx.index)
    return len(result)


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
    "zrange", -4, "readonly", (1, 1, 1), "read sortedset", _GROUP, "1.2.0",
    "Answers the members of a sorted set between two ranks, scores, or members in byte "
    "order.", _RANGE_COMPLEXITY,
)  # fmt: skip
def zrange(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zrange(ctx, args, None, None, None)


@command(
    "zrangestore", -5, "write denyoom", (1, 2, 1), "write sortedset", _GROUP, "6.2.0",
    "Stores a ZRANGE selection of one sorted set at another key.",
    "O(log(N)+M) with N being the number of elements in the sorted set and M the number of "
    "elements stored into the destination key.", key_flags="OW update|RO access",
)  # fmt: skip
def zrangestore(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zrange(ctx, args[1:], args[0], None, None)


@command(
    "zrevrange", -4, "readonly", (1, 1, 1), "read sortedset", _GROUP, "1.2.0",
    "Answers the members between two positions, highest score first (deprecated: ZRANGE ... REV).",
    _RANGE_COMPLEXITY,
)  # fmt: skip
def zrevrange(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zrange(ctx, args, None, _RANK, True)


@command(
    "zrangebyscore", -4, "readonly", (1, 1, 1), "read sortedset", _GROUP, "1.0.5",
    "Answers the members whose score lies in a range (deprecated: ZRANGE ... "
    "BYSCORE).", _RANGE_BY_COMPLEXITY,
)  # fmt: skip
def zrangebyscore(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zrange(ctx, args, None, _SCORE, False)


@command(
    "zrevrangebyscore", -4, "readonly", (1, 1, 1), "read sortedset", _GROUP, "2.2.0",
    "Answers the members whose score lies in a range, highest first (deprecated: ZRANGE ... "
    "BYSCORE REV).",
    _RANGE_BY_COMPLEXITY,
)  # fmt: skip
def zrevrangebyscore(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zrange(ctx, args, None, _SCORE, True)


@command(
    "zrangebylex", -4, "readonly", (1, 1, 1), "read sortedset", _GROUP, "2.8.9",
    "Answers the members between two members in byte order (deprecated: ZRANGE ... BYLEX).",
    _RANGE_BY_COMPLEXITY,
)  # fmt: skip
def zrangebylex(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zrange(ctx, args, None, _LEX, False)


@command(
    "zrevrangebylex", -4, "readonly", (1, 1, 1), "read sortedset", _GROUP, "2.8.9",
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
    "zremrangebyrank", 4, "write", (1, 1, 1), "write sortedset", _GROUP, "2.0.0",
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
    _changed(ctx, args[0], zset)
    return removed


@command(
    "zremrangebyscore", 4, "write", (1, 1, 1), "write sortedset", _GROUP, "1.2.0",
    "Removes the members whose score lies in a range.", _REMRANGE_COMPLEXITY,
    key_flags="RW delete",
)  # fmt: skip
def zremrangebyscore(ctx: Ctx, args: list[bytes]) -> Reply:
    spec = _score_range(args[1], args[2])
    zset = get_zset(ctx, args[0])
    if zset is None:
        return 0
    removed = zset.remove_positions(*zset.score_span(spec))
    if removed:
        _changed(ctx, args[0], zset)
    return removed


@command(
    "zremrangebylex", 4, "write", (1, 1, 1), "write sortedset", _GROUP, "2.8.9",
    "Removes the members between two members in byte order.",
    _REMRANGE_COMPLEXITY, key_flags="RW delete",
)  # fmt: skip
def zremrangebylex(ctx: Ctx, args: list[bytes]) -> Reply:
    spec = _lex_range(args[1], args[2])
    zset = get_zset(ctx, args[0])
    if zset is None:
        return 0
    first = zset.lex_first(spec)
    if first is None:
        return 0
    removed = zset.remove_positions(first, first + _lex_run_forward(zset, first, spec))
    if removed:
        _changed(ctx, args[0], zset)
    return removed


# -- popping ------------------------------------------------------------------------------------


def _pop(ctx: Ctx, key: bytes, zset: ZSet, count: int, highest: bool) -> list[tuple[bytes, float]]:
    """Remove up to count members from one end (the key goes when emptied)."""
    size = len(zset)
    taken = min(count, size)
    start, stop = (size - taken, size) if highest else (0, taken)
    entries = list(zset.entries(start, stop, reverse=highest))
    zset.remove_positions(start, stop)
    _changed(ctx, key, zset)
    return [(member, score) for score, member in entries]


def _zpop(ctx: Ctx, args: list[bytes], highest: bool) -> Reply:
    if len(args) > 2:
        raise CommandError(errors.SYNTAX_ERROR)
    count = None
    if len(args) == 2:
        count = parse_long_in_range(args[1], 0, LONG_MAX, errors.VALUE_MUST_BE_POSITIVE)
    zset = get_zset(ctx, args[0])
    if zset is None or count == 0:
        return []
    popped = _pop(ctx, args[0], zset, 1 if count is None else count, highest)
    if count is None:  # a flat [member, score] in both protocols
        return [item for pair in popped for item in pair]
    return _reply(Pairs(popped))


_POP_COMPLEXITY: Final = (
    "O(log(N)*M) with N being the number of elements in the sorted set, and M being the number "
    "of elements popped."
)


@command(
    "zpopmin", -2, "write fast", (1, 1, 1), "write sortedset fast", _GROUP, "5.0.0",
    "Removes and answers the lowest-scored members of a sorted set.", _POP_COMPLEXITY,
    key_flags="RW access delete",
)  # fmt: skip
def zpopmin(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zpop(ctx, args, highest=False)


@command(
    "zpopmax", -2, "write fast", (1, 1, 1), "write sortedset fast", _GROUP, "5.0.0",
    "Removes and answers the highest-scored members of a sorted set.", _POP_COMPLEXITY,
    key_flags="RW access delete",
)  # fmt: skip
def zpopmax(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zpop(ctx, args, highest=True)


def _first_nonempty(ctx: Ctx, keys: list[bytes]) -> tuple[bytes, ZSet] | None:
    """The first key holding a sorted set (WRONGTYPE at the first key of another type)."""
    for key in keys:
        zset = get_zset(ctx, key)
        if zset is not None and len(zset):
            return key, zset
    return None


def _bzpop(ctx: Ctx, args: list[bytes], highest: bool) -> Reply:
    keys = args[:-1]
    timeout_ms = parse_timeout(args[-1])
    found = _first_nonempty(ctx, keys)
    if found is None:
        return NULL_ARRAY if ctx.in_transaction else would_block(keys, ZSet, timeout_ms)
    key, zset = found
    member, score = _pop(ctx, key, zset, 1, highest)[0]
    return [key, member, score]


_BZPOP_COMPLEXITY: Final = "O(log(N)) with N being the number of elements in the sorted set."


@command(
    "bzpopmin", -3, "write noscript blocking fast", (1, -2, 1),
    "write sortedset fast blocking", _GROUP, "5.0.0",
    "Pops the lowest-scored member of the first non-empty sorted set among several keys, or "
    "waits for one (timeout in seconds, 0: "
    "forever).", _BZPOP_COMPLEXITY, key_flags="RW access delete",
)  # fmt: skip
def bzpopmin(ctx: Ctx, args: list[bytes]) -> Reply:
    return _bzpop(ctx, args, highest=False)


@command(
    "bzpopmax", -3, "write noscript blocking fast", (1, -2, 1),
    "write sortedset fast blocking", _GROUP, "5.0.0",
    "Pops the highest-scored member of the first non-empty sorted set among several keys, or "
    "waits for one (timeout in seconds, 0: "
    "forever).", _BZPOP_COMPLEXITY, key_flags="RW access delete",
)  # fmt: skip
def bzpopmax(ctx: Ctx, args: list[bytes]) -> Reply:
    return _bzpop(ctx, args, highest=True)


def _parse_mpop(args: list[bytes]) -> tuple[list[bytes], bool, int]:
    """ZMPOP's arguments after the timeout: numkeys key... MIN|MAX [COUNT count] ->
    (keys, highest, count)."""
    numkeys = parse_long_in_range(args[0], 1, LONG_MAX, errors.NUMKEYS_NOT_POSITIVE)
    where = 1 + numkeys
    if where >= len(args):
        raise CommandError(errors.SYNTAX_ERROR)
    side = option(args[where])
    if side not in (b"MIN", b"MAX"):
        raise CommandError(errors.SYNTAX_ERROR)
    count = parse_count_option(args, where + 1)
    return args[1:where], side == b"MAX", 1 if count is None else count


def _mpop_reply(ctx: Ctx, key: bytes, zset: ZSet, count: int, highest: bool) -> Reply:
    popped = _pop(ctx, key, zset, count, highest)
    return [key, [[member, score] for member, score in popped]]


_MPOP_COMPLEXITY: Final = (
    "O(K) + O(M*log(N)) where K is the number of provided keys, N being the number of "
    "elements in the sorted set, and M being the number of elements popped."
)


@command(
    "zmpop", -4, "write movablekeys", (0, 0, 0), "write sortedset", _GROUP, "7.0.0",
    "Pops members with their scores from the first non-empty sorted set among several "
    "keys.", _MPOP_COMPLEXITY,
    key_flags="RW access delete",
)  # fmt: skip
def zmpop(ctx: Ctx, args: list[bytes]) -> Reply:
    keys, highest, count = _parse_mpop(args)
    for key in keys:  # the first key that exists decides (WRONGTYPE if not a sorted set)
        zset = get_zset(ctx, key)
        if zset is not None:
            return _mpop_reply(ctx, key, zset, count, highest)
    return NULL_ARRAY


@command(
    "bzmpop", -5, "write blocking movablekeys", (0, 0, 0), "write sortedset blocking", _GROUP,
    "7.0.0",
    "Pops members with their scores from the first non-empty sorted set among several keys, or "
    "waits for one (timeout in seconds, 0: forever).",
    _MPOP_COMPLEXITY, key_flags="RW access delete",
)  # fmt: skip
def bzmpop(ctx: Ctx, args: list[bytes]) -> Reply:
    keys, highest, count = _parse_mpop(args[1:])
    timeout_ms = parse_timeout(args[0])
    found = _first_nonempty(ctx, keys)
    if found is None:
        return NULL_ARRAY if ctx.in_transaction else would_block(keys, ZSet, timeout_ms)
    return _mpop_reply(ctx, found[0], found[1], count, highest)


# -- ZRANDMEMBER ----------------------------------------------------------------------------------

# Redis answers a positive count below the set's size with distinct members in an order
# of its hash table (copying the set and removing members at random, or sampling until it
# has enough); here, a sample without repeats in the generator's order. The picks cannot
# match Redis's; their number, the repeats and the whole-set answer do.


@command(
    "zrandmember", -2, "readonly", (1, 1, 1), "read sortedset", _GROUP, "6.2.0",
    "Answers members picked at random; a negative count allows repeats (WITHSCORES: with scores).",
    "O(N) where N is the number of elements returned", tips="nondeterministic_output",
)  # fmt: skip
def zrandmember(ctx: Ctx, args: list[bytes]) -> Reply:
    if len(args) == 1:
        zset = get_zset(ctx, args[0])
        if zset is None:
            return None
        return zset.at(ctx.random().randrange(len(zset)))[1]
    count = parse_long_in_range(args[1], -LONG_MAX, LONG_MAX)
    if len(args) > 3 or (len(args) == 3 and option(args[2]) != b"WITHSCORES"):
        raise CommandError(errors.SYNTAX_ERROR)
    withscores = len(args) == 3
    if withscores and not -(LONG_MAX // 2) <= count <= LONG_MAX // 2:
        raise CommandError(errors.VALUE_OUT_OF_RANGE)
    zset = get_zset(ctx, args[0])
    if zset is None or count == 0:
        return []
    size = len(zset)
    rng = ctx.random()
    entries: Iterable[tuple[float, bytes]]
    if count < 0 or count == 1:  # with repeats, in random order
        positions = repeated_positions(rng, size, abs(count))
        if len(positions) >= size:  # each member encoded once, the reply joined from those
            if withscores:
                return Picks([(member, score) for score, member in zset], positions, rows=True)
            return Picks([member for _, member in zset], positions)
        entries = _entries_at(zset, positions)
    elif count >= size:  # the whole set, highest first (Redis walks it from the tail)
        entries = reversed(zset)
    else:
        entries = _entries_at(zset, distinct_positions(rng, size, count))
    return _rows(entries, withscores)


def _entries_at(zset: ZSet, positions: Sequence[int]) -> list[tuple[float, bytes]]:
    """The entries at these positions, in their order. Many of them are read from a list of
    the whole set: one lookup by position in the sorted container walks its index."""
    if len(positions) * _LIST_FOR_PICKS_RATIO >= len(zset):
        table = list(zset)
        return [table[i] for i in positions]
    return [zset.at(i) for i in positions]


# -- ZUNION, ZINTER, ZDIFF and their STORE forms, ZINTERCARD ---------------------------------

_UNION: Final = "union"
_INTER: Final = "inter"
_DIFF: Final = "diff"


class _Source:
    """One input of a set operation: a sorted set, a set (every score 1), or nothing."""

    __slots__ = ("value", "weight")

    def __init__(self, value: object | None) -> None:
        self.value = value
        self.weight = 1.0

    def __len__(self) -> int:
        return 0 if self.value is None else len(cast(Sized, self.value))

    def entries(self) -> Iterator[tuple[bytes, float]]:
        """Members and scores (a sorted set from its tail, as Redis's iterator walks)."""
        value = self.value
        if isinstance(value, ZSet):
            for score, member in reversed(value):
                yield member, score
        elif value is not None:
            for member in cast(Iterable[bytes], value):
                yield member, 1.0

    def find(self, member: bytes) -> float | None:
        value = self.value
        if isinstance(value, ZSet):
            return value.score(member)
        if value is not None and member in cast(Iterable[bytes], value):
            return 1.0
        return None


def _aggregate(aggregate: bytes, target: float, value: float) -> float:
    if aggregate == b"SUM":
        total = target + value
        return 0.0 if math.isnan(total) else total  # inf + -inf counts as 0
    if aggregate == b"MIN":
        return value if value < target else target
    return value if value > target else target


def _weighted(score: float, weight: float) -> float:
    value = weight * score
    return 0.0 if math.isnan(value) else value


def _setop(
    ctx: Ctx, args: list[bytes], op: str, name: str, destination: bytes | None = None,
    cardinality_only: bool = False,
) -> Reply:  # fmt: skip
    """zunionInterDiffGenericCommand; args start at numkeys."""
    count = parse_int(args[0])
    if count < 1:
        raise CommandError(errors.at_least_one_input_key(name))
    if count > len(args) - 1:
        raise CommandError(errors.SYNTAX_ERROR)
    sources: list[_Source] = []
    for key in args[1 : 1 + count]:
        value = ctx.db.get(key, ctx.now_ms)
        if value is not None and kind_of(value).name not in ("zset", "set"):
            raise CommandError(errors.WRONGTYPE)
        sources.append(_Source(value))
    aggregate = b"SUM"
    withscores = False
    limit = 0
    j = 1 + count
    while j < len(args):
        remaining = len(args) - j
        opt = option(args[j])
        if op != _DIFF and not cardinality_only and remaining >= count + 1 and opt == b"WEIGHTS":
            for i, source in enumerate(sources):
                source.weight = parse_score(args[j + 1 + i], errors.WEIGHT_NOT_A_FLOAT)
            j += 1 + count
        elif op != _DIFF and not cardinality_only and remaining >= 2 and opt == b"AGGREGATE":
            aggregate = option(args[j + 1])
            if aggregate not in (b"SUM", b"MIN", b"MAX"):
                raise CommandError(errors.SYNTAX_ERROR)
            j += 2
        elif destination is None and not cardinality_only and opt == b"WITHSCORES":
            withscores = True
            j += 1
        elif cardinality_only and remaining >= 2 and opt == b"LIMIT":
            limit = parse_long_in_range(args[j + 1], 0, LONG_MAX, errors.LIMIT_IS_NEGATIVE)
            j += 2
        else:
            raise CommandError(errors.SYNTAX_ERROR)
    if op != _DIFF:
        sources.sort(key=len)  # smallest first; stable, as glibc's merge-sorting qsort
    result: dict[bytes, float] = {}
    if op == _INTER:
        first = sources[0]
        found = 0
        for member, score0 in first.entries() if len(first) else ():
            score = _weighted(score0, first.weight)
            for other in sources[1:]:
                found_score = score0 if other.value is first.value else other.find(member)
                if found_score is None:
                    break
                score = _aggregate(aggregate, score, found_score * other.weight)
            else:
                found += 1
                if cardinality_only:
                    if limit and found >= limit:
                        break
                    continue
                result[member] = score
        if cardinality_only:
            return found
    elif op == _UNION:
        for source in sources:
            for member, score in source.entries():
                weighted = _weighted(score, source.weight)
                current = result.get(member)
                result[member] = (
                    weighted if current is None else _aggregate(aggregate, current, weighted)
                )
    else:
        first = sources[0]
        if len(first) and not any(other.value is first.value for other in sources[1:]):
            for member, score in first.entries():
                if all(other.find(member) is None for other in sources[1:]):
                    result[member] = score
    entries = sorted((score, member) for member, score in result.items())
    if destination is not None:  # a skiplist, made a listpack if it fits
        return _store_result(ctx, destination, ZSet.from_sorted(entries))
    return _rows(entries, withscores)


_UNION_COMPLEXITY: Final = (
    "O(N)+O(M*log(M)) with N being the sum of the sizes of the input sorted sets, and M being "
    "the number of elements in the resulting sorted set."
)
_INTER_COMPLEXITY: Final = (
    "O(N*K)+O(M*log(M)) worst case with N being the smallest input sorted set, K being the "
    "number of input sorted sets and M being the number of elements in the resulting sorted "
    "set."
)
_DIFF_COMPLEXITY: Final = (
    "O(L + (N-K)log(N)) worst case where L is the total number of elements in all the sets, N "
    "is the size of the first set, and K is the size of the result set."
)


@command(
    "zunion", -3, "readonly movablekeys", (0, 0, 0), "read sortedset", _GROUP, "6.2.0",
    "Answers the members of any of the given sorted sets, their scores "
    "combined.", _UNION_COMPLEXITY,
)  # fmt: skip
def zunion(ctx: Ctx, args: list[bytes]) -> Reply:
    return _setop(ctx, args, _UNION, "zunion")


@command(
    "zunionstore", -4, "write denyoom movablekeys", (1, 1, 1), "write sortedset", _GROUP,
    "2.0.0", "Stores the members of any of the given sorted sets, scores combined, at a key.",
    "O(N)+O(M log(M)) with N being the sum of the sizes of the input sorted sets, and M being "
    "the number of elements in the resulting sorted set.", key_flags="OW update|RO access",
)  # fmt: skip
def zunionstore(ctx: Ctx, args: list[bytes]) -> Reply:
    return _setop(ctx, args[1:], _UNION, "zunionstore", destination=args[0])


@command(
    "zinter", -3, "readonly movablekeys", (0, 0, 0), "read sortedset", _GROUP, "6.2.0",
    "Answers the members common to all the given sorted sets, their scores "
    "combined.", _INTER_COMPLEXITY,
)  # fmt: skip
def zinter(ctx: Ctx, args: list[bytes]) -> Reply:
    return _setop(ctx, args, _INTER, "zinter")


@command(
    "zinterstore", -4, "write denyoom movablekeys", (1, 1, 1), "write sortedset", _GROUP,
    "2.0.0", "Stores the members common to the given sorted sets, scores combined, at a key.",
    _INTER_COMPLEXITY, key_flags="OW update|RO access",
)  # fmt: skip
def zinterstore(ctx: Ctx, args: list[bytes]) -> Reply:
    return _setop(ctx, args[1:], _INTER, "zinterstore", destination=args[0])


@command(
    "zintercard", -3, "readonly movablekeys", (0, 0, 0), "read sortedset", _GROUP, "7.0.0",
    "Answers how many members the given sorted sets have in common (counting up to LIMIT).",
    "O(N*K) worst case with N being the smallest input sorted set, K being the number of "
    "input sorted sets.",
)  # fmt: skip
def zintercard(ctx: Ctx, args: list[bytes]) -> Reply:
    return _setop(ctx, args, _INTER, "zintercard", cardinality_only=True)


@command(
    "zdiff", -3, "readonly movablekeys", (0, 0, 0), "read sortedset", _GROUP, "6.2.0",
    "Answers the members of the first sorted set that are in none of the others.", _DIFF_COMPLEXITY,
)  # fmt: skip
def zdiff(ctx: Ctx, args: list[bytes]) -> Reply:
    return _setop(ctx, args, _DIFF, "zdiff")


@command(
    "zdiffstore", -4, "write denyoom movablekeys", (1, 1, 1), "write sortedset", _GROUP,
    "6.2.0", "Stores the members of the first sorted set that are in none of the others at a key.",
    _DIFF_COMPLEXITY, key_flags="OW update|RO access",
)  # fmt: skip
def zdiffstore(ctx: Ctx, args: list[bytes]) -> Reply:
    return _setop(ctx, args[1:], _DIFF, "zdiffstore", destination=args[0])


# -- ZSCAN ----------------------------------------------------------------------------------------


@command(
    "zscan", -3, "readonly", (1, 1, 1), "read sortedset", _GROUP, "2.8.0",
    "Walks the members and scores of a sorted set a few at a time with a cursor (MATCH, COUNT).",
    "O(1) for every call. O(N) for a complete iteration, including enough command calls for "
    "the cursor to return back to 0. N is the number of elements inside the collection..",
    tips="nondeterministic_output",
)  # fmt: skip
def zscan(ctx: Ctx, args: list[bytes]) -> Reply:
    cursor = parse_cursor(args[1])
    zset = get_zset(ctx, args[0])
    if zset is None:
        return [b"0", []]
    count, pattern, _ = parse_scan_options(args[2:])
    if zset.listpack:  # a listpack answers whole, in order, whatever COUNT says
        cursor = 0
        found = [member for _, member in zset]
    else:
        cursor, found = zset.scan(cursor, count)
    out: list[Reply] = []
    for member in found:
        if pattern is not None and not pattern.match(member):
            continue
        score = zset.score(member)
        if score is None:
            continue
        out += [member, format_score(score)]
    return [b"%d" % cursor, out]
