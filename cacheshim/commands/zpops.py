"""Popping sorted-set members by score (Redis t_zset.c): ZPOPMIN, ZPOPMAX, ZMPOP and the
blocking BZPOPMIN, BZPOPMAX and BZMPOP. Pops are writes, run only inside apply; the blocking
ones return :class:`cacheshim.blocking.WouldBlock` when nothing can be popped outside
MULTI/EXEC (see `cacheshim.blocking`).
"""

from __future__ import annotations

from typing import Final

from cacheshim.blocking import parse_timeout, would_block
from cacheshim.commands import Ctx, command
from cacheshim.commands.args import LONG_MAX, option, parse_count_option, parse_long_in_range
from cacheshim.commands.zsets import GROUP, changed, get_zset, pairs_reply
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import NULL_ARRAY, Pairs, Reply
from cacheshim.types.zsetvalue import ZSet

# -- popping ------------------------------------------------------------------------------------


def _pop(ctx: Ctx, key: bytes, zset: ZSet, count: int, highest: bool) -> list[tuple[bytes, float]]:
    """Remove up to count members from one end (the key goes when emptied)."""
    size = len(zset)
    taken = min(count, size)
    start, stop = (size - taken, size) if highest else (0, taken)
    entries = list(zset.entries(start, stop, reverse=highest))
    zset.remove_positions(start, stop)
    if taken:
        changed(ctx, key, zset, b"zpopmax" if highest else b"zpopmin")
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
    return pairs_reply(Pairs(popped))


_POP_COMPLEXITY: Final = (
    "O(log(N)*M) with N being the number of elements in the sorted set, and M being the number "
    "of elements popped."
)


@command(
    "zpopmin", -2, "write fast", (1, 1, 1), "write sortedset fast", GROUP, "5.0.0",
    "Removes and answers the lowest-scored members of a sorted set.", _POP_COMPLEXITY,
    key_flags="RW access delete",
)  # fmt: skip
def zpopmin(ctx: Ctx, args: list[bytes]) -> Reply:
    return _zpop(ctx, args, highest=False)


@command(
    "zpopmax", -2, "write fast", (1, 1, 1), "write sortedset fast", GROUP, "5.0.0",
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
    "write sortedset fast blocking", GROUP, "5.0.0",
    "Pops the lowest-scored member of the first non-empty sorted set among several keys, or "
    "waits for one (timeout in seconds, 0: "
    "forever).", _BZPOP_COMPLEXITY, key_flags="RW access delete",
)  # fmt: skip
def bzpopmin(ctx: Ctx, args: list[bytes]) -> Reply:
    return _bzpop(ctx, args, highest=False)


@command(
    "bzpopmax", -3, "write noscript blocking fast", (1, -2, 1),
    "write sortedset fast blocking", GROUP, "5.0.0",
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
    "zmpop", -4, "write movablekeys", (0, 0, 0), "write sortedset", GROUP, "7.0.0",
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
    "bzmpop", -5, "write blocking movablekeys", (0, 0, 0), "write sortedset blocking", GROUP,
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
