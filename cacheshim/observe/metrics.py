"""The shim's HTTP side port (``cacheshim serve --metrics-port``): ``/metrics`` for
Prometheus, ``/livez`` and ``/readyz`` for Kubernetes' probes. docs/monitoring.md lists
the metric names.

It runs in a thread of its own, not on the event loop: a wedged loop must still be seen
(``/livez`` fails then, and a scrape still answers). The collector reads the counters the
serving path keeps anyway (`ServerStats`: INFO's counters) at scrape time, so metrics cost
the hot path nothing. Reading them from another thread is safe under the GIL as long as
every dict is copied before it is walked (the loop may change it meanwhile).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from cacheshim.types.keyspace import LOOKUPS

if TYPE_CHECKING:
    from cacheshim.serverstate import ServerStats

log = logging.getLogger("cacheshim.observe")

# /livez fails when the event loop has not ticked (`ServerStats.loop_beat`) for this long.
LOOP_STALL_S: Final = 5.0
# /readyz fails when the shim is more than this many records behind the log's commit index.
READY_LAG_RECORDS_MAX: Final = 1000
# Histogram bounds in seconds: 1 µs doubling up to about 1 s (the counters' power-of-two
# buckets, `Histogram.buckets_by_power_of_two`, give the cumulative counts).
_BOUNDS_US: Final = [1 << i for i in range(21)]


@dataclass
class ShimFacts:
    """What the collector and the health checks read of a shim (callables: read at scrape
    time, from the HTTP thread)."""

    stats: ServerStats
    shim_id: str
    applied_index: Callable[[], int]
    clients: Callable[[], int]
    # None while healthy; else why the shim is not live (the apply loop died, ...).
    broken: Callable[[], str | None]
    # Whether the shim serves (caught up at start, not rebuilding after a trim).
    serving: Callable[[], bool]


class ShimCollector(Collector):
    def __init__(self, facts: ShimFacts) -> None:
        self.facts = facts

    def collect(self) -> Iterator[Metric]:
        facts, stats = self.facts, self.facts.stats
        commands = stats.commands
        by_name = dict(commands.by_name)
        calls = CounterMetricFamily(
            "memlog_shim_commands", "Commands run, by command.", labels=["command"]
        )
        failed = CounterMetricFamily(
            "memlog_shim_command_failures",
            "Commands that ran and answered an error, by command.",
            labels=["command"],
        )
        rejected = CounterMetricFamily(
            "memlog_shim_command_rejections",
            "Commands refused before running (arity, ACL, OOM, ...), by command.",
            labels=["command"],
        )
        duration = HistogramMetricFamily(
            "memlog_shim_command_duration_seconds",
            "Time a command took on this shim; for writes, until committed and applied.",
            labels=["command"],
        )
        for name, stat in sorted(by_name.items()):
            calls.add_metric([name], stat.calls)
            failed.add_metric([name], stat.failed_calls)
            rejected.add_metric([name], stat.rejected_calls)
            counts = dict(stat.histogram.counts)
            total = sum(counts.values())
            if not total:
                continue
            ordered = sorted(counts.items())
            buckets: list[tuple[str, float]] = []
            seen, i = 0, 0
            for bound_us in _BOUNDS_US:
                while i < len(ordered) and ordered[i][0] < bound_us * 1000:
                    seen += ordered[i][1]
                    i += 1
                buckets.append((repr(bound_us / 1e6), seen))
            buckets.append(("+Inf", total))
            duration.add_metric([name], buckets, sum_value=stat.usec / 1e6)
        yield from (calls, failed, rejected, duration)
        errors = CounterMetricFamily(
            "memlog_shim_error_replies", "Error replies sent, by error code.", labels=["code"]
        )
        for code, count in sorted(dict(commands.errors).items()):
            errors.add_metric([code], count)
        yield errors
        # (not CommandStats.keyspace_hits: that folds the fast reads' tally, the loop's job)
        excluded = commands.lookups_excluded
        yield CounterMetricFamily(
            "memlog_shim_keyspace_hits",
            "Keys found by reads.",
            value=LOOKUPS[0] - excluded[0] + commands.replied_hits,
        )
        yield CounterMetricFamily(
            "memlog_shim_keyspace_misses",
            "Keys not found by reads.",
            value=LOOKUPS[1] - excluded[1] + commands.replied_misses,
        )
        yield CounterMetricFamily(
            "memlog_shim_connections_received",
            "Client connections accepted.",
            value=stats.connections_received,
        )
        yield CounterMetricFamily(
            "memlog_shim_connections_rejected",
            "Client connections refused (maxclients).",
            value=stats.rejected_connections,
        )
        yield GaugeMetricFamily("memlog_shim_clients", "Connected clients.", value=facts.clients())
        yield CounterMetricFamily(
            "memlog_shim_net_input_bytes", "Bytes read from clients.", value=stats.net_input_bytes
        )
        yield CounterMetricFamily(
            "memlog_shim_net_output_bytes",
            "Bytes written to clients.",
            value=stats.net_output_bytes,
        )
        yield GaugeMetricFamily(
            "memlog_shim_resident_memory_bytes",
            "The shim process's resident memory (INFO used_memory; maxmemory compares with it).",
            value=stats.fresh_rss_bytes(1_000_000_000),
        )
        applied = facts.applied_index()
        view = stats.log
        now = time.monotonic()
        info = GaugeMetricFamily(
            "memlog_shim_info", "Constant 1, labelled with the shim's id.", labels=["shim_id"]
        )
        info.add_metric([facts.shim_id], 1)
        yield info
        yield GaugeMetricFamily(
            "memlog_shim_applied_index", "The log index this shim has applied.", value=applied
        )
        yield GaugeMetricFamily(
            "memlog_shim_log_commit_index",
            "The highest commit index the log nodes reported (polled every second).",
            value=max(view.commit_index, applied),
        )
        yield GaugeMetricFamily(
            "memlog_shim_lag_records",
            "Records committed in the log and not yet applied by this shim.",
            value=view.lag_records(applied),
        )
        yield GaugeMetricFamily(
            "memlog_shim_staleness_seconds",
            "How long since this shim had applied everything it knew committed.",
            value=view.staleness_s(applied, now),
        )
        yield CounterMetricFamily(
            "memlog_shim_log_leader_changes",
            "Changes of the log's leader this shim has seen.",
            value=view.leader_changes,
        )
        up = GaugeMetricFamily(
            "memlog_shim_log_node_up",
            "1 when the log node answered its last Status poll.",
            labels=["address", "zone"],
        )
        for node in list(view.nodes.values()):
            up.add_metric([node.address, node.zone], 1 if node.up else 0)
        yield up
        yield GaugeMetricFamily(
            "memlog_shim_slowlog_entries", "Entries in SLOWLOG.", value=len(stats.slowlog.entries)
        )


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body = generate_latest(self.server.registry)
            self._answer(200, body, "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/livez":
            why = self.server.not_live()
            self._answer(503 if why else 200, (why or "ok").encode() + b"\n")
        elif path == "/readyz":
            why = self.server.not_ready()
            self._answer(503 if why else 200, (why or "ok").encode() + b"\n")
        else:
            self._answer(404, b"not found: /metrics, /livez, /readyz\n")

    def _answer(self, status: int, body: bytes, kind: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # scrapes and probes are not news


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], registry: CollectorRegistry, facts: ShimFacts
    ) -> None:
        super().__init__(address, _Handler)
        self.registry, self.facts = registry, facts

    def not_live(self) -> str | None:
        broken = self.facts.broken()
        if broken:
            return broken
        stalled = time.monotonic() - self.facts.stats.loop_beat
        if stalled > LOOP_STALL_S:
            return f"the event loop has not run for {stalled:.1f}s"
        return None

    def not_ready(self) -> str | None:
        why = self.not_live()
        if why:
            return why
        if not self.facts.serving():
            return "not serving yet (catching up with the log, or rebuilding after a trim)"
        lag = self.facts.stats.log.lag_records(self.facts.applied_index())
        if lag > READY_LAG_RECORDS_MAX:
            return f"{lag} records behind the log's commit index"
        return None


def serve_metrics(host: str, port: int, facts: ShimFacts) -> ThreadingHTTPServer:
    """Start the side port in a daemon thread; the caller shuts it down."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ShimCollector(facts))
    server = _Server((host, port), registry, facts)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    log.info("metrics, /livez and /readyz on %s:%d", host, server.server_address[1])
    return server
