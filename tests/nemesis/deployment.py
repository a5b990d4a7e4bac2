"""The processes under test: three `logsvc serve` nodes and two `cacheshim serve` shims on
free ports of 127.0.0.1 (tests/cacheshim/harness.py's Memlog, which runs them as `memlog up`
does), and the faults, each applied to a process by its PID.

A slow disk without root: every log node runs `logsvc serve` through a few lines of Python
(SLOW_DISK, same PID) that wrap logsvc.storage.DurableLog._write, the one place a node makes
its writes durable, so that after each synced write the writer thread sleeps for as many
milliseconds as a control file of the node says (0 or no file: no delay). The nemesis
writes the file to slow a node's fsync down and back, while it runs. The event loop and the
peers' traffic go on as they would beside a slow device; nothing below RocksDB is slowed
(reads, compactions), so this is a slow fsync, not a whole slow disk.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from logsvc.local import LocalCluster
from logsvc.v1 import log_pb2, log_pb2_grpc
from tests.cacheshim.harness import (
    TIMING_FLAGS,
    Memlog,
    free_port,
    free_port_block,
    stop_process,
    wait_until,
)

SLOW_DISK = r"""
import sys, time
from logsvc import storage
from logsvc.cli import main

control = sys.argv[1]
state = {"checked": -1.0, "delay": 0.0}
write = storage.DurableLog._write

def delay():
    now = time.monotonic()
    if now - state["checked"] >= 0.05:
        state["checked"] = now
        try:
            with open(control) as f:
                state["delay"] = float(f.read().strip() or 0) / 1000
        except (OSError, ValueError):
            state["delay"] = 0.0
    return state["delay"]

def slow_write(self, batch, sync):
    write(self, batch, sync)
    if sync and delay() > 0:
        time.sleep(state["delay"])

storage.DurableLog._write = slow_write
sys.exit(main(sys.argv[2:]))
"""

STATUS_TIMEOUT_S = 0.5


def answers_ping(port: int) -> bool:
    conn = redis.Redis(port=port, socket_timeout=1, retry=Retry(NoBackoff(), 0))
    try:
        return bool(conn.ping())
    except redis.RedisError:
        return False
    finally:
        conn.close()


@dataclass
class NemesisCluster(LocalCluster):
    """A LocalCluster whose nodes run through SLOW_DISK."""

    def slow_disk_file(self, node_id: str) -> Path:
        return self.data_dir / f"slow-disk-{node_id}"

    def command(self, node_id: str) -> list[str]:
        argv = super().command(node_id)
        assert argv[1:3] == ["-m", "logsvc.cli"], argv
        return [sys.executable, "-c", SLOW_DISK, str(self.slow_disk_file(node_id)), *argv[3:]]


@dataclass
class Deployment(Memlog):
    """Three log nodes (zones a, b, c) and two shims (zones a and b), with faults."""

    shims: int = 2
    fast_timing: bool = False  # the harness's 10 ms ticks; default: logsvc's own timing
    paused: set[str] = field(default_factory=set)  # "log:a", "shim:0", ...
    _channels: dict[str, grpc.Channel] = field(default_factory=dict)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.cluster = NemesisCluster(
            data_dir=self.root,
            base_port=free_port_block(6),
            extra_args=[*(TIMING_FLAGS if self.fast_timing else ()), *self.log_args],
        )
        self.cluster.start()
        self.cluster.wait_for_leader()
        self.start_shims(list(range(self.shims)))

    def start_shims(self, which: list[int], timeout_s: float = 90.0) -> None:
        """Start the shims at once (the harness's start_shim waits for each in turn) and
        wait until each answers PING."""
        for i in which:
            if i == len(self.shim_ports):
                self.shim_ports.append(free_port())
                self.shim_procs.append(None)  # type: ignore[arg-type]
            with open(self.root / f"shim-{i + 1}.log", "ab") as log_file:
                self.shim_procs[i] = subprocess.Popen(
                    self.shim_command(i), stdout=log_file, stderr=subprocess.STDOUT
                )
        for i in which:
            proc, port = self.shim_procs[i], self.shim_ports[i]
            wait_until(lambda: answers_ping(port) or proc.poll() is not None, timeout_s,  # noqa: B023
                       f"shim {i + 1}")  # fmt: skip
            if proc.poll() is not None:
                raise RuntimeError(f"shim {i + 1} exited: {self.log_tail(f'shim-{i + 1}.log')}")

    @property
    def log(self) -> NemesisCluster:
        assert isinstance(self.cluster, NemesisCluster)
        return self.cluster

    def zones(self) -> tuple[str, ...]:
        return self.log.zones

    def shim_zone(self, i: int) -> str:
        return self.zones()[i % len(self.zones())]

    # -- what the log says -----------------------------------------------------------------

    def status(self, zone: str) -> log_pb2.StatusResponse | None:
        """Status of one node, or None when it is down, paused or does not answer."""
        proc = self.log.processes.get(zone)
        if proc is None or proc.poll() is not None or f"log:{zone}" in self.paused:
            return None
        address = self.log.address(zone)
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.insecure_channel(address)
        try:
            response: log_pb2.StatusResponse = log_pb2_grpc.LogStub(channel).Status(
                log_pb2.StatusRequest(), timeout=STATUS_TIMEOUT_S
            )
        except grpc.RpcError:
            return None
        return response

    def leader(self, timeout_s: float = 60.0) -> str:
        return self.log.node_at(self.log.wait_for_leader(timeout_s))

    def wait_answering(self, zones: list[str], count: int, timeout_s: float) -> float:
        """Wait until `count` of `zones` answer Status; returns the time they did."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sum(self.status(z) is not None for z in zones) >= count:
                return time.monotonic()
            time.sleep(0.02)
        raise TimeoutError(f"fewer than {count} of log nodes {zones} answered in {timeout_s}s")

    # -- faults, by PID ------------------------------------------------------------------------

    def kill_log(self, zone: str) -> None:
        self.paused.discard(f"log:{zone}")
        self.log.kill_node(zone)  # SIGKILL and reap (works on a paused process too)

    def start_log(self, zone: str) -> None:
        self.log.start_node(zone)

    def terminate_log(self, zone: str, timeout_s: float = 30.0) -> None:
        """SIGTERM (a graceful stop: the leader hands off first), wait for the exit."""
        proc = self.log.processes[zone]
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def pause(self, what: str) -> None:
        os.kill(self._proc(what).pid, signal.SIGSTOP)
        self.paused.add(what)

    def resume(self, what: str) -> None:
        os.kill(self._proc(what).pid, signal.SIGCONT)
        self.paused.discard(what)

    def _proc(self, what: str) -> subprocess.Popen[bytes]:
        kind, _, name = what.partition(":")
        return self.log.processes[name] if kind == "log" else self.shim_procs[int(name)]

    def kill_shim(self, i: int) -> None:
        self.paused.discard(f"shim:{i}")
        proc = self.shim_procs[i]
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    def slow_disk(self, zone: str, delay_ms: int) -> None:
        path = self.log.slow_disk_file(zone)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(str(delay_ms))
        tmp.replace(path)

    def heal(self) -> None:
        """Undo what can be undone at once: resume every paused process, fast disks."""
        for what in sorted(self.paused):
            with contextlib.suppress(ProcessLookupError):
                self.resume(what)
        for zone in self.zones():
            self.slow_disk(zone, 0)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.heal()
        for proc in self.shim_procs:
            if proc is not None:
                stop_process(proc)
        self.shim_procs.clear()
        if self.cluster is not None:
            self.cluster.stop()
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
