"""Keyspace notifications (Redis notify.c): pub/sub messages about changes to keys.

Events are produced at apply, by the command handlers and by expiry, so every shim produces
the same events in the same order: the log's. Each shim hands them to its own hub
(cacheshim.hub), which delivers them to its local subscribers; a write through shim A thus
notifies the subscribers of shim B, as a PUBLISH record does.

Which classes of events are sent is `notify-keyspace-events`, a setting that travels through
the log (CONFIG SET of it is a record, like stream-node-max-bytes) and is kept with the
keyspace (`Keyspace.notify_flags`) and in its snapshots: every shim sends the same events.

The cost when nothing is asked for is one attribute read and a bit test per event: `notify`
returns before it builds anything. Delivery goes through `Keyspace.hub` (None outside a
serving shim: the snapshotter and unit tests send nothing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from cacheshim.commands import Ctx
    from cacheshim.types.keyspace import Keyspace

# The classes, as Redis numbers them (server.h NOTIFY_*).
KEYSPACE: Final = 1 << 0  # K: __keyspace@<db>__:<key> <event>
KEYEVENT: Final = 1 << 1  # E: __keyevent@<db>__:<event> <key>
GENERIC: Final = 1 << 2  # g
STRING: Final = 1 << 3  # $
LIST: Final = 1 << 4  # l
SET: Final = 1 << 5  # s
HASH: Final = 1 << 6  # h
ZSET: Final = 1 << 7  # z
EXPIRED: Final = 1 << 8  # x
EVICTED: Final = 1 << 9  # e
STREAM: Final = 1 << 10  # t
KEY_MISS: Final = 1 << 11  # m (not part of A)
MODULE: Final = 1 << 13  # d
NEW: Final = 1 << 14  # n (not part of A)
ALL: Final = GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE

_BY_CHAR: Final = {
    "A": ALL, "g": GENERIC, "$": STRING, "l": LIST, "s": SET, "h": HASH, "z": ZSET,
    "x": EXPIRED, "e": EVICTED, "K": KEYSPACE, "E": KEYEVENT, "t": STREAM, "m": KEY_MISS,
    "d": MODULE, "n": NEW,
}  # fmt: skip
# CONFIG GET's order: the classes (or "A"), then K, E, m.
_CLASS_ORDER: Final = "g$lshzxetdn"
_TRAILING: Final = "KEm"


def flags_of(text: str) -> int | None:
    """The flags a class string names (keyspaceEventsStringToFlags); None for a character
    that names no class."""
    flags = 0
    for char in text:
        bit = _BY_CHAR.get(char)
        if bit is None:
            return None
        flags |= bit
    return flags


def text_of(flags: int) -> str:
    """The class string CONFIG GET shows for flags (keyspaceEventsFlagsToString)."""
    out = "A" if flags & ALL == ALL else "".join(c for c in _CLASS_ORDER if flags & _BY_CHAR[c])
    return out + "".join(c for c in _TRAILING if flags & _BY_CHAR[c])


def notify(ctx: Ctx, kind: int, event: bytes, key: bytes, db_index: int | None = None) -> None:
    """Send event about key (in ctx's database, or db_index) if its class is enabled."""
    keyspace = ctx.keyspace
    if keyspace.notify_flags & kind:
        publish(keyspace, event, key, ctx.db_index if db_index is None else db_index)


def notify_keyspace(keyspace: Keyspace, kind: int, event: bytes, key: bytes, db: int) -> None:
    """`notify` for code that has no Ctx (expiry, a new key)."""
    if keyspace.notify_flags & kind:
        publish(keyspace, event, key, db)


def publish(keyspace: Keyspace, event: bytes, key: bytes, db: int) -> None:
    """Send one event on the channels the flags ask for, keyspace channel first."""
    hub = keyspace.hub
    if hub is None:
        return
    flags = keyspace.notify_flags
    if flags & KEYSPACE:
        hub.publish(b"__keyspace@%d__:%s" % (db, key), event)
    if flags & KEYEVENT:
        hub.publish(b"__keyevent@%d__:%s" % (db, event), key)
