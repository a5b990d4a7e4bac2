"""Server commands (Redis server.c, db.c, debug.c, object.c, functions.c): keyspace-wide
operations and introspection.

FLUSHDB, FLUSHALL and FUNCTION FLUSH/DELETE change data: they are writes and go through the
log. Everything else here reads the shim's own memory or state and answers at once.
Persistence commands answer as a Redis with nothing to save would: memlog's persistence is
the log, written before any write is acknowledged.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterable, Mapping, Sized
from typing import Final

from cacheshim.commands import Ctx, command, container
from cacheshim.commands.args import parse_int
from cacheshim.commands.connection import help_reply, session_of
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError, text_from_bytes
from cacheshim.protocol.resp import OK, Reply, Status, Verbatim
from cacheshim.types.keyspace import Database, value_digest

EMPTY_DIGEST: Final = "0" * 40
DEBUG_UNKNOWN: Final = (
    "ERR unknown subcommand or wrong number of arguments for '%s'. Try DEBUG HELP."
)
DEBUG_UNSUPPORTED: Final = "ERR memlog: DEBUG %s is not supported"
# Redis's DEBUG subcommands that the shim knows by name but does not carry out.
_DEBUG_OTHERS: Final = frozenset(
    {
        "AOF-FLUSH-SLEEP", "ASSERT", "CHANGE-REPL-ID", "CONFIG-REWRITE-FORCE-ALL",
        "CRASH-AND-RECOVER", "ERROR", "LEAK", "LOG", "HTSTATS", "HTSTATS-KEY", "LOADAOF",
        "REPLICATE", "MALLCTL", "MALLCTL-STR", "OBJECT", "DROP-CLUSTER-PACKET-FILTER", "OOM",
        "PANIC", "POPULATE", "PROTOCOL", "RELOAD", "RESTART", "SDSLEN", "SEGFAULT",
        "SET-ACTIVE-EXPIRE", "QUICKLIST-PACKED-THRESHOLD", "SET-SKIP-CHECKSUM-VALIDATION",
        "SLEEP", "STRINGMATCH-TEST", "STRUCTSIZE", "LISTPACK", "QUICKLIST", "CLIENT-EVICTION",
        "PAUSE-CRON", "REPLYBUFFER", "CLUSTERLINK", "JMAP",
    }
)  # fmt: skip


def _flush_mode(args: list[bytes]) -> None:
    if len(args) > 1 or (args and args[0].upper() not in (b"SYNC", b"ASYNC")):
        raise CommandError(errors.SYNTAX_ERROR)


@command(
    "flushdb", -1, "write", (0, 0, 0), "keyspace write slow dangerous", "server", "1.0.0",
    "Deletes every key of the selected database.",
    "O(N) where N is the number of keys in the selected database",
    tips="request_policy:all_shards response_policy:all_succeeded",
)  # fmt: skip
def flushdb(ctx: Ctx, args: list[bytes]) -> Reply:
    _flush_mode(args)
    ctx.db.flush(ctx.index)
    return OK


@command(
    "flushall", -1, "write", (0, 0, 0), "keyspace write slow dangerous", "server", "1.0.0",
    "Deletes every key of every database.",
    "O(N) where N is the total number of keys in all databases",
    tips="request_policy:all_shards response_policy:all_succeeded",
)  # fmt: skip
def flushall(ctx: Ctx, args: list[bytes]) -> Reply:
    _flush_mode(args)
    ctx.keyspace.flush(ctx.index)
    return OK


@command(
    "dbsize", 1, "readonly fast", (0, 0, 0), "keyspace read fast", "server", "1.0.0",
    "Answers how many keys the selected database holds.",
    tips="request_policy:all_shards response_policy:agg_sum",
)  # fmt: skip
def dbsize(ctx: Ctx, args: list[bytes]) -> Reply:
    return ctx.db.size(ctx.now_ms)


@command(
    "time", 1, "loading stale fast", (0, 0, 0), "fast", "server", "2.6.0",
    "Answers the shim's clock: unix seconds and microseconds.", tips="nondeterministic_output",
)  # fmt: skip
def time_(ctx: Ctx, args: list[bytes]) -> Reply:
    # Inside apply (a transaction that writes) the clock is the record's time.
    micros = time.time_ns() // 1000 if ctx.session is not None else ctx.now_ms * 1000
    return [b"%d" % (micros // 1_000_000), b"%d" % (micros % 1_000_000)]


@command(
    "lastsave", 1, "loading stale fast", (0, 0, 0), "admin fast dangerous", "server", "1.0.0",
    "Answers the unix time (seconds) of the last save: the shim's start, as nothing else saves.",
    tips="nondeterministic_output",
)  # fmt: skip
def lastsave(ctx: Ctx, args: list[bytes]) -> Reply:
    # When the newest durable snapshot was recorded (cacheshim.persistence); the shim's
    # start when there is none, as Redis counts from its start.
    from cacheshim import persistence

    return persistence.last_save_s(session_of(ctx, "LASTSAVE").shim)


@command(
    "save", 1, "admin noscript no_async_loading no_multi", (0, 0, 0), "admin slow dangerous",
    "server", "1.0.0", "Answers as a save would; memlog's data is already durable in the log.",
    "O(N) where N is the total number of keys in all databases",
)  # fmt: skip
def save(ctx: Ctx, args: list[bytes]) -> Reply:
    # From a connection the shim answers it (cacheshim.persistence: it waits for a durable
    # snapshot); this runs only in apply, for the marker record, and changes nothing.
    return OK


@command(
    "bgsave", -1, "admin noscript no_async_loading", (0, 0, 0), "admin slow dangerous",
    "server", "1.0.0", "Answers as a background save would; memlog's data is already durable in "
    "the log.",
    "O(N) where N is the total number of keys in all databases",
)  # fmt: skip
def bgsave(ctx: Ctx, args: list[bytes]) -> Reply:
    # From a connection: cacheshim.persistence. Here: the marker record in apply (a no-op).
    if len(args) > 1 or (args and args[0].upper() != b"SCHEDULE"):
        raise CommandError(errors.SYNTAX_ERROR)
    return Status("Background saving started")


@command(
    "role", 1, "noscript loading stale fast", (0, 0, 0), "admin fast dangerous", "server",
    "2.8.12", "Answers the replication role: always master, as each shim takes writes.",
)  # fmt: skip
def role(ctx: Ctx, args: list[bytes]) -> Reply:
    return [b"master", 0, []]


# -- DEBUG ------------------------------------------------------------------------------------


@command(
    "debug", -2, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous", "server",
    "1.0.0", "Holds the debugging subcommands.", "Depends on subcommand.",
)  # fmt: skip
def debug(ctx: Ctx, args: list[bytes]) -> Reply:
    sub, rest = args[0].upper(), args[1:]
    if sub == b"DIGEST" and not rest:
        # Every database's keys, values and expiry times; zeros for an empty keyspace.
        return Status(ctx.keyspace.digest())
    if sub == b"DIGEST-VALUE":
        return [Status(_value_digest(ctx.db, key, ctx.now_ms)) for key in rest]
    if sub == b"SLEEP" and len(rest) == 1 and _is_zero(rest[0]):
        return OK
    if sub == b"HELP" and not rest:
        return help_reply(
            [
                "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "DIGEST",
                "    A hex signature of every database's content (all zeros when empty).",
                "DIGEST-VALUE <key> [<key> ...]",
                "    A hex signature of each key's value (all zeros for a missing key).",
                "SLEEP 0",
                "    Do nothing (the shim never stops for longer).",
                "HELP",
                "    This text.",
            ]
        )
    name = text_from_bytes(args[0])
    if name.upper() in _DEBUG_OTHERS and name.upper() not in ("HELP", "DIGEST"):
        raise CommandError(DEBUG_UNSUPPORTED % name.upper())
    raise CommandError(DEBUG_UNKNOWN % name)


def _value_digest(db: Database, key: bytes, now_ms: int) -> str:
    value = db.get(key, now_ms)
    if value is None:
        return EMPTY_DIGEST
    return value_digest(value, db.expires.get(key)).hex()


def _is_zero(arg: bytes) -> bool:
    try:
        return float(arg) == 0
    except ValueError:
        return False


# -- MEMORY -----------------------------------------------------------------------------------

container(
    "memory", -2, "slow", "server", "4.0.0",
    "Reports and manages the server's memory use.",
)  # fmt: skip

# A dict slot, its hash and the key and value pointers: what a key costs beyond its objects.
_ENTRY_OVERHEAD_BYTES: Final = 3 * 8 + 16
_DEFAULT_SAMPLES: Final = 5


def value_size(value: object, samples: int) -> int:
    """An estimate of the bytes a value takes, as MEMORY USAGE reports: nested elements are
    sampled (the first ``samples`` of them, 0 for all) and the total extrapolated; only the
    sampled elements are visited, so a default MEMORY USAGE of a huge key stays cheap."""
    size = sys.getsizeof(value)
    if isinstance(value, bytes | bytearray | str | int | float):
        return size
    source: Iterable[object]
    if isinstance(value, Mapping):
        source, count = value.items(), len(value)
    elif isinstance(value, Sized) and isinstance(value, Iterable):
        source, count = value, len(value)
    else:
        return size
    if count == 0:
        return size
    chosen = list(source) if samples == 0 else list(itertools.islice(source, samples))
    sampled = sum(_element_size(item) for item in chosen)
    return size + sampled * count // len(chosen)


def _element_size(item: object) -> int:
    if isinstance(item, tuple):
        return sum(sys.getsizeof(part) for part in item)
    return sys.getsizeof(item)


@command(
    "usage", -3, "readonly", (2, 2, 1), "read slow", "server", "4.0.0",
    "Answers about how many bytes the key and its value "
    "take.", "O(N) where N is the number of samples.",
    container="memory", key_flags="RO",
)  # fmt: skip
def memory_usage(ctx: Ctx, args: list[bytes]) -> Reply:
    key, options = args[0], args[1:]
    samples = _DEFAULT_SAMPLES
    if options:
        if len(options) != 2 or options[0].upper() != b"SAMPLES":
            raise CommandError(errors.SYNTAX_ERROR)
        samples = parse_int(options[1])
        if samples < 0:
            raise CommandError(errors.SYNTAX_ERROR)
    value = ctx.db.get(key, ctx.now_ms)
    if value is None:
        return None
    size = sys.getsizeof(key) + value_size(value, samples) + _ENTRY_OVERHEAD_BYTES
    if key in ctx.db.expires:
        size += sys.getsizeof(key) // 4 + _ENTRY_OVERHEAD_BYTES  # the expires entry
    return size


@command(
    "stats", 2, "", (0, 0, 0), "slow", "server", "4.0.0",
    "Answers a breakdown of the process's memory use.", container="memory",
    tips="nondeterministic_output request_policy:all_shards response_policy:special",
)  # fmt: skip
def memory_stats(ctx: Ctx, args: list[bytes]) -> Reply:
    shim = session_of(ctx, "MEMORY STATS").shim
    used = shim.stats.rss_bytes()
    startup = min(shim.stats.startup_rss_bytes, used)
    dataset = used - startup
    keys = sum(db.size(ctx.now_ms) for db in ctx.keyspace.dbs)
    stats: dict[Reply, Reply] = {
        b"peak.allocated": max(shim.stats.peak_rss_bytes, used),
        b"total.allocated": used,
        b"startup.allocated": startup,
        b"replication.backlog": 0,
        b"clients.slaves": 0,
        b"clients.normal": 0,
        b"cluster.links": 0,
        b"aof.buffer": 0,
        b"lua.caches": 0,
        b"functions.caches": 0,
    }
    for db in ctx.keyspace.dbs:
        if db.data:
            stats[f"db.{db.index}".encode()] = {
                b"overhead.hashtable.main": sys.getsizeof(db.data),
                b"overhead.hashtable.expires": sys.getsizeof(db.expires),
                b"overhead.hashtable.slot-to-keys": 0,
            }
    stats.update(
        {
            b"overhead.total": startup,
            b"keys.count": keys,
            b"keys.bytes-per-key": dataset // keys if keys else 0,
            b"dataset.bytes": dataset,
            b"dataset.percentage": 100.0 * dataset / used if used else 0.0,
            b"peak.percentage": 100.0 * used / max(shim.stats.peak_rss_bytes, used, 1),
            b"fragmentation": 1.0,
            b"fragmentation.bytes": 0,
        }
    )
    return stats


@command(
    "doctor", 2, "", (0, 0, 0), "slow", "server", "4.0.0",
    "Answers a short text about the memory state.", container="memory",
    tips="nondeterministic_output request_policy:all_shards response_policy:special",
)  # fmt: skip
def memory_doctor(ctx: Ctx, args: list[bytes]) -> Reply:
    return Verbatim(
        b"memlog: the shim reports its process's resident memory (INFO memory); it has no "
        b"allocator-level diagnostics to offer.\n"
    )


@command(
    "malloc-stats", 2, "", (0, 0, 0), "slow", "server", "4.0.0",
    "Answers that the allocator keeps no statistics "
    "here.", "Depends on how much memory is allocated, could be "
    "slow", container="memory",
    tips="nondeterministic_output request_policy:all_shards response_policy:special",
)  # fmt: skip
def memory_malloc_stats(ctx: Ctx, args: list[bytes]) -> Reply:
    return Verbatim(b"Stats not supported for the current allocator")


@command(
    "purge", 2, "", (0, 0, 0), "slow", "server", "4.0.0",
    "Asks the allocator to give memory back (nothing to do "
    "here).", "Depends on how much memory is allocated, "
    "could be slow", container="memory",
    tips="request_policy:all_shards response_policy:all_succeeded",
)  # fmt: skip
def memory_purge(ctx: Ctx, args: list[bytes]) -> Reply:
    return OK


@command(
    "help", 2, "loading stale", (0, 0, 0), "slow", "server", "4.0.0",
    "Lists the MEMORY subcommands.", container="memory",
)  # fmt: skip
def memory_help(ctx: Ctx, args: list[bytes]) -> Reply:
    return help_reply(
        [
            "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "USAGE <key> [SAMPLES <count>]",
            "    An estimate of the bytes <key> and its value take; nested values are",
            "    sampled up to <count> elements (5 by default, 0 for all).",
            "STATS",
            "    The shim's memory use.",
            "DOCTOR",
            "    A memory report.",
            "MALLOC-STATS",
            "    Allocator statistics (none: the shim runs on the C library's allocator).",
            "PURGE",
            "    Ask the allocator to return memory (nothing to do).",
            "HELP",
            "    This text.",
        ]
    )
