"""Streams (Redis t_stream.c), introspection: XINFO STREAM [FULL [COUNT n]], XINFO GROUPS,
XINFO CONSUMERS, XINFO HELP.

``radix-tree-keys`` is the number of nodes, as Redis's; ``radix-tree-nodes`` counts the
nodes Redis's radix tree holds for those keys when built by insertions alone (after nodes
are removed, Redis's tree may keep nodes it no longer needs, and its count is higher).
"""

from __future__ import annotations

from typing import Final

from cacheshim.commands import Ctx, command, container
from cacheshim.commands.args import parse_int
from cacheshim.commands.argspec import option
from cacheshim.commands.connection import help_reply
from cacheshim.commands.streams import entry_reply
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError, text_from_bytes
from cacheshim.protocol.resp import Reply
from cacheshim.types.streamvalue import (
    ID_MAX,
    ID_MIN,
    INVALID_ENTRIES_READ,
    Group,
    Stream,
    StreamID,
    format_id,
)

_GROUP: Final = "stream"
_FULL_COUNT_DEFAULT: Final = 10

container("xinfo", -2, "", _GROUP, "5.0.0", "Answers what a stream, its groups and consumers hold.")


def _stream(ctx: Ctx, key: bytes) -> Stream:
    stream = ctx.db.get_typed(key, ctx.now_ms, Stream)
    if stream is None:
        raise CommandError(errors.NO_SUCH_KEY)
    return stream


def _syntax(subcommand: bytes) -> CommandError:
    return CommandError(errors.subcommand_syntax_error(b"xinfo", subcommand))


def radix_nodes(keys: list[bytes], depth: int = 0) -> int:
    """Nodes of Redis's radix tree (rax) holding keys (sorted, all 16 bytes) from depth on:
    a run of bytes the keys share is one compressed node, a byte where they part is a
    branching node, and each key ends in a node of its own; an empty tree is its root."""
    if not keys:
        return 1
    if depth == len(keys[0]):
        return 1
    first, last = keys[0], keys[-1]
    common = 0
    while depth + common < len(first) and first[depth + common] == last[depth + common]:
        common += 1
    if common:
        return 1 + radix_nodes(keys, depth + common)
    nodes = 1
    start = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i][depth] != keys[start][depth]:
            nodes += radix_nodes(keys[start:i], depth + 1)
            start = i
    return nodes


def _node_key(stream_id: StreamID) -> bytes:
    return stream_id[0].to_bytes(8, "big") + stream_id[1].to_bytes(8, "big")


def _entries_read(group: Group) -> Reply:
    return None if group.entries_read == INVALID_ENTRIES_READ else group.entries_read


@command(
    "stream", -3, "readonly", (2, 2, 1), "read stream slow", _GROUP, "5.0.0",
    "Answers what a stream holds (with FULL: its entries, groups, consumers and pending "
    "entries, up to COUNT of each).", container="xinfo", key_flags="RO access",
)  # fmt: skip
def xinfo_stream(ctx: Ctx, args: list[bytes]) -> Reply:
    options = args[1:]
    full = bool(options)
    count = _FULL_COUNT_DEFAULT
    if options:
        if len(options) not in (1, 3) or option(options[0]) != b"FULL":
            raise _syntax(b"STREAM")
        if len(options) == 3:
            if option(options[1]) != b"COUNT":
                raise _syntax(b"STREAM")
            count = parse_int(options[2])
            if count < 0:
                count = _FULL_COUNT_DEFAULT
    stream = _stream(ctx, args[0])
    node_keys = [_node_key(master) for master in stream.nodes]
    info: dict[Reply, Reply] = {
        b"length": len(stream),
        b"radix-tree-keys": len(node_keys),
        b"radix-tree-nodes": radix_nodes(node_keys),
        b"last-generated-id": format_id(stream.last_id),
        b"max-deleted-entry-id": format_id(stream.max_deleted_id),
        b"entries-added": stream.entries_added,
        b"recorded-first-entry-id": format_id(stream.first_id),
    }
    if not full:
        info[b"groups"] = len(stream.groups)
        first = next(stream.range(ID_MIN, ID_MAX), None)
        last = next(stream.range(ID_MIN, ID_MAX, reverse=True), None)
        info[b"first-entry"] = None if first is None else entry_reply(*first)
        info[b"last-entry"] = None if last is None else entry_reply(*last)
        return info
    entries: list[Reply] = []
    for stream_id, data in stream.range(ID_MIN, ID_MAX):
        entries.append(entry_reply(stream_id, data))
        if count and len(entries) == count:
            break
    info[b"entries"] = entries
    groups: list[Reply] = []
    for name, group in stream.sorted_groups():
        pending: list[Reply] = []
        for stream_id, nack in group.pel.items():
            if count and len(pending) >= count:
                break
            owner = b"" if nack.consumer is None else nack.consumer.name
            pending.append([format_id(stream_id), owner, nack.delivery_time,
                            nack.delivery_count])  # fmt: skip
        consumers: list[Reply] = []
        for consumer in group.sorted_consumers():
            mine: list[Reply] = []
            for stream_id, nack in consumer.pel.items():
                if count and len(mine) >= count:
                    break
                mine.append([format_id(stream_id), nack.delivery_time, nack.delivery_count])
            consumers.append({
                b"name": consumer.name, b"seen-time": consumer.seen_time,
                b"pel-count": len(consumer.pel), b"pending": mine,
            })  # fmt: skip
        groups.append({
            b"name": name, b"last-delivered-id": format_id(group.last_id),
            b"entries-read": _entries_read(group), b"lag": stream.lag(group),
            b"pel-count": len(group.pel), b"pending": pending, b"consumers": consumers,
        })  # fmt: skip
    info[b"groups"] = groups
    return info


@command(
    "groups", 3, "readonly", (2, 2, 1), "read stream slow", _GROUP, "5.0.0",
    "Answers the consumer groups of a stream.", container="xinfo", key_flags="RO access",
)  # fmt: skip
def xinfo_groups(ctx: Ctx, args: list[bytes]) -> Reply:
    stream = _stream(ctx, args[0])
    out: list[Reply] = []
    for name, group in stream.sorted_groups():
        out.append({
            b"name": name, b"consumers": len(group.consumers), b"pending": len(group.pel),
            b"last-delivered-id": format_id(group.last_id),
            b"entries-read": _entries_read(group), b"lag": stream.lag(group),
        })  # fmt: skip
    return out


@command(
    "consumers", 4, "readonly", (2, 2, 1), "read stream slow", _GROUP, "5.0.0",
    "Answers the consumers of a consumer group.", container="xinfo",
    tips="nondeterministic_output", key_flags="RO access",
)  # fmt: skip
def xinfo_consumers(ctx: Ctx, args: list[bytes]) -> Reply:
    stream = _stream(ctx, args[0])
    group = stream.groups.get(args[1])
    if group is None:
        raise CommandError(
            errors.STREAM_NOGROUP_FOR_KEY % (text_from_bytes(args[1]), text_from_bytes(args[0]))
        )
    now = ctx.now_ms
    return [
        {b"name": c.name, b"pending": len(c.pel), b"idle": max(now - c.seen_time, 0)}
        for c in group.sorted_consumers()
    ]


@command(
    "help", 2, "loading stale", (0, 0, 0), "stream slow", _GROUP, "5.0.0",
    "Lists the XINFO subcommands.", container="xinfo",
)  # fmt: skip
def xinfo_help(ctx: Ctx, args: list[bytes]) -> Reply:
    return help_reply(
        [
            "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CONSUMERS <key> <groupname>",
            "    The consumers of a group.",
            "GROUPS <key>",
            "    The consumer groups of a stream.",
            "STREAM <key> [FULL [COUNT <count>]",
            "    What the stream holds (FULL: with its entries and groups in detail).",
            "HELP",
            "    This text.",
        ]
    )
