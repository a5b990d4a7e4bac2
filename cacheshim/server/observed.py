"""The connection's counting of what it runs (a part of `Connection`, wrapped around
`Dispatch`): every command's call, time and outcome for INFO commandstats, errorstats and
latencystats, SLOWLOG, the latency monitor and MONITOR.

It sits around dispatch rather than inside it, so the routing stays one piece: `_dispatch`
is timed from the outside and its outcome read from what it wrote (an error reply at the
mark) or from the future it returned; `_refuse` tells a rejected command from a failed one.
The fast reads are counted a batch at a time (`cacheshim.observe.fasttally`).
"""

from __future__ import annotations

import asyncio
import functools
import time
from time import perf_counter_ns
from typing import TYPE_CHECKING, Final

from cacheshim.commands import Command, Flag, lookup
from cacheshim.commands.session import RUN_IN_MULTI
from cacheshim.protocol import errors
from cacheshim.protocol.fastreads import ARG_BYTES_MAX, ARGS_MAX, parse_request
from cacheshim.protocol.resp import Error, Reply
from cacheshim.server.dispatch import Checked, Dispatch
from cacheshim.server.sessions import Session

if TYPE_CHECKING:
    from cacheshim.protocol.resp import Encoder
    from cacheshim.server.shim import Shim


class IntSetting:
    """A numeric CONFIG parameter read on the hot path: parsed again only when its text
    changed (CONFIG SET stores a new string)."""

    __slots__ = ("_raw", "_value", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._raw: str | None = None
        self._value = 0

    def get(self, values: dict[str, str]) -> int:
        raw = values[self.name]
        if raw is not self._raw:
            self._raw, self._value = raw, int(raw)
        return self._value


SLOWLOG_SLOWER_THAN = IntSetting("slowlog-log-slower-than")
SLOWLOG_MAX_LEN = IntSetting("slowlog-max-len")
LATENCY_THRESHOLD = IntSetting("latency-monitor-threshold")
# Scripts and functions (flagged skip_monitor): Redis shows their line as they start, so that
# the lines of the commands they run come after it.
FED_BEFORE_RUNNING: Final = frozenset(
    {"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"}
)


MAXMEMORY = IntSetting("maxmemory")
# How old the resident-set reading maxmemory is checked against may be (a reading costs a
# read of /proc: not one per write).
RSS_FRESH_NS = 10_000_000
OOM_NEVER_IN_MULTI = frozenset({"exec", "discard", "quit", "reset"})


class Observed(Dispatch):
    """Counts each command `Dispatch` runs (see the module doc)."""

    if TYPE_CHECKING:
        shim: Shim
        encoder: Encoder
        session: Session | None

    _refused = False
    # The commands whose call is counted when their reply is written: spec, arguments, when
    # dispatched, and EXEC's queued commands (by the future `_dispatch` returned).
    _counting: dict[
        asyncio.Future[Reply], tuple[Command, list[bytes], int, list[list[bytes]] | None]
    ]

    def _dispatch(self, session: Session, command: Checked) -> asyncio.Future[Reply] | None:
        started_ns = perf_counter_ns()
        spec = command.spec
        name = command.args[0].lower()
        queued = session.in_multi and name.decode("utf-8", "replace") not in RUN_IN_MULTI
        exec_args = list(session.queued) if name == b"exec" and session.in_multi else None
        mark = len(self.encoder)
        self._refused = False
        if spec is not None and spec.name in FED_BEFORE_RUNNING and not queued:
            monitors = self.shim.stats.monitors
            if monitors.watchers:  # before the "[<db> lua]" lines of the calls it makes
                monitors.feed(session.db, session.addr, command.args)
        waiting = super()._dispatch(session, command)
        stats = self.shim.stats.commands
        if self._refused or spec is None or (queued and waiting is None):
            error = self.encoder.error_since(mark)
            if error is not None:  # (QUEUED is no call: the command runs at EXEC)
                # An unknown command or subcommand has no counters of its own.
                known = spec if spec is not None and spec.handler is not None else None
                stats.rejected(None if known is None else known.full_name, error)
            return waiting
        if waiting is None:
            self._count(session, spec, command.args, perf_counter_ns() - started_ns,
                        self.encoder.error_since(mark))  # fmt: skip
        elif spec.is_write and Flag.BLOCKING in spec.flags:
            # Redis counts no time spent blocked: only what came before. An error the client
            # gets in the end (NOGROUP when its group goes, an error at apply) makes the call a
            # failed one and is an error reply (failed_calls, errorstats).
            self._count(session, spec, command.args, perf_counter_ns() - started_ns, None)
            waiting.add_done_callback(functools.partial(self._count_final_error, spec))
        else:
            # Counted as its reply is written (`_replied_count`, from the connection's reply
            # loop, which writes every future this returns): no callback of its own per write.
            self._counting[waiting] = (spec, command.args, started_ns, exec_args)
        return waiting

    def _replied_count(self, session: Session, waiting: asyncio.Future[Reply]) -> None:
        """The reply of a command whose future `_dispatch` returned is being written: count
        the call, timed from its dispatch to its outcome."""
        counting = self._counting.pop(waiting, None)
        if counting is not None:
            spec, args, started_ns, exec_args = counting
            self._count_done(session, spec, args, started_ns, exec_args, waiting)

    def _oom_refusal(self, session: Session, spec: Command | None) -> str | None:
        """maxmemory with noeviction (the only policy it may have: ServerConfig): a command
        that may grow the data (denyoom; EXEC of a transaction holding one; any command
        queued in MULTI) is refused
        before it reaches the log while the process's resident memory (INFO's used_memory)
        is over maxmemory. Reads and deletes go on."""
        if spec is None:
            return None
        maxmemory = MAXMEMORY.get(self.shim.server_config.values)
        if not maxmemory:
            return None
        if Flag.DENYOOM in spec.flags:
            pass
        elif session.in_multi and spec.name not in OOM_NEVER_IN_MULTI:
            pass  # queueing takes memory too: as Redis, refused while over
        elif not (spec.name == "exec" and session.in_multi and self._queued_denyoom(session)):
            return None
        if self.shim.stats.fresh_rss_bytes(RSS_FRESH_NS) <= maxmemory:
            return None
        return errors.OOM

    @staticmethod
    def _queued_denyoom(session: Session) -> bool:
        for args in session.queued:
            spec = lookup(args)
            if spec is not None and Flag.DENYOOM in spec.flags:
                return True
        return False

    def _refuse(self, session: Session, name: str, error: str) -> None:
        self._refused = True
        super()._refuse(session, name, error)

    def _count_done(
        self, session: Session, spec: Command, args: list[bytes], started_ns: int,
        exec_args: list[list[bytes]] | None, waiting: asyncio.Future[Reply],
    ) -> None:  # fmt: skip
        elapsed_ns = perf_counter_ns() - started_ns
        error: str | None = None
        if waiting.cancelled():
            error = "ERR memlog: the write was cancelled"
        elif (exc := waiting.exception()) is not None:
            error = f"ERR memlog: {exc}"
        else:
            reply = waiting.result()
            if isinstance(reply, Error):
                error = reply.message
            elif exec_args is not None and isinstance(reply, list):
                self._count_transaction(exec_args, reply)
        self._count(session, spec, args, elapsed_ns, error)

    def _count_final_error(self, spec: Command, waiting: asyncio.Future[Reply]) -> None:
        if not waiting.cancelled() and waiting.exception() is None:
            reply = waiting.result()
            if isinstance(reply, Error):
                stats = self.shim.stats.commands
                stats.stat(spec.full_name).failed_calls += 1
                stats.error(reply.message)

    def _count_transaction(self, commands: list[list[bytes]], replies: list[Reply]) -> None:
        """The commands EXEC ran: a call each (their time is EXEC's), failed when their
        reply is an error, as Redis counts the commands of a transaction."""
        stats = self.shim.stats.commands
        for args, reply in zip(commands, replies, strict=False):
            spec = lookup(args)
            if spec is not None:
                error = reply.message if isinstance(reply, Error) else None
                stats.called(spec.full_name, 0, error)

    def _count(
        self, session: Session, spec: Command, args: list[bytes], elapsed_ns: int,
        error: str | None,
    ) -> None:  # fmt: skip
        shim = self.shim
        values = shim.server_config.values
        stats = shim.stats
        stats.commands.track_latency = values["latency-tracking"] == "yes"
        stats.commands.called(spec.full_name, elapsed_ns, error)
        self._watch_slow(session, spec, args, elapsed_ns // 1000)
        if stats.monitors.watchers:
            self._monitored(session, spec, args)

    def _monitored(self, session: Session, spec: Command, args: list[bytes]) -> None:
        """MONITOR's line for a command this shim ran (not admin ones, as in Redis)."""
        flags = spec.flags
        if Flag.ADMIN not in flags and Flag.SKIP_MONITOR not in flags:
            self.shim.stats.monitors.feed(session.db, session.addr, args)

    def _watch_slow(
        self, session: Session, spec: Command, args: list[bytes], elapsed_us: int
    ) -> None:
        """SLOWLOG and the latency monitor: a command that took elapsed_us."""
        stats = self.shim.stats
        values = self.shim.server_config.values
        slower_than_us = SLOWLOG_SLOWER_THAN.get(values)
        if 0 <= slower_than_us <= elapsed_us and Flag.SKIP_SLOWLOG not in spec.flags:
            stats.slowlog.add(
                args, elapsed_us, int(time.time()), session.addr, session.name,
                SLOWLOG_MAX_LEN.get(values),
            )  # fmt: skip
        threshold_ms = LATENCY_THRESHOLD.get(values)
        if threshold_ms and elapsed_us // 1000 >= threshold_ms:
            event = "fast-command" if Flag.FAST in spec.flags else "command"
            stats.latency.add(event, int(time.time()), elapsed_us // 1000)

    def _fast_path_counted(self, share_us: int, data: bytes, consumed: int) -> None:
        """After a batch of fast reads (counted by `FastTally`): if each took long enough
        for SLOWLOG or the latency monitor, their requests are read again from the bytes
        served (only then: a slow batch is rare unless slowlog-log-slower-than is 0)."""
        values = self.shim.server_config.values
        slower_than_us = SLOWLOG_SLOWER_THAN.get(values)
        threshold_ms = LATENCY_THRESHOLD.get(values)
        monitored = bool(self.shim.stats.monitors.watchers)
        if not (
            monitored
            or 0 <= slower_than_us <= share_us
            or (threshold_ms and share_us >= threshold_ms * 1000)
        ):
            return
        session = self.session
        assert session is not None
        pos = 0
        while pos < consumed:
            request = parse_request(data, pos, ARGS_MAX, ARG_BYTES_MAX)
            if request is None:  # (never: these bytes were served as requests)
                break
            args, pos = request
            spec = lookup(args)
            if spec is not None:
                self._watch_slow(session, spec, args, share_us)
                if monitored:
                    self._monitored(session, spec, args)
