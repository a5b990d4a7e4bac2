"""Append throughput and latency of a real three-node logsvc cluster, beside the disk's ceiling.

    .venv/bin/python bench/logsvc_append.py [--duration-s 5] [--out docs/bench-logsvc.md]

What it does, in one run:

1. The disk's own ceiling, on the same filesystem the cluster will use: synced rocksdict
   WriteBatches (raw_mode, WriteOptions.sync=True) of 100-byte records, (a) one record per
   synced batch -> syncs/s and p50/p99, (b) --batch records per synced batch -> records/s.
1b. The transport's floor (bench/grpc_floor.py): the same commit path (client -> leader ->
   follower sync -> leader, the leader's own sync meanwhile) in grpc-aio with raw bytes and
   no Raft at all, so the report can say how much of an Append is the transport.
2. Starts three `logsvc serve` nodes on 127.0.0.1 (free ports, default timing flags, data
   under a temporary folder), waits for a leader that accepts appends.
3. For each mode (unbatched: 1 record per unary Append; stream: 1 record per append, one
   append at a time over one `AppendStream` per client; batched: --batch records per Append)
   and each concurrency in --clients: N clients, each an asyncio task with its own gRPC
   channel (its own TCP connection) calling the raw `LogStub` on the leader, spread over
   --client-procs worker processes. Each client sets producer_id and a fresh sequence per
   call, as `LogClient` does, but never retries; a failed call is counted as an error.
   After --warmup-s, every call that completes inside the --duration-s window counts: its
   records towards records/s and its wall time towards p50/p99.
2b. One append at a time, in rounds (--latency-rounds, default 3), before the points of 3:
   the transport's floor again (1,000 calls), then the 1-client point of each unbatched
   mode, round after round. This VM's speed drifts by a fifth or more within minutes;
   rounds that interleave the floor with the cluster show how much of a slow window is the
   machine. The target rows report the median p50 (and the worst p99) of every 1-client
   window of the run. The rounds come first because the throughput points leave each node
   with millions of records and RocksDB compacting them for a while after.
4. Optionally (--profile-s, needs py-spy) samples the leader's GIL holder with py-spy under
   an extra, unmeasured load per mode (the largest --clients) and summarises the top frames.
5. Prints a Markdown report and writes it to --out; the cluster is always stopped by PID
   (SIGTERM, then SIGKILL) and the temporary folder removed.

Over 1000 lines: one benchmark run end to end (disk ceiling, transport floor, cluster, load
workers, profiling, report) in one script, so it runs as a single file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import math
import multiprocessing
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

# First: it sets gRPC's settings (GRPC_EXPERIMENTS, logsvc/__init__.py) before grpc loads.
import logsvc  # noqa: F401

# isort: split
import grpc
import uvloop
from grpc_floor import FloorResult, measure_floor  # bench/ is this script's folder
from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from logsvc.errors import ERROR_KIND_KEY
from logsvc.v1 import log_pb2, log_pb2_grpc
from tests.logsvc.cluster import free_ports

REPO_ROOT = Path(__file__).resolve().parent.parent
RECORD_BYTES = 100
NODE_IDS = ("a", "b", "c")
ZONES = ("zone-a", "zone-b", "zone-c")
# Targets from the issue.
TARGET_BATCHED_RECORDS_S = 100_000
TARGET_P50_MS = 2.0
# --modes: what each one calls; the first two are unbatched (one record per append).
API = {
    "unbatched": "unary Append",
    "stream": "AppendStream, one append at a time",
    "batched": "unary Append",
}
UNBATCHED_MODES = ("unbatched", "stream")
TARGET_P99_MS = 10.0
APPEND_TIMEOUT_S = 10.0
ERROR_BACKOFF_S = 0.01
STOP_GRACE_S = 10.0
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
    # One TCP connection per client, as separate client programs would have.
    ("grpc.use_local_subchannel_pool", 1),
]


class BenchError(Exception):
    pass


# -- measurements --------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (nan when empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fs_of(path: Path) -> str:
    """`TYPE (DEVICE)` of the mount holding path, from /proc/mounts."""
    best = ("", "?", "?")
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    resolved = str(path.resolve())
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        device, mount, fstype = parts[0], parts[1], parts[2]
        inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best[0]):
            best = (mount, fstype, device)
    return f"{best[1]} ({best[2]}, mounted on {best[0]})"


# -- the disk's ceiling --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiskResult:
    syncs_s: float
    sync_p50_ms: float
    sync_p99_ms: float
    syncs: int
    batch: int
    batched_records_s: float
    batched_p50_ms: float
    batched_syncs: int


def disk_ceiling(path: Path, batch: int, warmup_s: float, duration_s: float) -> DiskResult:
    """Synced rocksdict WriteBatches of RECORD_BYTES records; only `write` is timed."""
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    db = Rdict(str(path), options)
    sync = WriteOptions()
    sync.sync = True
    value = os.urandom(RECORD_BYTES)
    key = 0

    def run(per_batch: int, seconds: float) -> list[float]:
        nonlocal key
        times: list[float] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            wb = WriteBatch(raw_mode=True)
            for _ in range(per_batch):
                key += 1
                wb.put(b"e" + key.to_bytes(8, "big"), value)
            t0 = time.perf_counter()
            db.write(wb, sync)
            times.append(time.perf_counter() - t0)
        return times

    try:
        run(1, warmup_s)
        single = run(1, duration_s)
        run(batch, min(warmup_s, 0.5))
        batched = run(batch, duration_s)
    finally:
        db.close()
    single_ms = sorted(t * 1000 for t in single)
    batched_ms = sorted(t * 1000 for t in batched)
    return DiskResult(
        syncs_s=len(single) / sum(single),
        sync_p50_ms=percentile(single_ms, 50),
        sync_p99_ms=percentile(single_ms, 99),
        syncs=len(single),
        batch=batch,
        batched_records_s=len(batched) * batch / sum(batched),
        batched_p50_ms=percentile(batched_ms, 50),
        batched_syncs=len(batched),
    )


# -- the cluster ---------------------------------------------------------------------------


@dataclass(slots=True)
class Node:
    id: str
    address: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        ports = free_ports(2 * len(NODE_IDS))
        self.nodes = [
            Node(node_id, f"127.0.0.1:{port}", root / f"{node_id}.log")
            for node_id, port in zip(NODE_IDS, ports, strict=False)
        ]
        # Each node's client port, then its peer port (Raft has a port of its own).
        peer_ports = ports[len(NODE_IDS) :]
        self.peers = ",".join(
            f"{n.id}={n.address}/{p}" for n, p in zip(self.nodes, peer_ports, strict=True)
        )

    def command(self, node: Node, zone: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "logsvc.cli",
            "serve",
            "--id",
            node.id,
            "--zone",
            zone,
            "--listen",
            node.address,
            "--peers",
            self.peers,
            "--data-dir",
            str(self.root / "data"),
            "--log-level",
            "WARNING",
        ]

    def start(self) -> None:
        # Default timing flags: no LOGSVC_* variable of the caller's may change them.
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSVC_")}
        for node, zone in zip(self.nodes, ZONES, strict=True):
            with node.log_path.open("wb") as out:
                node.proc = subprocess.Popen(
                    self.command(node, zone),
                    cwd=REPO_ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )

    def stop(self) -> None:
        """SIGTERM every node by PID, wait, then SIGKILL whatever is left."""
        running = [n.proc for n in self.nodes if n.proc is not None and n.proc.poll() is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    def check_alive(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is not None:
                raise BenchError(
                    f"node {node.id} exited with {node.proc.returncode}:\n{self.log_tail(node)}"
                )

    def log_tail(self, node: Node, lines: int = 30) -> str:
        try:
            return "\n".join(node.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def by_address(self, address: str) -> Node:
        for node in self.nodes:
            if node.address == address:
                return node
        raise BenchError(f"no node at {address}")


def _error_kind(exc: grpc.aio.AioRpcError) -> str:
    for key, value in exc.trailing_metadata() or ():
        if key == ERROR_KIND_KEY:
            return value if isinstance(value, str) else value.decode()
    return exc.code().name


async def _status(address: str) -> log_pb2.StatusResponse | None:
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            return await log_pb2_grpc.LogStub(channel).Status(log_pb2.StatusRequest(), timeout=1.0)
        except grpc.aio.AioRpcError:
            return None


async def find_leader(cluster: Cluster, timeout_s: float) -> tuple[Node, int]:
    """Poll Status until a node leads and has accepted one probe append: (leader, term)."""
    deadline = time.monotonic() + timeout_s
    last = "no node answered Status"
    while time.monotonic() < deadline:
        cluster.check_alive()
        for node in cluster.nodes:
            st = await _status(node.address)
            if st is None or st.role != "leader":
                continue
            async with grpc.aio.insecure_channel(node.address) as channel:
                try:
                    await log_pb2_grpc.LogStub(channel).Append(
                        log_pb2.AppendRequest(records=[b"probe"]), timeout=2.0
                    )
                except grpc.aio.AioRpcError as exc:
                    last = f"{node.id}: probe append: {_error_kind(exc)} {exc.details()}"
                    continue
            return node, st.header.term
        await asyncio.sleep(0.1)
    raise BenchError(f"no leader accepted an append within {timeout_s}s ({last})")


# -- load: worker processes ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    address: str
    clients: int
    batch: int
    warmup_s: float
    duration_s: float
    stream: bool = False  # one AppendStream per client instead of unary Append calls


@dataclass(slots=True)
class WorkerResult:
    latencies_ms: list[float] = field(default_factory=list)
    records: int = 0
    calls: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    cpu_s: float = 0.0


async def _one_client(
    stub: log_pb2_grpc.LogAsyncStub,
    batch: int,
    warm_end: float,
    end: float,
    out: WorkerResult,
) -> None:
    request = log_pb2.AppendRequest(
        records=[os.urandom(RECORD_BYTES) for _ in range(batch)], producer_id=uuid.uuid4().hex
    )
    sequence = 0
    while (t0 := time.monotonic()) < end:
        sequence += 1
        request.sequence = sequence
        try:
            await stub.Append(request, timeout=APPEND_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if warm_end <= time.monotonic() <= end:
                out.errors[_error_kind(exc)] += 1
            await asyncio.sleep(ERROR_BACKOFF_S)
            continue
        t1 = time.monotonic()
        if warm_end <= t1 <= end:
            out.latencies_ms.append((t1 - t0) * 1000)
            out.records += batch
            out.calls += 1


async def _one_stream_client(
    stub: log_pb2_grpc.LogAsyncStub,
    batch: int,
    warm_end: float,
    end: float,
    out: WorkerResult,
) -> None:
    """As `_one_client`, one append at a time, over one AppendStream (reopened if it breaks)."""
    request = log_pb2.AppendStreamRequest(
        append=log_pb2.AppendRequest(
            records=[os.urandom(RECORD_BYTES) for _ in range(batch)],
            producer_id=uuid.uuid4().hex,
        )
    )
    call = None
    while (t0 := time.monotonic()) < end:
        request.request_id += 1
        request.append.sequence = request.request_id
        try:
            if call is None:
                call = stub.AppendStream()
            await call.write(request)
            answer = await asyncio.wait_for(call.read(), APPEND_TIMEOUT_S)
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            if warm_end <= time.monotonic() <= end:
                kind = _error_kind(exc) if isinstance(exc, grpc.aio.AioRpcError) else "TIMEOUT"
                out.errors[kind] += 1
            if call is not None:
                call.cancel()
            call = None
            await asyncio.sleep(ERROR_BACKOFF_S)
            continue
        t1 = time.monotonic()
        if answer is grpc.aio.EOF:
            call = None  # the node ended the stream: open another
            if warm_end <= t1 <= end:
                out.errors["EOF"] += 1
            await asyncio.sleep(ERROR_BACKOFF_S)
            continue
        assert isinstance(answer, log_pb2.AppendStreamResponse)
        if not answer.HasField("appended"):
            if warm_end <= t1 <= end:
                out.errors[log_pb2.ErrorKind.Name(answer.error.kind)] += 1
            await asyncio.sleep(ERROR_BACKOFF_S)
            continue
        if warm_end <= t1 <= end:
            out.latencies_ms.append((t1 - t0) * 1000)
            out.records += batch
            out.calls += 1
    if call is not None:
        call.cancel()


async def _worker(spec: WorkerSpec, conn: Connection) -> WorkerResult:
    channels = [
        grpc.aio.insecure_channel(spec.address, options=CHANNEL_OPTIONS)
        for _ in range(spec.clients)
    ]
    try:
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), 10.0)
        conn.send("ready")
        start_at: float = conn.recv()
        warm_end = start_at + spec.warmup_s
        end = warm_end + spec.duration_s
        result = WorkerResult()

        async def cpu_window() -> None:
            await asyncio.sleep(max(0.0, warm_end - time.monotonic()))
            cpu0 = time.process_time()
            await asyncio.sleep(max(0.0, end - time.monotonic()))
            result.cpu_s = time.process_time() - cpu0

        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        stubs = [log_pb2_grpc.LogStub(channel) for channel in channels]
        client = _one_stream_client if spec.stream else _one_client
        await asyncio.gather(
            cpu_window(),
            *(client(stub, spec.batch, warm_end, end, result) for stub in stubs),
        )
        return result
    finally:
        for channel in channels:
            await channel.close()


def _worker_main(spec: WorkerSpec, conn: Connection) -> None:
    try:
        # On uvloop, as logsvc's own processes and the shims run.
        result = uvloop.run(_worker(spec, conn))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        raise
    conn.send(("ok", result))


@dataclass(frozen=True, slots=True)
class PointResult:
    mode: str
    clients: int
    procs: int
    batch: int
    calls: int
    records: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]
    leader_cpu: float  # fraction of one core over the window
    followers_cpu: float
    clients_cpu: float
    note: str = ""

    @property
    def appends_s(self) -> float:
        return self.calls / self.duration_s

    @property
    def records_s(self) -> float:
        return self.records / self.duration_s


@dataclass(frozen=True, slots=True)
class LatencyRound:
    """The floor, then each unbatched mode's 1-client point, measured one after another."""

    floor: FloorResult
    points: dict[str, PointResult]


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _receive(
    proc: multiprocessing.process.BaseProcess, conn: Connection, timeout_s: float, what: str
) -> Any:
    """The next message of a client process; BenchError if it dies or stays silent."""
    try:
        if conn.poll(timeout_s):
            return conn.recv()
    except EOFError:
        pass
    proc.join(timeout=1.0)
    raise BenchError(f"client process {proc.pid} did not {what} (exit code {proc.exitcode})")


def run_load(
    address: str,
    clients: int,
    batch: int,
    procs: int,
    warmup_s: float,
    duration_s: float,
    watch_pids: Sequence[int] = (),
    stream: bool = False,
) -> tuple[WorkerResult, float, dict[int, float]]:
    """Run the load in worker processes: (merged result, start time, CPU s per watched pid)."""
    ctx = multiprocessing.get_context("spawn")
    workers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    try:
        for n in split(clients, min(procs, clients)):
            parent, child = ctx.Pipe()
            spec = WorkerSpec(address, n, batch, warmup_s, duration_s, stream)
            worker = ctx.Process(target=_worker_main, args=(spec, child), daemon=True)
            worker.start()
            child.close()
            workers.append((worker, parent))
        for proc, conn in workers:
            message = _receive(proc, conn, 60.0, "get ready")
            if message != "ready":
                raise BenchError(f"client process {proc.pid} failed:\n{message[1]}")
        start_at = time.monotonic() + 0.2
        for _, conn in workers:
            conn.send(start_at)
        warm_end = start_at + warmup_s
        time.sleep(max(0.0, warm_end - time.monotonic()))
        cpu0 = {pid: cpu_seconds(pid) for pid in watch_pids}
        time.sleep(max(0.0, warm_end + duration_s - time.monotonic()))
        cpu = {pid: cpu_seconds(pid) - cpu0[pid] for pid in watch_pids}
        merged = WorkerResult()
        for proc, conn in workers:
            status, payload = _receive(proc, conn, APPEND_TIMEOUT_S + 30.0, "report")
            if status != "ok":
                raise BenchError(f"client process {proc.pid} failed:\n{payload}")
            assert isinstance(payload, WorkerResult)
            merged.latencies_ms.extend(payload.latencies_ms)
            merged.records += payload.records
            merged.calls += payload.calls
            merged.errors.update(payload.errors)
            merged.cpu_s += payload.cpu_s
        return merged, start_at, cpu
    finally:
        for proc, conn in workers:
            proc.join(timeout=5.0)
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.join()
            conn.close()


def measure_point(
    cluster: Cluster,
    leader: Node,
    mode: str,
    clients: int,
    batch: int,
    procs: int,
    warmup_s: float,
    duration_s: float,
) -> PointResult:
    followers = [n for n in cluster.nodes if n is not leader]
    pids = [leader.pid, *(n.pid for n in followers)]
    result, _, cpu = run_load(
        leader.address, clients, batch, procs, warmup_s, duration_s, pids, mode == "stream"
    )
    latencies = sorted(result.latencies_ms)
    return PointResult(
        mode=mode,
        clients=clients,
        procs=min(procs, clients),
        batch=batch,
        calls=result.calls,
        records=result.records,
        duration_s=duration_s,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        errors=dict(result.errors),
        leader_cpu=cpu[leader.pid] / duration_s,
        followers_cpu=sum(cpu[n.pid] for n in followers) / duration_s,
        clients_cpu=result.cpu_s / duration_s,
    )


# -- optional: a py-spy profile of the leader ----------------------------------------------


def py_spy_path() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def summarise_raw_profile(
    raw: str, top: int
) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """py-spy raw (collapsed) output: total samples, top self frames, top logsvc frames."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        # Frames look like `function (file.py:line)`; aggregate by function and file.
        frames = [_frame_name(f) for f in stack.split(";") if not f.startswith("thread (")]
        frames = [f for f in frames if f]
        if not frames:
            continue
        self_counts[frames[-1]] += count
        for frame in set(frames):
            if "(logsvc/" in frame and "(logsvc/cli.py)" not in frame:
                inclusive[frame] += count
    return total, self_counts.most_common(top), inclusive.most_common(top)


def _frame_name(frame: str) -> str:
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({file})" if file else name


PROFILE_RATE_HZ = 100


def profile_leader(
    leader: Node, procs: int, clients: int, batch: int, seconds: float, out_dir: Path
) -> str:
    """py-spy the leader (GIL holders only) under an unmeasured load; Markdown summary."""
    spy = py_spy_path()
    if spy is None:
        return "py-spy is not installed (`.venv/bin/pip install py-spy`); no profile taken.\n"
    raw_path = out_dir / f"leader-{clients}x{batch}.raw"
    duration = max(1, round(seconds))
    spy_cmd = [
        spy, "record", "--pid", str(leader.pid), "--duration", str(duration), "--gil",
        "--rate", str(PROFILE_RATE_HZ), "--format", "raw", "--output", str(raw_path),
        "--nonblocking",
    ]  # fmt: skip
    spy_proc = subprocess.Popen(spy_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        result, _, _ = run_load(leader.address, clients, batch, procs, 0.5, duration + 1.0)
        output, _ = spy_proc.communicate(timeout=30.0)
    finally:
        if spy_proc.poll() is None:
            os.kill(spy_proc.pid, signal.SIGKILL)
            spy_proc.wait()
    if spy_proc.returncode != 0 or not raw_path.exists():
        return f"py-spy failed ({spy_proc.returncode}): {output.decode(errors='replace')[-500:]}\n"
    total, self_top, incl_top = summarise_raw_profile(raw_path.read_text(), 12)
    if total == 0:
        return "py-spy took no samples.\n"
    held = total / (PROFILE_RATE_HZ * duration)
    shown = [Path(spy).name, *spy_cmd[1:]]
    shown[shown.index("--output") + 1] = raw_path.name  # the temporary folder is gone
    lines = [
        f"### {clients} clients x {batch} record(s) per Append",
        "",
        f"`{shlex.join(shown)}` under an unmeasured load "
        f"({fmt_int(result.calls / (duration + 1.0))} Appends/s while sampled): {total} "
        f"samples of the thread holding the GIL, i.e. the GIL was held about {held:.0%} of "
        "the time. `Runner.run` self time is C code run by the event loop (uvloop, gRPC's "
        "Cython callbacks); C work inside a call (RocksDB, protobuf, gRPC writes) counts "
        "as self time of the Python frame that called it.",
        "",
        "| self % | frame (file) | | inclusive % | logsvc frame (file) |",
        "| ---: | --- | --- | ---: | --- |",
    ]
    for i in range(max(len(self_top), len(incl_top))):
        s = self_top[i] if i < len(self_top) else ("", 0)
        n = incl_top[i] if i < len(incl_top) else ("", 0)
        s_cell = f"| {100 * s[1] / total:.1f} | `{s[0]}` |" if s[0] else "| | |"
        n_cell = f" {100 * n[1] / total:.1f} | `{n[0]}` |" if n[0] else " | |"
        lines.append(f"{s_cell} |{n_cell}")
    return "\n".join(lines) + "\n"


# -- the report ----------------------------------------------------------------------------


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def fmt_ms(x: float) -> str:
    return "n/a" if x != x else f"{x:.2f}"


def yes_no(ok: bool) -> str:
    return "**yes**" if ok else "**no**"


def command_line() -> str:
    exe = Path(sys.executable)
    try:
        shown = str(exe.relative_to(Path.cwd()))
    except ValueError:
        shown = "python" if shutil.which("python") == str(exe) else str(exe)
    return shlex.join([shown, *sys.argv])


def versions() -> str:
    out = []
    for name in ("grpcio", "protobuf", "rocksdict"):
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name} ?")
    return ", ".join(out)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


@dataclass(slots=True)
class Report:
    started: datetime.datetime
    command: str
    data_root: Path
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
    disk: DiskResult | None = None
    floor: FloorResult | None = None
    points: list[PointResult] = field(default_factory=list)
    rounds: list[LatencyRound] = field(default_factory=list)
    leader_note: str = ""
    profile: str = ""
    client_procs: int = 1

    def render(self) -> str:
        nproc = len(os.sched_getaffinity(0))
        la0 = " / ".join(f"{x:.2f}" for x in self.load_start)
        la1 = " / ".join(f"{x:.2f}" for x in self.load_end)
        out = [
            "# logsvc Append benchmark",
            "",
            "Generated by `bench/logsvc_append.py`; rerun it on an idle machine for numbers that "
            "mean something (the load averages below say how idle this one was).",
            "",
            f"- date: {self.started.strftime('%Y-%m-%d %H:%M:%S %Z')}",
            f"- machine: nproc {nproc} ({cpu_model()}), {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}; {versions()}",
            f"- load average (1/5/15 min) at start: {la0}; at end: {la1}",
            f"- data: `{self.data_root}` on {fs_of(self.data_root)}",
            f"- command: `{self.command}`",
            "- cluster: 3 `logsvc serve` nodes on 127.0.0.1 (zones a/b/c), default timing "
            f"flags; {self.leader_note}",
            "- load: raw `LogStub.Append` (mode `stream`: `LogStub.AppendStream`, one stream "
            "per client, the next append written when the last is answered) on the leader "
            "(no `LogClient`, so no retries and no "
            "leader lookup); every client is an asyncio task with its own gRPC channel and TCP "
            "connection, its own producer_id and a fresh sequence per call; clients are spread "
            f"over up to {self.client_procs} client process(es) (column `procs`); records are "
            f"{RECORD_BYTES} random bytes.",
            "- a point: a warm-up, then every Append that completes inside the window counts "
            "(records/s = records in completed calls / window; p50/p99 = wall time per Append "
            "call, ms). CPU columns: CPU time over the window / window (1.00 = one core busy).",
            "",
        ]
        out += self._targets()
        out += self._points_table()
        out += self._disk_table()
        out += self._floor_table()
        out += self._rounds_table()
        if self.profile:
            out += ["## Leader profile", "", self.profile]
        return "\n".join(out).rstrip() + "\n"

    def _targets(self) -> list[str]:
        batched = [p for p in self.points if p.mode == "batched"]
        single = [p for p in self.points if p.mode in UNBATCHED_MODES and p.clients == 1]
        rows = [
            "## Targets (from the issue)",
            "",
            "| target | measured | met |",
            "| --- | --- | --- |",
        ]
        if batched:
            best = max(batched, key=lambda p: p.records_s)
            rows.append(
                f"| with batching, at least {fmt_int(TARGET_BATCHED_RECORDS_S)} records/s | "
                f"{fmt_int(best.records_s)} records/s (best batched point: {best.clients} "
                f"clients x {best.batch} records per Append) | "
                f"{yes_no(best.records_s >= TARGET_BATCHED_RECORDS_S)} |"
            )
        else:
            rows.append("| with batching, at least 100,000 records/s | not measured | - |")
        for p in single:
            how = API[p.mode]
            windows = self.single_windows(p.mode)
            p50 = statistics.median(w.p50_ms for w in windows)
            p99 = max(w.p99_ms for w in windows)
            every = ", ".join(fmt_ms(w.p50_ms) for w in windows)
            rows.append(
                f"| a single unbatched append: p50 < {TARGET_P50_MS:g} ms | "
                f"{fmt_ms(p50)} ms (1 client, {how}; median of {len(windows)} windows: "
                f"{every}) | {yes_no(p50 < TARGET_P50_MS)} |"
            )
            rows.append(
                f"| a single unbatched append: p99 < {TARGET_P99_MS:g} ms | "
                f"{fmt_ms(p99)} ms (1 client, {how}; the worst of {len(windows)} windows) | "
                f"{yes_no(p99 < TARGET_P99_MS)} |"
            )
        if not single:
            rows.append("| a single unbatched append: p50 < 2 ms, p99 < 10 ms | not measured | - |")
        return [*rows, ""]

    def single_windows(self, mode: str) -> list[PointResult]:
        """Every 1-client window of an unbatched mode, in the order measured: the rounds',
        then the 1-client point among the others."""
        main = [p for p in self.points if p.mode == mode and p.clients == 1]
        return [r.points[mode] for r in self.rounds if mode in r.points] + main

    def _rounds_table(self) -> list[str]:
        if not self.rounds:
            return []
        modes = [m for m in UNBATCHED_MODES if m in self.rounds[0].points]
        head = " | ".join(f"{API[m]} p50 ms (above the floor)" for m in modes)
        rows = [
            "## One append at a time, in rounds (same run)",
            "",
            "Before the points above, each round measures the transport's floor (1,000 calls, "
            "the cluster idle beside it), then the 1-client point of each unbatched mode, so a "
            "slow stretch of the machine shows in the floor of its round too. The targets above "
            "use the median p50 of these windows and of the 1-client points above.",
            "",
            f"| round | floor p50 ms | {head} |",
            "| ---: | ---: |" + " ---: |" * len(modes),
        ]
        for i, r in enumerate(self.rounds, 1):
            cells = " | ".join(
                f"{fmt_ms(r.points[m].p50_ms)} ({fmt_ms(r.points[m].p50_ms - r.floor.p50_ms)})"
                for m in modes
            )
            rows.append(f"| {i} | {fmt_ms(r.floor.p50_ms)} | {cells} |")
        floor = statistics.median(r.floor.p50_ms for r in self.rounds)
        medians = " | ".join(
            fmt_ms(statistics.median(r.points[m].p50_ms for r in self.rounds))
            + " ("
            + fmt_ms(statistics.median(r.points[m].p50_ms - r.floor.p50_ms for r in self.rounds))
            + ")"
            for m in modes
        )
        rows += [f"| median | {fmt_ms(floor)} | {medians} |", ""]
        return rows

    def _points_table(self) -> list[str]:
        rows = [
            "## logsvc Append (3 nodes, to the leader)",
            "",
            "| mode | clients | procs | records/Append | Appends/s | records/s | x disk ceiling "
            "| p50 ms | p99 ms | errors | leader CPU | followers CPU | clients CPU |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: "
            "| ---: |",
        ]
        for p in self.points:
            ceiling = (
                (self.disk.syncs_s if p.mode in UNBATCHED_MODES else self.disk.batched_records_s)
                if self.disk
                else 0.0
            )
            ratio = f"{p.records_s / ceiling:.2f}" if ceiling else "n/a"
            errors = ", ".join(f"{k} {v}" for k, v in sorted(p.errors.items())) or "0"
            if p.note:
                errors += f" ({p.note})"
            rows.append(
                f"| {p.mode} | {p.clients} | {p.procs} | {p.batch} | {fmt_int(p.appends_s)} | "
                f"{fmt_int(p.records_s)} | {ratio} | {fmt_ms(p.p50_ms)} | {fmt_ms(p.p99_ms)} | "
                f"{errors} | {p.leader_cpu:.2f} | {p.followers_cpu:.2f} | {p.clients_cpu:.2f} |"
            )
        rows += [
            "",
            "`x disk ceiling`: records/s divided by the disk's ceiling below for the same shape "
            "(unbatched: synced 1-record batches per second; batched: records/s of synced "
            f"{self.disk.batch if self.disk else '?'}-record batches). Above 1 is possible "
            "unbatched, since the log commits many Appends with one sync (group commit).",
            "",
        ]
        return rows

    def _floor_table(self) -> list[str]:
        if self.floor is None:
            return []
        f = self.floor
        single = [p for p in self.points if p.mode == "unbatched" and p.clients == 1]
        above = (
            f" logsvc's single unbatched Append took {fmt_ms(single[0].p50_ms)} ms p50 in this "
            f"run: {fmt_ms(single[0].p50_ms - f.p50_ms)} ms above the floor is Raft, records, "
            "protobuf and the driver."
            if single
            else ""
        )
        return [
            "## The transport's floor (same run: `bench/grpc_floor.py`)",
            "",
            "Two processes with uvloop and grpc-aio, a client stream each way as logsvc's peers "
            "have, and a grpc-aio unary client as above: the client's bytes go to A, A forwards "
            "them to B and syncs a 100-byte rocksdict write meanwhile, B syncs and answers, A "
            "replies. No Raft, no protobuf, no records: the least a commit on two of three "
            "nodes costs through this transport on this machine.",
            "",
            "| calls | p50 ms | p99 ms |",
            "| ---: | ---: | ---: |",
            f"| {f.calls} | {fmt_ms(f.p50_ms)} | {fmt_ms(f.p99_ms)} |",
            "",
            f"The target of a 2 ms p50 leaves {fmt_ms(2.0 - f.p50_ms)} ms above the floor.{above}",
            "",
        ]

    def _disk_table(self) -> list[str]:
        if self.disk is None:
            return []
        d = self.disk
        return [
            "## The disk's ceiling (same run, same filesystem)",
            "",
            f"rocksdict `Rdict` (raw_mode) in a fresh folder, `WriteOptions.sync=True`, "
            f"{RECORD_BYTES}-byte records, one process, one writer; only `db.write` is timed.",
            "",
            "| shape | batches synced | syncs/s | records/s | p50 ms | p99 ms |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            f"| 1 record per synced batch | {d.syncs} | {fmt_int(d.syncs_s)} | "
            f"{fmt_int(d.syncs_s)} | {fmt_ms(d.sync_p50_ms)} | {fmt_ms(d.sync_p99_ms)} |",
            f"| {d.batch} records per synced batch | {d.batched_syncs} | "
            f"{fmt_int(d.batched_records_s / d.batch)} | {fmt_int(d.batched_records_s)} | "
            f"{fmt_ms(d.batched_p50_ms)} | |",
            "",
        ]


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration-s", type=float, default=5.0, help="measured window per point")
    parser.add_argument("--warmup-s", type=float, default=1.0, help="warm-up before each window")
    parser.add_argument("--out", type=Path, default=Path("docs/bench-logsvc.md"))
    parser.add_argument(
        "--clients", default="1,16,64", help="concurrencies, comma separated (default 1,16,64)"
    )
    parser.add_argument("--batch", type=int, default=1000, help="records per batched Append")
    parser.add_argument(
        "--modes",
        default=",".join(API),
        help="some of unbatched (unary Append), stream (AppendStream), batched; default all",
    )
    parser.add_argument(
        "--client-procs",
        type=int,
        default=2,
        help="client processes the clients of one point are spread over (default 2)",
    )
    parser.add_argument(
        "--tmp-dir", type=Path, default=Path("/tmp"), help="where the temporary data folder goes"
    )
    parser.add_argument(
        "--profile-s",
        type=float,
        default=0.0,
        help="after the measured points, py-spy the leader this long per mode under the "
        "largest --clients (not measured) and add the top frames to the report (0: off)",
    )
    parser.add_argument(
        "--latency-rounds",
        type=int,
        default=3,
        help="before the points: rounds of the floor and the 1-client unbatched points (0: none)",
    )
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    args.client_list = [int(c) for c in str(args.clients).split(",") if c.strip()]
    args.mode_list = [m.strip() for m in str(args.modes).split(",") if m.strip()]
    if any(c < 1 for c in args.client_list) or not args.client_list:
        parser.error("--clients needs positive integers")
    if not set(args.mode_list) <= set(API) or not args.mode_list:
        parser.error(f"--modes takes some of {', '.join(API)}")
    if args.latency_rounds < 0:
        parser.error("--latency-rounds must be at least 0")
    if args.duration_s <= 0 or args.warmup_s < 0 or args.batch < 1 or args.client_procs < 1:
        parser.error("--duration-s, --batch and --client-procs must be positive")
    return args


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="logsvc-bench-", dir=args.tmp_dir))
    report = Report(
        started=datetime.datetime.now(datetime.UTC),
        command=command_line(),
        data_root=root,
        load_start=os.getloadavg(),
        client_procs=args.client_procs,
    )
    cluster: Cluster | None = None
    try:
        say(f"disk ceiling in {root} ...")
        report.disk = disk_ceiling(root / "disk", args.batch, args.warmup_s, args.duration_s)
        shutil.rmtree(root / "disk", ignore_errors=True)
        say("transport floor (bench/grpc_floor.py) ...")
        report.floor = measure_floor(root, calls=2000)
        cluster = Cluster(root)
        cluster.start()
        say("cluster: " + ", ".join(f"{n.id}={n.address} pid {n.pid}" for n in cluster.nodes))
        leader, term = asyncio.run(find_leader(cluster, 30.0))
        say(f"leader {leader.id} (pid {leader.pid}), term {term}")
        leaders = [f"{leader.id} (term {term})"]
        single_modes = [m for m in args.mode_list if m in UNBATCHED_MODES]
        for r in range(args.latency_rounds if single_modes else 0):
            say(f"round {r + 1} of {args.latency_rounds}: floor, then 1 client per unbatched mode")
            floor = measure_floor(root, calls=1000)
            points = {}
            for mode in single_modes:
                points[mode] = measure_point(
                    cluster, leader, mode, 1, 1, 1, args.warmup_s, args.duration_s
                )
                say(f"  {mode}: p50 {fmt_ms(points[mode].p50_ms)} ms")
            cluster.check_alive()
            report.rounds.append(LatencyRound(floor, points))
        for mode in args.mode_list:
            batch = 1 if mode in UNBATCHED_MODES else args.batch
            for clients in args.client_list:
                say(f"{mode}: {clients} client(s) x {batch} record(s) per Append ...")
                point = measure_point(
                    cluster, leader, mode, clients, batch, args.client_procs,
                    args.warmup_s, args.duration_s,
                )  # fmt: skip
                cluster.check_alive()
                now, now_term = asyncio.run(find_leader(cluster, 30.0))
                if now is not leader or now_term != term:
                    point = dataclasses.replace(
                        point, note=f"leader changed to {now.id}, term {now_term}"
                    )
                    leader, term = now, now_term
                    leaders.append(f"{leader.id} (term {term})")
                report.points.append(point)
                say(
                    f"  {fmt_int(point.records_s)} records/s, p50 {fmt_ms(point.p50_ms)} ms, "
                    f"p99 {fmt_ms(point.p99_ms)} ms, errors {sum(point.errors.values())}, "
                    f"leader CPU {point.leader_cpu:.2f}"
                )
        report.leader_note = "leader " + " then ".join(leaders)
        if args.profile_s > 0:
            sections = []
            for mode in args.mode_list:
                batch = 1 if mode in UNBATCHED_MODES else args.batch
                clients = max(args.client_list)
                say(f"profiling leader pid {leader.pid}: {mode}, {clients} clients ...")
                sections.append(
                    profile_leader(leader, args.client_procs, clients, batch, args.profile_s, root)
                )
            report.profile = "\n".join(sections)
    finally:
        if cluster is not None:
            cluster.stop()
        if args.keep_data:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    report.load_end = os.getloadavg()
    text = report.render()
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
