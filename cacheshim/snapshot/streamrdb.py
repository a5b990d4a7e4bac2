"""Streams in RDB files: Redis 7.0's RDB_TYPE_STREAM_LISTPACKS_2 written, and read back with
Redis 5-6's STREAM_LISTPACKS and 7.2's STREAM_LISTPACKS_3 (see docs/snapshot-format.md).

The value, after the key: the number of nodes; each node as its 16-byte master ID (two
big-endian 64-bit numbers) and its listpack; then the stream's length, last ID, first ID,
largest deleted ID and entries-added count (lengths), and the groups: each with its name,
last delivered ID, entries-read counter, its PEL (16-byte ID, delivery time as 8 bytes
little-endian, delivery count) and its consumers (name, seen time, then the IDs of its
pending entries, which point into the group's PEL).

A node's listpack is laid out as Redis lays it out (`cacheshim.types.streamvalue` keeps
each node's entries, deleted ones included, with their flags): a master entry (live count,
deleted count, the master fields, a 0), then per entry its flags, its ID as differences
from the master ID, its fields unless they are the master's, its values, and the number
of listpack elements it took. So the file is the one Redis would write for the same
history, and reading it rebuilds the same nodes, which decide what later trims remove.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable
from typing import Final

from cacheshim.snapshot import packed
from cacheshim.types.streamvalue import (
    FLAG_DELETED,
    FLAG_SAMEFIELDS,
    ID_MIN,
    INVALID_ENTRIES_READ,
    U64_MAX,
    Consumer,
    Group,
    Item,
    Nack,
    Node,
    Stream,
    StreamID,
)

T_STREAM_LISTPACKS: Final = 15
T_STREAM_LISTPACKS_2: Final = 19
T_STREAM_LISTPACKS_3: Final = 21

_ID: Final = struct.Struct(">QQ")
_I64: Final = struct.Struct("<q")


class StreamFormatError(ValueError):
    pass


def _int(number: int) -> bytes:
    return packed.listpack_entry(b"%d" % number)


def _signed(number: int) -> int:
    number &= U64_MAX
    return number - 2**64 if number >= 2**63 else number


def node_listpack(node: Node) -> bytes:
    entries = [_int(node.count), _int(node.deleted), _int(len(node.fields))]
    entries += [packed.listpack_entry(f) for f in node.fields]
    entries.append(_int(0))
    master_ms, master_seq = node.master
    for item in node.items:
        data = item.data
        fields = len(data) // 2
        entries.append(_int(item.flags))
        entries.append(_int(_signed(item.id[0] - master_ms)))
        entries.append(_int(_signed(item.id[1] - master_seq)))
        if item.flags & FLAG_SAMEFIELDS:
            entries += [packed.listpack_entry(v) for v in data[1::2]]
            entries.append(_int(fields + 3))
        else:
            entries.append(_int(fields))
            entries += [packed.listpack_entry(x) for x in data]
            entries.append(_int(2 * fields + 4))
    return packed.join_listpack(entries)


def encode_stream(
    value: Stream, encode_length: Callable[[int], bytes], encode_blob: Callable[[bytes], bytes]
) -> bytes:
    parts = [encode_length(len(value.nodes))]
    for master, node in value.nodes.items():
        parts.append(encode_blob(_ID.pack(*master)))
        parts.append(encode_blob(node_listpack(node)))
    parts.append(encode_length(len(value)))
    for number in (*value.last_id, *value.first_id, *value.max_deleted_id, value.entries_added):
        parts.append(encode_length(number))
    parts.append(encode_length(len(value.groups)))
    for name, group in value.sorted_groups():
        parts.append(encode_blob(name))
        parts.append(encode_length(group.last_id[0]))
        parts.append(encode_length(group.last_id[1]))
        parts.append(encode_length(group.entries_read & U64_MAX))
        parts.append(encode_length(len(group.pel)))
        for stream_id, nack in group.pel.items():
            parts.append(_ID.pack(*stream_id) + _I64.pack(nack.delivery_time))
            parts.append(encode_length(nack.delivery_count))
        consumers = group.sorted_consumers()
        parts.append(encode_length(len(consumers)))
        for consumer in consumers:
            parts.append(encode_blob(consumer.name))
            parts.append(_I64.pack(consumer.seen_time))
            parts.append(encode_length(len(consumer.pel)))
            parts += [_ID.pack(*stream_id) for stream_id in consumer.pel]
    return b"".join(parts)


def _read_node(key: bytes, blob: bytes) -> Node:
    if len(key) != 16:
        raise StreamFormatError("a stream node key that is not 16 bytes")
    master: StreamID = _ID.unpack(key)
    items = packed.decode_listpack(blob)
    if not items:
        raise StreamFormatError("an empty stream node")
    at = 0

    def number() -> int:
        nonlocal at
        if at >= len(items):
            raise StreamFormatError("a stream node that ends early")
        value = int(items[at])
        at += 1
        return value

    count, deleted, field_count = number(), number(), number()
    if field_count < 0 or at + field_count > len(items):
        raise StreamFormatError("a stream node's master fields run past its end")
    fields = tuple(items[at : at + field_count])
    at += field_count
    if number() != 0:
        raise StreamFormatError("a stream node's master entry is not terminated")
    node = Node(master, fields)
    for _ in range(count + deleted):
        flags = number()
        stream_id = ((master[0] + number()) & U64_MAX, (master[1] + number()) & U64_MAX)
        if flags & FLAG_SAMEFIELDS:
            values = items[at : at + field_count]
            if len(values) != field_count:
                raise StreamFormatError("a stream entry runs past its node")
            at += field_count
            data = tuple(x for pair in zip(fields, values, strict=True) for x in pair)
        else:
            own = number()
            if own < 0 or at + 2 * own > len(items):
                raise StreamFormatError("a stream entry runs past its node")
            data = tuple(items[at : at + 2 * own])
            at += 2 * own
        number()  # the entry's element count
        if node.items and stream_id <= node.items[-1].id:
            raise StreamFormatError("stream entries out of order in a node")
        node.add(Item(stream_id, data, flags & (FLAG_DELETED | FLAG_SAMEFIELDS)))
    if at != len(items) or node.count != count or node.deleted != deleted:
        raise StreamFormatError("a stream node whose counts do not match its entries")
    return node


class _Reader:
    """What the RDB reader gives this module: its length, string and raw-bytes readers."""

    def __init__(
        self, length: Callable[[], int], string: Callable[[], bytes], take: Callable[[int], bytes]
    ) -> None:
        self.length = length
        self.string = string
        self.take = take

    def stream_id(self) -> StreamID:
        return self.length(), self.length()

    def raw_id(self) -> StreamID:
        found: StreamID = _ID.unpack(self.take(16))
        return found

    def millis(self) -> int:
        found: int = _I64.unpack(self.take(8))[0]
        return found


def read_stream(
    kind: int, length: Callable[[], int], string: Callable[[], bytes], take: Callable[[int], bytes]
) -> Stream:
    src = _Reader(length, string, take)
    nodes: list[Node] = []
    for _ in range(src.length()):
        key = src.string()
        nodes.append(_read_node(key, src.string()))
    for earlier, later in itertools.pairwise(nodes):
        if later.master <= earlier.items[-1].id:
            raise StreamFormatError("stream nodes out of order")
    stream = Stream.from_nodes(nodes)
    if src.length() != len(stream):
        raise StreamFormatError("a stream whose length does not match its entries")
    stream.last_id = src.stream_id()
    if kind == T_STREAM_LISTPACKS:
        stream.entries_added = len(stream)
        stream.refresh_first_id()
    else:
        stream.first_id = src.stream_id()
        stream.max_deleted_id = src.stream_id()
        stream.entries_added = src.length()
    for _ in range(src.length()):
        name = src.string()
        if name in stream.groups:
            raise StreamFormatError("a stream with two groups of one name")
        last_id = src.stream_id()
        if kind == T_STREAM_LISTPACKS:
            entries_read = stream.estimate_entries_read(last_id)
        else:
            entries_read = src.length()
            if entries_read == U64_MAX:
                entries_read = INVALID_ENTRIES_READ
        group = stream.groups[name] = Group(last_id, entries_read)
        for _ in range(src.length()):
            stream_id = src.raw_id()
            delivery_time = src.millis()
            if stream_id in group.pel:
                raise StreamFormatError("a group's PEL lists an ID twice")
            group.pel[stream_id] = Nack(None, delivery_time, src.length())
        for _ in range(src.length()):
            cname = src.string()
            if cname in group.consumers:
                raise StreamFormatError("a group with two consumers of one name")
            consumer = group.consumers[cname] = Consumer(cname, src.millis())
            if kind == T_STREAM_LISTPACKS_3:
                src.millis()  # 7.2's active time: 7.0 has none
            for _ in range(src.length()):
                stream_id = src.raw_id()
                nack = group.pel.get(stream_id)
                if nack is None or nack.consumer is not None:
                    raise StreamFormatError("a consumer's pending entry is not its group's")
                nack.consumer = consumer
                consumer.pel[stream_id] = nack
        if any(nack.consumer is None for nack in group.pel.values()):
            raise StreamFormatError("a pending entry that no consumer holds")
    if not stream.entries and stream.first_id != ID_MIN and kind == T_STREAM_LISTPACKS:
        stream.first_id = ID_MIN
    return stream
