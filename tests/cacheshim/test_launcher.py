"""`memlog up` as a user runs it: a real launcher process with its log nodes and shim. A
second launch on the same ports or data is refused with one line that says why; SIGKILL of
any one process leaves the deployment serving and the launcher restarting it; a process that
fails at start is named with its status and its log."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from cacheshim import launcher
from cacheshim.snapshot import bootstrap
from logsvc.certs import LocalCredentials
from logsvc.local import Managed, Supervisor
from tests.cacheshim.harness import free_port, free_port_block, stop_process, wait_until

READY_S = 120.0


@dataclass
class Launch:
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    port: int
    log_base_port: int
    data: Path

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def pids(self) -> dict[str, int]:
        """Each process's pid as the launcher printed it at start ("log node a", "shim 1")."""
        found = re.findall(
            r"memlog: ((?:log node|shim) \w+) on \S+ \((?:zone \w+, )?pid (\d+)\)", self.stdout()
        )
        return {name: int(pid) for name, pid in found}

    def wait_ready(self) -> None:
        wait_until(
            lambda: "memlog ready" in self.stdout() or self.proc.poll() is not None,
            READY_S,
            "memlog ready",
        )
        assert self.proc.poll() is None, self.stdout() + self.stderr()


def launch(tmp: Path, name: str, data: Path, port: int, log_base_port: int) -> Launch:
    out, err = tmp / f"{name}.out", tmp / f"{name}.err"
    command = [
        sys.executable, "-m", "cacheshim.launcher", "up",
        "--port", str(port),
        "--log-base-port", str(log_base_port),
        "--data", str(data),
    ]  # fmt: skip
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(command, stdout=o, stderr=e)
    return Launch(proc, out, err, port, log_base_port, data)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Launch]:
    first = launch(tmp_path, "first", tmp_path / "data", free_port(), free_port_block(6))
    try:
        first.wait_ready()
        yield first
    finally:
        stop_process(first.proc, grace_s=30)


def client(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=5, socket_connect_timeout=2)


def eventually_ok(port: int, *args: object, timeout_s: float = 60.0) -> object:
    """The reply to a command that may fail while a process restarts or a leader is elected."""
    result: list[object] = []

    def attempt() -> bool:
        try:
            result.append(client(port).execute_command(*args))  # type: ignore[no-untyped-call]
            return True
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return False

    wait_until(attempt, timeout_s, f"{args!r} to succeed")
    return result[-1]


def test_a_second_launch_on_the_same_data_or_ports_is_refused(
    running: Launch, tmp_path: Path
) -> None:
    same_data = launch(tmp_path, "same-data", running.data, free_port(), free_port_block(6))
    assert same_data.proc.wait(timeout=60) == 2
    assert "in use by another run" in same_data.stderr()
    assert f"pid {running.proc.pid}" in same_data.stderr()

    same_log_ports = launch(
        tmp_path, "same-log-ports", tmp_path / "other", free_port(), running.log_base_port
    )
    assert same_log_ports.proc.wait(timeout=60) == 2
    assert f"port {running.log_base_port} on 127.0.0.1 is taken" in same_log_ports.stderr()
    assert "--log-base-port" in same_log_ports.stderr()

    same_port = launch(tmp_path, "same-port", tmp_path / "other", running.port, free_port_block(6))
    assert same_port.proc.wait(timeout=60) == 2
    assert f"port {running.port} on 127.0.0.1 is taken" in same_port.stderr()
    # Refused before anything started: no "ready", nothing else said, the first one unharmed.
    for refused in (same_data, same_log_ports, same_port):
        assert refused.stdout() == "" and len(refused.stderr().strip().splitlines()) == 1
    assert client(running.port).ping()


@pytest.mark.parametrize("victim", ["log node a", "log node b", "log node c", "shim 1"])
def test_sigkill_of_one_process_leaves_memlog_serving(running: Launch, victim: str) -> None:
    port = running.port
    assert eventually_ok(port, "SET", "before", "1") is True
    pid = running.pids()[victim]
    os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: f"{victim} (pid {pid}) stopped (killed by SIGKILL)" in running.stdout(),
        30,
        "the launcher to notice",
    )
    # Writes and reads go on (through the failover, or once the shim is back).
    assert eventually_ok(port, "SET", "after", "2") is True
    assert eventually_ok(port, "GET", "before") == b"1"
    wait_until(lambda: f"{victim} restarted" in running.stdout(), 60, f"{victim} restarted")
    assert running.proc.poll() is None, running.stderr()
    assert eventually_ok(port, "INCR", "counter") == 1


def test_sigterm_stops_every_process(tmp_path: Path) -> None:
    one = launch(tmp_path, "one", tmp_path / "data", free_port(), free_port_block(6))
    try:
        one.wait_ready()
        pids = one.pids()
        assert set(pids) == {"log node a", "log node b", "log node c", "shim 1"}
        snapshotter = re.search(r"memlog: snapshotter \(pid (\d+)", one.stdout())
        assert snapshotter is not None, one.stdout()
        pids["snapshotter"] = int(snapshotter.group(1))
        one.proc.send_signal(signal.SIGTERM)
        assert one.proc.wait(timeout=60) == 0
    finally:
        stop_process(one.proc)
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert one.stdout().rstrip().endswith("memlog stopped")


def test_a_process_that_fails_at_start_is_named_with_its_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "log").mkdir(parents=True)
    (data / "log" / "a").write_text("a file where node a's folder should be\n")
    failed = launch(tmp_path, "failed", data, free_port(), free_port_block(6))
    try:
        assert failed.proc.wait(timeout=READY_S) == 1
    finally:
        stop_process(failed.proc)
    err = failed.stderr()
    assert re.search(
        r"log node a \(pid \d+\) stopped \(exit status 1\) before memlog was ready", err
    )
    assert f"the last lines of {data / 'logsvc-a.log'}" in err
    assert "FileExistsError" in err  # the log's own last lines, not a summary of them


def test_memlog_tail_prints_the_commands(running: Launch) -> None:
    r = client(running.port)
    assert eventually_ok(running.port, "SET", "greeting", "hello world") is True
    r.set(b"bin", b'a\nb\x00\xff"')
    pipe = r.pipeline(transaction=True)
    pipe.incr("n")
    pipe.lpush("l", "x")
    pipe.execute()
    r2 = redis.Redis(port=running.port, db=2, socket_timeout=5)
    r2.set("in-two", "1")
    address = f"127.0.0.1:{running.log_base_port}"
    command = [sys.executable, "-m", "cacheshim.launcher", "tail", "--addr", address]
    # memlog up made a CA and an admin's certificate under the data folder.
    env = {**os.environ, **LocalCredentials(running.data / "tls").admin_env()}
    # Without the certificate nothing answers: it gives up after --timeout-s, with the reason.
    without = subprocess.run([*command, "--timeout-s", "2"], capture_output=True, timeout=60)
    assert without.returncode == 1 and b"UNAVAILABLE" in without.stderr, without
    result = subprocess.run(command, capture_output=True, timeout=60, check=True, env=env)
    lines = [line.split("\t", 1) for line in result.stdout.decode().splitlines()]
    texts = [text for _, text in lines]
    assert 'SET greeting "hello world"' in texts
    assert 'SET bin "a\\nb\\x00\\xff\\""' in texts
    start = texts.index("MULTI")
    assert texts[start : start + 4] == ["MULTI", "INCRBY n 1", "LPUSH l x", "EXEC"]
    assert len({index for index, _ in lines[start : start + 4]}) == 1  # one record
    two = texts.index("SET in-two 1")
    assert texts[two - 1] == "SELECT 2" and lines[two - 1][0] == lines[two][0]
    as_json = subprocess.run(
        [*command, "--format", "json"], capture_output=True, timeout=60, env=env
    )
    records = [json.loads(line) for line in as_json.stdout.decode().splitlines()]
    assert {"index", "db", "commands", "payload_base64"} <= set(records[-1])
    assert records[-1]["db"] == 2 and records[-1]["commands"] == [["SET", "in-two", "1"]]


def test_catch_up_progress_is_repeated_until_the_shim_answers(tmp_path: Path) -> None:
    """While a shim replays the log before opening its port, `memlog up` repeats the
    progress lines of its log on stdout (issue 13: "records applied of how many", not
    silence), and the wait ends once the port answers PING. The line is the one the shim
    writes (the same mark in bootstrap.py and the launcher)."""
    assert launcher.CATCH_UP_MARK == bootstrap.CATCH_UP_MARK
    log_path = tmp_path / "shim-1.log"
    log_path.write_text("an earlier life's line: catching up: applied 1 of 2 records\n")
    lines: list[str] = []
    supervisor = Supervisor("memlog", out=lines.append)

    def said(text: str) -> Callable[[], bool]:
        return lambda: any(text in line for line in lines)

    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    managed = supervisor.add(Managed("shim 1", log_path, lambda: subprocess.Popen(sleeper)))
    managed.start()
    follower = launcher.LogFollower(log_path)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        waiting = threading.Thread(
            target=launcher.wait_for_shim, args=(managed, port, supervisor, follower, 60)
        )
        waiting.start()
        try:
            with open(log_path, "a") as log:
                for applied in (3000, 6000):
                    log.write(
                        f"2026-12-07 21:00:00,000 INFO cacheshim.snapshot.bootstrap: "
                        f"{bootstrap.CATCH_UP_MARK} applied {applied} of 9000 records\n"
                    )
                    log.flush()
                    wait_until(said(f"applied {applied} of"), 30, "the progress relayed")
            assert waiting.is_alive()  # no PONG yet: still waiting
            listener.listen()
            listener.settimeout(0.2)
            while waiting.is_alive():  # the shim is up: it answers every PING
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.recv(64)
                    conn.sendall(b"+PONG\r\n")
            waiting.join(timeout=30)
        finally:
            assert managed.proc is not None
            stop_process(managed.proc)
    assert lines == [
        "memlog: shim 1 catching up: applied 3000 of 9000 records",
        "memlog: shim 1 catching up: applied 6000 of 9000 records",
    ]
