"""Client-side caching on one shim: CLIENT TRACKING and its invalidation messages (Redis
tracking.c, in memlog's words).

Which client may hold which key is local to the shim, like pub/sub subscriptions: a client
that reads a key through this shim while tracking is remembered here (`Tracking.remember`),
and nothing of it goes to the log. Changes do come from the log: every shim applies every
write, and while any of its clients tracks, its keyspace feeds the keys each record changes
(`Keyspace.feed_changes`) into a list that apply marks with who made the changes (`By`) and
with the keys a transaction or script read at apply (`Read`). After the record, the shim
turns that list into invalidation messages for its own clients (`Tracking.take`, then
`Tracking.deliver` once the writer's reply is resolved). So a write through any shim
invalidates what a client read through any other, in the log's order.

Messages, as Redis sends them:

- to a RESP3 client, the push ``invalidate [key ...]`` (``invalidate nil`` after a flush);
- with REDIRECT, to the client redirected to: a push if it speaks RESP3, else, while it is
  subscribed to anything (RESP2), a ``message`` on ``__redis__:invalidate``; nothing to a
  RESP2 client that is not subscribed;
- when the client redirected to is gone, ``tracking-redir-broken <id>`` to the tracking client
  (RESP3 only), and its invalidations are lost.

Default mode: a key is remembered per client when a read-only command names it (scripts:
their declared keys, once they call a read-only command); its first change sends one
message per client and forgets it (NOLOOP: not to the client that changed it). OPTIN and
OPTOUT narrow that with CLIENT CACHING. BCAST: nothing is remembered; every change of a key
under one of the client's prefixes is sent, gathered per prefix into one message each time
the event loop comes round (NOLOOP leaves out the keys the client changed last).
A flush (FLUSHALL, FLUSHDB) sends nil to every tracking client and forgets every key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, NamedTuple, Protocol

from cacheshim.commands import Command, Ctx, Flag, lookup
from cacheshim.commands.introspect import MOVABLE_KEYS
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import Push, Reply
from cacheshim.types.keyspace import FLUSHED

CHANNEL: Final = b"__redis__:invalidate"
# Read-only script commands do not remember their keys themselves: their read-only calls do.
SCRIPT_READS: Final = frozenset({"eval_ro", "evalsha_ro", "fcall_ro"})


class By(NamedTuple):
    """In the change feed: the changes after this one were made for this proposal (its
    shim and proposal id); `NOBODY` for removals of expired keys. (A named tuple: one is
    made per record applied while clients track.)"""

    shim_id: str
    proposal_id: int


NOBODY: Final = By("", 0)


@dataclass(frozen=True, slots=True)
class Read:
    """In the change feed: the client of the last `By` read these keys at apply (a read in
    a transaction that writes, a script that called a read-only command)."""

    keys: tuple[bytes, ...]


def tracked_keys(spec: Command, args: list[bytes]) -> tuple[bytes, ...]:
    """The keys a command line names, as Redis's getKeysFromCommand finds them (none for
    malformed key arguments, or for shard channels)."""
    if Flag.PUBSUB in spec.flags or "not_key" in spec.key_spec_flags:
        return ()
    movable = MOVABLE_KEYS.get(spec.full_name)
    try:
        positions = movable(args) if movable is not None else spec.key_positions(len(args))
    except CommandError:
        return ()
    return tuple(args[p] for p in positions if p < len(args))


def reads_keys(spec: Command, ctx: Ctx) -> bool:
    """Whether the command just run remembers its keys for a tracking client: a read-only
    command (not EVAL_RO & co.), or a script that called one."""
    if ctx.script_read:
        return True
    return Flag.READONLY in spec.flags and spec.full_name not in SCRIPT_READS


def note_read(changes: list[object], ctx: Ctx, args: list[bytes]) -> None:
    """At apply, after a command ran: its keys as read, if it counts as a read."""
    spec = lookup(args)
    if spec is not None and reads_keys(spec, ctx):
        keys = tracked_keys(spec, args)
        if keys:
            changes.append(Read(keys))
    ctx.script_read = False


@dataclass
class ClientTracking:
    """One client's CLIENT TRACKING state (Redis's CLIENT_TRACKING_* flags)."""

    on: bool = False
    bcast: bool = False
    optin: bool = False
    optout: bool = False
    noloop: bool = False
    # CLIENT CACHING yes (OPTIN) or no (OPTOUT), for the next command or transaction.
    caching: bool = False
    redirect: int = 0
    broken_redirect: bool = False
    prefixes: dict[bytes, None] = field(default_factory=dict)

    @property
    def remembers(self) -> bool:
        """Whether reads remember keys for it (on, not BCAST)."""
        return self.on and not self.bcast

    def caches_now(self) -> bool:
        """OPTIN remembers only after CACHING yes, OPTOUT all but after CACHING no."""
        return not ((self.optin and not self.caching) or (self.optout and self.caching))


class Client(Protocol):
    """What tracking needs of a client (cacheshim.server.Session has it)."""

    id: int
    protocol: int
    tracking: ClientTracking
    push: Callable[[Reply], None] | None


class Subscriptions(Protocol):
    def subscribed(self, subscriber_id: int) -> bool: ...


# An event of `Tracking.take`: a changed key (or None: a flush) or a read (a tuple of keys),
# with the local client that made it (None: nobody here).
Event = tuple[bytes | tuple[bytes, ...] | None, int | None]


class Tracking:
    """The tracking table and the BCAST prefixes of one shim's clients."""

    def __init__(
        self,
        clients: Mapping[int, Client],
        pubsub: Subscriptions,
        max_keys: Callable[[], int] = lambda: 0,
    ) -> None:
        self._clients = clients
        self._pubsub = pubsub
        self._max_keys = max_keys
        # key -> the ids of the clients that may hold it, oldest key first.
        self.table: dict[bytes, dict[int, None]] = {}
        self.items = 0  # ids in the table, all keys (INFO tracking_total_items)
        # BCAST: prefix -> its clients' ids, and the keys changed under it since the last
        # broadcast, each with the local client that changed it last (None: another shim's,
        # or an expiry).
        self.prefixes: dict[bytes, dict[int, None]] = {}
        self._pending: dict[bytes, dict[bytes, int | None]] = {}
        self._broadcast_due = False
        self.clients = 0  # clients with tracking on (INFO tracking_clients)
        self.feed: list[object] | None = None  # the keyspace's change feed while clients track

    # -- CLIENT TRACKING ----------------------------------------------------------------

    def enable(
        self,
        client: Client,
        redirect: int,
        bcast: bool,
        optin: bool,
        optout: bool,
        noloop: bool,
        prefixes: list[bytes],
    ) -> None:
        state = client.tracking
        if not state.on:
            self.clients += 1
        state.on = True
        state.bcast, state.optin, state.optout, state.noloop = bcast, optin, optout, noloop
        state.broken_redirect = False
        state.redirect = redirect
        if bcast:
            for prefix in prefixes or [b""]:
                if prefix not in state.prefixes:
                    state.prefixes[prefix] = None
                    self.prefixes.setdefault(prefix, {})[client.id] = None
        self._feed_on()

    def disable(self, client: Client) -> None:
        """Tracking off (CLIENT TRACKING off, RESET, the connection closed). Its ids stay in
        the table until their keys change or are evicted, as in Redis."""
        state = client.tracking
        for prefix in state.prefixes:
            ids = self.prefixes.get(prefix)
            if ids is not None:
                ids.pop(client.id, None)
                if not ids:
                    del self.prefixes[prefix]
                    self._pending.pop(prefix, None)
        if state.on:
            self.clients -= 1
        client.tracking = ClientTracking()
        if not self.clients:  # nobody left to tell: stop listening to apply
            self.feed = None
            self.table.clear()
            self.items = 0
            self._pending.clear()

    def _feed_on(self) -> None:
        if self.feed is None:
            self.feed = []

    # -- reads -------------------------------------------------------------------------

    def remember(self, client: Client, keys: Iterable[bytes]) -> None:
        """A tracking client read these keys (unless OPTIN/OPTOUT say not this time)."""
        state = client.tracking
        if not state.remembers or not state.caches_now():
            return
        table = self.table
        for key in keys:
            ids = table.get(key)
            if ids is None:
                ids = table[key] = {}
            if client.id not in ids:
                ids[client.id] = None
                self.items += 1
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a script's read on the script thread: no pushes from there;
            return  # the next read on the event loop (or CONFIG SET) enforces the limit
        self.enforce_limit()

    def enforce_limit(self) -> None:
        """tracking-table-max-keys: while the table holds more keys, its oldest are dropped
        and their clients told, as if the keys had changed (Redis picks them at random)."""
        limit = self._max_keys()
        if not limit:
            return
        while len(self.table) > limit:
            self._invalidate(next(iter(self.table)), None, bcast=False)

    # -- changes from apply ------------------------------------------------------------

    def take(self, origin: Callable[[By], int | None]) -> list[Event]:
        """The changes and reads the last record fed, each with its local client (`origin`
        resolves a proposal to this shim's client that proposed it, or None)."""
        feed = self.feed
        if not feed:
            return []
        events: list[Event] = []
        actor: int | None = None
        for item in feed:
            if type(item) is bytes:
                events.append((item, actor))
            elif type(item) is By:
                actor = origin(item) if item is not NOBODY else None
            elif type(item) is Read:
                if actor is not None:
                    events.append((item.keys, actor))
            elif item is FLUSHED:
                events.append((None, actor))
            else:  # a bytes subclass (a key is always plain bytes, but be safe)
                events.append((bytes(item), actor))  # type: ignore[call-overload]
        feed.clear()
        return events

    def deliver(self, events: list[Event]) -> None:
        """Act on `take`'s events in order: reads remember, changes invalidate."""
        for subject, actor in events:
            if subject is None:
                self._flushed()
            elif type(subject) is tuple:
                client = self._clients.get(actor) if actor is not None else None
                if client is not None:
                    self.remember(client, subject)
            else:
                self._invalidate(subject, actor, bcast=True)  # type: ignore[arg-type]

    def _invalidate(self, key: bytes, actor: int | None, bcast: bool) -> None:
        if bcast and self.prefixes:
            for pending in self._broadcast_targets(key):
                pending[key] = actor
        ids = self.table.pop(key, None)
        if ids is None:
            return
        self.items -= len(ids)
        for client_id in ids:
            client = self._clients.get(client_id)
            if client is None or not client.tracking.on or client.tracking.bcast:
                continue
            if client.tracking.noloop and client_id == actor:
                continue
            self._send(client, [key])

    def _broadcast_targets(self, key: bytes) -> list[dict[bytes, int | None]]:
        """The pending keys of each prefix key falls under; schedules the broadcast."""
        found = []
        for prefix in self.prefixes:
            if key.startswith(prefix):
                pending = self._pending.get(prefix)
                if pending is None:
                    pending = self._pending[prefix] = {}
                found.append(pending)
        if found and not self._broadcast_due:
            self._broadcast_due = True
            with contextlib.suppress(RuntimeError):  # no loop (unit tests): called by hand
                asyncio.get_running_loop().call_soon(self.broadcast)
        return found

    def broadcast(self) -> None:
        """Send each prefix's changed keys to its BCAST clients: one message per prefix,
        keys in byte order (Redis's beforeSleep)."""
        self._broadcast_due = False
        pending, self._pending = self._pending, {}
        for prefix, changed in pending.items():
            ids = self.prefixes.get(prefix)
            if not ids or not changed:
                continue
            keys = sorted(changed)
            for client_id in list(ids):
                client = self._clients.get(client_id)
                if client is None:
                    continue
                if client.tracking.noloop:
                    mine = [k for k in keys if changed[k] != client_id]
                    if mine:
                        self._send(client, mine)
                else:
                    self._send(client, keys)

    def _flushed(self) -> None:
        for client in list(self._clients.values()):
            if client.tracking.on:
                self._send(client, None)
        self.table.clear()
        self.items = 0

    def _send(self, client: Client, keys: list[bytes] | None) -> None:
        """One invalidation message for `client` (sendTrackingMessage)."""
        state = client.tracking
        target = client
        redirected = False
        if state.redirect:
            found = self._clients.get(state.redirect)
            if found is None:
                state.broken_redirect = True
                if client.protocol > 2 and client.push is not None:
                    client.push(Push([b"tracking-redir-broken", state.redirect]))
                return
            target, redirected = found, True
        if target.push is None:
            return
        if target.protocol > 2:
            target.push(Push([b"invalidate", keys]))
        elif redirected and self._pubsub.subscribed(target.id):
            target.push(Push([b"message", CHANNEL, keys]))
        # else: a RESP2 connection cannot take a push; the message is lost, as in Redis.
