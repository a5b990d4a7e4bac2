"""Background expiry for keyspace events: keys expire at apply without other writes.

Apply removes the keys expired as of each record's time (Keyspace.expire_due), and sends their
"expired" events then; without writes no record comes, so a key with a time to live would
never be removed and its event never sent, where Redis's background expiry sends it within
about 100 ms. So while "expired" events are asked for (notify-keyspace-events with x and K or
E, replicated) and this shim has pub/sub subscribers, this task looks every EXPIRE_PERIOD_S
for a key due by this shim's clock and proposes a MEMLOG EXPIRE record, which removes it on
every shim alike (the record's time decides, not each shim's clock). Several shims may each
propose one for the same keys: the later ones find nothing left to remove.

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
            reply = await shim.writer.submit_command(0, list(EXPIRE_RECORD))
        except Exception as exc:  # the log unreachable: try again next period
            log.warning("background expiry record not written: %r", exc)
            continue
        if isinstance(reply, Error):
            log.warning("background expiry record refused: %s", reply.message)


def is_expiry_record(args: list[bytes]) -> bool:
    """A MEMLOG EXPIRE record (MONITOR leaves it out, as Redis shows no background expiry)."""
    return len(args) == 2 and args[0].upper() == b"MEMLOG" and args[1].upper() == b"EXPIRE"
