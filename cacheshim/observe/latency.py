"""The latency monitor (LATENCY LATEST/HISTORY/RESET/GRAPH/DOCTOR): per event, the spikes
of at least latency-monitor-threshold milliseconds, one sample per second (the largest),
the last 160 of them, and the largest ever. This shim records two events as Redis does:
``command`` (a slow command) and ``fast-command`` (a command flagged fast that was slow).
Per shim, never logged."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

SAMPLES_MAX: Final = 160


@dataclass
class Series:
    samples: list[tuple[int, int]] = field(default_factory=list)  # (time s, latency ms)
    max_ms: int = 0


class LatencyMonitor:
    def __init__(self) -> None:
        self.events: dict[str, Series] = {}

    def add(self, event: str, time_s: int, latency_ms: int) -> None:
        series = self.events.get(event)
        if series is None:
            series = self.events[event] = Series()
        series.max_ms = max(series.max_ms, latency_ms)
        samples = series.samples
        if samples and samples[-1][0] == time_s:
            if samples[-1][1] < latency_ms:
                samples[-1] = (time_s, latency_ms)
            return
        samples.append((time_s, latency_ms))
        if len(samples) > SAMPLES_MAX:
            del samples[0]

    def reset(self, events: list[str] | None = None) -> int:
        if events is None:
            count = len(self.events)
            self.events.clear()
            return count
        count = 0
        for event in events:
            if self.events.pop(event, None) is not None:
                count += 1
        return count

    def graph(self, event: str, now_s: int) -> str:
        """A text chart of an event's samples, taller bars for larger spikes, with the
        age of each sample written downwards under it."""
        series = self.events[event]
        samples = series.samples
        top = max(latency for _, latency in samples)
        low = min(latency for _, latency in samples)
        rows = 4
        header = (
            f"{event} - high {top} ms, low {low} ms (all time high {series.max_ms} ms)\n"
            + "-" * 80
            + "\n"
        )
        columns: list[str] = []
        for when, latency in samples:
            height = 1 if top == low else 1 + round((latency - low) * (rows - 1) / (top - low))
            age = _age(now_s - when)
            columns.append(" " * (rows - height) + "#" * height + age.ljust(4))
        if not columns:
            return header
        lines = ["".join(col[r] for col in columns).rstrip() for r in range(rows + 4)]
        return header + "\n".join(lines) + "\n"

    def doctor(self) -> str:
        if not self.events:
            return (
                "Dave, no latency spike was observed during the lifetime of this memlog "
                "shim. (The latency monitor is enabled with CONFIG SET "
                "latency-monitor-threshold <milliseconds>.)\n"
            )
        lines = [
            "Dave, I have observed latency spikes in this memlog shim. The events:",
            "",
        ]
        for number, (event, series) in enumerate(sorted(self.events.items()), 1):
            values = [latency for _, latency in series.samples]
            average = sum(values) / len(values)
            lines.append(
                f"{number}. {event}: {len(values)} latency spikes (average {average:.0f}ms, "
                f"all time high {series.max_ms}ms, latest {values[-1]}ms)."
            )
        lines += [
            "",
            "What can be done: on a shim, 'command' spikes are mostly writes waiting for the "
            "log to commit (see INFO commandstats and the log's fsync latency in /metrics); "
            "'fast-command' spikes on reads usually mean the event loop was busy (a large "
            "KEYS, SORT or Lua script, or the machine's CPU shared too widely). SLOWLOG GET "
            "names the commands.",
        ]
        return "\n".join(lines) + "\n"


def _age(seconds: int) -> str:
    """How long ago, in at most 4 characters: 5s, 12m, 3h, 2d."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"[:4]
    return f"{max(seconds, 0)}s"[:4]
