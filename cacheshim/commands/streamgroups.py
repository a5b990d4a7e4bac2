"""Streams (Redis t_stream.c), consumer groups: XGROUP and its subcommands, XACK, XPENDING,
XCLAIM, XAUTOCLAIM. Reading as a group member (XREADGROUP) is in `streamread`, XINFO in
`streaminfo`.

Times: delivery times and consumers' seen times are written inside apply with the
record's time (`ctx.now_ms`), so every shim holds the same ones; idle times a read reports
(XPENDING) are measured from them by the shim's clock, as Redis measures from its own.
"""

from __future__ import annotations

from typing import Final

from cacheshim.commands import Ctx, command, container
from cacheshim.commands.args import LONG_MAX, parse_int, parse_long_in_range
from cacheshim.commands.argspec import option
from cacheshim.commands.connection import help_reply
from cacheshim.commands.streams import (
    entry_reply,
    parse_id,
    parse_interval,
    parse_range,
    parse_strict_id,
    stream_of,
)
from cacheshim.notify import STREAM, notify
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError, text_from_bytes
from cacheshim.protocol.resp import NULL_ARRAY, OK, Reply
from cacheshim.types.streamvalue import (
    ID_MIN,
    INVALID_ENTRIES_READ,
    Consumer,
    Group,
    Nack,
    Stream,
    StreamID,
    format_id,
    incr_id,
)

_GROUP: Final = "stream"
# XAUTOCLAIM looks at up to this many PEL entries per entry it may claim.
_ATTEMPTS_FACTOR: Final = 10


def _text(data: bytes) -> str:
    return text_from_bytes(data.split(b"\0", 1)[0])


def _nogroup(key: bytes, group: bytes) -> CommandError:
    return CommandError(errors.STREAM_NOGROUP % (_text(key), _text(group)))


def _syntax(subcommand: str) -> CommandError:
    return CommandError(errors.subcommand_syntax_error(b"xgroup", subcommand.encode()))


# -- XGROUP -----------------------------------------------------------------------------------

container("xgroup", -2, "", _GROUP, "5.0.0", "Creates and manages the consumer groups of a stream.")


def _xgroup_target(
    ctx: Ctx, args: list[bytes], subcommand: str, mkstream: bool = False
) -> tuple[Stream | None, Group | None]:
    """What every XGROUP subcommand with a key checks first (in Redis's order): the key's
    type, that the stream exists (unless MKSTREAM), that the group exists (but for CREATE
    and DESTROY)."""
    stream = stream_of(ctx.db, args[0], ctx.now_ms)
    group = None
    if not mkstream:
        if stream is None:
            raise CommandError(errors.STREAM_XGROUP_NEEDS_KEY)
        group = stream.groups.get(args[1])
        if group is None and subcommand in ("SETID", "CREATECONSUMER", "DELCONSUMER"):
            raise CommandError(errors.STREAM_NOGROUP_FOR_KEY % (_text(args[1]), _text(args[0])))
    return stream, group


def _entries_read(arg: bytes) -> int:
    value = parse_int(arg)
    if value < 0 and value != INVALID_ENTRIES_READ:
        raise CommandError(errors.STREAM_ENTRIESREAD_NEGATIVE)
    return value


def _group_options(args: list[bytes], subcommand: str) -> tuple[bool, int]:
    """XGROUP CREATE/SETID's options after key, group and ID: MKSTREAM (CREATE only),
    ENTRIESREAD n."""
    mkstream = False
    entries_read = INVALID_ENTRIES_READ
    i = 3
    while i < len(args):
        word = option(args[i])
        if subcommand == "CREATE" and word == b"MKSTREAM":
            mkstream = True
            i += 1
        elif word == b"ENTRIESREAD" and i + 1 < len(args):
            entries_read = _entries_read(args[i + 1])
            i += 2
        else:
            raise _syntax(subcommand)
    return mkstream, entries_read


@command(
    "create", -5, "write denyoom", (2, 2, 1), "write stream slow", _GROUP, "5.0.0",
    "Creates a consumer group of a stream (and the stream, with MKSTREAM).",
    container="xgroup", key_flags="RW insert",
)  # fmt: skip
def xgroup_create(ctx: Ctx, args: list[bytes]) -> Reply:
    mkstream, entries_read = _group_options(args, "CREATE")
    stream, _ = _xgroup_target(ctx, args, "CREATE", mkstream)
    if len(args) > 6:
        raise _syntax("CREATE")
    if args[2] == b"$":
        last = ID_MIN if stream is None else stream.last_id
    else:
        last = parse_strict_id(args[2])
    if stream is None:
        stream = Stream()
        ctx.db.set(args[0], stream, ctx.index)
    if args[1] in stream.groups:
        raise CommandError(errors.STREAM_BUSYGROUP)
    stream.groups[args[1]] = Group(last, entries_read)
    notify(ctx, STREAM, b"xgroup-create", args[0])
    return OK


@command(
    "setid", -5, "write", (2, 2, 1), "write stream slow", _GROUP, "5.0.0",
    "Sets the last delivered ID (and entries-read counter) of a consumer group.",
    container="xgroup", key_flags="RW update",
)  # fmt: skip
def xgroup_setid(ctx: Ctx, args: list[bytes]) -> Reply:
    _, entries_read = _group_options(args, "SETID")
    stream, group = _xgroup_target(ctx, args, "SETID")
    assert stream is not None and group is not None
    if len(args) not in (3, 5):
        raise _syntax("SETID")
    new_id = stream.last_id if args[2] == b"$" else parse_id(args[2])[0]
    group.last_id = new_id
    group.entries_read = entries_read
    notify(ctx, STREAM, b"xgroup-setid", args[0])
    return OK


@command(
    "destroy", 4, "write", (2, 2, 1), "write stream slow", _GROUP, "5.0.0",
    "Deletes a consumer group; answers 1, or 0 if there was none.",
    "O(N) where N is the number of entries in the group's pending entries list (PEL).",
    container="xgroup", key_flags="RW delete",
)  # fmt: skip
def xgroup_destroy(ctx: Ctx, args: list[bytes]) -> Reply:
    stream, group = _xgroup_target(ctx, args, "DESTROY")
    assert stream is not None
    if group is None:
        return 0
    del stream.groups[args[1]]
    notify(ctx, STREAM, b"xgroup-destroy", args[0])
    ctx.db.signal_ready(args[0])  # its waiting readers hear it is gone
    return 1


@command(
    "createconsumer", 5, "write denyoom", (2, 2, 1), "write stream slow", _GROUP, "6.2.0",
    "Creates a consumer in a consumer group; answers 1, or 0 if it existed.",
    container="xgroup", key_flags="RW insert",
)  # fmt: skip
def xgroup_createconsumer(ctx: Ctx, args: list[bytes]) -> Reply:
    _, group = _xgroup_target(ctx, args, "CREATECONSUMER")
    assert group is not None
    if group.create_consumer(args[2], ctx.now_ms) is None:
        return 0
    notify(ctx, STREAM, b"xgroup-createconsumer", args[0])
    return 1


@command(
    "delconsumer", 5, "write", (2, 2, 1), "write stream slow", _GROUP, "5.0.0",
    "Deletes a consumer of a consumer group, with its pending entries; answers how many it "
    "had.", container="xgroup", key_flags="RW delete",
)  # fmt: skip
def xgroup_delconsumer(ctx: Ctx, args: list[bytes]) -> Reply:
    _, group = _xgroup_target(ctx, args, "DELCONSUMER")
    assert group is not None
    consumer = group.consumer(args[2], ctx.now_ms, refresh=False)
    if consumer is None:
        return 0
    pending = len(consumer.pel)
    group.delete_consumer(consumer)
    notify(ctx, STREAM, b"xgroup-delconsumer", args[0])
    return pending


@command(
    "help", 2, "loading stale", (0, 0, 0), "stream slow", _GROUP, "5.0.0",
    "Lists the XGROUP subcommands.", container="xgroup",
)  # fmt: skip
def xgroup_help(ctx: Ctx, args: list[bytes]) -> Reply:
    return help_reply(
        [
            "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CREATE <key> <groupname> <id|$> [option]",
            "    Make a consumer group that starts after <id> ($: the stream's last ID).",
            "    MKSTREAM makes an empty stream if there is none; ENTRIESREAD <n> sets the",
            "    group's count of entries read.",
            "CREATECONSUMER <key> <groupname> <consumer>",
            "    Add a consumer to a group.",
            "DELCONSUMER <key> <groupname> <consumer>",
            "    Remove a consumer and its pending entries.",
            "DESTROY <key> <groupname>",
            "    Remove a group.",
            "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
            "    Move a group's last delivered ID (and set its count of entries read).",
            "HELP",
            "    This text.",
        ]
    )


# -- XACK, XPENDING ---------------------------------------------------------------------------


def consumer_or_new(ctx: Ctx, group: Group, name: bytes, key: bytes, now_ms: int) -> Consumer:
    """The group's consumer of that name, created (with its event) when there is none."""
    found = group.consumer(name, now_ms)
    if found is None:
        found = group.consumer_or_new(name, now_ms)
        notify(ctx, STREAM, b"xgroup-createconsumer", key)
    return found


def _group_of(ctx: Ctx, key: bytes, name: bytes) -> tuple[Stream | None, Group | None]:
    stream = stream_of(ctx.db, key, ctx.now_ms)
    return stream, None if stream is None else stream.groups.get(name)


@command(
    "xack", -4, "write fast", (1, 1, 1), "write stream fast", _GROUP, "5.0.0",
    "Acknowledges entries of a consumer group (they leave its pending list); answers how "
    "many were pending.", "O(1) for each message ID processed.", key_flags="RW update",
)  # fmt: skip
def xack(ctx: Ctx, args: list[bytes]) -> Reply:
    _, group = _group_of(ctx, args[0], args[1])
    if group is None:
        return 0
    ids = [parse_strict_id(arg) for arg in args[2:]]
    return sum(1 for stream_id in ids if group.remove_nack(stream_id))


@command(
    "xpending", -3, "readonly", (1, 1, 1), "read stream slow", _GROUP, "5.0.0",
    "Answers a summary of a consumer group's pending entries, or those in an ID range (of "
    "one consumer, idle for at least IDLE ms).", "O(N) with N being the number of elements "
    "returned, so asking for a small fixed number of entries per call is O(1). O(M), where M "
    "is the total number of entries scanned when used with the IDLE filter. When the command "
    "returns just the summary and the list of consumers is small, it runs in O(1) time; "
    "otherwise, an additional O(N) time for iterating every consumer.",
    tips="nondeterministic_output", key_flags="RO access",
)  # fmt: skip
def xpending(ctx: Ctx, args: list[bytes]) -> Reply:
    argc = len(args) + 1
    if argc != 3 and not 6 <= argc <= 9:
        raise CommandError(errors.SYNTAX_ERROR)
    min_idle = 0
    count = 0
    consumer_name: bytes | None = None
    start = end = ID_MIN
    if argc >= 6:
        at = 2
        if option(args[2]) == b"IDLE":
            min_idle = parse_int(args[3])
            if argc < 8:
                raise CommandError(errors.SYNTAX_ERROR)
            at += 2
        count = max(parse_int(args[at + 2]), 0)
        bounds = parse_range(args[at], args[at + 1])
        assert bounds is not None
        start, end = bounds
        if at + 3 < len(args):
            consumer_name = args[at + 3]
    _, group = _group_of(ctx, args[0], args[1])
    if group is None:
        raise _nogroup(args[0], args[1])
    if argc == 3:
        if not group.pel:
            return [0, None, None, NULL_ARRAY]
        owners = [[c.name, b"%d" % len(c.pel)] for c in group.sorted_consumers() if c.pel]
        return [
            len(group.pel), format_id(group.pel.peekitem(0)[0]),
            format_id(group.pel.peekitem(-1)[0]), owners,
        ]  # fmt: skip
    pel = group.pel
    if consumer_name is not None:
        consumer = group.consumer(consumer_name, ctx.now_ms, refresh=False)
        if consumer is None:
            return []
        pel = consumer.pel
    now = ctx.now_ms
    out: list[Reply] = []
    if not count or start > end:
        return out
    for stream_id in pel.irange(start, end):
        nack: Nack = pel[stream_id]
        if min_idle and now - nack.delivery_time < min_idle:
            continue
        owner = b"" if nack.consumer is None else nack.consumer.name
        out.append([format_id(stream_id), owner, max(now - nack.delivery_time, 0),
                    nack.delivery_count])  # fmt: skip
        if len(out) == count:
            break
    return out


# -- XCLAIM, XAUTOCLAIM -----------------------------------------------------------------------


def _long(arg: bytes, message: str) -> int:
    try:
        return parse_int(arg)
    except CommandError:
        raise CommandError(message) from None


@command(
    "xclaim", -6, "write fast", (1, 1, 1), "write stream fast", _GROUP, "5.0.0",
    "Gives pending entries idle for at least min-idle-time ms to another consumer of the "
    "group; answers them (or their IDs with JUSTID).", "O(log N) with N being the number of "
    "messages in the PEL of the consumer group.", tips="nondeterministic_output",
    key_flags="RW update",
)  # fmt: skip
def xclaim(ctx: Ctx, args: list[bytes]) -> Reply:
    stream, group = _group_of(ctx, args[0], args[1])
    if stream is None or group is None:
        raise _nogroup(args[0], args[1])
    min_idle = max(_long(args[3], errors.STREAM_XCLAIM_MIN_IDLE), 0)
    ids: list[StreamID] = []
    j = 4
    while j < len(args):
        try:
            ids.append(parse_strict_id(args[j]))
        except CommandError:
            break
        j += 1
    now = ctx.now_ms
    force = justid = False
    delivery_time = -1
    retry_count = -1
    last_id = ID_MIN
    while j < len(args):
        more = len(args) - 1 - j
        word = option(args[j])
        if word == b"FORCE":
            force = True
        elif word == b"JUSTID":
            justid = True
        elif word == b"IDLE" and more:
            j += 1
            delivery_time = now - _long(args[j], errors.STREAM_XCLAIM_IDLE)
        elif word == b"TIME" and more:
            j += 1
            delivery_time = _long(args[j], errors.STREAM_XCLAIM_TIME)
        elif word == b"RETRYCOUNT" and more:
            j += 1
            retry_count = _long(args[j], errors.STREAM_XCLAIM_RETRYCOUNT)
        elif word == b"LASTID" and more:
            j += 1
            last_id = parse_strict_id(args[j])
        else:
            raise CommandError(errors.STREAM_XCLAIM_UNKNOWN_OPTION % _text(args[j]))
        j += 1
    if last_id > group.last_id:
        group.last_id = last_id
    if delivery_time == -1 or delivery_time < 0 or delivery_time > now:
        delivery_time = now
    consumer = None
    out: list[Reply] = []
    for stream_id in ids:
        nack = group.pel.get(stream_id)
        data = stream.entries.get(stream_id)
        if data is None:  # the entry is gone: so is its pending entry
            if nack is not None:
                group.remove_nack(stream_id)
            continue
        if force and nack is None:
            nack = group.pel[stream_id] = Nack(None, now)
        if nack is None:
            continue
        if nack.consumer is not None and min_idle and now - nack.delivery_time < min_idle:
            continue
        if consumer is None:
            consumer = consumer_or_new(ctx, group, args[2], args[0], now)
        group.give(stream_id, nack, consumer)
        nack.delivery_time = delivery_time
        if retry_count >= 0:
            nack.delivery_count = retry_count
        elif not justid:
            nack.delivery_count += 1
        out.append(format_id(stream_id) if justid else entry_reply(stream_id, data))
    return out


@command(
    "xautoclaim", -6, "write fast", (1, 1, 1), "write stream fast", _GROUP, "6.2.0",
    "Gives the group's pending entries idle for at least min-idle-time ms, from an ID on, "
    "to another consumer; answers the next ID to scan from, the entries claimed and the IDs "
    "of pending entries whose entry is gone.", "O(1) if COUNT is small.",
    tips="nondeterministic_output", key_flags="RW delete",
)  # fmt: skip
def xautoclaim(ctx: Ctx, args: list[bytes]) -> Reply:
    min_idle = max(_long(args[3], errors.STREAM_XAUTOCLAIM_MIN_IDLE), 0)
    start, start_ex = parse_interval(args[4], 0)
    if start_ex:
        moved = incr_id(start)
        if moved is None:
            raise CommandError(errors.STREAM_INVALID_START)
        start = moved
    count = 100
    justid = False
    j = 5
    while j < len(args):
        word = option(args[j])
        if word == b"COUNT" and len(args) - 1 - j:
            count = parse_long_in_range(
                args[j + 1], 1, LONG_MAX // 16, errors.STREAM_XAUTOCLAIM_COUNT
            )
            j += 1
        elif word == b"JUSTID":
            justid = True
        else:
            raise CommandError(errors.SYNTAX_ERROR)
        j += 1
    stream, group = _group_of(ctx, args[0], args[1])
    if stream is None or group is None:
        raise _nogroup(args[0], args[1])
    now = ctx.now_ms
    attempts = count * _ATTEMPTS_FACTOR
    pel = group.pel
    consumer = None
    claimed: list[Reply] = []
    gone: list[Reply] = []
    cursor = start
    last_seen: StreamID | None = None
    while attempts and count:
        attempts -= 1
        at = pel.bisect_left(cursor)
        if at >= len(pel):
            last_seen = None
            break
        stream_id, nack = pel.peekitem(at)
        last_seen = stream_id
        data = stream.entries.get(stream_id)
        if data is None:
            group.remove_nack(stream_id)
            gone.append(format_id(stream_id))
            count -= 1
            cursor = stream_id
            continue
        cursor = incr_id(stream_id) or stream_id
        if min_idle and now - nack.delivery_time < min_idle:
            if cursor == stream_id:
                break
            continue
        if consumer is None:
            consumer = consumer_or_new(ctx, group, args[2], args[0], now)
        group.give(stream_id, nack, consumer)
        nack.delivery_time = now
        if not justid:
            nack.delivery_count += 1
        claimed.append(format_id(stream_id) if justid else entry_reply(stream_id, data))
        count -= 1
    next_id = ID_MIN
    if last_seen is not None:
        at = pel.bisect_right(last_seen)
        if at < len(pel):
            next_id = pel.peekitem(at)[0]
    return [format_id(next_id), claimed, gone]
