"""``maxclients`` and ``client-output-buffer-limit``, enforced as Redis 7.0 enforces them.

maxclients (Redis ``acceptCommonHandler``): a connection that arrives while ``maxclients``
clients are connected is sent ``-ERR max number of clients reached`` and closed, before it
becomes a client (it is not in CLIENT LIST, nor counted by ``total_connections_received``);
INFO counts it as ``rejected_connections``. The setting also needs file descriptors: as
Redis's ``adjustOpenFilesLimit`` does, the shim raises its ``RLIMIT_NOFILE`` to maxclients + 32
(what it keeps for itself) where the system lets it. At startup a limit it cannot reach lowers
maxclients (logged as a warning); CONFIG SET refuses a raise it cannot honour with Redis's
message, which names the most it could take.

client-output-buffer-limit (Redis ``checkClientOutputBufferLimits``): for each class of
client, a hard limit, a soft limit and the soft limit's seconds (0 turns a limit off). A client
whose output waiting to be sent (the connection's unsent replies and pushes, beyond what the
kernel has taken) reaches the hard limit is closed at once, its pending output dropped; one
that stays at or over the soft limit for longer than the seconds is closed then. It is
checked every time output is written, and again when the seconds run out, so a client that
stopped reading is closed even if nothing more is written to it (Redis's clientsCron does
that). The closing is logged as Redis logs it ("Client ... scheduled to be closed ASAP for
overcoming of output buffer limits.") and counted in INFO as
``client_output_buffer_limit_disconnections`` (the name later Redis versions use; 7.0 only
logs). The classes: a subscribed client (any channel, pattern or shard channel; RESP2 or
RESP3) is ``pubsub``, every other one ``normal``, as in Redis. The ``replica`` class is
validated and kept, and holds as it does in Redis: it limits replica connections, and a shim
has none (SYNC, PSYNC and REPLICAOF are not commands of the shim).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from cacheshim.serverstate import ServerStats

log = logging.getLogger("cacheshim.clientlimits")

MAX_CLIENTS_REACHED: Final = b"-ERR max number of clients reached\r\n"
# File descriptors kept for the shim itself beyond its clients (CONFIG_MIN_RESERVED_FDS).
RESERVED_FDS: Final = 32
# setrlimit is retried this many descriptors lower each time it is refused.
_FDS_STEP: Final = 16
_UINT_RANGE: Final = 1 << 32
MAXCLIENTS_TOO_MANY_FOR_OS: Final = (
    "The operating system is not able to handle the specified number of clients, try with %d"
)


def refuse(transport: asyncio.Transport, stats: ServerStats) -> None:
    """Turn away a connection that would be one client too many: the error, then close
    (what is written is sent before the close)."""
    stats.rejected_connections += 1
    transport.write(MAX_CLIENTS_REACHED)
    transport.close()


def fit_open_files(maxclients: int) -> int:
    """Raise the open files limit for maxclients clients where possible (Redis's
    adjustOpenFilesLimit); the number of clients the limit now allows: maxclients itself,
    or fewer (possibly 0 or less) when the system refused.

    Redis asks for maxclients + 32 descriptors, then 16 fewer at a time until the system
    agrees or the current limit is reached. Whether the system agrees only depends on
    whether the number is above a ceiling (the hard limit, or for a privileged process the
    kernel's nr_open), so the same step is found here by bisection: a refused maxclients of
    100000000 costs some 20 calls instead of six million."""
    # maxclients is an unsigned int in Redis and the sum wraps: 4294967295 needs nothing.
    wanted = (maxclients + RESERVED_FDS) % _UINT_RANGE
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return 1024 - RESERVED_FDS
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return maxclients

    def granted(limit: int) -> bool:
        ceiling = hard if hard == resource.RLIM_INFINITY else max(hard, limit)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, ceiling))
        except (OSError, ValueError):
            return False
        return True

    if granted(wanted):
        log.info("raised the open files limit to %d (it was %d)", wanted, soft)
        return maxclients
    # The steps are wanted - 16 * k for k = 1 .. last, those above the current limit.
    best = soft
    low, high = 1, (wanted - soft - 1) // _FDS_STEP
    while low <= high:
        k = (low + high) // 2
        if granted(wanted - _FDS_STEP * k):
            best = wanted - _FDS_STEP * k  # granted: try fewer steps down
            high = k - 1
        else:
            low = k + 1
    return best - RESERVED_FDS


def startup_maxclients(maxclients: int) -> int:
    """maxclients as a starting shim can have it (lowered to what the open files limit
    allows, with Redis's warnings); SystemExit if that leaves no client at all."""
    fitted = fit_open_files(maxclients)
    if fitted == maxclients:
        return maxclients
    wanted = maxclients + RESERVED_FDS
    if fitted <= 0:
        raise SystemExit(
            f"the open files limit ('ulimit -n' {fitted + RESERVED_FDS}) is not enough for "
            f"the shim to start: raise it to at least {wanted}"
        )
    log.warning(
        "maxclients %d needs at least %d file descriptors, but the open files limit is %d: "
        "maxclients lowered to %d (raise 'ulimit -n' for more)",
        maxclients, wanted, fitted + RESERVED_FDS, fitted,
    )  # fmt: skip
    return fitted


# -- client-output-buffer-limit ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutputLimit:
    """One class's limits: 0 turns a limit off."""

    hard_bytes: int
    soft_bytes: int
    soft_seconds: int


NO_LIMIT: Final = OutputLimit(0, 0, 0)


def parse_output_limits(value: str) -> dict[str, OutputLimit]:
    """The canonical CONFIG value ("normal 0 0 0 slave ... pubsub ...") by class name."""
    words = value.split()
    return {
        words[i]: OutputLimit(int(words[i + 1]), int(words[i + 2]), int(words[i + 3]))
        for i in range(0, len(words) - 3, 4)
    }


class OutputLimits:
    """The normal and pubsub limits of the current setting, parsed once per value."""

    __slots__ = ("_text", "normal", "pubsub")

    def __init__(self) -> None:
        self._text = ""
        self.normal = NO_LIMIT
        self.pubsub = NO_LIMIT

    def update(self, text: str) -> None:
        if text != self._text:
            limits = parse_output_limits(text)
            self.normal = limits.get("normal", NO_LIMIT)
            self.pubsub = limits.get("pubsub", NO_LIMIT)
            self._text = text


class OutputGuard:
    """One connection's soft-limit clock (Redis's obuf_soft_limit_reached_time)."""

    __slots__ = ("soft_since",)

    def __init__(self) -> None:
        self.soft_since: float | None = None

    def exceeded(self, used_bytes: int, limit: OutputLimit, now: float) -> bool:
        """Whether a client with used_bytes of output waiting must be closed now: at or over
        the hard limit, or at or over the soft limit for more than its seconds (the clock
        starts at the first check over it, and stops at the first check under it)."""
        hard = limit.hard_bytes != 0 and used_bytes >= limit.hard_bytes
        soft = limit.soft_bytes != 0 and used_bytes >= limit.soft_bytes
        if not soft:
            self.soft_since = None
        elif self.soft_since is None:
            self.soft_since = now
            soft = False
        elif now - self.soft_since <= limit.soft_seconds:
            soft = False
        return hard or soft

    def recheck_after_s(self, limit: OutputLimit, now: float) -> float | None:
        """While over the soft limit: how long until its seconds run out."""
        if self.soft_since is None:
            return None
        return max(0.0, self.soft_since + limit.soft_seconds - now) + 0.01
