"""Per-command counters and latency histograms (INFO commandstats, errorstats,
latencystats), kept cheap enough to update on every command.

What is counted, and when (the shim's hooks are in `cacheshim.server.observed`):
- a command the central checks refuse (unknown subcommand, arity, NOAUTH, NOPERM, a refused
  command in MULTI...) is a *rejected call* of that command (an unknown command has no
  entry; its error still counts in errorstats);
- every other command is a *call*; it *failed* when its reply is an error.
- a call's time is what this shim spent on it: for a read, running it; for a write, from
  dispatch until its record was committed and applied here (the log's round trip is the
  cost of a durable write, and the number an operator needs). Blocking commands count only
  the time before they blocked, as Redis counts no time spent waiting.

The latency histogram buckets values as Redis's HdrHistogram does with 2 significant
figures from 1 ns to 1 s (values below 256 ns exactly, then 128 buckets per power of two),
and a percentile is the highest value of the bucket that reaches it, so INFO latencystats
prints the same numbers Redis would for the same samples.
"""

from __future__ import annotations

from typing import Final

from cacheshim.observe.fasttally import FastTally
from cacheshim.types.keyspace import LOOKUPS

LATENCY_MIN_NS: Final = 1
LATENCY_MAX_NS: Final = 1_000_000_000
# Distinct error codes kept in errorstats (Redis's ERROR_STATS_NUMBER); later ones go
# uncounted per code (total_error_replies still counts them).
ERROR_CODES_MAX: Final = 128
_CODE_SEARCH_CHARS: Final = 32


class Histogram:
    """Counts of values by bucket (key: the bucket's lowest value), HdrHistogram's layout
    with 2 significant figures."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0

    def record(self, value_ns: int, times: int = 1) -> None:
        if value_ns < LATENCY_MIN_NS:
            value_ns = LATENCY_MIN_NS
        elif value_ns > LATENCY_MAX_NS:
            value_ns = LATENCY_MAX_NS
        shift = value_ns.bit_length() - 8
        if shift > 0:
            value_ns = (value_ns >> shift) << shift
        counts = self.counts
        counts[value_ns] = counts.get(value_ns, 0) + times
        self.total += times

    def value_at(self, percentile: float) -> int:
        """The value at a percentile (0..100): the highest value of the first bucket whose
        running count reaches percentile% of all (at least one) samples; 0 when empty."""
        wanted = max(1, int(min(percentile, 100.0) / 100 * self.total + 0.5))
        seen = 0
        for low in sorted(self.counts):
            seen += self.counts[low]
            if seen >= wanted:
                if percentile == 0.0:
                    return low
                return low + (1 << max(0, low.bit_length() - 8)) - 1
        return 0

    def buckets_by_power_of_two(self) -> list[tuple[int, int]]:
        """(bound in µs, how many samples are below it) for the powers of two from 1 µs up
        to the largest sample, leaving out bounds that add none (LATENCY HISTOGRAM)."""
        out: list[tuple[int, int]] = []
        values = sorted(self.counts.items())
        bound_ns = 1024  # Redis's iteration starts at 1024 ns, doubling
        seen = 0
        i = 0
        while i < len(values):
            before = seen
            while i < len(values) and values[i][0] < bound_ns:
                seen += values[i][1]
                i += 1
            if seen != before:
                out.append((bound_ns // 1000, seen))
            bound_ns *= 2
        return out


class CommandStat:
    """One command's counters (INFO commandstats and latencystats)."""

    __slots__ = ("calls", "failed_calls", "histogram", "name", "rejected_calls", "usec")

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0
        self.usec = 0
        self.rejected_calls = 0
        self.failed_calls = 0
        self.histogram = Histogram()


def error_code(message: str) -> str:
    """The code errorstats files an error reply under: its first word when a space comes
    within its first 32 characters, else ERR (Redis's afterErrorReply)."""
    space = message.find(" ", 0, _CODE_SEARCH_CHARS)
    return message[:space] if space > 0 else "ERR"


class CommandStats:
    """Every command's `CommandStat` by full name (``config|get``), the error replies by
        code, and keyspace hits and misses of reads (Redis counts the lookups of read commands:
    apply's lookups are excluded as they happen, `Replica._apply`, so reads a transaction or a
    script makes at apply are not counted)."""

    def __init__(self) -> None:
        self.by_name: dict[str, CommandStat] = {}
        self.errors: dict[str, int] = {}
        self.error_replies = 0
        # Keyspace hits and misses: the lookups of `keyspace.LOOKUPS` not excluded (apply's,
        # and those before CONFIG RESETSTAT), plus what the C-served reads found or missed.
        self.lookups_excluded = [LOOKUPS[0], LOOKUPS[1]]
        self.replied_hits = 0
        self.replied_misses = 0
        # latency-tracking (CONFIG): whether calls feed the histograms.
        self.track_latency = True
        # The fast reads, tallied by batch and folded in before the counters are read.
        self.fast = FastTally()

    def settle(self) -> None:
        """Fold in what the fast reads tallied (before reading the counters)."""
        if self.fast.batches:
            self.fast.fold(self)

    def stat(self, name: str) -> CommandStat:
        found = self.by_name.get(name)
        if found is None:
            found = self.by_name[name] = CommandStat(name)
        return found

    def called(self, name: str, elapsed_ns: int, error: str | None = None) -> None:
        stat = self.by_name.get(name) or self.stat(name)
        stat.calls += 1
        stat.usec += elapsed_ns // 1000
        if self.track_latency:
            stat.histogram.record(elapsed_ns)
        if error is not None:
            stat.failed_calls += 1
            self.error(error)

    def called_many(self, name: str, times: int, elapsed_ns: int) -> None:
        """`times` calls that took elapsed_ns together, none failed (a batch of fast
        reads: each is given an equal share of the batch's time)."""
        stat = self.by_name.get(name) or self.stat(name)
        stat.calls += times
        stat.usec += elapsed_ns // 1000
        if self.track_latency:
            stat.histogram.record(elapsed_ns // times, times)

    def rejected(self, name: str | None, error: str) -> None:
        if name is not None:
            self.stat(name).rejected_calls += 1
        self.error(error)

    def error(self, message: str) -> None:
        """One error reply sent (total_error_replies, errorstats)."""
        self.error_replies += 1
        code = error_code(message)
        count = self.errors.get(code)
        if count is not None:
            self.errors[code] = count + 1
        elif len(self.errors) < ERROR_CODES_MAX:
            self.errors[code] = 1

    def reset(self) -> None:
        """CONFIG RESETSTAT."""
        self.settle()
        self.by_name.clear()
        self.errors.clear()
        self.error_replies = 0
        self.lookups_excluded = [LOOKUPS[0], LOOKUPS[1]]
        self.replied_hits = 0
        self.replied_misses = 0

    @property
    def keyspace_hits(self) -> int:
        self.settle()
        return LOOKUPS[0] - self.lookups_excluded[0] + self.replied_hits

    @property
    def keyspace_misses(self) -> int:
        self.settle()
        return LOOKUPS[1] - self.lookups_excluded[1] + self.replied_misses

    # -- INFO's lines ------------------------------------------------------------------

    def commandstats_lines(self) -> list[tuple[str, object]]:
        self.settle()
        lines: list[tuple[str, object]] = []
        for name in sorted(self.by_name):
            stat = self.by_name[name]
            if not (stat.calls or stat.rejected_calls or stat.failed_calls):
                continue
            per_call = stat.usec / stat.calls if stat.calls else 0.0
            lines.append(
                (
                    f"cmdstat_{name}",
                    f"calls={stat.calls},usec={stat.usec},usec_per_call={per_call:.2f},"
                    f"rejected_calls={stat.rejected_calls},failed_calls={stat.failed_calls}",
                )
            )
        return lines

    def errorstats_lines(self) -> list[tuple[str, object]]:
        self.settle()
        return [(f"errorstat_{code}", f"count={n}") for code, n in sorted(self.errors.items())]

    def latencystats_lines(self, percentiles: list[str]) -> list[tuple[str, object]]:
        self.settle()
        lines: list[tuple[str, object]] = []
        for name in sorted(self.by_name):
            histogram = self.by_name[name].histogram
            if not histogram.total:
                continue
            parts = [f"p{p}={histogram.value_at(float(p)) / 1000:.3f}" for p in percentiles]
            lines.append((f"latency_percentiles_usec_{name}", ",".join(parts)))
        return lines


class Instantaneous:
    """instantaneous_ops_per_sec and the kbps figures: the mean rate over the last 16
    samples taken every 100 ms (as Redis's serverCron samples them)."""

    SAMPLES: Final = 16

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int]] = {}  # metric -> (time ns, value)
        self._rates: dict[str, list[float]] = {}

    def sample(self, metric: str, now_ns: int, value: int) -> None:
        last = self._last.get(metric)
        self._last[metric] = (now_ns, value)
        if last is None or now_ns <= last[0]:
            return
        rate = (value - last[1]) * 1e9 / (now_ns - last[0])
        rates = self._rates.setdefault(metric, [])
        rates.append(max(rate, 0.0))
        if len(rates) > self.SAMPLES:
            del rates[0]

    def rate(self, metric: str) -> float:
        rates = self._rates.get(metric)
        return sum(rates) / len(rates) if rates else 0.0
