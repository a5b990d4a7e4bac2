"""Set commands (Redis t_set.c), Redis 7.0's replies and errors.

The value is a :class:`cacheshim.types.setvalue.SetValue` (encodings, reply order and the
determinism of random picks are described there). Write handlers run only inside apply;
their random picks (SPOP) come from ``ctx.random()``, seeded by the log index, and index into
the members list, whose order is itself a function of the log: every shim pops the same
members. SRANDMEMBER is a read: served from memory it uses the shim's own generator, inside
MULTI/EXEC (in apply) the log's.

Where Redis's reply order is its hash table's (a hashtable set), the order here is another
one; where it is fixed (an intset walks sorted; SINTER walks its smallest set), it is the
same. SPOP, SRANDMEMBER and SSCAN follow Redis's case analysis, so the same calls answer in
the same shape (whole set in set order, a unique sample, or picks with repeats) and leave the
same encoding behind.
"""

from __future__ import annotations

from typing import Final

from cacheshim.commands import Ctx, command
from cacheshim.commands.args import LONG_MAX, long_in_range, parse_long_in_range, parse_scan_options
from cacheshim.commands.argspec import ArgSpec, valued
from cacheshim.commands.keys import parse_cursor
from cacheshim.notify import GENERIC, SET, notify
from cacheshim.picks import distinct_positions, repeated_positions
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import Picks, Reply, SetReply
from cacheshim.types.setvalue import SetValue

__all__ = ["get_set"]

# SPOP with a count pops members one by one while more than count / this of them stay;
# otherwise it rebuilds the set from those that stay (SPOP_MOVE_STRATEGY_MUL).
_SPOP_MOVE_STRATEGY_MUL: Final = 5


def get_set(ctx: Ctx, key: bytes) -> SetValue | None:
    """The live set at key, None if there is no key; WRONGTYPE for another type."""
    return ctx.db.get_typed(key, ctx.now_ms, SetValue)


def _stored(
    ctx: Ctx, key: bytes, value: SetValue, created: bool, changed: bool, event: bytes
) -> None:
    """Record a change of the set at key: new key, emptied key, or changed in place; with
    its event, and "del" for a key emptied."""
    if created:
        if len(value):
            ctx.db.set(key, value, ctx.index)
            notify(ctx, SET, event, key)
    elif not len(value):
        notify(ctx, SET, event, key)
        ctx.db.delete(key, ctx.index)
        notify(ctx, GENERIC, b"del", key)
    elif changed:
        ctx.db.touch_changed(key, ctx.index)
        notify(ctx, SET, event, key)


# -- members ---------------------------------------------------------------------------------


@command(
    "sadd", -3, "write denyoom fast", (1, 1, 1), "write set fast", "set", "1.0.0",
    "Adds members to a set (creating it) and answers how many were new.",
    "O(1) for each member added.", key_flags="RW insert",
)  # fmt: skip
def sadd(ctx: Ctx, args: list[bytes]) -> Reply:
    key = args[0]
    value = get_set(ctx, key)
    created = value is None
    if value is None:
        value = SetValue()
    added = 0
    for member in args[1:]:
        if value.add(member):
            added += 1
    _stored(ctx, key, value, created, added > 0, b"sadd")
    return added


@command(
    "srem", -3, "write fast", (1, 1, 1), "write set fast", "set", "1.0.0",
    "Removes members from a set and answers how many were there; an emptied set is deleted.",
    "O(N) where N is the number of members to remove.", key_flags="RW delete",
)  # fmt: skip
def srem(ctx: Ctx, args: list[bytes]) -> Reply:
    key = args[0]
    value = get_set(ctx, key)
    if value is None:
        return 0
    removed = 0
    for member in args[1:]:
        if value.remove(member):
            removed += 1
            if not len(value):
                break
    _stored(ctx, key, value, False, removed > 0, b"srem")
    return removed


@command(
    "sismember", 3, "readonly fast", (1, 1, 1), "read set fast", "set", "1.0.0",
    "Tells whether a value is a member of a set (1) or not (0).", key_flags="RO",
)  # fmt: skip
def sismember(ctx: Ctx, args: list[bytes]) -> Reply:
    value = get_set(ctx, args[0])
    return int(value is not None and args[1] in value)


@command(
    "smismember", -3, "readonly fast", (1, 1, 1), "read set fast", "set", "6.2.0",
    "Tells, for each of several values, whether it is a member of a set.",
    "O(N) where N is the number of values checked.",
)  # fmt: skip
def smismember(ctx: Ctx, args: list[bytes]) -> Reply:
    value = get_set(ctx, args[0])
    if value is None:
        return [0] * (len(args) - 1)
    return [int(member in value) for member in args[1:]]


@command(
    "smembers", 2, "readonly", (1, 1, 1), "read set slow", "set", "1.0.0",
    "Answers every member of a set.", "O(N) where N is the number of members.",
    tips="nondeterministic_output_order",
)  # fmt: skip
def smembers(ctx: Ctx, args: list[bytes]) -> Reply:
    value = get_set(ctx, args[0])
    return SetReply([] if value is None else value.ordered())


@command(
    "scard", 2, "readonly fast", (1, 1, 1), "read set fast", "set", "1.0.0",
    "Answers the number of members of a set (0 for a missing key).", key_flags="RO",
)  # fmt: skip
def scard(ctx: Ctx, args: list[bytes]) -> Reply:
    value = get_set(ctx, args[0])
    return 0 if value is None else len(value)


# -- random members ----------------------------------------------------------------------------


@command(
    "spop", -2, "write fast", (1, 1, 1), "write set fast", "set", "1.0.0",
    "Removes and answers one member picked at random, or count distinct ones.",
    "O(1) without count, else O(N) where N is the count.",
    tips="nondeterministic_output", key_flags="RW access delete",
)  # fmt: skip
def spop(ctx: Ctx, args: list[bytes]) -> Reply:
    key = args[0]
    if len(args) > 2:
        raise CommandError(errors.SYNTAX_ERROR)
    if len(args) == 2:
        return _spop_count(ctx, key, args[1])
    value = get_set(ctx, key)
    if value is None:
        return None
    member = value.pop_random(ctx.random())
    _stored(ctx, key, value, False, True, b"spop")
    return member


def _spop_count(ctx: Ctx, key: bytes, count_arg: bytes) -> Reply:
    count = parse_long_in_range(count_arg, 0, LONG_MAX, errors.VALUE_MUST_BE_POSITIVE)
    value = get_set(ctx, key)
    if value is None or count == 0:
        return SetReply([])
    size = len(value)
    rng = ctx.random()
    notify(ctx, SET, b"spop", key)
    if count >= size:
        # The whole set, walked as Redis walks a union of it: a set built anew.
        everything = SetValue.from_distinct(value.ordered()).ordered()
        ctx.db.delete(key, ctx.index)
        notify(ctx, GENERIC, b"del", key)
        return SetReply(everything)
    if (size - count) * _SPOP_MOVE_STRATEGY_MUL > count:
        popped = value.pop_random_many(rng, count)
        ctx.db.touch_changed(key, ctx.index)
        return SetReply(popped)
    # Most of the set goes: pick the members that stay, rebuild the set from them (its
    # encoding decided anew), answer the rest in the old set's order. The old set is
    # dropped, so its index is not kept up to date while the picks are made.
    kept, rest = value.split_random(rng, size - count)
    ctx.db.set(key, SetValue.from_distinct(kept), ctx.index, keep_ttl=True)
    return SetReply(rest)


@command(
    "srandmember", -2, "readonly", (1, 1, 1), "read set slow", "set", "1.0.0",
    "Answers a member picked at random; with a count, that many distinct members, or with a "
    "negative count that many picks that may repeat.",
    "O(1) without count, else O(N) where N is the absolute value of the count.",
    tips="nondeterministic_output",
)  # fmt: skip
def srandmember(ctx: Ctx, args: list[bytes]) -> Reply:
    key = args[0]
    if len(args) > 2:
        raise CommandError(errors.SYNTAX_ERROR)
    if len(args) == 1:
        value = get_set(ctx, key)
        return None if value is None else value.random_member(ctx.random())
    count = parse_long_in_range(args[1], -LONG_MAX, LONG_MAX)
    value = get_set(ctx, key)
    if value is None or count == 0:
        return []
    rng = ctx.random()
    size = len(value)
    if count < 0 or count == 1:
        positions = repeated_positions(rng, size, abs(count))
        members = value.members_for_picks()
        if len(positions) >= size:  # each member encoded once, the reply joined from those
            return Picks(list(members), positions)
        return [members[i] for i in positions]
    if count >= size:
        return value.ordered()
    members = value.members_for_picks()
    return [members[i] for i in distinct_positions(rng, size, count)]


# -- moving ----------------------------------------------------------------------------------------


@command(
    "smove", 4, "write fast", (1, 2, 1), "write set fast", "set", "1.0.0",
    "Moves a member from one set to another; answers 1, or 0 if it was not in the source.",
    key_flags="RW access delete|RW insert",
)  # fmt: skip
def smove(ctx: Ctx, args: list[bytes]) -> Reply:
    source_key, target_key, member = args
    source = get_set(ctx, source_key)
    if source is None:
        return 0
    target = get_set(ctx, target_key)
    if source is target:
        return int(member in source)
    if not source.remove(member):
        return 0
    _stored(ctx, source_key, source, False, True, b"srem")
    created = target is None
    if target is None:
        target = SetValue()
    added = target.add(member)
    _stored(ctx, target_key, target, created, added, b"sadd")
    return 1


# -- algebra ---------------------------------------------------------------------------------------


def _lookup(ctx: Ctx, keys: list[bytes]) -> list[SetValue | None]:
    """The sets at keys (None for a missing key), WRONGTYPE at the first of another type."""
    return [get_set(ctx, key) for key in keys]


def _intersection(sets: list[SetValue | None], limit: int = 0) -> list[bytes]:
    """The members common to all sets, in the order of the smallest (sinterGenericCommand);
    stops after limit members when limit > 0."""
    present = [s for s in sets if s is not None]
    if len(present) < len(sets):
        return []  # a missing key is an empty set
    ordered = sorted(present, key=len)
    smallest, others = ordered[0], ordered[1:]
    out: list[bytes] = []
    for member in smallest:
        if all(member in other for other in others if other is not smallest):
            out.append(member)
            if limit and len(out) >= limit:
                break
    return out


def _union(sets: list[SetValue | None]) -> SetValue:
    result = SetValue()
    for value in sets:
        if value is not None:
            for member in value.ordered():
                result.add(member)
    return result


def _difference(sets: list[SetValue | None]) -> SetValue:
    """The members of the first set in none of the others, computed with the algorithm
    Redis would pick, so the result's encoding comes out as Redis's."""
    result = SetValue()
    first = sets[0]
    if first is None or any(value is first for value in sets[1:]):
        return result  # a missing first set, or the first set again: nothing is left
    others = [value for value in sets[1:] if value is not None]
    present = [first, *others]
    work_one = len(first) * len(present) // 2
    work_two = sum(len(value) for value in present)
    if work_one <= work_two:
        # Look each member up in the others, biggest first.
        others.sort(key=len, reverse=True)
        for member in first.ordered():
            if not any(member in other for other in others):
                result.add(member)
        return result
    # Copy the first set, then remove the members of the others.
    for member in first.ordered():
        result.add(member)
    for other in others:
        for member in other.ordered():
            result.remove(member)
        if not len(result):
            break
    return result


def _store(ctx: Ctx, key: bytes, result: SetValue, event: bytes) -> Reply:
    """The STORE variants: replace key with the result, or delete it when it is empty."""
    if len(result):
        ctx.db.set(key, result, ctx.index)
        notify(ctx, SET, event, key)
    elif ctx.db.contains(key, ctx.now_ms):
        ctx.db.delete(key, ctx.index)
        notify(ctx, GENERIC, b"del", key)
    return len(result)


_INTER_COMPLEXITY: Final = (
    "O(N*M) worst case where N is the size of the smallest set and M the number of sets."
)
_UNION_COMPLEXITY: Final = "O(N) where N is the total number of members of all the sets."


@command(
    "sinter", -2, "readonly", (1, -1, 1), "read set slow", "set", "1.0.0",
    "Answers the members common to all the given sets.", _INTER_COMPLEXITY,
    tips="nondeterministic_output_order",
)  # fmt: skip
def sinter(ctx: Ctx, args: list[bytes]) -> Reply:
    return SetReply(_intersection(_lookup(ctx, args)))


_LIMIT: Final = valued("LIMIT", long_in_range(0, LONG_MAX, errors.LIMIT_IS_NEGATIVE))
_INTERCARD_OPTIONS: Final = ArgSpec(_LIMIT)


@command(
    "sintercard", -3, "readonly movablekeys", (0, 0, 0), "read set slow", "set", "7.0.0",
    "Answers how many members the given sets have in common (counting up to LIMIT).",
    _INTER_COMPLEXITY,
)  # fmt: skip
def sintercard(ctx: Ctx, args: list[bytes]) -> Reply:
    numkeys = parse_long_in_range(args[0], 1, LONG_MAX, errors.NUMKEYS_NOT_POSITIVE)
    if numkeys > len(args) - 1:
        raise CommandError(errors.NUMKEYS_OVER_ARGS)
    limit = _INTERCARD_OPTIONS.parse(args, 1 + numkeys).get(_LIMIT, 0)
    return len(_intersection(_lookup(ctx, args[1 : 1 + numkeys]), limit))


@command(
    "sinterstore", -3, "write denyoom", (1, -1, 1), "write set slow", "set", "1.0.0",
    "Stores the members common to the given sets at a key and answers how many there are.",
    _INTER_COMPLEXITY, key_flags="RW update|RO access",
)  # fmt: skip
def sinterstore(ctx: Ctx, args: list[bytes]) -> Reply:
    common = _intersection(_lookup(ctx, args[1:]))
    return _store(ctx, args[0], SetValue(common), b"sinterstore")


@command(
    "sunion", -2, "readonly", (1, -1, 1), "read set slow", "set", "1.0.0",
    "Answers the members of any of the given sets.", _UNION_COMPLEXITY,
    tips="nondeterministic_output_order",
)  # fmt: skip
def sunion(ctx: Ctx, args: list[bytes]) -> Reply:
    return SetReply(_union(_lookup(ctx, args)).ordered())


@command(
    "sunionstore", -3, "write denyoom", (1, -1, 1), "write set slow", "set", "1.0.0",
    "Stores the members of any of the given sets at a key and answers how many there are.",
    _UNION_COMPLEXITY, key_flags="OW update|RO access",
)  # fmt: skip
def sunionstore(ctx: Ctx, args: list[bytes]) -> Reply:
    return _store(ctx, args[0], _union(_lookup(ctx, args[1:])), b"sunionstore")


@command(
    "sdiff", -2, "readonly", (1, -1, 1), "read set slow", "set", "1.0.0",
    "Answers the members of the first set that are in none of the others.", _UNION_COMPLEXITY,
    tips="nondeterministic_output_order",
)  # fmt: skip
def sdiff(ctx: Ctx, args: list[bytes]) -> Reply:
    return SetReply(_difference(_lookup(ctx, args)).ordered())


@command(
    "sdiffstore", -3, "write denyoom", (1, -1, 1), "write set slow", "set", "1.0.0",
    "Stores the members of the first set that are in none of the others at a key and answers "
    "how many there are.", _UNION_COMPLEXITY, key_flags="OW update|RO access",
)  # fmt: skip
def sdiffstore(ctx: Ctx, args: list[bytes]) -> Reply:
    return _store(ctx, args[0], _difference(_lookup(ctx, args[1:])), b"sdiffstore")


# -- SSCAN ------------------------------------------------------------------------------------


@command(
    "sscan", -3, "readonly", (1, 1, 1), "read set slow", "set", "2.8.0",
    "Walks the members of a set a few at a time with a cursor (MATCH, COUNT).",
    "O(1) per call; O(N) for a whole walk of N members.", tips="nondeterministic_output",
)  # fmt: skip
def sscan(ctx: Ctx, args: list[bytes]) -> Reply:
    cursor = parse_cursor(args[1])
    value = get_set(ctx, args[0])
    if value is None:
        return [b"0", []]
    count, pattern, _ = parse_scan_options(args[2:])
    cursor, members = value.scan(cursor, count)
    if pattern is not None:
        members = [member for member in members if pattern.match(member)]
    return [b"%d" % cursor, members]
