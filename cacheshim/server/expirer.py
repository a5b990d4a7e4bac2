"""Background expiry: keys expire at apply without other writes, for those who would notice.

Apply removes the keys expired as of each record's time (Keyspace.expire_due), and sends their
"expired" events and tracking invalidations then; without writes no record comes, so a key
with a time to live would never be removed, its event never sent and its tracking clients
never told, where Redis's background expiry does it within about 100 ms. So while someone on
this shim would notice (pub/sub subscribers while "expired" events are asked for:
notify-keyspace-events with x and K or E, replicated; or clients tracking keys), this task
looks every EXPIRE_PERIOD_S for a key due by this shim's clock and proposes a MEMLOG EXPIRE
record, which removes it on every shim alike (the record's time decides, not each shim's
clock). Several shims may each propose one for the same keys: the later ones find nothing
left to remove.

Without such events asked for, nothing changes: expired keys stay hidden from reads and are
removed by the next write, as before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from cacheshim import notify
from cacheshim.hub import CHANNELS, PATTERNS
from cacheshim.protocol.resp import Error
from cacheshim.server.clock import wall_ms

if TYPE_CHECKING:
    from cacheshim.server.shim import Shim

log = logging.getLogger("cacheshim.server")

EXPIRE_PERIOD_S: Final = 0.1  # Redis's hz 10
EXPIRE_RECORD: Final = (b"MEMLOG", b"EXPIRE")


def wants_expiry(shim: Shim) -> bool:
    """Whether this shim should propose expiry records now (see the module's text)."""
    if shim.loading:
        return False
    if shim.tracking.clients:
        return True
    flags = shim.applier.keyspace.notify_flags
    if not flags & notify.EXPIRED or not flags & (notify.KEYSPACE | notify.KEYEVENT):
        return False
    hub = shim.pubsub
    return bool(hub.active(CHANNELS) or hub.active(PATTERNS))


def any_due(shim: Shim, now_ms: int) -> bool:
    for db in shim.applier.keyspace.dbs:
        when = db.next_expiry()
        if when is not None and when <= now_ms:
            return True
    return False


async def expire_keys(shim: Shim) -> None:
    """Runs as long as the shim: proposes MEMLOG EXPIRE when due (one at a time)."""
    while True:
        await asyncio.sleep(EXPIRE_PERIOD_S)
        if not wants_expiry(shim) or not any_due(shim, wall_ms()):
            continue
        try:
            # (origin None: no client of this shim sent it, so NOLOOP spares no one)
            reply = await shim.writer.submit_command(0, list(EXPIRE_RECORD), origin=None)
        except Exception as exc:  # the log unreachable: try again next period
            log.warning("background expiry record not written: %r", exc)
            continue
        if isinstance(reply, Error):
            log.warning("background expiry record refused: %s", reply.message)


def is_expiry_record(args: list[bytes]) -> bool:
    """A MEMLOG EXPIRE record (MONITOR leaves it out, as Redis shows no background expiry)."""
    return len(args) == 2 and args[0].upper() == b"MEMLOG" and args[1].upper() == b"EXPIRE"
