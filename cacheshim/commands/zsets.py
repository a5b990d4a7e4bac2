"""Sorted set commands (Redis t_zset.c), Redis 7.0's replies and errors.

The value is a :class:`cacheshim.types.zsetvalue.ZSet` (order, encodings and the complexity of
ranges are described there). Write handlers run only inside apply. ZRANDMEMBER is a read:
served from memory it picks with the shim's own generator, inside MULTI/EXEC (in apply) with
the log's, seeded by the log index.

Numbers are read the way Redis reads them, which is not Python's way:

- a score (ZADD, ZINCRBY, WEIGHTS) is ``strtod`` over the whole argument (util.c
  ``string2d``): decimal or hexadecimal, ``inf``/``infinity`` in any case, no blank first,
  nothing after, and no NaN, overflow or underflow to zero;
- a score bound (ZRANGEBYSCORE, ZCOUNT, ...) is ``strtod`` as ``zslParseRange`` calls it:
  blanks first are fine, so is overflow (to infinity), and the argument ends at a NUL byte;
  an empty bound (``""`` or ``"("``) is zero;
- replies carry scores as doubles: ``%.17g`` bulk strings in RESP2, doubles in RESP3.

The family is four modules, by concern: this one (the value at a key, reading scores and
ranges, ZADD and the commands on single members, ZRANDMEMBER, ZSCAN), `zranges` (counting,
reading and removing ranges), `zpops` (popping, blocking or not) and `zsetops` (ZUNION,
ZINTER, ZDIFF and their STORE forms). The value type itself is in
`cacheshim.types.zsetvalue`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Final

from cacheshim.commands import Ctx, command
from cacheshim.commands.args import (
    LONG_MAX,
    option,
    parse_long_in_range,
    parse_scan_options,
)
from cacheshim.commands.argspec import ArgSpec, Conflict, token
from cacheshim.commands.keys import parse_cursor
from cacheshim.notify import GENERIC, notify
from cacheshim.notify import ZSET as ZSET_EVENTS
from cacheshim.picks import distinct_positions, repeated_positions
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import Pairs, Picks, Reply
from cacheshim.types.zsetvalue import LexBound, LexRange, ScoreRange, ZSet, format_score

__all__ = [
    "GROUP", "changed", "get_zset", "lex_range", "pairs_reply", "parse_score", "rows",
    "score_range", "store_result",
]  # fmt: skip

GROUP: Final = "sorted-set"
# ZRANDMEMBER reads its picks from a list of the whole set once they are at least 1/64 of it
# (listing a million members costs about as much as 3,000 lookups by position).
_LIST_FOR_PICKS_RATIO: Final = 64


def get_zset(ctx: Ctx, key: bytes) -> ZSet | None:
    """The live sorted set at key, None if there is no key; WRONGTYPE for another type."""
    return ctx.db.get_typed(key, ctx.now_ms, ZSet)


def _store(ctx: Ctx, key: bytes, zset: ZSet) -> None:
    ctx.db.set(key, zset, ctx.index)


def changed(ctx: Ctx, key: bytes, zset: ZSet, event: bytes) -> None:
    """After an in-place change: its event; an emptied set goes (with a "del" event), else
    WATCH sees the key changed."""
    notify(ctx, ZSET_EVENTS, event, key)
    if len(zset):
        ctx.db.touch_changed(key, ctx.index)
    else:
        ctx.db.delete(key, ctx.index)
        notify(ctx, GENERIC, b"del", key)


def store_result(ctx: Ctx, destination: bytes, result: ZSet, event: bytes) -> int:
    """A STORE command's end: the new set replaces the destination (its expiry goes too), or
    an empty result deletes it; with its event, or "del"."""
    if len(result):
        _store(ctx, destination, result)
        notify(ctx, ZSET_EVENTS, event, destination)
    elif ctx.db.contains(destination, ctx.now_ms):
        ctx.db.delete(destination, ctx.index)
        notify(ctx, GENERIC, b"del", destination)
    return len(result)


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


def score_range(min_arg: bytes, max_arg: bytes) -> ScoreRange:
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


def lex_range(min_arg: bytes, max_arg: bytes) -> LexRange:
    return LexRange(_lex_bound(min_arg), _lex_bound(max_arg))


# -- replies ------------------------------------------------------------------------------------


def pairs_reply(value: Pairs) -> Reply:
    return value


def rows(entries: Iterable[tuple[float, bytes]], withscores: bool) -> Reply:
    """Members, or member-score rows (flat in RESP2, pairs in RESP3)."""
    if withscores:
        return pairs_reply(Pairs([(member, score) for score, member in entries]))
    return [member for _, member in entries]


# -- ZADD, ZINCRBY, ZREM -----------------------------------------------------------------------


# Options lead, then the score-member pairs; how they combine is checked after the pairs.
_NX, _XX, _CH, _INCR, _GT, _LT = map(token, ("NX", "XX", "CH", "INCR", "GT", "LT"))
_ZADD_OPTIONS: Final = ArgSpec(
    _NX, _XX, _CH, _INCR, _GT, _LT,
    conflicts=[
        Conflict(_NX, (_XX,), errors.ZADD_XX_AND_NX),
        Conflict(_NX, (_GT, _LT), errors.ZADD_GT_LT_NX),
        Conflict(_GT, (_LT,), errors.ZADD_GT_LT_NX),
    ],
)  # fmt: skip


def _zadd(ctx: Ctx, args: list[bytes], incr: bool) -> Reply:
    """zaddGenericCommand: ZADD, and ZINCRBY as ZADD ... INCR (options parsed the same way)."""
    key = args[0]
    parsed = _ZADD_OPTIONS.parse_leading(args, 1)
    pairs = args[parsed.end :]
    if not pairs or len(pairs) % 2:
        raise CommandError(errors.SYNTAX_ERROR)
    _ZADD_OPTIONS.check(parsed)
    nx, xx, gt, lt = (flag in parsed for flag in (_NX, _XX, _GT, _LT))
    incr = incr or _INCR in parsed
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
        if added or updated:
            notify(ctx, ZSET_EVENTS, b"zincr" if incr else b"zadd", key)
    if incr:
        return last if processed else None
    return added + updated if _CH in parsed else added


@command(
    "zadd", -4, "write denyoom fast", (1, 1, 1), "write sortedset fast", GROUP, "1.2.0",
    "Adds members with scores to a sorted set, or changes their scores (NX, XX, GT, LT, CH, INCR).",
    "O(log(N)) for each item added, where N is the number of elements in the sorted set.",
)  # fmt: skip
def zadd(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zadd(ctx, args, incr=False)


@command(
    "zincrby", 4, "write denyoom fast", (1, 1, 1), "write sortedset fast", GROUP, "1.2.0",
    "Adds to a member's score in a sorted set (a missing member starts at 0) and answers the new "
    "score.",
    "O(log(N)) where N is the number of elements in the sorted set.",
    key_flags="RW access update",
)  # fmt: skip
def zincrby(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zadd(ctx, args, incr=True)


@command(
    "zrem", -3, "write fast", (1, 1, 1), "write sortedset fast", GROUP, "1.2.0",
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
        changed(ctx, key, zset, b"zrem")
    return removed


# -- single members --------------------------------------------------------------------------


@command(
    "zscore", 3, "readonly fast", (1, 1, 1), "read sortedset fast", GROUP, "1.2.0",
    "Answers a member's score (nil for a missing member).", "O(1)",
)  # fmt: skip
def zscore(ctx: Ctx, args: list[bytes]) -> Reply:
    zset = get_zset(ctx, args[0])
    return None if zset is None else zset.score(args[1])


@command(
    "zmscore", -3, "readonly fast", (1, 1, 1), "read sortedset fast", GROUP, "6.2.0",
    "Answers the score of each of several members (nil for a missing one).",
    "O(N) where N is the number of members being requested.",
)  # fmt: skip
def zmscore(ctx: Ctx, args: list[bytes]) -> Reply:
    zset = get_zset(ctx, args[0])
    return [None if zset is None else zset.score(member) for member in args[1:]]


@command(
    "zcard", 2, "readonly fast", (1, 1, 1), "read sortedset fast", GROUP, "1.2.0",
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
    "zrank", 3, "readonly fast", (1, 1, 1), "read sortedset fast", GROUP, "2.0.0",
    "Answers a member's position in a sorted set, lowest score first.", "O(log(N))",
)  # fmt: skip
def zrank(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zrank(ctx, args, reverse=False)


@command(
    "zrevrank", 3, "readonly fast", (1, 1, 1), "read sortedset fast", GROUP, "2.0.0",
    "Answers a member's position in a sorted set, highest score first.",
    "O(log(N))",
)  # fmt: skip
def zrevrank(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zrank(ctx, args, reverse=True)


# -- ZRANDMEMBER ----------------------------------------------------------------------------------

# Redis answers a positive count below the set's size with distinct members in an order
# of its hash table (copying the set and removing members at random, or sampling until it
# has enough); here, a sample without repeats in the generator's order. The picks cannot
# match Redis's; their number, the repeats and the whole-set answer do.


@command(
    "zrandmember", -2, "readonly", (1, 1, 1), "read sortedset", GROUP, "6.2.0",
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
    return rows(entries, withscores)


def _entries_at(zset: ZSet, positions: Sequence[int]) -> list[tuple[float, bytes]]:
    """The entries at these positions, in their order. Many of them are read from a list of
    the whole set: one lookup by position in the sorted container walks its index."""
    if len(positions) * _LIST_FOR_PICKS_RATIO >= len(zset):
        table = list(zset)
        return [table[i] for i in positions]
    return [zset.at(i) for i in positions]


# -- ZSCAN ----------------------------------------------------------------------------------------


@command(
    "zscan", -3, "readonly", (1, 1, 1), "read sortedset", GROUP, "2.8.0",
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
