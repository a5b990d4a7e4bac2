"""A log node's HTTP side port (``logsvc serve --metrics-listen HOST:PORT``): ``/metrics``
for Prometheus. docs/monitoring.md lists the names.

Two kinds of numbers. Counters and histograms the driver updates as it works
(`NodeMetrics`: syncs, commits, leader changes), cheap enough for the hot path: a few
integer additions and one histogram observation per synced batch and per committed append.
And gauges read at scrape time from the node's own `status()`: that walks state the event
loop owns, so the HTTP thread never reads it directly; it asks the loop for one consistent
copy and waits at most `SCRAPE_TIMEOUT_S`. A wedged loop thus fails the scrape (HTTP 503),
which is itself the alarm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from logsvc.node import LogNode, NodeStatus

log = logging.getLogger("logsvc.metrics")

SCRAPE_TIMEOUT_S: Final = 2.0
# The data directory's size is a walk of its files: at most once per this many seconds.
DISK_WALK_EVERY_S: Final = 10.0
ROLES: Final = ("leader", "follower", "candidate", "pre_candidate", "starting", "failed")
# Seconds: 100 µs doubling up to about 6.5 s (a sync or a commit beyond that is an outage).
_LATENCY_BUCKETS: Final = tuple(0.0001 * 2**i for i in range(17))
_COUNT_BUCKETS: Final = tuple(float(2**i) for i in range(15))


@dataclass
class NodeMetrics:
    """What the driver counts as it goes. Plain attributes for the counters (the event loop
    is their only writer); prometheus_client histograms, which lock, for the distributions."""

    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=False)
    )
    syncs: int = 0
    synced_entries: int = 0
    appends_committed: int = 0
    records_committed: int = 0
    appends_failed: int = 0
    leader_changes: int = 0
    leader_seen: str | None = None
    sync_seconds: Histogram = field(init=False)
    sync_entries: Histogram = field(init=False)
    commit_seconds: Histogram = field(init=False)
    append_records: Histogram = field(init=False)

    def __post_init__(self) -> None:
        self.sync_seconds = Histogram(
            "memlog_log_sync_duration_seconds",
            "Time from handing a batch of entries and hard state to the writer thread until "
            "it was synced to disk (RocksDB write and WAL fsync).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.sync_entries = Histogram(
            "memlog_log_sync_batch_entries",
            "Raft entries written per synced batch (group commit).",
            buckets=_COUNT_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "memlog_log_commit_duration_seconds",
            "On the leader: time from proposing an append until it was committed on a "
            "majority and applied.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.append_records = Histogram(
            "memlog_log_append_batch_records",
            "Records per committed append.",
            buckets=_COUNT_BUCKETS,
            registry=self.registry,
        )

    def synced(self, entries: int, seconds: float) -> None:
        self.syncs += 1
        self.synced_entries += entries
        self.sync_seconds.observe(seconds)
        self.sync_entries.observe(entries)

    def committed(self, records: int, seconds: float) -> None:
        self.appends_committed += 1
        self.records_committed += records
        self.commit_seconds.observe(seconds)
        self.append_records.observe(records)

    def leader_is(self, leader: str | None) -> None:
        """Count a change of the known leader (none known counts as no change)."""
        if leader and leader != self.leader_seen:
            if self.leader_seen is not None:
                self.leader_changes += 1
            self.leader_seen = leader


@dataclass(frozen=True, slots=True)
class Scrape:
    """One consistent copy of what the gauges show, taken on the event loop."""

    status: NodeStatus
    pending_appends: int
    pending_bytes: int
    counters: tuple[int, int, int, int, int, int]


def take_scrape(node: LogNode) -> Scrape:
    m = node.metrics
    pending_appends, pending_bytes = node.pending_totals()
    return Scrape(
        status=node.status(),
        pending_appends=pending_appends,
        pending_bytes=pending_bytes,
        counters=(
            m.syncs,
            m.synced_entries,
            m.appends_committed,
            m.records_committed,
            m.appends_failed,
            m.leader_changes,
        ),
    )


class _DiskUsage:
    """The data directory's bytes (walked at most every DISK_WALK_EVERY_S) and its
    filesystem's free and total bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._used = 0
        self._walked_at = float("-inf")

    def used(self) -> int:
        now = time.monotonic()
        if now - self._walked_at >= DISK_WALK_EVERY_S:
            total = 0
            for root, _dirs, files in os.walk(self.path):
                for name in files:
                    # (a file removed while walked: a compaction, a trim)
                    with contextlib.suppress(OSError):
                        total += os.lstat(os.path.join(root, name)).st_size
            self._used, self._walked_at = total, now
        return self._used

    def filesystem(self) -> tuple[int, int]:
        try:
            usage = shutil.disk_usage(self.path)
        except OSError:
            return 0, 0
        return usage.free, usage.total


class NodeCollector(Collector):
    def __init__(self, node: LogNode, loop: asyncio.AbstractEventLoop) -> None:
        self.node, self.loop = node, loop
        self.disk = _DiskUsage(node.config.data_dir / node.config.id)

    def _scrape(self) -> Scrape:
        async def copy() -> Scrape:
            return take_scrape(self.node)

        return asyncio.run_coroutine_threadsafe(copy(), self.loop).result(SCRAPE_TIMEOUT_S)

    def collect(self) -> Iterator[Metric]:
        scrape = self._scrape()  # raises on a wedged loop: the scrape fails
        st, config = scrape.status, self.node.config
        info = GaugeMetricFamily(
            "memlog_log_node_info",
            "Constant 1, labelled with the node's identity.",
            labels=["cluster_id", "node_id", "zone"],
        )
        info.add_metric([config.cluster_id, st.id, st.zone], 1)
        yield info
        role = GaugeMetricFamily(
            "memlog_log_role", "1 for the node's current Raft role, 0 for the others.",
            labels=["role"],
        )  # fmt: skip
        for name in ROLES:
            role.add_metric([name], 1 if st.role == name else 0)
        yield role
        yield GaugeMetricFamily(
            "memlog_log_is_leader", "1 on the leader (sum over nodes: 0 means none).",
            value=1 if st.role == "leader" else 0,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "memlog_log_leader_known", "1 while this node knows a leader.",
            value=1 if st.leader_id else 0,
        )  # fmt: skip
        yield GaugeMetricFamily("memlog_log_term", "The current Raft term.", value=st.term)
        syncs, synced, appends, records, failed, changes = scrape.counters
        yield CounterMetricFamily(
            "memlog_log_leader_changes", "Changes of the leader this node has seen.",
            value=changes,
        )  # fmt: skip
        yield CounterMetricFamily(
            "memlog_log_syncs", "Synced writes of entries and hard state.", value=syncs
        )
        yield CounterMetricFamily(
            "memlog_log_synced_entries", "Raft entries synced to disk.", value=synced
        )
        yield CounterMetricFamily(
            "memlog_log_appends_committed",
            "Appends proposed on this node (as leader) that committed.",
            value=appends,
        )
        yield CounterMetricFamily(
            "memlog_log_records_committed",
            "Records of the appends proposed on this node that committed.",
            value=records,
        )
        yield CounterMetricFamily(
            "memlog_log_appends_failed",
            "Appends proposed on this node that did not commit here (leadership lost, "
            "another entry won the index, the node failed).",
            value=failed,
        )
        for name, text, value in (
            ("first_index", "The first record index the log retains.", st.first_index),
            ("last_index", "The last record index (committed and applied here).",
             st.last_index),
            ("raft_last_index", "The last Raft entry index this node holds.", st.raft_last_index),
            ("raft_commit_index", "The Raft commit index this node knows.",
             st.raft_commit_index),
            ("raft_applied_index", "The last Raft entry this node applied.",
             st.raft_applied_index),
        ):  # fmt: skip
            yield GaugeMetricFamily(f"memlog_log_{name}", text, value=value)
        yield GaugeMetricFamily(
            "memlog_log_records_retained",
            "Records the log holds (last index - first index + 1): what trims keep bounded.",
            value=max(0, st.last_index - st.first_index + 1) if st.last_index else 0,
        )
        lag = GaugeMetricFamily(
            "memlog_log_follower_lag_entries",
            "On the leader: Raft entries a peer has not yet acknowledged.",
            labels=["peer"],
        )
        for peer, info_ in sorted(st.peers.items()):
            lag.add_metric([peer], max(0, st.raft_last_index - info_.match_index))
        yield lag
        yield GaugeMetricFamily(
            "memlog_log_pending_appends", "Appends proposed and waiting to commit.",
            value=scrape.pending_appends,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "memlog_log_pending_bytes", "Record bytes of the appends waiting to commit.",
            value=scrape.pending_bytes,
        )  # fmt: skip
        snaps = st.snapshots
        newest = snaps.newest_snapshot
        yield GaugeMetricFamily(
            "memlog_log_snapshot_newest_index",
            "The record index of the newest durable snapshot (0: none).",
            value=newest.index if newest is not None else 0,
        )
        yield GaugeMetricFamily(
            "memlog_log_snapshot_age_seconds",
            "Age of the newest durable snapshot (0: none).",
            value=snaps.newest_snapshot_age_ms / 1000 if newest is not None else 0,
        )
        yield GaugeMetricFamily(
            "memlog_log_snapshots_durable", "Durable snapshots in the catalog.",
            value=snaps.snapshots_durable,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "memlog_log_snapshots_missing",
            "Durable snapshots whose bytes this node does not hold yet.",
            value=snaps.snapshots_missing,
        )
        yield GaugeMetricFamily(
            "memlog_log_auto_trim_before_index",
            "The before-index of the last automatic trim this node proposed (0: none).",
            value=snaps.auto_trim_before_index,
        )
        yield GaugeMetricFamily(
            "memlog_log_data_bytes", "Bytes of files in this node's data directory.",
            value=self.disk.used(),
        )  # fmt: skip
        free, total = self.disk.filesystem()
        yield GaugeMetricFamily(
            "memlog_log_filesystem_free_bytes",
            "Free bytes on the data directory's filesystem.",
            value=free,
        )
        yield GaugeMetricFamily(
            "memlog_log_filesystem_size_bytes",
            "Size of the data directory's filesystem.",
            value=total,
        )


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self._answer(404, b"not found: /metrics\n")
            return
        try:
            body = generate_latest(self.server.registry)
        except TimeoutError:
            self._answer(503, b"the node's event loop did not answer within 2s\n")
            return
        self._answer(200, body, "text/plain; version=0.0.4; charset=utf-8")

    def _answer(self, status: int, body: bytes, kind: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # scrapes are not news


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry) -> None:
        super().__init__(address, _Handler)
        self.registry = registry


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"--metrics-listen {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def serve_metrics(listen: str, node: LogNode) -> ThreadingHTTPServer:
    """Start the side port in a daemon thread (call on the node's event loop); the caller
    shuts it down."""
    registry = node.metrics.registry
    registry.register(NodeCollector(node, asyncio.get_running_loop()))
    registry.register(ProcessCollector(registry=None))
    server = _Server(parse_listen(listen), registry)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    log.info("metrics on %s:%d", *server.server_address[:2])
    return server
