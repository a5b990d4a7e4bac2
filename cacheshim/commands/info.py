"""INFO (Redis server.c genRedisInfoString): the shim described in Redis's sections and
fields, so monitoring tools and client libraries read it as they read Redis, plus a
``# Memlog`` section with the shim's place in the log.

Fields that describe machinery the shim does not have (RDB, AOF, replication backlog, Lua)
carry the values Redis shows when that machinery is idle. Memory is the process's resident
set size: the shim runs in a Python process, so allocator-level numbers do not exist.
"""

from __future__ import annotations

import functools
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from typing import Final

from cacheshim.commands import Ctx, command
from cacheshim.commands.connection import session_of
from cacheshim.commands.serverview import ShimView
from cacheshim.config.defaults import REDIS_VERSION
from cacheshim.hub import CHANNELS, PATTERNS, SHARD_CHANNELS
from cacheshim.protocol.resp import Reply, Verbatim
from cacheshim.types.keyspace import Keyspace


@functools.cache
def memlog_version() -> str:
    """memlog's installed version. Looked up on the first INFO, not at import:
    importlib.metadata costs a restarting shim tens of milliseconds before it serves."""
    import importlib.metadata

    return importlib.metadata.version("memlog")


# Redis's lru_clock ticks in seconds and wraps at 24 bits.
_LRU_CLOCK_MAX: Final = (1 << 24) - 1

Lines = list[tuple[str, object]]


def human_bytes(amount: int) -> str:
    """Redis's bytesToHuman: 1.02M, 1004.56K, 0B."""
    for unit, size in (("P", 1024**5), ("T", 1024**4), ("G", 1024**3), ("M", 1024**2)):
        if amount >= size:
            return f"{amount / size:.2f}{unit}"
    if amount >= 1024:
        return f"{amount / 1024:.2f}K"
    return f"{amount}B"


def _server(shim: ShimView, now_ms: int) -> Lines:
    uname = platform.uname()
    uptime_s = (now_ms - shim.stats.started_ms) // 1000
    return [
        ("redis_version", REDIS_VERSION),
        ("redis_git_sha1", "00000000"),
        ("redis_git_dirty", 0),
        ("redis_build_id", "0"),
        ("redis_mode", "standalone"),
        ("os", f"{uname.system} {uname.release} {uname.machine}"),
        ("arch_bits", 64 if sys.maxsize > 2**32 else 32),
        ("monotonic_clock", "POSIX clock_gettime"),
        ("multiplexing_api", "epoll" if sys.platform.startswith("linux") else "kqueue"),
        ("atomicvar_api", "c11-builtin"),
        ("gcc_version", "0.0.0"),
        ("process_id", os.getpid()),
        ("process_supervised", "no"),
        ("run_id", shim.run_id),
        ("tcp_port", shim.config.port),
        ("server_time_usec", time.time_ns() // 1000),
        ("uptime_in_seconds", uptime_s),
        ("uptime_in_days", uptime_s // 86400),
        ("hz", shim.server_config.int_value("hz")),
        ("configured_hz", shim.server_config.int_value("hz")),
        ("lru_clock", (now_ms // 1000) & _LRU_CLOCK_MAX),
        ("executable", sys.executable),
        ("config_file", ""),
        ("io_threads_active", 0),
    ]


def _clients(shim: ShimView, now_ms: int) -> Lines:
    return [
        ("connected_clients", len(shim.sessions)),
        ("cluster_connections", 0),
        ("maxclients", shim.server_config.int_value("maxclients")),
        ("client_recent_max_input_buffer", 0),
        ("client_recent_max_output_buffer", 0),
        ("blocked_clients", shim.blocking.blocked_clients),
        ("tracking_clients", shim.tracking.clients),
        ("clients_in_timeout_table", shim.blocking.clients_in_timeout_table),
    ]


def _memory(shim: ShimView, now_ms: int) -> Lines:
    stats = shim.stats
    used = stats.rss_bytes()
    peak = max(stats.peak_rss_bytes, used)
    startup = min(stats.startup_rss_bytes, used)
    dataset = used - startup
    maxmemory = shim.server_config.int_value("maxmemory")
    total_system = _total_system_memory()
    scripts = shim.applier.scripts
    lua_bytes = scripts.lua_memory_bytes()
    script_bytes = sum(len(script.body) for script in scripts.scripts.values())
    return [
        ("used_memory", used),
        ("used_memory_human", human_bytes(used)),
        ("used_memory_rss", used),
        ("used_memory_rss_human", human_bytes(used)),
        ("used_memory_peak", peak),
        ("used_memory_peak_human", human_bytes(peak)),
        ("used_memory_peak_perc", f"{100 * used / peak:.2f}%"),
        ("used_memory_overhead", startup),
        ("used_memory_startup", startup),
        ("used_memory_dataset", dataset),
        ("used_memory_dataset_perc", f"{100 * dataset / used:.2f}%"),
        ("total_system_memory", total_system),
        ("total_system_memory_human", human_bytes(total_system)),
        ("used_memory_lua", lua_bytes),
        ("used_memory_lua_human", human_bytes(lua_bytes)),
        ("used_memory_scripts", script_bytes),
        ("used_memory_scripts_human", human_bytes(script_bytes)),
        ("number_of_cached_scripts", len(scripts.scripts)),
        ("number_of_functions", len(scripts.functions)),
        ("number_of_libraries", len(scripts.libraries)),
        ("maxmemory", maxmemory),
        ("maxmemory_human", human_bytes(maxmemory)),
        ("maxmemory_policy", shim.server_config.get("maxmemory-policy")),
        ("mem_fragmentation_ratio", "1.00"),
        ("mem_fragmentation_bytes", 0),
        ("mem_not_counted_for_evict", 0),
        ("mem_replication_backlog", 0),
        ("mem_clients_slaves", 0),
        ("mem_clients_normal", 0),
        ("mem_aof_buffer", 0),
        ("mem_allocator", "libc"),
        ("active_defrag_running", 0),
        ("lazyfree_pending_objects", 0),
        ("lazyfreed_objects", 0),
    ]


def _total_system_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def _persistence(shim: ShimView, now_ms: int) -> Lines:
    from cacheshim import persistence

    store = dict(persistence.info_fields(shim, now_ms))
    lines: Lines = [
        ("loading", int(getattr(shim, "loading", False))),  # Replica._rebootstrap
        ("async_loading", 0),
        ("current_cow_peak", 0),
        ("current_cow_size", 0),
        ("current_cow_size_age", 0),
        ("current_fork_perc", "0.00"),
        ("current_save_keys_processed", 0),
        ("current_save_keys_total", 0),
        ("rdb_changes_since_last_save", store.pop("rdb_changes_since_last_save")),
        ("rdb_bgsave_in_progress", store.pop("rdb_bgsave_in_progress")),
        ("rdb_last_save_time", store.pop("rdb_last_save_time")),
        ("rdb_last_bgsave_status", store.pop("rdb_last_bgsave_status")),
        ("rdb_last_bgsave_time_sec", store.pop("rdb_last_bgsave_time_sec")),
        ("rdb_current_bgsave_time_sec", -1),
        ("rdb_saves", store.pop("rdb_saves")),
        ("rdb_last_cow_size", 0),
        ("aof_enabled", 0),
        ("aof_rewrite_in_progress", 0),
        ("aof_rewrite_scheduled", 0),
        ("aof_last_rewrite_time_sec", -1),
        ("aof_current_rewrite_time_sec", -1),
        ("aof_last_bgrewrite_status", "ok"),
        ("aof_rewrites", 0),
        ("aof_last_write_status", "ok"),
        ("module_fork_in_progress", 0),
        ("module_fork_last_cow_size", 0),
    ]
    return lines + list(store.items())


def _stats(shim: ShimView, now_ms: int) -> Lines:
    stats = shim.stats
    stats.commands.settle()
    return [
        ("total_connections_received", stats.connections_received),
        ("total_commands_processed", stats.commands_processed),
        ("instantaneous_ops_per_sec", round(stats.instantaneous.rate("ops"))),
        ("total_net_input_bytes", stats.net_input_bytes),
        ("total_net_output_bytes", stats.net_output_bytes),
        ("instantaneous_input_kbps", f"{stats.instantaneous.rate('net_input') / 1024:.2f}"),
        ("instantaneous_output_kbps", f"{stats.instantaneous.rate('net_output') / 1024:.2f}"),
        ("rejected_connections", stats.rejected_connections),
        ("sync_full", 0),
        ("sync_partial_ok", 0),
        ("sync_partial_err", 0),
        ("expired_keys", shim.applier.keyspace.expired_keys),
        ("expired_stale_perc", "0.00"),
        ("expired_time_cap_reached_count", 0),
        ("evicted_keys", 0),
        ("evicted_clients", 0),
        ("keyspace_hits", stats.commands.keyspace_hits),
        ("keyspace_misses", stats.commands.keyspace_misses),
        ("pubsub_channels", shim.pubsub.active(CHANNELS)),
        ("pubsub_patterns", shim.pubsub.active(PATTERNS)),
        ("pubsubshard_channels", shim.pubsub.active(SHARD_CHANNELS)),
        ("latest_fork_usec", 0),
        ("total_forks", 0),
        ("migrate_cached_sockets", 0),
        ("tracking_total_keys", len(shim.tracking.table)),
        ("tracking_total_items", shim.tracking.items),
        ("tracking_total_prefixes", len(shim.tracking.prefixes)),
        ("unexpected_error_replies", 0),
        ("total_error_replies", stats.commands.error_replies),
        ("dump_payload_sanitizations", 0),
        # Not in Redis 7.0's INFO (it only logs these); later versions count them so.
        (
            "client_output_buffer_limit_disconnections",
            stats.client_output_buffer_limit_disconnections,
        ),
    ]


def _replication(shim: ShimView, now_ms: int) -> Lines:
    """Redis's fields, then memlog's (docs/monitoring.md). role stays master: every shim
    takes writes, and clients read role to decide where they may write. There are no Redis
    replicas (connected_slaves:0, no backlog); what replicates is the log, so the offset is
    this shim's applied index, and the memlog_ fields name the log nodes, their roles, and
    how far this shim is behind the newest commit index they reported."""
    applied = shim.applier.applied_index
    return [
        ("role", "master"),
        ("connected_slaves", 0),
        ("master_failover_state", "no-failover"),
        ("master_replid", shim.run_id),
        ("master_replid2", "0" * 40),
        ("master_repl_offset", applied),
        ("second_repl_offset", -1),
        ("repl_backlog_active", 0),
        ("repl_backlog_size", shim.server_config.int_value("repl-backlog-size")),
        ("repl_backlog_first_byte_offset", 0),
        ("repl_backlog_histlen", 0),
        *shim.stats.log.lines(applied),
    ]


def _cpu(shim: ShimView, now_ms: int) -> Lines:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    thread = time.thread_time()
    return [
        ("used_cpu_sys", f"{own.ru_stime:.6f}"),
        ("used_cpu_user", f"{own.ru_utime:.6f}"),
        ("used_cpu_sys_children", f"{children.ru_stime:.6f}"),
        ("used_cpu_user_children", f"{children.ru_utime:.6f}"),
        ("used_cpu_sys_main_thread", f"{own.ru_stime:.6f}"),
        ("used_cpu_user_main_thread", f"{thread:.6f}"),
    ]


def _empty(shim: ShimView, now_ms: int) -> Lines:
    return []


def _commandstats(shim: ShimView, now_ms: int) -> Lines:
    return shim.stats.commands.commandstats_lines()


def _errorstats(shim: ShimView, now_ms: int) -> Lines:
    return shim.stats.commands.errorstats_lines()


def _latencystats(shim: ShimView, now_ms: int) -> Lines:
    percentiles = (shim.server_config.get("latency-tracking-info-percentiles") or "").split()
    return shim.stats.commands.latencystats_lines(percentiles)


def _cluster(shim: ShimView, now_ms: int) -> Lines:
    return [("cluster_enabled", 0)]


def _keyspace(shim: ShimView, now_ms: int) -> Lines:
    return keyspace_lines(shim.applier.keyspace, now_ms)


def keyspace_lines(keyspace: Keyspace, now_ms: int) -> Lines:
    """``db0:keys=N,expires=M,avg_ttl=0`` for each database that has keys."""
    lines: Lines = []
    for db in keyspace.dbs:
        keys = db.size(now_ms)
        if keys:
            expires = sum(1 for when in db.expires.values() if when > now_ms)
            lines.append((f"db{db.index}", f"keys={keys},expires={expires},avg_ttl=0"))
    return lines


def _memlog(shim: ShimView, now_ms: int) -> Lines:
    applied = shim.applier.applied_index
    silent_ms = shim.log_silent_ms()
    limit_ms = shim.config.max_staleness_ms
    return [
        ("memlog_version", memlog_version()),
        ("shim_id", shim.config.shim_id),
        ("zone", shim.config.zone),
        ("log_applied_index", applied),
        # What the shim knows of the commit index: everything it applied is committed.
        ("log_commit_index", max(applied, shim.log_commit_index, shim.caught_up_index)),
        ("log_leader", shim.log_leader),
        ("log_local_node", shim.config.local_log_address),
        ("linearizable_reads_default", "yes" if shim.config.linearizable_reads else "no"),
        # How long since the shim last heard from a live log (a record, a keepalive of a
        # node that knows a leader, a read index, an own write committed); the limit past
        # which local reads are refused (0: none), and whether they are now.
        ("log_silent_ms", silent_ms),
        ("log_last_io_seconds_ago", silent_ms // 1000),
        ("max_staleness_ms", limit_ms),
        ("local_reads_refused", int(bool(limit_ms) and silent_ms > limit_ms)),
    ]


Section = Callable[[ShimView, int], Lines]

# (name, title, generator) in the order INFO prints them.
SECTIONS: Final[list[tuple[str, str, Section]]] = [
    ("server", "Server", _server),
    ("clients", "Clients", _clients),
    ("memory", "Memory", _memory),
    ("persistence", "Persistence", _persistence),
    ("stats", "Stats", _stats),
    ("replication", "Replication", _replication),
    ("cpu", "CPU", _cpu),
    ("modules", "Modules", _empty),
    ("commandstats", "Commandstats", _commandstats),
    ("errorstats", "Errorstats", _errorstats),
    ("latencystats", "Latencystats", _latencystats),
    ("cluster", "Cluster", _cluster),
    ("keyspace", "Keyspace", _keyspace),
    ("memlog", "Memlog", _memlog),
]
DEFAULT_SECTIONS: Final = frozenset(
    {
        "server",
        "clients",
        "memory",
        "persistence",
        "stats",
        "replication",
        "cpu",
        "modules",
        "errorstats",
        "cluster",
        "keyspace",
        "memlog",
    }
)
ALL_SECTIONS: Final = DEFAULT_SECTIONS | {"commandstats", "latencystats"}


def wanted_sections(args: list[bytes]) -> frozenset[str]:
    """The sections INFO's arguments name (any case); none named means the default set."""
    if not args:
        return DEFAULT_SECTIONS
    wanted: set[str] = set()
    for arg in args:
        name = arg.decode("utf-8", "surrogateescape").lower()
        if name == "default":
            wanted |= DEFAULT_SECTIONS
        elif name in ("all", "everything"):
            wanted |= ALL_SECTIONS
        else:
            wanted.add(name)
    return frozenset(wanted)


def info_text(shim: ShimView, sections: frozenset[str], now_ms: int) -> str:
    parts: list[str] = []
    for name, title, generate in SECTIONS:
        if name in sections:
            lines = generate(shim, now_ms)
            parts.append(f"# {title}\r\n" + "".join(f"{k}:{v}\r\n" for k, v in lines))
    return "\r\n".join(parts)


@command(
    "info", -1, "loading stale", (0, 0, 0), "slow dangerous", "server", "1.0.0",
    "Answers the server's statistics and state, section by section, as text.",
    tips="nondeterministic_output request_policy:all_shards response_policy:special",
)  # fmt: skip
def info(ctx: Ctx, args: list[bytes]) -> Reply:
    shim = session_of(ctx, "INFO").shim
    text = info_text(shim, wanted_sections(args), ctx.now_ms)
    return Verbatim(text.encode("utf-8", "surrogateescape"))
