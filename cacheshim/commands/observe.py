"""SLOWLOG, LATENCY and MONITOR (Redis slowlog.c, latency.c, the monitors of replication.c):
this shim's slow commands, latency spikes and traffic, recorded as dispatch counts each
command (`cacheshim.server.observed`), kept in `cacheshim.observe`, answered in Redis's reply
shapes. All are per shim, like a Redis node's: never in the log."""

from __future__ import annotations

import time
from typing import Final

from cacheshim.commands import COMMANDS, Ctx, command, container
from cacheshim.commands.args import LONG_MAX
from cacheshim.commands.connection import help_reply, session_of
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import OK, Reply, Verbatim
from cacheshim.types.keyspace import string_as_int

SLOWLOG_COUNT: Final = "ERR count should be greater than or equal to -1"
SLOWLOG_GET_DEFAULT: Final = 10

container(
    "slowlog", -2, "", "server", "2.2.12",
    "Reads and resets this shim's log of slow commands.",
)  # fmt: skip


@command(
    "get", -2, "admin loading stale", (0, 0, 0), "admin slow dangerous", "server", "2.2.12",
    "Returns the newest entries of the slow log (10 by default, all with -1).",
    "O(N) where N is the number of entries returned", container="slowlog",
    tips="request_policy:all_nodes nondeterministic_output",
)  # fmt: skip
def slowlog_get(ctx: Ctx, args: list[bytes]) -> Reply:
    stats = session_of(ctx, "SLOWLOG GET").shim.stats
    count = SLOWLOG_GET_DEFAULT
    if args:
        if len(args) > 1:
            raise CommandError(errors.subcommand_syntax_error(b"slowlog", b"get"))
        value = string_as_int(args[0])
        if value is None or not -1 <= value <= LONG_MAX:
            raise CommandError(SLOWLOG_COUNT)
        count = value
    entries = list(stats.slowlog.entries)
    if count != -1:
        entries = entries[:count]
    return [
        [entry.id, entry.time_s, entry.duration_us, list(entry.args), entry.addr.encode(),
         entry.name]
        for entry in entries
    ]  # fmt: skip


@command(
    "len", 2, "admin loading stale", (0, 0, 0), "admin slow dangerous", "server", "2.2.12",
    "Returns how many entries the slow log holds.", container="slowlog",
    tips="request_policy:all_nodes response_policy:agg_sum nondeterministic_output",
)  # fmt: skip
def slowlog_len(ctx: Ctx, args: list[bytes]) -> Reply:
    return len(session_of(ctx, "SLOWLOG LEN").shim.stats.slowlog.entries)


@command(
    "reset", 2, "admin loading stale", (0, 0, 0), "admin slow dangerous", "server", "2.2.12",
    "Empties the slow log.", "O(N) where N is the number of entries in the slowlog",
    container="slowlog", tips="request_policy:all_nodes response_policy:all_succeeded",
)  # fmt: skip
def slowlog_reset(ctx: Ctx, args: list[bytes]) -> Reply:
    session_of(ctx, "SLOWLOG RESET").shim.stats.slowlog.reset()
    return OK


@command(
    "help", 2, "loading stale", (0, 0, 0), "slow", "server", "6.2.0",
    "Lists the SLOWLOG subcommands.", container="slowlog",
)  # fmt: skip
def slowlog_help(ctx: Ctx, args: list[bytes]) -> Reply:
    return help_reply(
        [
            "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET [<count>]",
            "    The newest <count> entries of this shim's slow log (10 by default; -1: all).",
            "    Each entry: its id, its unix time, how long it ran in microseconds, its",
            "    arguments, the client's address and the client's name.",
            "LEN",
            "    How many entries the slow log holds.",
            "RESET",
            "    Empty the slow log.",
            "HELP",
            "    This text.",
        ]
    )


container(
    "latency", -2, "", "server", "2.8.13",
    "Reads and resets this shim's latency monitor and command latency histograms.",
)  # fmt: skip


@command(
    "latest", 2, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous", "server",
    "2.8.13", "Returns the newest latency spike of each event.", container="latency",
    tips="nondeterministic_output request_policy:all_nodes response_policy:special",
)  # fmt: skip
def latency_latest(ctx: Ctx, args: list[bytes]) -> Reply:
    monitor = session_of(ctx, "LATENCY LATEST").shim.stats.latency
    return [
        [event.encode(), series.samples[-1][0], series.samples[-1][1], series.max_ms]
        for event, series in monitor.events.items()
        if series.samples
    ]


@command(
    "history", 3, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous", "server",
    "2.8.13", "Returns the latency spikes of an event, oldest first.", container="latency",
    tips="nondeterministic_output request_policy:all_nodes response_policy:special",
)  # fmt: skip
def latency_history(ctx: Ctx, args: list[bytes]) -> Reply:
    monitor = session_of(ctx, "LATENCY HISTORY").shim.stats.latency
    series = monitor.events.get(args[0].decode("utf-8", "surrogateescape"))
    if series is None:
        return []
    return [[when, latency] for when, latency in series.samples]


@command(
    "reset", -2, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous", "server",
    "2.8.13", "Forgets the latency spikes of the events named, or of every event.",
    container="latency", tips="request_policy:all_nodes response_policy:agg_sum",
)  # fmt: skip
def latency_reset(ctx: Ctx, args: list[bytes]) -> Reply:
    monitor = session_of(ctx, "LATENCY RESET").shim.stats.latency
    if not args:
        return monitor.reset()
    return monitor.reset([arg.decode("utf-8", "surrogateescape") for arg in args])


@command(
    "graph", 3, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous", "server",
    "2.8.13", "Draws an event's latency spikes as a text chart.", container="latency",
    tips="nondeterministic_output request_policy:all_nodes response_policy:special",
)  # fmt: skip
def latency_graph(ctx: Ctx, args: list[bytes]) -> Reply:
    monitor = session_of(ctx, "LATENCY GRAPH").shim.stats.latency
    event = args[0].decode("utf-8", "surrogateescape")
    series = monitor.events.get(event)
    if series is None or not series.samples:
        raise CommandError(f"ERR No samples available for event '{event}'")
    return Verbatim(monitor.graph(event, int(time.time())).encode())


@command(
    "doctor", 2, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous", "server",
    "2.8.13", "Reads the latency spikes and says what may cause them, in prose.",
    container="latency",
    tips="nondeterministic_output request_policy:all_nodes response_policy:special",
)  # fmt: skip
def latency_doctor(ctx: Ctx, args: list[bytes]) -> Reply:
    return Verbatim(session_of(ctx, "LATENCY DOCTOR").shim.stats.latency.doctor().encode())


@command(
    "histogram", -2, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous",
    "server", "7.0.0", "Returns the latency histograms of the commands named, or of all.",
    "O(N) where N is the number of commands with latency information being retrieved.",
    container="latency", tips="nondeterministic_output request_policy:all_nodes "
    "response_policy:special",
)  # fmt: skip
def latency_histogram(ctx: Ctx, args: list[bytes]) -> Reply:
    stats = session_of(ctx, "LATENCY HISTOGRAM").shim.stats.commands
    stats.settle()
    wanted: list[str] = []
    if not args:
        wanted = sorted(stats.by_name)
    for arg in args:
        name = arg.decode("utf-8", "surrogateescape").lower()
        spec = COMMANDS.get(name)
        if spec is not None and spec.handler is None:  # a container: its subcommands
            wanted += sorted(n for n in stats.by_name if n.startswith(name + "|"))
        else:
            wanted.append(name)
    out: dict[Reply, Reply] = {}
    for name in wanted:
        stat = stats.by_name.get(name)
        if stat is None or not stat.histogram.total:
            continue
        out[name.encode()] = {
            b"calls": stat.histogram.total,
            b"histogram_usec": dict(stat.histogram.buckets_by_power_of_two()),
        }
    return out


@command(
    "help", 2, "loading stale", (0, 0, 0), "slow", "server", "2.8.13",
    "Lists the LATENCY subcommands.", container="latency",
)  # fmt: skip
def latency_help(ctx: Ctx, args: list[bytes]) -> Reply:
    return help_reply(
        [
            "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "LATEST",
            "    Per event: the time and latency of its newest spike, and its largest.",
            "HISTORY <event>",
            "    An event's spikes (unix time, milliseconds), oldest first.",
            "RESET [<event> ...]",
            "    Forget the spikes of the events named (all events without one).",
            "GRAPH <event>",
            "    An event's spikes drawn as a text chart.",
            "DOCTOR",
            "    What the spikes may mean, in prose.",
            "HISTOGRAM [<command> ...]",
            "    Per command: its calls and how many took less than each power of two",
            "    microseconds (every command with calls when none is named).",
            "HELP",
            "    This text.",
        ]
    )


@command(
    "monitor", 1, "admin noscript loading stale", (0, 0, 0), "admin slow dangerous", "server",
    "1.0.0", "Streams every command this shim runs and every write it applies from the log.",
)  # fmt: skip
def monitor(ctx: Ctx, args: list[bytes]) -> Reply:
    session = session_of(ctx, "MONITOR")
    session.shim.stats.monitors.add(session)
    return OK
