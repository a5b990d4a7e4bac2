"""A shim's server-wide state that INFO, CLIENT PAUSE and MEMORY read: counters, the client
pause, and the process's memory as the operating system sees it."""

from __future__ import annotations

import asyncio
import os
import resource
import time
from dataclasses import dataclass, field

from cacheshim.observe.commandstats import CommandStats, Instantaneous
from cacheshim.observe.latency import LatencyMonitor
from cacheshim.observe.logview import LogView
from cacheshim.observe.monitor import Monitors
from cacheshim.observe.slowlog import SlowLog


def process_rss_bytes() -> int:
    """The resident set size of this process now (Linux /proc; else the peak from rusage)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident_pages = int(statm.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class ServerStats:
    """INFO's counters (stats, and the memory baseline and peak)."""

    started_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)
    startup_rss_bytes: int = field(default_factory=process_rss_bytes)
    peak_rss_bytes: int = 0
    connections_received: int = 0
    commands_processed: int = 0
    net_input_bytes: int = 0
    net_output_bytes: int = 0
    rejected_connections: int = 0  # maxclients
    client_output_buffer_limit_disconnections: int = 0
    # Per command, per error code, keyspace hits and misses (cacheshim.observe).
    commands: CommandStats = field(default_factory=CommandStats)
    instantaneous: Instantaneous = field(default_factory=Instantaneous)
    slowlog: SlowLog = field(default_factory=SlowLog)
    latency: LatencyMonitor = field(default_factory=LatencyMonitor)
    log: LogView = field(default_factory=LogView)  # the log nodes as this shim sees them
    monitors: Monitors = field(default_factory=Monitors)  # MONITOR's clients

    def sample(self, now_ns: int) -> None:
        """Feed the instantaneous rates (called every 100 ms); fold in the fast reads; say
        the event loop runs (/livez)."""
        self.loop_beat = time.monotonic()
        self.commands.settle()
        self.instantaneous.sample("ops", now_ns, self.commands_processed)
        self.instantaneous.sample("net_input", now_ns, self.net_input_bytes)
        self.instantaneous.sample("net_output", now_ns, self.net_output_bytes)

    def reset(self) -> None:
        """CONFIG RESETSTAT: counters back to zero (the start time and memory stay)."""
        self.connections_received = 0
        self.commands_processed = 0
        self.net_input_bytes = 0
        self.net_output_bytes = 0
        self.rejected_connections = 0
        self.client_output_buffer_limit_disconnections = 0
        self.peak_rss_bytes = 0
        self.commands.reset()

    loop_beat: float = field(default_factory=time.monotonic)
    _rss_read_ns: int = 0
    _rss_last_bytes: int = 0

    def fresh_rss_bytes(self, fresh_ns: int) -> int:
        """The resident memory, read again only if the last reading is older than fresh_ns."""
        now = time.monotonic_ns()
        if now - self._rss_read_ns > fresh_ns:
            self._rss_last_bytes = process_rss_bytes()
            self._rss_read_ns = now
        return self._rss_last_bytes

    def rss_bytes(self) -> int:
        """The process's resident memory now; also moves the peak."""
        rss = process_rss_bytes()
        self.peak_rss_bytes = max(self.peak_rss_bytes, rss)
        return rss


SAMPLE_PERIOD_S = 0.1


async def sample_rates(stats: ServerStats) -> None:
    """Feed INFO's instantaneous rates every 100 ms, for the shim's life."""
    while True:
        stats.sample(time.monotonic_ns())
        await asyncio.sleep(SAMPLE_PERIOD_S)


class ClientPause:
    """CLIENT PAUSE: until ``end_ms`` (wall clock), hold every command of every client, or
    only the writes (the commands that would reach the log)."""

    def __init__(self) -> None:
        self.end_ms = 0
        self.pause_all = False
        self._ended = asyncio.Event()

    def pause(self, end_ms: int, pause_all: bool, now_ms: int | None = None) -> None:
        now = _now_ms() if now_ms is None else now_ms
        if self.end_ms > now:  # already paused: the longer and the stricter pause win
            self.end_ms = max(self.end_ms, end_ms)
            self.pause_all = self.pause_all or pause_all
        else:
            self.end_ms, self.pause_all = end_ms, pause_all
        self._ended.clear()

    def unpause(self) -> None:
        self.end_ms = 0
        self.pause_all = False
        self._ended.set()

    def holds(self, is_write: bool) -> bool:
        """Whether a command must wait now (is_write: it would change data)."""
        if not self.end_ms:
            return False
        if _now_ms() >= self.end_ms:
            self.unpause()
            return False
        return self.pause_all or is_write

    async def wait(self) -> None:
        """Return once the pause is over (its time ran out or CLIENT UNPAUSE)."""
        while self.end_ms:
            remaining_s = (self.end_ms - _now_ms()) / 1000
            if remaining_s <= 0:
                self.unpause()
                return
            try:
                await asyncio.wait_for(self._ended.wait(), remaining_s)
            except TimeoutError:
                continue


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
