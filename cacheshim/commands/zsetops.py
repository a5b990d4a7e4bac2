"""Sorted-set algebra (Redis t_zset.c zunionInterDiffGenericCommand): ZUNION, ZINTER, ZDIFF,
their STORE forms and ZINTERCARD. Inputs may be sorted sets or plain sets (every score 1);
WEIGHTS scale each input's scores, AGGREGATE says how a member's scores combine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sized
from functools import partial
from typing import Final, cast

from cacheshim.commands import Ctx, command
from cacheshim.commands.args import LONG_MAX, long_in_range, parse_int
from cacheshim.commands.argspec import PER_KEY, ArgSpec, multi, one_of, token, valued
from cacheshim.commands.zsets import GROUP, parse_score, rows, store_result
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import Reply
from cacheshim.types.keyspace import kind_of
from cacheshim.types.zsetvalue import ZSet

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


_WITHSCORES: Final = token("WITHSCORES")
_WEIGHTS: Final = multi("WEIGHTS", PER_KEY, partial(parse_score, message=errors.WEIGHT_NOT_A_FLOAT))
_AGGREGATE: Final = valued("AGGREGATE", one_of("SUM", "MIN", "MAX"))
_INTERCARD_LIMIT: Final = valued("LIMIT", long_in_range(0, LONG_MAX, errors.LIMIT_IS_NEGATIVE))
_SETOP_OPTIONS: Final = ArgSpec(_WEIGHTS, _AGGREGATE, _WITHSCORES)  # ZUNION, ZINTER
_SETOP_STORE_OPTIONS: Final = _SETOP_OPTIONS.without(_WITHSCORES)
_ZDIFF_OPTIONS: Final = ArgSpec(_WITHSCORES)
_ZDIFFSTORE_OPTIONS: Final = ArgSpec()
_ZINTERCARD_OPTIONS: Final = ArgSpec(_INTERCARD_LIMIT)


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
    if cardinality_only:
        spec = _ZINTERCARD_OPTIONS
    elif op == _DIFF:
        spec = _ZDIFF_OPTIONS if destination is None else _ZDIFFSTORE_OPTIONS
    else:
        spec = _SETOP_OPTIONS if destination is None else _SETOP_STORE_OPTIONS
    parsed = spec.parse(args, 1 + count, numkeys=count)
    for source, weight in zip(sources, parsed.get(_WEIGHTS) or (), strict=False):
        source.weight = weight
    aggregate = parsed.get(_AGGREGATE, b"SUM")
    withscores = _WITHSCORES in parsed
    limit = parsed.get(_INTERCARD_LIMIT, 0)
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
        return store_result(ctx, destination, ZSet.from_sorted(entries), name.encode())
    return rows(entries, withscores)


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
    "zunion", -3, "readonly movablekeys", (0, 0, 0), "read sortedset", GROUP, "6.2.0",
    "Answers the members of any of the given sorted sets, their scores "
    "combined.", _UNION_COMPLEXITY,
)  # fmt: skip
def zunion(ctx: Ctx, args: list[bytes]) -> Reply:
    return _setop(ctx, args, _UNION, "zunion")


@command(
    "zunionstore", -4, "write denyoom movablekeys", (1, 1, 1), "write sortedset", GROUP,
    "2.0.0", "Stores the members of any of the given sorted sets, scores combined, at a key.",
    "O(N)+O(M log(M)) with N being the sum of the sizes of the input sorted sets, and M being "
    "the number of elements in the resulting sorted set.", key_flags="OW update|RO access",
)  # fmt: skip
def zunionstore(ctx: Ctx, args: list[bytes]) -> Reply:
    return _setop(ctx, args[1:], _UNION, "zunionstore", destination=args[0])


@command(
    "zinter", -3, "readonly movablekeys", (0, 0, 0), "read sortedset", GROUP, "6.2.0",
    "Answers the members common to all the given sorted sets, their scores "
    "combined.", _INTER_COMPLEXITY,
)  # fmt: skip
def zinter(ctx: Ctx, args: list[bytes]) -> Reply:
    return _setop(ctx, args, _INTER, "zinter")


@command(
    "zinterstore", -4, "write denyoom movablekeys", (1, 1, 1), "write sortedset", GROUP,
    "2.0.0", "Stores the members common to the given sorted sets, scores combined, at a key.",
    _INTER_COMPLEXITY, key_flags="OW update|RO access",
)  # fmt: skip
def zinterstore(ctx: Ctx, args: list[bytes]) -> Reply:
    return _setop(ctx, args[1:], _INTER, "zinterstore", destination=args[0])


@command(
    "zintercard", -3, "readonly movablekeys", (0, 0, 0), "read sortedset", GROUP, "7.0.0",
    "Answers how many members the given sorted sets have in common (counting up to LIMIT).",
    "O(N*K) worst case with N being the smallest input sorted set, K being the number of "
    "input sorted sets.",
)  # fmt: skip
def zintercard(ctx: Ctx, args: list[bytes]) -> Reply:
    return _setop(ctx, args, _INTER, "zintercard", cardinality_only=True)


@command(
    "zdiff", -3, "readonly movablekeys", (0, 0, 0), "read sortedset", GROUP, "6.2.0",
    "Answers the members of the first sorted set that are in none of the others.", _DIFF_COMPLEXITY,
)  # fmt: skip
def zdiff(ctx: Ctx, args: list[bytes]) -> Reply:
    return _setop(ctx, args, _DIFF, "zdiff")


@command(
    "zdiffstore", -4, "write denyoom movablekeys", (1, 1, 1), "write sortedset", GROUP,
    "6.2.0", "Stores the members of the first sorted set that are in none of the others at a key.",
    _DIFF_COMPLEXITY, key_flags="OW update|RO access",
)  # fmt: skip
def zdiffstore(ctx: Ctx, args: list[bytes]) -> Reply:
    return _setop(ctx, args[1:], _DIFF, "zdiffstore", destination=args[0])
