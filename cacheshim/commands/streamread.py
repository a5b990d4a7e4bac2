"""Streams (Redis t_stream.c), reading: XREAD and XREADGROUP, with BLOCK.

XREAD without BLOCK is a read served from memory; with BLOCK it goes through the log
(`_xread_blocks`), like XREADGROUP always does (it changes its group), so that a client
that waits is part of the applied state on every shim and is served at apply, right after
the write that gives it entries, through whichever shim that write came (see
`cacheshim.blocking`). A waiting XREAD waits with "$" replaced by the last ID at the time
it blocked, and with the COUNT Redis uses for a served client (1000 if none was given).

Apply serves a waiting client by running its command again with `Ctx.serving_blocked` set
to the key that changed; the answer then holds that stream alone, as Redis 7.0 answers a
client blocked on several. A client waiting in XREADGROUP is answered with an error when
that stream is deleted or replaced by another type (UNBLOCKED) or when its group is
destroyed (NOGROUP), as in Redis 7.0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from cacheshim.blocking import would_block
from cacheshim.commands import Ctx, command
from cacheshim.commands.args import parse_int
from cacheshim.commands.argspec import option
from cacheshim.commands.streamgroups import consumer_or_new
from cacheshim.commands.streams import entry_reply, parse_strict_id
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError, text_from_bytes
from cacheshim.protocol.resp import NULL_ARRAY, Error, KeyedRows, Reply
from cacheshim.types.streamvalue import (
    ID_MAX,
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

# How many entries a blocked XREAD without COUNT gets when it is served (Redis's
# XREAD_BLOCKED_DEFAULT_COUNT).
BLOCKED_COUNT_DEFAULT: Final = 1000


@dataclass
class ReadArgs:
    timeout_ms: int | None = None  # None: no BLOCK
    count: int = 0
    group: bytes | None = None
    consumer: bytes = b""
    noack: bool = False
    keys: list[bytes] = field(default_factory=list)
    id_args: list[bytes] = field(default_factory=list)


def _block_ms(arg: bytes) -> int:
    try:
        value = parse_int(arg)
    except CommandError:
        raise CommandError(errors.STREAM_BLOCK_TIMEOUT_NOT_INTEGER) from None
    if value < 0:
        raise CommandError(errors.TIMEOUT_IS_NEGATIVE)
    return value


def parse_read_args(args: list[bytes], group_command: bool) -> ReadArgs:
    """XREAD/XREADGROUP's options (args after the name), checked in Redis's order."""
    parsed = ReadArgs()
    streams_at = -1
    i = 0
    while i < len(args):
        more = len(args) - i - 1
        word = option(args[i])
        if word == b"BLOCK" and more:
            parsed.timeout_ms = _block_ms(args[i + 1])
            i += 2
        elif word == b"COUNT" and more:
            parsed.count = max(parse_int(args[i + 1]), 0)
            i += 2
        elif word == b"STREAMS" and more:
            streams_at = i + 1
            if (len(args) - streams_at) % 2:
                raise CommandError(errors.STREAM_XREAD_UNBALANCED)
            break
        elif word == b"GROUP" and more >= 2:
            if not group_command:
                raise CommandError(errors.STREAM_GROUP_ONLY_XREADGROUP)
            parsed.group, parsed.consumer = args[i + 1], args[i + 2]
            i += 3
        elif word == b"NOACK":
            if not group_command:
                raise CommandError(errors.STREAM_NOACK_ONLY_XREADGROUP)
            parsed.noack = True
            i += 1
        else:
            raise CommandError(errors.SYNTAX_ERROR)
    if streams_at < 0:
        raise CommandError(errors.SYNTAX_ERROR)
    if group_command and parsed.group is None:
        raise CommandError(errors.STREAM_MISSING_GROUP)
    half = (len(args) - streams_at) // 2
    parsed.keys = args[streams_at : streams_at + half]
    parsed.id_args = args[streams_at + half :]
    return parsed


def _nogroup(key: bytes, group: bytes) -> CommandError:
    return CommandError(
        errors.STREAM_NOGROUP_XREADGROUP % (text_from_bytes(key), text_from_bytes(group))
    )


def _read(ctx: Ctx, args: list[bytes], group_command: bool, name: bytes) -> Reply:
    parsed = parse_read_args(args, group_command)
    if parsed.timeout_ms is not None and ctx.scripts is not None and ctx.scripts.running:
        raise CommandError(errors.STREAM_BLOCK_IN_SCRIPT % name.lower().decode())
    db = ctx.db
    now = ctx.now_ms
    woken_by = ctx.serving_blocked
    if woken_by is not None and parsed.group is not None:
        value = db.get(woken_by, now)
        if not isinstance(value, Stream):
            return Error(errors.STREAM_BLOCKED_KEY_GONE)
        if parsed.group not in value.groups:
            return Error(errors.STREAM_BLOCKED_GROUP_GONE)
    streams: list[Stream | None] = []
    groups: list[Group | None] = []
    ids: list[StreamID] = []
    for key, id_arg in zip(parsed.keys, parsed.id_args, strict=True):
        if woken_by is not None and key != woken_by:  # served for the key that woke it
            streams.append(None)
            groups.append(None)
            ids.append(ID_MIN)
            continue
        stream = db.get_typed(key, now, Stream)
        group = None
        if parsed.group is not None:
            group = None if stream is None else stream.groups.get(parsed.group)
            if group is None:
                raise _nogroup(key, parsed.group)
        streams.append(stream)
        groups.append(group)
        if id_arg == b"$":
            if group_command:
                raise CommandError(errors.STREAM_DOLLAR_IN_XREADGROUP)
            ids.append(ID_MIN if stream is None else stream.last_id)
        elif id_arg == b">":
            if not group_command:
                raise CommandError(errors.STREAM_GT_ONLY_XREADGROUP)
            ids.append(ID_MAX)
        else:
            ids.append(parse_strict_id(id_arg))
    served: list[tuple[Reply, Reply]] = []
    for key, stream, group, after in zip(parsed.keys, streams, groups, ids, strict=True):
        if stream is None or (woken_by is not None and key != woken_by):
            continue
        history = False
        if group is not None:
            if after != ID_MAX:
                history = True
            else:
                top = stream.last_live_id()
                if top is None or top <= group.last_id:
                    continue
                after = group.last_id
        else:
            top = stream.last_live_id()
            if top is None or top <= after:
                continue
        consumer = None
        if group is not None:
            consumer = consumer_or_new(ctx, group, parsed.consumer, key, now)
        start = incr_id(after) or ID_MAX
        if group is not None and consumer is not None and history:
            entries = _from_consumer_pel(stream, consumer, start, parsed.count, now)
        else:
            entries = _from_stream(stream, start, parsed.count, group, consumer, parsed.noack, now)
        served.append((key, entries))
    if served:
        return KeyedRows(served)
    if parsed.timeout_ms is None:
        return NULL_ARRAY
    if ctx.in_transaction or ctx.index == 0:
        return NULL_ARRAY  # may not block (MULTI/EXEC)
    waits_as: list[bytes] = [name, b"COUNT", b"%d" % (parsed.count or BLOCKED_COUNT_DEFAULT)]
    waits_as += [b"BLOCK", b"%d" % parsed.timeout_ms]
    if parsed.group is not None:
        waits_as += [b"GROUP", parsed.group, parsed.consumer]
    if parsed.noack:
        waits_as.append(b"NOACK")
    waits_as.append(b"STREAMS")
    waits_as += parsed.keys
    waits_as += [b">" if group_command and i == ID_MAX else format_id(i) for i in ids]
    if group_command:  # history reads never block: only ">" gets here
        waits_as[-len(ids) :] = parsed.id_args
    return would_block(parsed.keys, Stream, parsed.timeout_ms, waits_as)


def _from_stream(
    stream: Stream, start: StreamID, count: int, group: Group | None,
    consumer: Consumer | None, noack: bool, now: int,
) -> list[Reply]:  # fmt: skip
    """streamReplyWithRange from start on: with a group, each entry past its last ID moves
    it (and entries_read) and, unless NOACK, becomes pending for the consumer."""
    out: list[Reply] = []
    for stream_id, data in stream.range(start, ID_MAX):
        if group is not None and stream_id > group.last_id:
            if group.entries_read != INVALID_ENTRIES_READ and not stream.has_tombstones(stream_id):
                group.entries_read += 1
            elif stream.entries_added:
                group.entries_read = stream.estimate_entries_read(stream_id)
            group.last_id = stream_id
        out.append(entry_reply(stream_id, data))
        if group is not None and consumer is not None and not noack:
            nack = group.pel.get(stream_id)
            if nack is None:
                nack = Nack(consumer, now)
                group.pel[stream_id] = nack
                consumer.pel[stream_id] = nack
            else:
                group.give(stream_id, nack, consumer)
                nack.delivery_time = now
                nack.delivery_count = 1
        if count and len(out) == count:
            break
    return out


def _from_consumer_pel(
    stream: Stream, consumer: Consumer, start: StreamID, count: int, now: int
) -> list[Reply]:
    """A consumer's history: its pending entries from start on, each delivered again (an
    entry deleted since shows with a null body)."""
    out: list[Reply] = []
    for stream_id in list(consumer.pel.irange(start, None)):
        if count and len(out) >= count:
            break
        data = stream.entries.get(stream_id)
        if data is None:
            out.append([format_id(stream_id), NULL_ARRAY])
        else:
            out.append(entry_reply(stream_id, data))
            nack = consumer.pel[stream_id]
            nack.delivery_time = now
            nack.delivery_count += 1
    return out


def _xread_blocks(scripts: object, args: list[bytes]) -> bool:
    """XREAD goes through the log only with BLOCK (the option list ends at STREAMS)."""
    for arg in args[1:]:
        word = option(arg)
        if word == b"STREAMS":
            return False
        if word == b"BLOCK":
            return True
    return False


def _xread_is_read(scripts: object, args: list[bytes]) -> bool:
    return not _xread_blocks(scripts, args)


@command(
    "xread", -4, "readonly blocking movablekeys", (0, 0, 0), "read stream slow blocking",
    "stream", "5.0.0",
    "Answers the entries of one or more streams after the given IDs; with BLOCK, waits for "
    "entries when there are none.",
    "For each stream mentioned: O(N) with N being the number of elements being returned, it "
    "means that XREAD-ing with a fixed COUNT is O(1). Note that when the BLOCK option is "
    "used, XADD will pay O(M) time in order to serve the M clients blocked on the stream "
    "getting new data.", key_flags="RO access", logged=True, local_when=_xread_is_read,
)  # fmt: skip
def xread(ctx: Ctx, args: list[bytes]) -> Reply:
    return _read(ctx, args, group_command=False, name=b"XREAD")


@command(
    "xreadgroup", -7, "write blocking movablekeys", (0, 0, 0), "write stream slow blocking",
    "stream", "5.0.0",
    "Reads entries of streams for a consumer of a group (new ones with >, its pending ones "
    "otherwise), making them pending unless NOACK; with BLOCK, waits for new entries.",
    "For each stream mentioned: O(M) with M the number of elements returned. If M is "
    "constant (e.g. always asking for the first 10 elements with COUNT), you can consider "
    "it O(1). On the other side when XREADGROUP blocks, XADD will pay the O(N) time in order "
    "to serve the N clients blocked on the stream getting new data.", key_flags="RO access",
)  # fmt: skip
def xreadgroup(ctx: Ctx, args: list[bytes]) -> Reply:
    return _read(ctx, args, group_command=True, name=b"XREADGROUP")
