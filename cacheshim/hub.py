"""Pub/sub on one shim: who listens to what, and delivery of messages to them (Redis pubsub.c).

The :class:`Hub` is the shim's registry of subscriptions: channels (SUBSCRIBE), patterns
(PSUBSCRIBE) and shard channels (SSUBSCRIBE), per client and per name. It is local to the shim
and never replicated: a shim that dies takes its subscribers with it, and nothing about them
is in the log.

Messages do go through the log. PUBLISH and SPUBLISH are records (``logged=True`` in the
command table), and every shim, when it applies such a record, hands it to its own hub
(:meth:`Hub.publish`, :meth:`Hub.spublish`), which pushes it to the local subscribers. So a
message published on any shim reaches the subscribers of every shim, and all of them see the
messages in one order: the log's. The count that PUBLISH answers is the number of clients
that received the message on the shim that applied it; the publisher hears its own shim's
count (as Redis Cluster counts per node). Delivery is a side effect outside the keyspace:
apply stays a pure function of (keyspace, record, index), and in unit tests the hub is None.

A subscriber is anything with an ``id``, a ``protocol`` and a ``push`` callable (the server's
``Session``; a plain object in tests). ``push`` writes one reply value on the client's
connection between two replies; :class:`~cacheshim.protocol.resp.Push` renders as a RESP2 array or a
RESP3 push frame, which is exactly how Redis sends both messages and subscription frames.

Orders, as Redis keeps them where clients can see the difference:

- a message goes to the channel's subscribers first (in the order they subscribed), then to
  each matching pattern (patterns in the order they were first subscribed; Redis walks a hash
  table there, so no client can rely on that order);
- UNSUBSCRIBE / PUNSUBSCRIBE / SUNSUBSCRIBE without names drop the client's names in the order
  they were subscribed (Redis: hash order for channels, subscription order for patterns);
- subscription counts in the frames: channels + patterns for (P)(UN)SUBSCRIBE, shard channels
  for S(UN)SUBSCRIBE; a client is in "subscribed" mode while it has any of the three.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from cacheshim.protocol import errors
from cacheshim.protocol.resp import Push, Reply
from cacheshim.types.glob import Pattern

# The commands a RESP2 client in subscribed mode may still send (Redis processCommand).
ALLOWED_WHEN_SUBSCRIBED: Final = frozenset(
    {
        "ping",
        "subscribe",
        "ssubscribe",
        "unsubscribe",
        "sunsubscribe",
        "psubscribe",
        "punsubscribe",
        "quit",
        "reset",
    }
)


class Subscriber(Protocol):
    """What the hub needs of a client (cacheshim.server.Session has it)."""

    id: int
    protocol: int
    # Writes a reply value on the client's connection, between replies; None: no connection.
    push: Callable[[Reply], None] | None


@dataclass(frozen=True, slots=True)
class Kind:
    """One of the three name spaces of subscriptions."""

    index: int
    subscribe: bytes  # the confirmation frame's first element
    unsubscribe: bytes


CHANNELS: Final = Kind(0, b"subscribe", b"unsubscribe")
PATTERNS: Final = Kind(1, b"psubscribe", b"punsubscribe")
SHARD_CHANNELS: Final = Kind(2, b"ssubscribe", b"sunsubscribe")


@dataclass
class _Client:
    subscriber: Subscriber
    # Per kind, the client's names in subscription order (dicts as ordered sets).
    names: tuple[dict[bytes, None], dict[bytes, None], dict[bytes, None]] = field(
        default_factory=lambda: ({}, {}, {})
    )

    def count(self, kind: Kind) -> int:
        """The count a subscription frame of this kind carries."""
        if kind is SHARD_CHANNELS:
            return len(self.names[2])
        return len(self.names[0]) + len(self.names[1])

    @property
    def total(self) -> int:
        return len(self.names[0]) + len(self.names[1]) + len(self.names[2])


class Hub:
    """The subscriptions of one shim's clients and the delivery of messages to them."""

    def __init__(self) -> None:
        # Per kind: name -> the subscribed clients by id, in subscription order.
        self._subscribers: tuple[
            dict[bytes, dict[int, Subscriber]],
            dict[bytes, dict[int, Subscriber]],
            dict[bytes, dict[int, Subscriber]],
        ] = ({}, {}, {})
        self._compiled: dict[bytes, Pattern] = {}  # each subscribed pattern, compiled once
        self._clients: dict[int, _Client] = {}

    # -- subscribing ----------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber, kind: Kind, names: Iterable[bytes]) -> list[Push]:
        """Subscribe to each name; one confirmation frame per name, as Redis sends them."""
        client = self._clients.get(subscriber.id)
        if client is None:
            client = self._clients[subscriber.id] = _Client(subscriber)
        mine = client.names[kind.index]
        frames: list[Push] = []
        for name in names:
            if name not in mine:
                mine[name] = None
                self._subscribers[kind.index].setdefault(name, {})[subscriber.id] = subscriber
                if kind is PATTERNS and name not in self._compiled:
                    self._compiled[name] = Pattern(name)
            frames.append(Push([kind.subscribe, name, client.count(kind)]))
        return frames

    def unsubscribe(self, subscriber: Subscriber, kind: Kind, names: Iterable[bytes]) -> list[Push]:
        """Unsubscribe from each name (from all of this kind when names is empty); one frame
        per name, or one with a nil name when there was nothing to leave."""
        client = self._clients.get(subscriber.id)
        wanted = list(names)
        if not wanted:
            wanted = list(client.names[kind.index]) if client is not None else []
            if not wanted:
                count = client.count(kind) if client is not None else 0
                return [Push([kind.unsubscribe, None, count])]
        frames: list[Push] = []
        for name in wanted:
            if client is not None:
                self._leave(client, kind, name)
            frames.append(Push([kind.unsubscribe, name, client.count(kind) if client else 0]))
        if client is not None and not client.total:
            del self._clients[subscriber.id]
        return frames

    def drop(self, subscriber_id: int) -> None:
        """Forget every subscription of a client (RESET, or its connection closed)."""
        client = self._clients.pop(subscriber_id, None)
        if client is None:
            return
        for kind in (CHANNELS, PATTERNS, SHARD_CHANNELS):
            for name in list(client.names[kind.index]):
                self._leave(client, kind, name)

    def _leave(self, client: _Client, kind: Kind, name: bytes) -> None:
        mine = client.names[kind.index]
        if name not in mine:
            return
        del mine[name]
        registry = self._subscribers[kind.index]
        subscribers = registry[name]
        del subscribers[client.subscriber.id]
        if not subscribers:
            del registry[name]
            if kind is PATTERNS:
                del self._compiled[name]

    # -- delivering (called by apply, for every PUBLISH / SPUBLISH record) -------------------

    def publish(self, channel: bytes, message: bytes) -> int:
        """Push a message to the channel's subscribers and to those of every matching
        pattern; the number of deliveries (a client that matches twice receives twice)."""
        receivers = 0
        subscribers = self._subscribers[CHANNELS.index].get(channel)
        if subscribers:
            receivers += _deliver(subscribers, Push([b"message", channel, message]))
        patterns = self._subscribers[PATTERNS.index]
        if patterns:
            for pattern, subscribers in list(patterns.items()):
                if self._compiled[pattern].match(channel):
                    frame = Push([b"pmessage", pattern, channel, message])
                    receivers += _deliver(subscribers, frame)
        return receivers

    def spublish(self, channel: bytes, message: bytes) -> int:
        """Push a message to the shard channel's subscribers; how many received it."""
        subscribers = self._subscribers[SHARD_CHANNELS.index].get(channel)
        if not subscribers:
            return 0
        return _deliver(subscribers, Push([b"smessage", channel, message]))

    # -- introspection (PUBSUB, CLIENT LIST, INFO) -------------------------------------------

    def names(self, kind: Kind, pattern: bytes | None = None) -> list[bytes]:
        """The active channels (or shard channels) matching pattern (all without one)."""
        active = self._subscribers[kind.index]
        if pattern is None:
            return list(active)
        matcher = Pattern(pattern)
        return [name for name in active if matcher.match(name)]

    def numsub(self, kind: Kind, names: Iterable[bytes]) -> list[Reply]:
        """PUBSUB NUMSUB / SHARDNUMSUB: name, count, name, count, ..."""
        registry = self._subscribers[kind.index]
        out: list[Reply] = []
        for name in names:
            out += [name, len(registry.get(name, ()))]
        return out

    def active(self, kind: Kind) -> int:
        """How many names of this kind have subscribers (INFO pubsub_*, PUBSUB NUMPAT)."""
        return len(self._subscribers[kind.index])

    def counts(self, subscriber_id: int) -> tuple[int, int, int]:
        """A client's (channels, patterns, shard channels): CLIENT LIST's sub, psub, ssub."""
        client = self._clients.get(subscriber_id)
        if client is None:
            return (0, 0, 0)
        return (len(client.names[0]), len(client.names[1]), len(client.names[2]))

    def subscriptions(self, subscriber_id: int) -> tuple[list[bytes], list[bytes], list[bytes]]:
        """A client's (channels, patterns, shard channels), each in subscription order."""
        client = self._clients.get(subscriber_id)
        if client is None:
            return ([], [], [])
        return (list(client.names[0]), list(client.names[1]), list(client.names[2]))

    def subscribed(self, subscriber_id: int) -> bool:
        """Whether the client is in subscribed mode (Redis's CLIENT_PUBSUB flag)."""
        return subscriber_id in self._clients

    # -- the central check -------------------------------------------------------------------

    def restricts(self, subscriber: Subscriber) -> bool:
        """Whether the client may only send (P|S)(UN)SUBSCRIBE, PING, QUIT and RESET: it is
        subscribed and speaks RESP2 (RESP3 clients may send anything)."""
        return subscriber.protocol == 2 and subscriber.id in self._clients

    def refusal(self, subscriber: Subscriber, command_name: str) -> str | None:
        """The error for a command a subscribed RESP2 client may not send, else None."""
        if not self._clients or command_name in ALLOWED_WHEN_SUBSCRIBED:
            return None
        if self.restricts(subscriber):
            return errors.not_allowed_when_subscribed(command_name)
        return None


def _deliver(subscribers: dict[int, Subscriber], frame: Push) -> int:
    receivers = 0
    for subscriber in list(subscribers.values()):
        push = subscriber.push
        if push is not None:
            push(frame)
        receivers += 1
    return receivers


class Outbox:
    """A connection's pushes, each held back behind the replies of the commands applied
    before it, so a client sees them where Redis would put them.

    Apply resolves a write's reply and pushes messages in log order, but the connection
    writes a reply only when its task next runs. Without this, a pipelined ``SET`` then
    ``PUBLISH`` to a channel the (RESP3) client itself listens to would show the message
    before the SET's ``+OK``. The connection tells the outbox which replies it is waiting
    for (:meth:`expect`, in order) and when it has written each (:meth:`replied`); a push
    goes out at once unless some of those replies are already resolved but not written.
    """

    __slots__ = ("_awaited", "_held", "_next", "_write")

    def __init__(self, write: Callable[[Reply], None]) -> None:
        self._write = write
        self._awaited: Sequence[asyncio.Future[Any]] = ()
        self._next = 0  # replies of _awaited written so far
        self._held: deque[tuple[Reply, int]] = deque()  # a push, and replies due before it

    def expect(self, replies: Sequence[asyncio.Future[Any]]) -> None:
        """The connection now waits for these replies and will write them in this order."""
        self._release(len(self._awaited))
        self._awaited = replies
        self._next = 0

    def replied(self) -> None:
        """The next expected reply has been written."""
        self._next += 1
        self._release(self._next)

    def push(self, message: Reply) -> None:
        due = self._next
        for reply in self._awaited[self._next :]:
            if reply.done():
                due += 1
        if due == self._next and not self._held:
            self._write(message)
        else:
            self._held.append((message, due))

    def _release(self, written: int) -> None:
        held = self._held
        while held and held[0][1] <= written:
            self._write(held.popleft()[0])
