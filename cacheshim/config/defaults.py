"""Redis 7.0.15's configuration parameters: every name CONFIG GET * lists, its default, and
the kind of value CONFIG SET accepts for it.

These are facts about the server's interface, gathered from a live redis-server 7.0.15 at
development time (``CONFIG GET *`` on a server started with no configuration file, then
``CONFIG SET`` of out-of-range and malformed values to learn each parameter's kind, bounds
and error). The defaults are Redis's; the shim overrides the few that describe itself (port,
bind, dir, ...) in :mod:`cacheshim.commands.configcmd`.

Kinds:

- ``BOOL``: ``yes`` or ``no`` (any case); printed in lower case.
- ``ENUM``: one of ``values`` (any case); printed as listed.
- ``INT``: a strict decimal integer within ``[low, high]``.
- ``MEMORY``: digits with an optional unit (``b``, ``k``, ``kb``, ``m``, ``mb``, ``g``,
  ``gb``, any case; ``k`` is 1000 and ``kb`` 1024), within ``[low, high]``.
- ``MEMORY_OR_PERCENT``: a ``MEMORY`` value or ``N%`` with N at most 100.
- ``STRING``: anything.
- ``SPECIAL``: a format of its own (``save``, ``client-output-buffer-limit``, ...).
- ``IMMUTABLE``: set at start only; CONFIG SET refuses it.
- ``PROTECTED``: CONFIG SET refuses it unless ``enable-protected-configs`` allows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# The Redis release whose interface memlog speaks: INFO reports it and RDB files carry it.
REDIS_VERSION: Final = "7.0.15"

BOOL: Final = "bool"
ENUM: Final = "enum"
INT: Final = "int"
MEMORY: Final = "memory"
MEMORY_OR_PERCENT: Final = "memory-or-percent"
STRING: Final = "string"
SPECIAL: Final = "special"
IMMUTABLE: Final = "immutable"
PROTECTED: Final = "protected"

INT_MIN: Final = -(2**31)
INT_MAX: Final = 2**31 - 1
UINT_MAX: Final = 2**32 - 1
LLONG_MAX: Final = 2**63 - 1
ULLONG_MAX: Final = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Param:
    default: str
    kind: str
    low: int = 0
    high: int = 0
    values: tuple[str, ...] = ()


# Canonical names; the aliases below read and write the same values.
PARAMS: Final[dict[str, Param]] = {
    "acl-pubsub-default": Param("resetchannels", ENUM, values=("allchannels", "resetchannels")),
    "aclfile": Param("", IMMUTABLE),
    "acllog-max-len": Param("128", INT, 0, LLONG_MAX),
    "active-defrag-cycle-max": Param("25", INT, 1, 99),
    "active-defrag-cycle-min": Param("1", INT, 1, 99),
    "active-defrag-ignore-bytes": Param("104857600", MEMORY, 1, LLONG_MAX),
    "active-defrag-max-scan-fields": Param("1000", INT, 1, LLONG_MAX),
    "active-defrag-threshold-lower": Param("10", INT, 0, 1000),
    "active-defrag-threshold-upper": Param("100", INT, 0, 1000),
    "active-expire-effort": Param("1", INT, 1, 10),
    "activedefrag": Param("no", BOOL),
    "activerehashing": Param("yes", BOOL),
    "always-show-logo": Param("no", IMMUTABLE),
    "aof-disable-auto-gc": Param("no", BOOL),
    "aof-load-truncated": Param("yes", BOOL),
    "aof-rewrite-incremental-fsync": Param("yes", BOOL),
    "aof-timestamp-enabled": Param("no", BOOL),
    "aof-use-rdb-preamble": Param("yes", BOOL),
    "aof_rewrite_cpulist": Param("", IMMUTABLE),
    "appenddirname": Param("appendonlydir", IMMUTABLE),
    "appendfilename": Param("appendonly.aof", IMMUTABLE),
    "appendfsync": Param("everysec", ENUM, values=("everysec", "always", "no")),
    "appendonly": Param("no", BOOL),
    "auto-aof-rewrite-min-size": Param("67108864", MEMORY, 0, LLONG_MAX),
    "auto-aof-rewrite-percentage": Param("100", INT, 0, INT_MAX),
    "bgsave_cpulist": Param("", IMMUTABLE),
    "bind": Param("* -::*", SPECIAL),
    "bind-source-addr": Param("", STRING),
    "bio_cpulist": Param("", IMMUTABLE),
    "busy-reply-threshold": Param("5000", INT, 0, LLONG_MAX),
    "client-output-buffer-limit": Param(
        "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60", SPECIAL
    ),
    "client-query-buffer-limit": Param("1073741824", MEMORY, 1048576, LLONG_MAX),
    "cluster-allow-pubsubshard-when-down": Param("yes", BOOL),
    "cluster-allow-reads-when-down": Param("no", BOOL),
    "cluster-allow-replica-migration": Param("yes", BOOL),
    "cluster-announce-bus-port": Param("0", INT, 0, 65535),
    "cluster-announce-hostname": Param("", STRING),
    "cluster-announce-ip": Param("", STRING),
    "cluster-announce-port": Param("0", INT, 0, 65535),
    "cluster-announce-tls-port": Param("0", INT, 0, 65535),
    "cluster-config-file": Param("nodes.conf", IMMUTABLE),
    "cluster-enabled": Param("no", IMMUTABLE),
    "cluster-link-sendbuf-limit": Param("0", MEMORY, 0, ULLONG_MAX),
    "cluster-migration-barrier": Param("1", INT, 0, INT_MAX),
    "cluster-node-timeout": Param("15000", INT, 0, LLONG_MAX),
    "cluster-port": Param("0", IMMUTABLE),
    "cluster-preferred-endpoint-type": Param(
        "ip", ENUM, values=("ip", "hostname", "unknown-endpoint")
    ),
    "cluster-replica-no-failover": Param("no", BOOL),
    "cluster-replica-validity-factor": Param("10", INT, 0, INT_MAX),
    "cluster-require-full-coverage": Param("yes", BOOL),
    "crash-log-enabled": Param("yes", BOOL),
    "crash-memcheck-enabled": Param("yes", BOOL),
    "daemonize": Param("no", IMMUTABLE),
    "databases": Param("16", IMMUTABLE),
    "dbfilename": Param("dump.rdb", PROTECTED),
    "dir": Param("", PROTECTED),
    "disable-thp": Param("yes", IMMUTABLE),
    "dynamic-hz": Param("yes", BOOL),
    "enable-debug-command": Param("no", IMMUTABLE),
    "enable-module-command": Param("no", IMMUTABLE),
    "enable-protected-configs": Param("no", IMMUTABLE),
    "hash-max-listpack-entries": Param("512", INT, 0, LLONG_MAX),
    "hash-max-listpack-value": Param("64", MEMORY, 0, LLONG_MAX),
    "hll-sparse-max-bytes": Param("3000", MEMORY, 0, LLONG_MAX),
    "hz": Param("10", INT, 0, INT_MAX),
    "ignore-warnings": Param("", STRING),
    "io-threads": Param("1", IMMUTABLE),
    "io-threads-do-reads": Param("no", IMMUTABLE),
    "jemalloc-bg-thread": Param("yes", BOOL),
    "latency-monitor-threshold": Param("0", INT, 0, LLONG_MAX),
    "latency-tracking": Param("yes", BOOL),
    "latency-tracking-info-percentiles": Param("50 99 99.9", SPECIAL),
    "lazyfree-lazy-eviction": Param("no", BOOL),
    "lazyfree-lazy-expire": Param("no", BOOL),
    "lazyfree-lazy-server-del": Param("no", BOOL),
    "lazyfree-lazy-user-del": Param("no", BOOL),
    "lazyfree-lazy-user-flush": Param("no", BOOL),
    "lfu-decay-time": Param("1", INT, 0, INT_MAX),
    "lfu-log-factor": Param("10", INT, 0, INT_MAX),
    "list-compress-depth": Param("0", INT, 0, INT_MAX),
    "list-max-listpack-size": Param("-2", INT, INT_MIN, INT_MAX),
    "logfile": Param("", IMMUTABLE),
    "loglevel": Param("notice", ENUM, values=("debug", "verbose", "notice", "warning")),
    "masterauth": Param("", STRING),
    "masteruser": Param("", STRING),
    "maxclients": Param("10000", INT, 1, UINT_MAX),
    "maxmemory": Param("0", MEMORY, 0, ULLONG_MAX),
    "maxmemory-clients": Param("0", MEMORY_OR_PERCENT, 0, LLONG_MAX),
    "maxmemory-eviction-tenacity": Param("10", INT, 0, 100),
    "maxmemory-policy": Param(
        "noeviction",
        ENUM,
        values=(
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "noeviction",
        ),
    ),
    "maxmemory-samples": Param("5", INT, 1, INT_MAX),
    "min-replicas-max-lag": Param("10", INT, 0, INT_MAX),
    "min-replicas-to-write": Param("0", INT, 0, INT_MAX),
    "no-appendfsync-on-rewrite": Param("no", BOOL),
    "notify-keyspace-events": Param("", SPECIAL),
    "oom-score-adj": Param("no", ENUM, values=("no", "yes", "relative", "absolute")),
    "oom-score-adj-values": Param("0 200 800", SPECIAL),
    "pidfile": Param("", IMMUTABLE),
    "port": Param("6379", INT, 0, 65535),
    "proc-title-template": Param("{title} {listen-addr} {server-mode}", STRING),
    "propagation-error-behavior": Param(
        "ignore", ENUM, values=("ignore", "panic", "panic-on-replicas")
    ),
    "protected-mode": Param("yes", BOOL),
    "proto-max-bulk-len": Param("536870912", MEMORY, 1048576, LLONG_MAX),
    "rdb-del-sync-files": Param("no", BOOL),
    "rdb-save-incremental-fsync": Param("yes", BOOL),
    "rdbchecksum": Param("yes", IMMUTABLE),
    "rdbcompression": Param("yes", BOOL),
    "repl-backlog-size": Param("1048576", MEMORY, 1, LLONG_MAX),
    "repl-backlog-ttl": Param("3600", INT, 0, LLONG_MAX),
    "repl-disable-tcp-nodelay": Param("no", BOOL),
    "repl-diskless-load": Param("disabled", ENUM, values=("disabled", "on-empty-db", "swapdb")),
    "repl-diskless-sync": Param("yes", BOOL),
    "repl-diskless-sync-delay": Param("5", INT, 0, INT_MAX),
    "repl-diskless-sync-max-replicas": Param("0", INT, 0, INT_MAX),
    "repl-ping-replica-period": Param("10", INT, 1, INT_MAX),
    "repl-timeout": Param("60", INT, 1, INT_MAX),
    "replica-announce-ip": Param("", STRING),
    "replica-announce-port": Param("0", INT, 0, 65535),
    "replica-announced": Param("yes", BOOL),
    "replica-ignore-disk-write-errors": Param("no", BOOL),
    "replica-ignore-maxmemory": Param("yes", BOOL),
    "replica-lazy-flush": Param("no", BOOL),
    "replica-priority": Param("100", INT, 0, INT_MAX),
    "replica-read-only": Param("yes", BOOL),
    "replica-serve-stale-data": Param("yes", BOOL),
    "replicaof": Param("", IMMUTABLE),
    "requirepass": Param("", SPECIAL),
    "sanitize-dump-payload": Param("no", ENUM, values=("no", "yes", "clients")),
    "save": Param("3600 1 300 100 60 10000", SPECIAL),
    "server_cpulist": Param("", IMMUTABLE),
    "set-max-intset-entries": Param("512", INT, 0, LLONG_MAX),
    "set-proc-title": Param("yes", IMMUTABLE),
    "shutdown-on-sigint": Param(
        "default", ENUM, values=("default", "save", "nosave", "now", "force")
    ),
    "shutdown-on-sigterm": Param(
        "default", ENUM, values=("default", "save", "nosave", "now", "force")
    ),
    "shutdown-timeout": Param("10", INT, 0, INT_MAX),
    "slowlog-log-slower-than": Param("10000", INT, -1, LLONG_MAX),
    "slowlog-max-len": Param("128", INT, 0, LLONG_MAX),
    "socket-mark-id": Param("0", IMMUTABLE),
    "stop-writes-on-bgsave-error": Param("yes", BOOL),
    "stream-node-max-bytes": Param("4096", MEMORY, 0, LLONG_MAX),
    "stream-node-max-entries": Param("100", INT, 0, LLONG_MAX),
    "supervised": Param("no", IMMUTABLE),
    "syslog-enabled": Param("no", IMMUTABLE),
    "syslog-facility": Param("local0", IMMUTABLE),
    "syslog-ident": Param("redis", IMMUTABLE),
    "tcp-backlog": Param("511", IMMUTABLE),
    "tcp-keepalive": Param("300", INT, 0, INT_MAX),
    "timeout": Param("0", INT, 0, INT_MAX),
    "tls-auth-clients": Param("yes", ENUM, values=("no", "yes", "optional")),
    "tls-ca-cert-dir": Param("", STRING),
    "tls-ca-cert-file": Param("", STRING),
    "tls-cert-file": Param("", STRING),
    "tls-ciphers": Param("", STRING),
    "tls-ciphersuites": Param("", STRING),
    "tls-client-cert-file": Param("", STRING),
    "tls-client-key-file": Param("", STRING),
    "tls-client-key-file-pass": Param("", STRING),
    "tls-cluster": Param("no", BOOL),
    "tls-dh-params-file": Param("", STRING),
    "tls-key-file": Param("", STRING),
    "tls-key-file-pass": Param("", STRING),
    "tls-port": Param("0", INT, 0, 65535),
    "tls-prefer-server-ciphers": Param("no", BOOL),
    "tls-protocols": Param("", STRING),
    "tls-replication": Param("no", BOOL),
    "tls-session-cache-size": Param("20480", INT, 0, INT_MAX),
    "tls-session-cache-timeout": Param("300", INT, 0, INT_MAX),
    "tls-session-caching": Param("yes", BOOL),
    "tracking-table-max-keys": Param("1000000", INT, 0, LLONG_MAX),
    "unixsocket": Param("", IMMUTABLE),
    "unixsocketperm": Param("0", IMMUTABLE),
    "zset-max-listpack-entries": Param("128", INT, 0, LLONG_MAX),
    "zset-max-listpack-value": Param("64", MEMORY, 0, LLONG_MAX),
}

# Old names (and the Lua-era name of busy-reply-threshold) that CONFIG GET * also lists.
ALIASES: Final[dict[str, str]] = {
    "cluster-slave-no-failover": "cluster-replica-no-failover",
    "cluster-slave-validity-factor": "cluster-replica-validity-factor",
    "hash-max-ziplist-entries": "hash-max-listpack-entries",
    "hash-max-ziplist-value": "hash-max-listpack-value",
    "list-max-ziplist-size": "list-max-listpack-size",
    "lua-time-limit": "busy-reply-threshold",
    "min-slaves-max-lag": "min-replicas-max-lag",
    "min-slaves-to-write": "min-replicas-to-write",
    "repl-ping-slave-period": "repl-ping-replica-period",
    "slave-announce-ip": "replica-announce-ip",
    "slave-announce-port": "replica-announce-port",
    "slave-ignore-maxmemory": "replica-ignore-maxmemory",
    "slave-lazy-flush": "replica-lazy-flush",
    "slave-priority": "replica-priority",
    "slave-read-only": "replica-read-only",
    "slave-serve-stale-data": "replica-serve-stale-data",
    "slaveof": "replicaof",
    "zset-max-ziplist-entries": "zset-max-listpack-entries",
    "zset-max-ziplist-value": "zset-max-listpack-value",
}
