"""Busy scripts: a script call that runs long leaves the event loop for the shim's script
thread, and the loop answers the other clients meanwhile, as Redis does during a long script.

A call starts on the event loop (most end in microseconds). One that runs MOVE_STEPS
steps without having changed anything is stopped and run again from its start on the script
thread (`cacheshim.scripting.engine.MoveOffLoop`): nothing had changed, so the second run is
the first one over again, on every shim alike (docs/decisions/0004-lua.md). Lua releases the
GIL while it runs, so the loop goes on. While the thread runs a call, nothing else touches the
keyspace: the replica holds the records the log brings (`Replica._receive`), the read fast
path is closed, and each command waits up to `busy-reply-threshold` milliseconds from the
call's start; after that it is answered BUSY (Redis's words), except the commands Redis runs
then (`allow_busy`: SCRIPT KILL, FUNCTION KILL and STATS, AUTH, HELLO, MULTI, WATCH, ...).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from cacheshim.commands import Flag
from cacheshim.protocol import errors
from cacheshim.scripting.state import RunningScript

if TYPE_CHECKING:
    from cacheshim.apply import Applier
    from cacheshim.commands import Command
    from cacheshim.hub import Hub
    from cacheshim.scripting.state import ScriptingState

log = logging.getLogger("cacheshim.server")

T = TypeVar("T")

# What `ScriptThread.verdict` says of a command while a call runs on the thread.
RUN = "run"
HOLD = "hold"


class ScriptThread:
    """The shim's one script thread (one Lua state) and the state of the call it runs."""

    def __init__(self, applier: Applier, threshold_ms: Callable[[], int]) -> None:
        self._applier = applier  # (its scripting state is made anew by a restore)
        self._threshold_ms = threshold_ms
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lua")
        self._idle = asyncio.Event()
        self._idle.set()
        # Called as a call starts (the replica holds the records that come meanwhile) and
        # once the thread is idle again (it applies what it held).
        self.on_start: Callable[[], None] | None = None
        self.on_idle: Callable[[], None] | None = None

    @property
    def scripts(self) -> ScriptingState:
        return self._applier.scripts

    @property
    def active(self) -> bool:
        return self.scripts.on_thread is not None

    def run(
        self,
        args: list[bytes],
        at_apply: bool,
        work: Callable[[], T],
        then: Callable[[asyncio.Future[T]], None] | None = None,
    ) -> asyncio.Future[T]:
        """Run work() (a command that runs a script, from its start) on the script thread;
        `then` gets its future first, before the loop serves anything else."""
        loop = asyncio.get_running_loop()
        engine = self.scripts.engine
        self.scripts.on_thread = RunningScript(list(args), at_apply, time.monotonic())
        self._idle.clear()
        if self.on_start is not None:
            self.on_start()

        def in_thread() -> T:
            engine.threaded = True
            engine.kill_requested = False
            try:
                return work()
            finally:
                engine.threaded = False

        future: asyncio.Future[T] = loop.run_in_executor(self._executor, in_thread)

        def done(result: asyncio.Future[T]) -> None:
            if not result.cancelled() and result.exception() is not None:
                log.error("a call on the script thread failed", exc_info=result.exception())
            self.scripts.on_thread = None
            engine.kill_requested = False
            try:
                if then is not None:
                    then(result)
            finally:
                self._idle.set()
                if self.on_idle is not None and not self.active:
                    self.on_idle()

        future.add_done_callback(done)
        return future

    def verdict(self, spec: Command | None) -> str:
        """While a call runs on the thread: RUN, HOLD (wait, `wait`) or the BUSY error."""
        running = self.scripts.on_thread
        if running is None or spec is None:
            return RUN
        elapsed_ms = (time.monotonic() - running.started_s) * 1000
        if elapsed_ms < self._threshold_ms():
            return HOLD
        if Flag.ALLOW_BUSY in spec.flags:
            return RUN
        return errors.BUSY_EVAL if running.is_eval else errors.BUSY_FUNCTION

    async def wait(self) -> None:
        """Until the running call ends or its busy-reply-threshold has passed."""
        running = self.scripts.on_thread
        if running is None:
            return
        remaining_s = running.started_s + self._threshold_ms() / 1000 - time.monotonic()
        if remaining_s > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining_s):
                    await self._idle.wait()

    async def idle(self) -> None:
        """Until no call runs on the thread."""
        while self.active:
            await self._idle.wait()

    def close(self) -> None:
        """At shutdown: a call still running is ended at its next step."""
        if self.active:
            self.scripts.engine.kill_requested = True
        self._executor.shutdown(wait=False, cancel_futures=True)


class HubOnLoop:
    """The hub as a call on the script thread sees it: each method runs on the event loop
    (pub/sub delivery writes to connections), the thread waiting for its result."""

    def __init__(self, hub: Hub, loop: asyncio.AbstractEventLoop) -> None:
        self._hub = hub
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._hub, name)

        def on_loop(*args: Any) -> Any:
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()

            def call() -> None:
                try:
                    future.set_result(method(*args))
                except BaseException as exc:
                    future.set_exception(exc)

            self._loop.call_soon_threadsafe(call)
            return future.result()

        return on_loop
