"""Busy scripts (issue 19): a script that runs long leaves the shim's event loop for its script
thread, other clients hear BUSY after busy-reply-threshold (Redis's words), SCRIPT KILL and
FUNCTION KILL end what may be ended, and a script at apply ends alike on every shim.
Real processes: a log of three nodes and two shims (docs/decisions/0004-lua.md)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from cacheshim.protocol import errors
from tests.cacheshim.harness import Memlog, client, execute, same_index, wait_until

ENDLESS = "local a = 0 while true do a = a + 1 end"


@pytest.fixture
def shims(two_shims: Memlog) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    first, second = (client(port) for port in two_shims.shim_ports[:2])
    for conn in (first, second):
        execute(conn, "CONFIG", "SET", "busy-reply-threshold", "50")
    execute(first, "FLUSHALL")
    execute(first, "FUNCTION", "FLUSH")
    try:
        yield first, second
    finally:
        for conn in (first, second):
            execute(conn, "CONFIG", "SET", "busy-reply-threshold", "5000")
            conn.close()


class Background:
    """A command sent on a connection of its own, answered in a thread."""

    def __init__(self, port: int, *args: object) -> None:
        self.conn = client(port)
        self.outcome: object = None
        self.thread = threading.Thread(target=self._run, args=args, daemon=True)
        self.thread.start()

    def _run(self, *args: object) -> None:
        try:
            self.outcome = execute(self.conn, *args)
        except redis.ResponseError as exc:
            self.outcome = exc

    def result(self, timeout_s: float = 60) -> object:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "no reply"
        self.conn.close()
        return self.outcome


def busy_error(conn: redis.Redis) -> str | None:
    """BUSY's text if the shim answers PING with it now, else None."""
    try:
        execute(conn, "PING")
    except redis.ResponseError as exc:
        return str(exc)
    return None


def settled(*conns: redis.Redis) -> None:
    """Until no shim runs a script call any more, at one log index. (A shim behind the
    other may start the call after answering a PING, so BUSY may come later: waited out.)"""

    def quiet_at_one_index() -> bool:
        try:
            if any(busy_error(c) is not None for c in conns):
                return False
            same_index(list(conns))
        except redis.ResponseError as exc:
            if str(exc).startswith("BUSY"):
                return False
            raise
        return True

    wait_until(quiet_at_one_index, 60, "the scripts' end")


def wait_busy(conn: redis.Redis) -> str:
    wait_until(lambda: busy_error(conn) is not None, 30, "a BUSY reply")
    text = busy_error(conn)
    assert text is not None
    return text


def test_a_long_read_only_script_leaves_the_loop_and_script_kill_ends_it(
    two_shims: Memlog, shims: tuple[redis.Redis, redis.Redis]
) -> None:
    first, _ = shims
    port = two_shims.shim_ports[0]
    execute(first, "SET", "k", "v")
    assert busy_error(first) is None
    with pytest.raises(redis.ResponseError, match=r"^NOTBUSY No scripts in execution right now"):
        execute(first, "SCRIPT", "KILL")
    # A pcall inside cannot keep the kill from ending it.
    script = (
        "local f = function() while 1 do redis.call('get', 'k') end end while 1 do pcall(f) end"
    )
    running = Background(port, "EVAL_RO", script, "0")
    started = time.monotonic()
    text = wait_busy(first)
    assert text == errors.BUSY_EVAL
    print(f"BUSY after {time.monotonic() - started:.2f}s")
    # FUNCTION KILL does not end a script; FUNCTION STATS does not describe one.
    with pytest.raises(redis.ResponseError, match="You can only call SCRIPT KILL"):
        execute(first, "FUNCTION", "KILL")
    with pytest.raises(redis.ResponseError, match="You can only call SCRIPT KILL"):
        execute(first, "FUNCTION", "STATS")
    # A script record from the other shim waits here until the local call ends (it must not
    # enter Lua, nor change what the local call reads).
    _, second = shims
    assert execute(second, "EVAL", "return redis.call('incr', 'w')", "0") == 1
    assert execute(first, "SCRIPT", "KILL") == b"OK"
    outcome = running.result()
    assert isinstance(outcome, redis.ResponseError)
    assert str(outcome).startswith("Script killed by user with SCRIPT KILL...")
    assert execute(first, "PING") is True
    assert execute(first, "GET", "k") == b"v"
    settled(first, second)
    assert execute(first, "GET", "w") == b"1"


def test_a_long_function_is_killed_by_function_kill(
    two_shims: Memlog, shims: tuple[redis.Redis, redis.Redis]
) -> None:
    first, _ = shims
    code = (
        "#!lua name=busy\nredis.register_function{function_name='spin', callback=function() "
        f"{ENDLESS} end, flags={{'no-writes'}}}}"
    )
    execute(first, "FUNCTION", "LOAD", code)
    running = Background(two_shims.shim_ports[0], "FCALL_RO", "spin", "0")
    assert wait_busy(first) == errors.BUSY_FUNCTION
    stats = execute(first, "FUNCTION", "STATS")
    assert isinstance(stats, list) and stats[0] == b"running_script"
    assert stats[1][:4] == [b"name", b"spin", b"command", [b"FCALL_RO", b"spin", b"0"]]
    with pytest.raises(redis.ResponseError, match="You can only call FUNCTION KILL"):
        execute(first, "SCRIPT", "KILL")
    assert execute(first, "FUNCTION", "KILL") == b"OK"
    assert "killed by user" in str(running.result())
    assert execute(first, "PING") is True


def test_a_long_script_that_may_write_is_killable_until_it_writes(
    two_shims: Memlog, shims: tuple[redis.Redis, redis.Redis]
) -> None:
    """A script that may write and runs long without writing is deferred at apply (every
    shim alike, nothing changed) and runs as a preview on the shim that took it, which
    SCRIPT KILL may end. One that wrote first runs at apply on every shim: both answer BUSY,
    it is UNKILLABLE, and its budget ends it with the same effects everywhere."""
    first, second = shims
    port = two_shims.shim_ports[0]
    running = Background(port, "EVAL", ENDLESS + " return 1", "0")
    assert wait_busy(first) == errors.BUSY_EVAL
    assert busy_error(second) is None  # (deferred there: nothing runs)
    assert execute(first, "SCRIPT", "KILL") == b"OK"
    assert "killed by user" in str(running.result())
    # Written, then endless. Its first run stays on the loop (it cannot start again once it
    # wrote) until its budget; later runs go to the script thread from their start.
    script = "redis.call('incr', 'n'); " + ENDLESS
    running = Background(port, "EVAL", script, "0")
    assert "budget" in str(running.result())
    running = Background(port, "EVAL", script, "0")
    wait_busy(first)
    with pytest.raises(redis.ResponseError) as refused:
        execute(first, "SCRIPT", "KILL")
    assert str(refused.value) == errors.UNKILLABLE_WROTE
    assert "budget" in str(running.result())
    settled(first, second)
    assert first.get("n") == second.get("n") == b"2"
    assert execute(first, "DEBUG", "DIGEST") == execute(second, "DEBUG", "DIGEST")


def test_commands_wait_for_a_short_script_and_writes_queue_behind_it(
    two_shims: Memlog, shims: tuple[redis.Redis, redis.Redis]
) -> None:
    """Below busy-reply-threshold, commands wait for the script (no BUSY), and records that
    arrive meanwhile apply after it, in order. (The script reads long, then writes: deferred,
    previewed, then proposed again to run at apply on both shims.)"""
    first, second = shims
    for conn in (first, second):
        execute(conn, "CONFIG", "SET", "busy-reply-threshold", "60000")
    # Far more steps than defer a call, then a write.
    script = "local a = 0 for i = 1, 3000000 do a = a + 1 end return redis.call('incr', 'c')"
    running = Background(two_shims.shim_ports[0], "EVAL", script, "0")
    other = Background(two_shims.shim_ports[1], "INCR", "c")
    assert execute(second, "GET", "c") in (None, b"1", b"2")  # waits: no BUSY
    results = sorted([running.result(), other.result()])  # type: ignore[type-var]
    assert results == [1, 2]
    settled(first, second)
    assert first.get("c") == second.get("c") == b"2"
    assert execute(first, "DEBUG", "DIGEST") == execute(second, "DEBUG", "DIGEST")


def test_info_counts_scripts_functions_and_libraries(
    shims: tuple[redis.Redis, redis.Redis],
) -> None:
    first, second = shims
    execute(first, "SCRIPT", "FLUSH")
    for i in range(3):
        execute(first, "SCRIPT", "LOAD", f"return {i}")
    execute(
        first, "FUNCTION", "LOAD", "#!lua name=lib\nredis.register_function('f', function() end)"
    )
    settled(first, second)
    for conn in (first, second):
        memory = conn.info("memory")
        assert memory["number_of_cached_scripts"] == 3
        assert memory["number_of_functions"] == memory["number_of_libraries"] == 1
        assert memory["used_memory_scripts"] == sum(len(f"return {i}") for i in range(3))
        assert memory["used_memory_lua"] > 0
    execute(first, "SCRIPT", "FLUSH", "ASYNC")
    settled(first, second)
    assert second.info("memory")["number_of_cached_scripts"] == 0
