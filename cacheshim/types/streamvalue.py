"""The stream type's value (the data side of Redis's t_stream.c): entries by ID, the node
layout Redis would give them, and the consumer groups.

Entries: a `SortedDict` from ID, a ``(ms, seq)`` pair of unsigned 64-bit numbers, to the
entry's field-value pairs as one flat tuple, so lookups, ranges in either direction and the
edges are O(log n). Only live entries are there.

Nodes: Redis keeps a stream as a radix tree of listpack nodes, each up to
``stream-node-max-entries`` entries and ``stream-node-max-bytes`` bytes, and an entry
deleted by XDEL or an exact trim stays in its node, flagged, until the whole node goes. The
node layout decides what ``MAXLEN ~``/``MINID ~`` trim (whole nodes only) and what LIMIT
allows, so it is kept here as Redis keeps it: each `Node` holds its entries, the deleted
ones too, with the flags and the byte size of the listpack Redis would hold. Then an
RDB export writes the same listpacks Redis would write, and an import rebuilds the layout
exactly (`Stream.from_nodes`).

Groups: a `Group` has its last delivered ID, its entries-read counter, its pending entries
list (PEL: ID -> `Nack`, sorted) and its consumers, each with its own PEL sharing the same
`Nack` objects, as in Redis. Names are listed in byte order (Redis's radix tree order).

Time: every time stored here (delivery times, consumers' seen times) is given by the
caller; inside apply it is the record's time, so every shim holds the same values.

Over 500 lines: the entries, the node layout they must follow and the groups are one value
whose parts change together (a trim walks nodes and entries; a copy takes all three).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final

from sortedcontainers import SortedDict  # type: ignore[import-untyped]

from cacheshim.types.keyspace import ValueKind, register_kind, string_as_int

__all__ = [
    "ID_MAX",
    "ID_MIN",
    "INVALID_ENTRIES_READ",
    "Consumer",
    "Group",
    "Nack",
    "Node",
    "Stream",
    "StreamID",
    "decr_id",
    "format_id",
    "incr_id",
]

U64_MAX: Final = 2**64 - 1
StreamID = tuple[int, int]
ID_MIN: Final[StreamID] = (0, 0)
ID_MAX: Final[StreamID] = (U64_MAX, U64_MAX)
# A group's entries_read when it is not known (Redis's SCG_INVALID_ENTRIES_READ).
INVALID_ENTRIES_READ: Final = -1

FLAG_NONE: Final = 0
FLAG_DELETED: Final = 1
FLAG_SAMEFIELDS: Final = 2

# stream-node-max-bytes 0 (or more than this) means this: Redis's STREAM_LISTPACK_MAX_SIZE.
LISTPACK_MAX_BYTES: Final = 1 << 30
NODE_MAX_BYTES_DEFAULT: Final = 4096
NODE_MAX_ENTRIES_DEFAULT: Final = 100
_LISTPACK_HEADER_AND_END: Final = 7


def format_id(stream_id: StreamID) -> bytes:
    return b"%d-%d" % stream_id


def incr_id(stream_id: StreamID) -> StreamID | None:
    """The next ID, or None after the last possible one."""
    ms, seq = stream_id
    if seq < U64_MAX:
        return ms, seq + 1
    if ms < U64_MAX:
        return ms + 1, 0
    return None


def decr_id(stream_id: StreamID) -> StreamID | None:
    ms, seq = stream_id
    if seq > 0:
        return ms, seq - 1
    if ms > 0:
        return ms - 1, U64_MAX
    return None


# -- listpack sizes (what Redis's node would weigh) ----------------------------------------


def _backlen_bytes(size: int) -> int:
    if size <= 127:
        return 1
    if size < 16383:
        return 2
    if size < 2097151:
        return 3
    if size < 268435455:
        return 4
    return 5


def int_entry_bytes(number: int) -> int:
    """The bytes of one listpack entry holding an integer (its back length included)."""
    if 0 <= number <= 127:
        body = 1
    elif -4096 <= number <= 4095:
        body = 2
    elif -32768 <= number <= 32767:
        body = 3
    elif -8388608 <= number <= 8388607:
        body = 4
    elif -2147483648 <= number <= 2147483647:
        body = 5
    else:
        body = 9
    return body + 1


def str_entry_bytes(item: bytes) -> int:
    """The bytes of one listpack entry holding item (stored as an integer when it spells
    one in Redis's strict form, as lpAppend does)."""
    number = string_as_int(item) if item and len(item) <= 20 else None
    if number is not None:
        return int_entry_bytes(number)
    size = len(item)
    body = size + (1 if size < 64 else 2 if size < 4096 else 5)
    return body + _backlen_bytes(body)


def _signed64(number: int) -> int:
    number &= U64_MAX
    return number - 2**64 if number >= 2**63 else number


class Item:
    """One entry of a node, deleted or not: data is the flat field-value tuple."""

    __slots__ = ("data", "flags", "id")

    def __init__(self, stream_id: StreamID, data: tuple[bytes, ...], flags: int) -> None:
        self.id = stream_id
        self.data = data
        self.flags = flags


class Node:
    """One listpack node of Redis's radix tree: its master ID and fields, its entries (the
    deleted ones too), the live and deleted counts, and its byte size."""

    __slots__ = ("count", "deleted", "fields", "fixed_bytes", "items", "master")

    def __init__(self, master: StreamID, fields: tuple[bytes, ...]) -> None:
        self.master = master
        self.fields = fields
        self.items: list[Item] = []
        self.count = 0
        self.deleted = 0
        # Everything but the two counters: header, master fields, terminator, entries.
        self.fixed_bytes = (
            _LISTPACK_HEADER_AND_END
            + int_entry_bytes(len(fields))
            + sum(str_entry_bytes(f) for f in fields)
            + int_entry_bytes(0)
        )

    @property
    def bytes(self) -> int:
        return self.fixed_bytes + int_entry_bytes(self.count) + int_entry_bytes(self.deleted)

    def add(self, item: Item) -> None:
        fields = len(item.data) // 2
        size = (
            int_entry_bytes(item.flags)
            + int_entry_bytes(_signed64(item.id[0] - self.master[0]))
            + int_entry_bytes(_signed64(item.id[1] - self.master[1]))
            + sum(str_entry_bytes(v) for v in item.data[1::2])
        )
        lp_count = fields + 3
        if not item.flags & FLAG_SAMEFIELDS:
            size += int_entry_bytes(fields) + sum(str_entry_bytes(f) for f in item.data[0::2])
            lp_count += fields + 1
        self.fixed_bytes += size + int_entry_bytes(lp_count)
        self.items.append(item)
        if item.flags & FLAG_DELETED:
            self.deleted += 1
        else:
            self.count += 1

    def find(self, stream_id: StreamID) -> Item | None:
        items = self.items
        lo, hi = 0, len(items)
        while lo < hi:
            mid = (lo + hi) // 2
            if items[mid].id < stream_id:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(items) and items[lo].id == stream_id:
            return items[lo]
        return None

    def mark_deleted(self, item: Item) -> None:
        item.flags |= FLAG_DELETED
        self.count -= 1
        self.deleted += 1


class Nack:
    """A pending entry: delivered to `consumer`, not acknowledged yet."""

    __slots__ = ("consumer", "delivery_count", "delivery_time")

    def __init__(self, consumer: Consumer | None, delivery_time: int, delivery_count: int = 1):
        self.consumer = consumer
        self.delivery_time = delivery_time
        self.delivery_count = delivery_count


class Consumer:
    __slots__ = ("name", "pel", "seen_time")

    def __init__(self, name: bytes, seen_time: int) -> None:
        self.name = name
        self.seen_time = seen_time
        self.pel: Any = SortedDict()  # StreamID -> Nack (shared with the group's PEL)


class Group:
    __slots__ = ("consumers", "entries_read", "last_id", "pel")

    def __init__(self, last_id: StreamID, entries_read: int) -> None:
        self.last_id = last_id
        self.entries_read = entries_read
        self.pel: Any = SortedDict()  # StreamID -> Nack
        self.consumers: dict[bytes, Consumer] = {}

    def consumer(self, name: bytes, now_ms: int, refresh: bool = True) -> Consumer | None:
        found = self.consumers.get(name)
        if found is not None and refresh:
            found.seen_time = now_ms
        return found

    def create_consumer(self, name: bytes, now_ms: int) -> Consumer | None:
        """A new consumer, or None if one of that name exists."""
        if name in self.consumers:
            return None
        created = self.consumers[name] = Consumer(name, now_ms)
        return created

    def consumer_or_new(self, name: bytes, now_ms: int) -> Consumer:
        found = self.consumer(name, now_ms)
        if found is None:
            found = self.consumers[name] = Consumer(name, now_ms)
        return found

    def delete_consumer(self, consumer: Consumer) -> None:
        for stream_id in consumer.pel:
            del self.pel[stream_id]
        del self.consumers[consumer.name]

    def sorted_consumers(self) -> list[Consumer]:
        return [self.consumers[name] for name in sorted(self.consumers)]

    def remove_nack(self, stream_id: StreamID) -> bool:
        nack = self.pel.pop(stream_id, None)
        if nack is None:
            return False
        if nack.consumer is not None:
            nack.consumer.pel.pop(stream_id, None)
        return True

    def give(self, stream_id: StreamID, nack: Nack, consumer: Consumer) -> None:
        """Move a pending entry to consumer."""
        if nack.consumer is not consumer:
            if nack.consumer is not None:
                nack.consumer.pel.pop(stream_id, None)
            consumer.pel[stream_id] = nack
            nack.consumer = consumer


class Stream:
    """A Redis stream (see the module doc)."""

    __slots__ = (
        "entries",
        "entries_added",
        "first_id",
        "groups",
        "last_id",
        "max_deleted_id",
        "nodes",
    )

    def __init__(self) -> None:
        self.entries: Any = SortedDict()  # StreamID -> flat field-value tuple
        self.nodes: Any = SortedDict()  # master StreamID -> Node
        self.last_id: StreamID = ID_MIN
        self.first_id: StreamID = ID_MIN
        self.max_deleted_id: StreamID = ID_MIN
        self.entries_added = 0
        self.groups: dict[bytes, Group] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[tuple[StreamID, tuple[bytes, ...]]]:
        """The live entries, oldest first (what MEMORY USAGE samples)."""
        entries: Iterator[tuple[StreamID, tuple[bytes, ...]]] = iter(self.entries.items())
        return entries

    # -- reads ----------------------------------------------------------------------------

    def range(
        self, start: StreamID, end: StreamID, reverse: bool = False
    ) -> Iterator[tuple[StreamID, tuple[bytes, ...]]]:
        entries = self.entries
        for stream_id in entries.irange(start, end, reverse=reverse):
            yield stream_id, entries[stream_id]

    def first_live_id(self) -> StreamID | None:
        return self.entries.peekitem(0)[0] if self.entries else None

    def last_live_id(self) -> StreamID | None:
        return self.entries.peekitem(-1)[0] if self.entries else None

    def sorted_groups(self) -> list[tuple[bytes, Group]]:
        return [(name, self.groups[name]) for name in sorted(self.groups)]

    def has_tombstones(self, start: StreamID | None) -> bool:
        """Whether a deleted entry may lie at or after start (streamRangeHasTombstones,
        with no end)."""
        if not self.entries or self.max_deleted_id == ID_MIN:
            return False
        if self.first_id > self.max_deleted_id:
            return False
        return (start or ID_MIN) <= self.max_deleted_id

    def estimate_entries_read(self, stream_id: StreamID) -> int:
        """streamEstimateDistanceFromFirstEverEntry: how many entries were added up to
        stream_id, when that can be known; else INVALID_ENTRIES_READ."""
        if not self.entries_added:
            return 0
        if not self.entries and stream_id <= self.last_id:
            return self.entries_added
        if stream_id == self.last_id:
            return self.entries_added
        if stream_id > self.last_id:
            return INVALID_ENTRIES_READ
        if self.max_deleted_id == ID_MIN or self.max_deleted_id < self.first_id:
            if stream_id < self.first_id:
                return self.entries_added - len(self.entries)
            if stream_id == self.first_id:
                return self.entries_added - len(self.entries) + 1
        return INVALID_ENTRIES_READ

    def lag(self, group: Group) -> int | None:
        if not self.entries_added:
            return 0
        if group.entries_read != INVALID_ENTRIES_READ and not self.has_tombstones(group.last_id):
            return self.entries_added - group.entries_read
        read = self.estimate_entries_read(group.last_id)
        return None if read == INVALID_ENTRIES_READ else self.entries_added - read

    # -- writes ---------------------------------------------------------------------------

    def append(
        self, stream_id: StreamID, data: tuple[bytes, ...], node_max_bytes: int,
        node_max_entries: int,
    ) -> None:  # fmt: skip
        """Add an entry whose ID is above last_id (the caller checked), as streamAppendItem
        lays it out in the tail node or a new one."""
        fields = data[0::2]
        tail: Node | None = self.nodes.peekitem(-1)[1] if self.nodes else None
        if tail is not None:
            max_bytes = node_max_bytes
            if max_bytes == 0 or max_bytes > LISTPACK_MAX_BYTES:
                max_bytes = LISTPACK_MAX_BYTES
            if tail.bytes + sum(len(x) for x in data) >= max_bytes or (
                node_max_entries and tail.count + tail.deleted >= node_max_entries
            ):
                tail = None
        if tail is None:
            tail = Node(stream_id, tuple(fields))
            self.nodes[stream_id] = tail
            flags = FLAG_SAMEFIELDS
        else:
            flags = FLAG_SAMEFIELDS if tuple(fields) == tail.fields else FLAG_NONE
        tail.add(Item(stream_id, data, flags))
        self.entries[stream_id] = data
        self.entries_added += 1
        self.last_id = stream_id
        if len(self.entries) == 1:
            self.first_id = stream_id

    def _node_of(self, stream_id: StreamID) -> Node | None:
        nodes = self.nodes
        at = nodes.bisect_right(stream_id) - 1
        return None if at < 0 else nodes.peekitem(at)[1]

    def delete(self, stream_id: StreamID) -> bool:
        """XDEL of one entry (streamDeleteItem): flagged in its node, the node dropped when
        no live entry is left."""
        if stream_id not in self.entries:
            return False
        del self.entries[stream_id]
        node = self._node_of(stream_id)
        assert node is not None
        item = node.find(stream_id)
        assert item is not None
        node.mark_deleted(item)
        if node.count == 0:
            del self.nodes[node.master]
        return True

    def refresh_first_id(self) -> None:
        first = self.first_live_id()
        self.first_id = ID_MIN if first is None else first

    def trim(self, maxlen: int | None, minid: StreamID | None, approx: bool, limit: int) -> int:
        """streamTrim: by MAXLEN (maxlen) or MINID (minid); whole nodes from the head, then
        (unless approx) entries of the first node left. limit 0: no limit."""
        deleted = 0
        entries = self.entries
        nodes = self.nodes
        while nodes:
            if maxlen is not None and len(entries) <= maxlen:
                break
            node: Node = nodes.peekitem(0)[1]
            if limit and deleted + node.count > limit:
                break
            if maxlen is not None:
                remove_node = len(entries) - node.count >= maxlen
            else:
                assert minid is not None
                remove_node = node.items[-1].id < minid
            if remove_node:
                for item in node.items:
                    if not item.flags & FLAG_DELETED:
                        del entries[item.id]
                deleted += node.count
                del nodes[node.master]
                continue
            if approx:
                break
            for item in node.items:
                if maxlen is not None:
                    if len(entries) <= maxlen:
                        break
                elif item.id >= minid:  # type: ignore[operator]
                    break
                if not item.flags & FLAG_DELETED:
                    node.mark_deleted(item)
                    del entries[item.id]
                    deleted += 1
            break
        if deleted:
            self.refresh_first_id()
        elif not entries:
            self.first_id = ID_MIN
        return deleted

    # -- loading and copying --------------------------------------------------------------

    @classmethod
    def from_nodes(cls, nodes: Sequence[Node]) -> Stream:
        """A stream from its nodes as a file holds them (metadata set by the caller)."""
        stream = cls()
        for node in nodes:
            stream.nodes[node.master] = node
            for item in node.items:
                if not item.flags & FLAG_DELETED:
                    stream.entries[item.id] = item.data
        return stream

    def copy(self) -> Stream:
        twin = Stream()
        for master, node in self.nodes.items():
            copied = Node(master, node.fields)
            copied.items = [Item(i.id, i.data, i.flags) for i in node.items]
            copied.count, copied.deleted, copied.fixed_bytes = (
                node.count, node.deleted, node.fixed_bytes,
            )  # fmt: skip
            twin.nodes[master] = copied
        twin.entries = self.entries.copy()
        twin.last_id, twin.first_id = self.last_id, self.first_id
        twin.max_deleted_id, twin.entries_added = self.max_deleted_id, self.entries_added
        for name, group in self.groups.items():
            new = twin.groups[name] = Group(group.last_id, group.entries_read)
            for cname, consumer in group.consumers.items():
                new.consumers[cname] = Consumer(cname, consumer.seen_time)
            for stream_id, nack in group.pel.items():
                owner = None if nack.consumer is None else new.consumers[nack.consumer.name]
                copy = new.pel[stream_id] = Nack(owner, nack.delivery_time, nack.delivery_count)
                if owner is not None:
                    owner.pel[stream_id] = copy
        return twin


def _digest(value: Stream, h: Any) -> None:
    """memlog's DEBUG DIGEST of a stream: everything apply keeps (entries, node layout,
    metadata, groups with their PELs and consumers), so two shims that differ anywhere
    differ here."""
    for master, node in value.nodes.items():
        h.update(b"N%d-%d:%d:%d:%d" % (*master, node.count, node.deleted, node.fixed_bytes))
        for item in node.items:
            h.update(b"%d-%d/%d/%d" % (*item.id, item.flags, len(item.data)))
            for part in item.data:
                h.update(len(part).to_bytes(8, "big"))
                h.update(part)
    h.update(b"M%d-%d %d-%d %d-%d %d" % (
        *value.last_id, *value.first_id, *value.max_deleted_id, value.entries_added,
    ))  # fmt: skip
    for name, group in value.sorted_groups():
        h.update(b"G%d:" % len(name) + name)
        h.update(b"%d-%d %d" % (*group.last_id, group.entries_read))
        for stream_id, nack in group.pel.items():
            owner = b"" if nack.consumer is None else nack.consumer.name
            h.update(b"P%d-%d %d %d %d:" % (*stream_id, nack.delivery_time,
                                            nack.delivery_count, len(owner)) + owner)  # fmt: skip
        for consumer in group.sorted_consumers():
            h.update(b"C%d %d:" % (consumer.seen_time, len(consumer.name)) + consumer.name)


register_kind(
    Stream,
    ValueKind(
        "stream", lambda value: "stream", lambda value: 1, lambda value: value.copy(), _digest
    ),
)
