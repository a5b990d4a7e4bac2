"""List commands (Redis t_list.c), Redis 7.0's replies and errors, blocking ones included.

The value is a :class:`cacheshim.types.listvalue.ListValue` (a deque, head first; OBJECT ENCODING
``quicklist`` as in Redis 7.0). A list never stays empty at a key: the handler that takes its
last element deletes the key, as Redis does. A change in place is reported with
``touch_changed`` (for WATCH, and for clients blocked on the key).

Blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP) are writes: in apply they serve
the client when a list has elements; otherwise they answer at once inside MULTI/EXEC (Redis's
nil for a client that may not block), else `cacheshim.blocking.WouldBlock` and change
nothing; the client then waits in the applied state, and apply runs the command again
right after a record that gives one of its keys a list (see `cacheshim.blocking`).
Arguments are checked in Redis's order, so the same bad command answers the same error:
BLPOP's timeout before its keys are looked at, BLMPOP's numkeys, direction and COUNT before
its timeout.

Over 500 lines: the whole list family, blocking pops included, is one module as in the
command table's groups; the pops and moves share their argument parsing and key changes.
"""

from __future__ import annotations

from typing import Final

from cacheshim.blocking import parse_timeout, would_block
from cacheshim.commands import Ctx, command
from cacheshim.commands.args import (
    LONG_MAX,
    long_in_range,
    option,
    parse_count_option,
    parse_int,
    parse_long_in_range,
)
from cacheshim.commands.argspec import ArgSpec, valued
from cacheshim.notify import GENERIC, LIST, notify
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import NULL_ARRAY, OK, Reply
from cacheshim.types.listvalue import ListValue, index_range, new_list

__all__ = ["get_list", "new_list"]

LONG_MIN: Final = -(2**63)


def get_list(ctx: Ctx, key: bytes) -> ListValue | None:
    """The live list at key, None if there is no key; WRONGTYPE for another type."""
    return ctx.db.get_typed(key, ctx.now_ms, ListValue)


def _store_new(ctx: Ctx, key: bytes, value: ListValue) -> None:
    ctx.db.set(key, value, ctx.index)


def _changed(ctx: Ctx, key: bytes, value: ListValue, event: bytes) -> None:
    """After elements left the list in place: its event, and the key goes (with a "del"
    event) if it is empty now."""
    notify(ctx, LIST, event, key)
    if value:
        ctx.db.touch_changed(key, ctx.index)
    else:
        ctx.db.delete(key, ctx.index)
        notify(ctx, GENERIC, b"del", key)


def _pop_event(left: bool) -> bytes:
    return b"lpop" if left else b"rpop"


def _push_event(left: bool) -> bytes:
    return b"lpush" if left else b"rpush"


def _is_left(arg: bytes) -> bool:
    """LEFT or RIGHT (getListPositionFromObjectOrReply), any case."""
    where = option(arg)
    if where == b"LEFT":
        return True
    if where == b"RIGHT":
        return False
    raise CommandError(errors.SYNTAX_ERROR)


def _wrap_long(value: int) -> int:
    """A C long's wrap-around (Redis computes LPOS's count test in one)."""
    return (value - LONG_MIN) % 2**64 + LONG_MIN


def _pop_many(ctx: Ctx, key: bytes, value: ListValue, left: bool, count: int) -> list[Reply]:
    """Up to count elements from one end, in pop order; the key goes if emptied."""
    take = value.popleft if left else value.pop
    popped: list[Reply] = [take() for _ in range(min(count, len(value)))]
    _changed(ctx, key, value, _pop_event(left))
    return popped


def _pop_one(ctx: Ctx, key: bytes, value: ListValue, left: bool) -> bytes:
    element = value.popleft() if left else value.pop()
    _changed(ctx, key, value, _pop_event(left))
    return element


# -- push ------------------------------------------------------------------------------------

_PUSH_COMPLEXITY: Final = "O(1) per element pushed: O(N) for N elements."


def _push(ctx: Ctx, args: list[bytes], left: bool, only_existing: bool) -> Reply:
    key, elements = args[0], args[1:]
    value = get_list(ctx, key)
    if value is None:
        if only_existing:
            return 0
        value = ListValue()
        _extend(value, elements, left)
        _store_new(ctx, key, value)
        notify(ctx, LIST, _push_event(left), key)
        return len(value)
    _extend(value, elements, left)
    ctx.db.touch_changed(key, ctx.index)
    notify(ctx, LIST, _push_event(left), key)
    return len(value)


def _extend(value: ListValue, elements: list[bytes], left: bool) -> None:
    if left:
        value.extendleft(elements)  # one at a time: the last one given ends up first
    else:
        value.extend(elements)


@command(
    "lpush", -3, "write denyoom fast", (1, 1, 1), "write list fast", "list", "1.0.0",
    "Pushes elements at the head of a list, one after the other (creating the list), and "
    "answers its length.", _PUSH_COMPLEXITY, key_flags="RW insert",
)  # fmt: skip
def lpush(ctx: Ctx, args: list[bytes]) -> Reply:
    return _push(ctx, args, left=True, only_existing=False)


@command(
    "rpush", -3, "write denyoom fast", (1, 1, 1), "write list fast", "list", "1.0.0",
    "Appends elements at the tail of a list (creating the list), and answers its length.",
    _PUSH_COMPLEXITY, key_flags="RW insert",
)  # fmt: skip
def rpush(ctx: Ctx, args: list[bytes]) -> Reply:
    return _push(ctx, args, left=False, only_existing=False)


@command(
    "lpushx", -3, "write denyoom fast", (1, 1, 1), "write list fast", "list", "2.2.0",
    "Pushes elements at the head of a list only if the list exists; answers its length (0: "
    "no list).", _PUSH_COMPLEXITY, key_flags="RW insert",
)  # fmt: skip
def lpushx(ctx: Ctx, args: list[bytes]) -> Reply:
    return _push(ctx, args, left=True, only_existing=True)


@command(
    "rpushx", -3, "write denyoom fast", (1, 1, 1), "write list fast", "list", "2.2.0",
    "Appends elements at the tail of a list only if the list exists; answers its length (0: "
    "no list).", _PUSH_COMPLEXITY, key_flags="RW insert",
)  # fmt: skip
def rpushx(ctx: Ctx, args: list[bytes]) -> Reply:
    return _push(ctx, args, left=False, only_existing=True)


# -- pop -------------------------------------------------------------------------------------


def _pop(ctx: Ctx, args: list[bytes], left: bool, name: str) -> Reply:
    if len(args) > 2:
        raise CommandError(errors.wrong_number_of_arguments(name))
    count: int | None = None
    if len(args) == 2:
        count = parse_long_in_range(args[1], 0, LONG_MAX, errors.VALUE_MUST_BE_POSITIVE)
    value = get_list(ctx, args[0])
    if value is None:
        return None if count is None else NULL_ARRAY
    if count is None:
        return _pop_one(ctx, args[0], value, left)
    if count == 0:
        return []
    return _pop_many(ctx, args[0], value, left, count)


_POP_COMPLEXITY: Final = "O(N) where N is the number of elements popped."


@command(
    "lpop", -2, "write fast", (1, 1, 1), "write list fast", "list", "1.0.0",
    "Removes and answers the first element of a list, or the first count elements.",
    _POP_COMPLEXITY, key_flags="RW access delete",
)  # fmt: skip
def lpop(ctx: Ctx, args: list[bytes]) -> Reply:
    return _pop(ctx, args, left=True, name="lpop")


@command(
    "rpop", -2, "write fast", (1, 1, 1), "write list fast", "list", "1.0.0",
    "Removes and answers the last element of a list, or the last count elements.",
    _POP_COMPLEXITY, key_flags="RW access delete",
)  # fmt: skip
def rpop(ctx: Ctx, args: list[bytes]) -> Reply:
    return _pop(ctx, args, left=False, name="rpop")


# -- reading -----------------------------------------------------------------------------------


@command(
    "llen", 2, "readonly fast", (1, 1, 1), "read list fast", "list", "1.0.0",
    "Answers the length of a list (0 for a missing key).", key_flags="RO",
)  # fmt: skip
def llen(ctx: Ctx, args: list[bytes]) -> Reply:
    value = get_list(ctx, args[0])
    return 0 if value is None else len(value)


@command(
    "lrange", 4, "readonly", (1, 1, 1), "read list slow", "list", "1.0.0",
    "Answers the elements of a list between two indexes (both included; negative ones count "
    "from the tail).",
    "O(S+N): S the distance of the range from the nearer end, N the elements answered.",
    key_flags="RO access",
)  # fmt: skip
def lrange(ctx: Ctx, args: list[bytes]) -> Reply:
    start = parse_int(args[1])
    end = parse_int(args[2])
    value = get_list(ctx, args[0])
    if value is None:
        return []
    bounds = index_range(len(value), start, end)
    if bounds is None:
        return []
    return value.span(*bounds)


def _position(size: int, index: int) -> int | None:
    """A LINDEX/LSET index (negative from the tail) as a position, or None if outside."""
    if index < 0:
        index += size
    return index if 0 <= index < size else None


@command(
    "lindex", 3, "readonly", (1, 1, 1), "read list slow", "list", "1.0.0",
    "Answers the element at an index of a list (negative indexes count from the tail).",
    "O(N) where N is the distance of the index from the nearer end.", key_flags="RO access",
)  # fmt: skip
def lindex(ctx: Ctx, args: list[bytes]) -> Reply:
    value = get_list(ctx, args[0])
    if value is None:
        return None
    position = _position(len(value), parse_int(args[1]))
    return None if position is None else value[position]


def _rank(arg: bytes) -> int:
    rank = parse_int(arg)
    if rank == 0:
        raise CommandError(errors.LPOS_RANK_ZERO)
    return rank


_RANK: Final = valued("RANK", _rank)
_COUNT: Final = valued("COUNT", long_in_range(0, LONG_MAX, errors.LPOS_COUNT_NEGATIVE))
_MAXLEN: Final = valued("MAXLEN", long_in_range(0, LONG_MAX, errors.LPOS_MAXLEN_NEGATIVE))
_LPOS_OPTIONS: Final = ArgSpec(_RANK, _COUNT, _MAXLEN)


@command(
    "lpos", -3, "readonly", (1, 1, 1), "read list slow", "list", "6.0.6",
    "Answers the index of an element in a list (RANK: the nth match, negative from the tail; "
    "COUNT: that many matches; MAXLEN: compare only so many elements).",
    "O(N) where N is the number of elements compared.", key_flags="RO access",
)  # fmt: skip
def lpos(ctx: Ctx, args: list[bytes]) -> Reply:
    key, element = args[0], args[1]
    parsed = _LPOS_OPTIONS.parse(args, 2)
    rank = parsed.get(_RANK, 1)
    count = parsed.get(_COUNT, -1)  # -1: no COUNT option
    maxlen = parsed.get(_MAXLEN, 0)
    tail_first = rank < 0
    if tail_first and rank != LONG_MIN:  # -LONG_MIN wraps to itself in C: stays negative
        rank = -rank
    value = get_list(ctx, key)
    if value is None:
        return [] if count != -1 else None
    size = len(value)
    if rank == 1 and count == -1 and maxlen == 0 and not tail_first:
        try:  # the common case, searched in C
            return value.index(element)
        except ValueError:
            return None
    found: list[Reply] = []
    matches = 0
    for index, item in enumerate(value.iter_from(tail_first)):
        if maxlen and index >= maxlen:
            break
        if item != element:
            continue
        matches += 1
        if matches < rank:
            continue
        position = size - index - 1 if tail_first else index
        if count == -1:
            return position
        found.append(position)
        if count and _wrap_long(matches - rank + 1) >= count:
            break
    return found if count != -1 else None


# -- changing in place ------------------------------------------------------------------------


@command(
    "lset", 4, "write denyoom", (1, 1, 1), "write list slow", "list", "1.0.0",
    "Replaces the element at an index of a list.",
    "O(N) where N is the distance of the index from the nearer end.", key_flags="RW update",
)  # fmt: skip
def lset(ctx: Ctx, args: list[bytes]) -> Reply:
    value = get_list(ctx, args[0])
    if value is None:
        raise CommandError(errors.NO_SUCH_KEY)
    position = _position(len(value), parse_int(args[1]))
    if position is None:
        raise CommandError(errors.LIST_INDEX_OUT_OF_RANGE)
    value[position] = args[2]
    ctx.db.touch_changed(args[0], ctx.index)
    notify(ctx, LIST, b"lset", args[0])
    return OK


@command(
    "linsert", 5, "write denyoom", (1, 1, 1), "write list slow", "list", "2.2.0",
    "Inserts an element before or after the first occurrence of a pivot element; answers the "
    "new length, -1 without the pivot, 0 without the list.",
    "O(N) where N is the number of elements before the pivot.", key_flags="RW insert",
)  # fmt: skip
def linsert(ctx: Ctx, args: list[bytes]) -> Reply:
    key, where, pivot, element = args
    place = option(where)
    if place not in (b"BEFORE", b"AFTER"):
        raise CommandError(errors.SYNTAX_ERROR)
    value = get_list(ctx, key)
    if value is None:
        return 0
    try:
        position = value.index(pivot)
    except ValueError:
        return -1
    value.insert(position if place == b"BEFORE" else position + 1, element)
    ctx.db.touch_changed(key, ctx.index)
    notify(ctx, LIST, b"linsert", key)
    return len(value)


@command(
    "lrem", 4, "write", (1, 1, 1), "write list slow", "list", "1.0.0",
    "Removes occurrences of an element from a list: the first count from the head, the last "
    "-count from the tail, or all for 0; answers how many.",
    "O(N+M): N the length of the list, M the elements removed.", key_flags="RW delete",
)  # fmt: skip
def lrem(ctx: Ctx, args: list[bytes]) -> Reply:
    key, element = args[0], args[2]
    count = parse_int(args[1])
    value = get_list(ctx, key)
    if value is None:
        return 0
    from_tail = count < 0
    # -LONG_MIN wraps to itself in C, and a negative limit is never reached: all of them.
    limit = 0 if count == LONG_MIN else abs(count)
    removed = 0
    kept: list[bytes] = []
    for item in value.iter_from(from_tail):
        if item == element and (limit == 0 or removed < limit):
            removed += 1
        else:
            kept.append(item)
    if not removed:
        return 0
    if from_tail:
        kept.reverse()
    value.clear()
    value.extend(kept)
    _changed(ctx, key, value, b"lrem")
    return removed


@command(
    "ltrim", 4, "write", (1, 1, 1), "write list slow", "list", "1.0.0",
    "Keeps only the elements of a list between two indexes (both included; negative ones "
    "count from the tail).", "O(N) where N is the number of elements removed.",
    key_flags="RW delete",
)  # fmt: skip
def ltrim(ctx: Ctx, args: list[bytes]) -> Reply:
    key = args[0]
    start = parse_int(args[1])
    end = parse_int(args[2])
    value = get_list(ctx, key)
    if value is None:
        return OK
    size = len(value)
    bounds = index_range(size, start, end)
    first, stop = bounds if bounds is not None else (0, 0)
    if stop - first < size - (stop - first):  # keeping less than is removed: copy it
        kept = value.span(first, stop)
        value.clear()
        value.extend(kept)
    else:
        for _ in range(first):
            value.popleft()
        for _ in range(size - stop):
            value.pop()
    # Redis signals the key as modified (and tells of it) even when nothing was trimmed.
    _changed(ctx, key, value, b"ltrim")
    return OK


# -- moving between lists ------------------------------------------------------------------------


def _move(ctx: Ctx, source: bytes, destination: bytes, from_left: bool, to_left: bool) -> Reply:
    """LMOVE (lmoveGenericCommand): nil without a source; WRONGTYPE for a destination of
    another type before anything moves; source and destination may be the same list."""
    src = get_list(ctx, source)
    if src is None:
        return None
    dst = get_list(ctx, destination)
    element = src.popleft() if from_left else src.pop()
    if dst is None:
        _store_new(ctx, destination, ListValue((element,)))
    else:
        _extend(dst, [element], to_left)
        ctx.db.touch_changed(destination, ctx.index)
    notify(ctx, LIST, _push_event(to_left), destination)
    _changed(ctx, source, src, _pop_event(from_left))
    return element


@command(
    "lmove", 5, "write denyoom", (1, 2, 1), "write list slow", "list", "6.2.0",
    "Pops an element from one end of a list, pushes it at one end of another (or the same) "
    "list, and answers it.", key_flags="RW access delete|RW insert",
)  # fmt: skip
def lmove(ctx: Ctx, args: list[bytes]) -> Reply:
    from_left = _is_left(args[2])
    to_left = _is_left(args[3])
    return _move(ctx, args[0], args[1], from_left, to_left)


@command(
    "rpoplpush", 3, "write denyoom", (1, 2, 1), "write list slow", "list", "1.2.0",
    "Pops the last element of a list, pushes it at the head of another and answers it "
    "(deprecated: LMOVE ... RIGHT LEFT).", key_flags="RW access delete|RW insert",
)  # fmt: skip
def rpoplpush(ctx: Ctx, args: list[bytes]) -> Reply:
    return _move(ctx, args[0], args[1], from_left=False, to_left=True)


def _mpop_arguments(args: list[bytes], first: int) -> tuple[list[bytes], bool, int]:
    """LMPOP's arguments from numkeys on (args[first]): numkeys key... LEFT|RIGHT [COUNT n]
    -> (keys, from the left, count), checked as lmpopGenericCommand checks them."""
    numkeys = parse_long_in_range(args[first], 1, LONG_MAX, errors.NUMKEYS_NOT_POSITIVE)
    where_at = first + numkeys + 1
    if where_at >= len(args):
        raise CommandError(errors.SYNTAX_ERROR)
    left = _is_left(args[where_at])
    count = parse_count_option(args, where_at + 1)
    return args[first + 1 : where_at], left, 1 if count is None else count


def _mpop(ctx: Ctx, keys: list[bytes], left: bool, count: int) -> Reply | None:
    """[key, [elements]] from the first key with a list; None when there is none."""
    for key in keys:
        value = get_list(ctx, key)
        if value is not None:
            return [key, _pop_many(ctx, key, value, left, count)]
    return None


_MPOP_COMPLEXITY: Final = "O(N+M): N the number of keys given, M the elements popped."


@command(
    "lmpop", -4, "write movablekeys", (0, 0, 0), "write list slow", "list", "7.0.0",
    "Pops up to count elements (default 1) from one end of the first non-empty list among "
    "several keys; answers the key and the elements.", _MPOP_COMPLEXITY,
    key_flags="RW access delete",
)  # fmt: skip
def lmpop(ctx: Ctx, args: list[bytes]) -> Reply:
    keys, left, count = _mpop_arguments(args, 0)
    served = _mpop(ctx, keys, left, count)
    return NULL_ARRAY if served is None else served


# -- blocking ------------------------------------------------------------------------------------


def _blocking_pop(ctx: Ctx, args: list[bytes], left: bool) -> Reply:
    """BLPOP/BRPOP (blockingPopGenericCommand): the timeout first, then the keys in order;
    the first with a list is popped, a key of another type before it is WRONGTYPE."""
    keys = args[:-1]
    timeout_ms = parse_timeout(args[-1])
    for key in keys:
        value = get_list(ctx, key)
        if value is not None:
            return [key, _pop_one(ctx, key, value, left)]
    if ctx.in_transaction:
        return NULL_ARRAY
    return would_block(keys, ListValue, timeout_ms)


_BLOCKING_COMPLEXITY: Final = "O(N) where N is the number of keys given."


@command(
    "blpop", -3, "write noscript blocking", (1, -2, 1), "write list slow blocking", "list",
    "2.0.0",
    "Removes and answers the first element of the first non-empty list among several keys, "
    "or blocks until one has an element or the timeout (seconds, 0: forever) passes.",
    _BLOCKING_COMPLEXITY, key_flags="RW access delete",
)  # fmt: skip
def blpop(ctx: Ctx, args: list[bytes]) -> Reply:
    return _blocking_pop(ctx, args, left=True)


@command(
    "brpop", -3, "write noscript blocking", (1, -2, 1), "write list slow blocking", "list",
    "2.0.0",
    "Removes and answers the last element of the first non-empty list among several keys, "
    "or blocks until one has an element or the timeout (seconds, 0: forever) passes.",
    _BLOCKING_COMPLEXITY, key_flags="RW access delete",
)  # fmt: skip
def brpop(ctx: Ctx, args: list[bytes]) -> Reply:
    return _blocking_pop(ctx, args, left=False)


def _blocking_move(
    ctx: Ctx, args: list[bytes], from_left: bool, to_left: bool, timeout_ms: int
) -> Reply:
    """BLMOVE/BRPOPLPUSH (blmoveGenericCommand): LMOVE when the source has a list."""
    source = args[0]
    if get_list(ctx, source) is not None:
        return _move(ctx, source, args[1], from_left, to_left)
    if ctx.in_transaction:
        return None  # a null bulk here, but a null array on timeout (as Redis 7.0)
    return would_block([source], ListValue, timeout_ms)


@command(
    "blmove", 6, "write denyoom noscript blocking", (1, 2, 1), "write list slow blocking",
    "list", "6.2.0",
    "Pops an element from one end of a list and pushes it at one end of another, or blocks "
    "until the source has an element or the timeout (seconds, 0: forever) passes.",
    key_flags="RW access delete|RW insert",
)  # fmt: skip
def blmove(ctx: Ctx, args: list[bytes]) -> Reply:
    from_left = _is_left(args[2])
    to_left = _is_left(args[3])
    timeout_ms = parse_timeout(args[4])
    return _blocking_move(ctx, args, from_left, to_left, timeout_ms)


@command(
    "brpoplpush", 4, "write denyoom noscript blocking", (1, 2, 1), "write list slow blocking",
    "list", "2.2.0",
    "Pops the last element of a list and pushes it at the head of another, or blocks until "
    "there is one (deprecated: BLMOVE ... RIGHT LEFT).", key_flags="RW access delete|RW insert",
)  # fmt: skip
def brpoplpush(ctx: Ctx, args: list[bytes]) -> Reply:
    timeout_ms = parse_timeout(args[2])
    return _blocking_move(ctx, args, from_left=False, to_left=True, timeout_ms=timeout_ms)


@command(
    "blmpop", -5, "write blocking movablekeys", (0, 0, 0), "write list slow blocking", "list",
    "7.0.0",
    "Pops up to count elements from one end of the first non-empty list among several keys, "
    "or blocks until one has elements or the timeout (seconds, 0: forever) passes.",
    _MPOP_COMPLEXITY, key_flags="RW access delete",
)  # fmt: skip
def blmpop(ctx: Ctx, args: list[bytes]) -> Reply:
    keys, left, count = _mpop_arguments(args, 1)
    timeout_ms = parse_timeout(args[0])
    served = _mpop(ctx, keys, left, count)
    if served is not None:
        return served
    if ctx.in_transaction:
        return NULL_ARRAY
    return would_block(keys, ListValue, timeout_ms)
