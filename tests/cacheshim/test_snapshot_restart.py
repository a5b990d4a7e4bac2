"""Issue 16, on real processes: shims start from the snapshot store, a snapshotter writes it,
RDB in and out with Debian's redis-server, point-in-time restore.

Each test starts its own three log nodes and shims (tests/cacheshim/harness.py).

Over 500 lines: each scenario starts its own processes; they share the helpers that start,
snapshot and restore them.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cacheshim.snapshot.model import Keyspace, new_keyspace
from cacheshim.snapshot.rdb import read_rdb, write_rdb
from cacheshim.snapshot.redisdigest import redis_digest
from logsvc.client import LogClient, list_snapshots, put_snapshot
from tests.cacheshim.harness import (
    Memlog,
    RedisServer,
    applied_index,
    client,
    execute,
    free_port,
    same_index,
    stop_process,
    wait_until,
)

SEED = int(os.environ.get("MEMLOG_TEST_SEED", random.randrange(1 << 30)))


def _memlog_cli(*args: str, timeout_s: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cacheshim.launcher", *args],
        capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip
    assert done.returncode == 0, f"memlog {args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _addrs(m: Memlog) -> str:
    assert m.cluster is not None
    return ",".join(m.cluster.addresses())


def _start_snapshotter(m: Memlog, every_s: float, min_records: int) -> subprocess.Popen[bytes]:
    with open(m.root / "snapshotter.log", "ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "cacheshim.launcher", "snapshot", "--log", _addrs(m),
             "--every-s", str(every_s), "--min-records", str(min_records),
             "--temp-dir", str(m.root)],
            stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _log_state(m: Memlog) -> tuple[int, int]:
    """(the smallest first index over the nodes that answer, the newest snapshot index)."""

    async def ask() -> tuple[int, int]:
        async with LogClient(_addrs(m).split(",")) as log:
            firsts = []
            newest = 0
            for address in log.addresses:
                try:
                    st = await log.status(address)
                except Exception:
                    continue
                firsts.append(st.first_index)
                newest = max(newest, st.newest_snapshot.index)
            return (min(firsts) if firsts else 0), newest

    return asyncio.run(ask())


def _snapshot_indexes(m: Memlog) -> list[int]:
    async def ask() -> list[int]:
        async with LogClient(_addrs(m).split(",")) as log:
            listed = await list_snapshots(log, log.addresses[0])
            return [s.index for s in listed.snapshots]

    return asyncio.run(ask())


def _mixed_writes(rng: random.Random, count: int) -> Iterator[list[object]]:
    """Writes of every type over a small set of keys, some with TTLs (long and short)."""
    for _ in range(count):
        key = f"k{rng.randrange(60)}"
        pick = rng.randrange(12)
        if pick == 0:
            yield ["SET", f"s:{key}", rng.randbytes(rng.randrange(1, 40))]
        elif pick == 1:
            yield ["INCRBY", f"n:{key}", rng.randrange(-5, 100)]
        elif pick == 2:
            yield ["RPUSH", f"l:{key}", *[rng.randrange(1000) for _ in range(rng.randrange(1, 4))]]
        elif pick == 3:
            yield ["LPOP", f"l:{key}"]
        elif pick == 4:
            yield ["HSET", f"h:{key}", f"f{rng.randrange(20)}", rng.randbytes(8)]
        elif pick == 5:
            yield ["SADD", f"t:{key}", rng.randrange(50), f"m{rng.randrange(50)}"]
        elif pick == 6:
            yield ["SREM", f"t:{key}", f"m{rng.randrange(50)}"]
        elif pick == 7:
            yield ["ZADD", f"z:{key}", rng.uniform(-100, 100), f"m{rng.randrange(30)}"]
        elif pick == 8:
            yield ["PEXPIRE", f"s:{key}", rng.randrange(60_000, 600_000)]
        elif pick == 9:
            yield ["SET", f"e:{key}", "short", "PX", rng.randrange(1, 300)]
        elif pick == 10:
            yield ["DEL", f"s:{key}", f"h:{key}"]
        else:
            yield ["ZREM", f"z:{key}", f"m{rng.randrange(30)}"]


class _Load:
    """A steady write load on one shim from a thread; every reply is checked."""

    def __init__(self, port: int, seed: int) -> None:
        self.port = port
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.sent = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            conn = client(self.port)
            while not self.stop.is_set():
                pipe = conn.pipeline(transaction=False)
                for args in _mixed_writes(self.rng, 20):
                    execute(pipe, *args)
                pipe.execute(raise_on_error=False)
                self.sent += 20
                time.sleep(0.005)
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> _Load:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(30)
        assert self.error is None, f"the load failed (seed {SEED}): {self.error!r}"


def _digest(port: int) -> str:
    reply = execute(client(port), "DEBUG", "DIGEST")
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def test_shims_restarted_and_new_after_trims_match_one_that_never_stopped(tmp_path: Path) -> None:
    print(f"seed {SEED}")
    m = Memlog(
        tmp_path, shims=2,
        log_args=["--trim-interval-s", "0.5", "--trim-keep-entries", "40",
                  "--trim-keep-seconds", "0"],
    )  # fmt: skip
    snapshotter: subprocess.Popen[bytes] | None = None
    try:
        m.start()
        snapshotter = _start_snapshotter(m, every_s=0.5, min_records=20)
        firsts: list[int] = []

        def trimmed_again(times: int) -> bool:
            first, _ = _log_state(m)
            if not firsts or first > firsts[-1]:
                firsts.append(first)
            return len(firsts) > times

        with _Load(m.shim_ports[0], SEED):
            wait_until(lambda: trimmed_again(2), 90, "two trims")
            stop_process(m.shim_procs[1])  # shim 2 stops mid-run
            wait_until(lambda: trimmed_again(4), 90, "two more trims while shim 2 is down")
            m.start_shim(1)  # restarted, behind the trim point
            wait_until(lambda: trimmed_again(5), 90, "a trim after shim 2 came back")
            m.start_shim(2)  # a new shim, after the trims
            wait_until(lambda: trimmed_again(6), 90, "one more trim")
        first, newest = _log_state(m)
        assert first > 1 and newest > 0
        conns = [client(port) for port in m.shim_ports]
        same_index(conns, timeout_s=30)
        digests = {_digest(port) for port in m.shim_ports}
        assert len(digests) == 1, f"digests differ (seed {SEED}): {digests}"
        assert digests != {"0" * 40}
        for name in ("shim-2.log", "shim-3.log"):
            assert "restored snapshot" in (tmp_path / name).read_text(), m.log_tail(name)
    finally:
        if snapshotter is not None:
            stop_process(snapshotter)
        m.stop()


def _snapshot_once(m: Memlog) -> int:
    out = _memlog_cli("snapshot", "--log", _addrs(m), "--temp-dir", str(m.root))
    assert out.startswith("snapshot "), out
    return int(out.split()[1])


def _commit_index(m: Memlog) -> int:
    async def ask() -> int:
        async with LogClient(_addrs(m).split(",")) as log:
            return (await log.status(log.addresses[0])).commit_index

    return asyncio.run(ask())


def _corrupt(m: Memlog, index: int, zones: str) -> int:
    """Overwrite bytes inside snapshot index's files on the nodes of these zones; how many."""
    hit = 0
    for path in sorted(m.root.rglob("snap-*.blob")):
        if int(path.name.split("-")[1]) != index or path.parent.parent.name not in zones:
            continue
        with path.open("r+b") as f:
            f.seek(path.stat().st_size // 2)
            f.write(os.urandom(16))
        hit += 1
    return hit


class _Acked:
    """Writes whose reply came back OK, to look for after a restart."""

    def __init__(self) -> None:
        self.strings: dict[bytes, bytes] = {}
        self.lists: dict[bytes, list[bytes]] = {}

    def write(self, port: int, tag: str, count: int) -> None:
        pipe = client(port).pipeline(transaction=False)
        sent: list[tuple[bytes, bytes]] = []
        for i in range(count):
            key, value = f"{tag}:{i}".encode(), os.urandom(12)
            pipe.set(key, value)
            pipe.rpush(f"list:{tag}".encode(), value)
            sent.append((key, value))
        replies = pipe.execute()
        for i, (key, value) in enumerate(sent):
            assert replies[2 * i] is True and replies[2 * i + 1] == i + 1
            self.strings[key] = value
            self.lists.setdefault(f"list:{tag}".encode(), []).append(value)

    def check(self, port: int) -> None:
        conn = client(port)
        keys = list(self.strings)
        assert conn.mget(keys) == [self.strings[k] for k in keys]
        for key, items in self.lists.items():
            assert conn.lrange(key, 0, -1) == items


def test_restart_after_a_killed_snapshotter_and_bad_snapshots_serves_every_ack(
    tmp_path: Path,
) -> None:
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    m = Memlog(tmp_path, shims=2, log_args=["--snapshot-retain", "10"])
    try:
        m.start()
        acked = _Acked()
        port = m.shim_ports[1]  # shim 1 (zone a) is the one restarted
        acked.write(port, "a", 300)
        first = _snapshot_once(m)
        # A snapshotter killed at a random moment while writes go on (mid-write or mid-put).
        snapshotter = _start_snapshotter(m, every_s=0.05, min_records=1)
        with _Load(port, SEED):
            acked.write(port, "b", 300)
            log_path = tmp_path / "snapshotter.log"
            wait_until(lambda: " stored: " in log_path.read_text(), 60, "a snapshotter round")
            time.sleep(rng.uniform(0.0, 0.3))
            snapshotter.send_signal(signal.SIGKILL)
            snapshotter.wait()
            acked.write(port, "c", 300)
        good = _snapshot_once(m)
        assert good > first
        acked.write(port, "d", 300)
        # The newest snapshot is not a memlog snapshot (a plain RDB file): never restored.
        plain = tmp_path / "plain.rdb"
        with plain.open("wb") as out:
            write_rdb(read_rdb_of_nothing(), out)
        bogus = _commit_index(m)

        async def put_plain() -> None:
            async with LogClient(_addrs(m).split(",")) as log:
                await put_snapshot(log, bogus, plain)

        asyncio.run(put_plain())
        acked.write(port, "e", 300)
        assert _corrupt(m, good, "a") == 1  # zone a's copy damaged, zone b's lost:
        lost = [p for p in tmp_path.rglob("snap-*.blob") if p.parent.parent.name == "b"]
        for path in lost:  # zone b loses all its snapshot files
            path.unlink()
        assert lost  # served by zone c (or by a node that fetched it again meanwhile)
        stop_process(m.shim_procs[0])
        m.start_shim(0)
        text = (tmp_path / "shim-1.log").read_text()
        assert f"snapshot {bogus} is unusable (not a memlog snapshot" in text, m.log_tail(
            "shim-1.log"
        )
        assert f"restored snapshot {good} " in text, m.log_tail("shim-1.log")
        conns = [client(p) for p in m.shim_ports]
        same_index(conns, timeout_s=30)
        acked.check(m.shim_ports[0])
        assert _digest(m.shim_ports[0]) == _digest(port)
        # Every copy of the good snapshot damaged: the one before it, and the log after it.
        _corrupt(m, good, "abc")
        stop_process(m.shim_procs[0])
        m.start_shim(0)
        text = (tmp_path / "shim-1.log").read_text()
        assert f"snapshot {good} is unusable" in text, m.log_tail("shim-1.log")
        last = text[text.rindex(f"snapshot {good} is unusable") :]
        restored = int(last[last.index("restored snapshot ") :].split()[2])
        assert first <= restored < good, m.log_tail("shim-1.log")
        same_index(conns, timeout_s=30)
        acked.check(m.shim_ports[0])
        assert _digest(m.shim_ports[0]) == _digest(port)
    finally:
        m.stop()


def read_rdb_of_nothing() -> Keyspace:
    return new_keyspace()


def _fill_every_type(conn: redis.Redis, rng: random.Random) -> None:
    """Every type memlog holds, in the encodings redis-server 7.0 writes for them (small
    and large), over two databases, some keys with expiry times."""
    far = int(time.time() * 1000) + 3_600_000
    for db in (0, 3):
        execute(conn, "SELECT", db)
        pipe = conn.pipeline(transaction=False)
        pipe.set("str:int", "12345")
        pipe.set("str:bigint", "123456789012345678")
        pipe.set("str:neg", "-7")
        pipe.set("str:text", "hello world")
        pipe.set("str:lzf", b"abcdefgh" * 500)  # compressible: LZF in the file
        pipe.set("str:bin", rng.randbytes(300))
        pipe.rpush("list:small", *[f"i{i}" for i in range(5)], 42, -3)
        pipe.rpush("list:big", *[rng.randbytes(rng.randrange(1, 200)) for _ in range(2000)])
        pipe.sadd("set:intset", *range(-5, 20))
        pipe.sadd("set:strings", *[f"m{i}" for i in range(10)])
        pipe.sadd("set:big", *[rng.randbytes(10) for _ in range(700)])
        pipe.hset("hash:small", mapping={f"f{i}": f"v{i}" for i in range(8)})
        pipe.hset("hash:big", mapping={f"f{i}": rng.randbytes(20) for i in range(600)})
        pipe.zadd("zset:small", {"a": 1.5, "b": -2, "c": 3e10})
        pipe.zadd("zset:big", {f"m{i}": rng.uniform(-1e6, 1e6) for i in range(300)})
        pipe.zadd("zset:inf", {"lo": float("-inf"), "hi": float("inf"), "mid": 0})
        for key in ("str:text", "list:small", "set:intset", "hash:big", "zset:small"):
            pipe.pexpireat(key, far + rng.randrange(1000))
        pipe.execute()
    execute(conn, "SELECT", 0)


def _dump(conn: redis.Redis) -> dict[tuple[int, bytes], tuple[object, ...]]:
    """Every key's type, value and absolute expiry, by database."""
    out: dict[tuple[int, bytes], tuple[object, ...]] = {}
    for db in range(16):
        execute(conn, "SELECT", db)
        for key in conn.keys("*"):
            kind = conn.type(key)
            value: object
            if kind == b"string":
                value = conn.get(key)
            elif kind == b"list":
                value = conn.lrange(key, 0, -1)
            elif kind == b"set":
                value = sorted(conn.smembers(key))
            elif kind == b"hash":
                value = sorted(conn.hgetall(key).items())
            else:
                value = conn.zrange(key, 0, -1, withscores=True)
            assert isinstance(key, bytes)
            out[(db, key)] = (kind, value, execute(conn, "PEXPIRETIME", key))
    execute(conn, "SELECT", 0)
    return out


def test_rdb_round_trips_with_redis_server(tmp_path: Path) -> None:
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    source = RedisServer(tmp_path / "redis-a")
    target = RedisServer(tmp_path / "redis-b")
    m = Memlog(tmp_path / "memlog")
    try:
        source.start(["--enable-debug-command", "yes"])
        m.start()
        # redis-server -> memlog: its RDB file, through the log as ordinary writes.
        oracle = client(source.port)
        _fill_every_type(oracle, rng)
        execute(oracle, "SAVE")
        dump = tmp_path / "redis-a" / "dump.rdb"
        out = _memlog_cli("import", "--rdb", str(dump), "--addr", f"127.0.0.1:{m.shim_ports[0]}")
        assert "imported 32 keys" in out, out
        shim = client(m.shim_ports[0])
        assert _dump(shim) == _dump(oracle)
        # Both go on with the same writes, then memlog -> redis-server: export, load.
        for args in _mixed_writes(rng, 300):
            if args[0] == "SET" and "PX" in args:
                continue  # short TTLs would expire at different moments on the two
            if args[0] == "PEXPIRE":  # relative: the same moment on both
                args = ["PEXPIREAT", args[1], int(time.time() * 1000) + int(str(args[2]))]
            assert type(outcome := _try(shim, args)) is type(_try(oracle, args)), (args, outcome)
        exported = tmp_path / "redis-b" / "exported.rdb"
        (tmp_path / "redis-b").mkdir()
        out = _memlog_cli("export", "--rdb", str(exported), "--log", _addrs(m))
        assert "exported" in out, out
        with exported.open("rb") as f:
            loaded = read_rdb(f)
        assert loaded.state is None  # a plain Redis file
        want = execute(oracle, "DEBUG", "DIGEST")
        assert redis_digest(loaded.keyspace).encode() == want
        target.start(["--dbfilename", "exported.rdb", "--enable-debug-command", "yes"])
        loaded_by_redis = client(target.port)
        assert execute(loaded_by_redis, "DEBUG", "DIGEST") == want
        assert _dump(loaded_by_redis) == _dump(oracle) == _dump(shim)
    finally:
        m.stop()
        source.stop()
        target.stop()


def _try(conn: redis.Redis, args: list[object]) -> object:
    try:
        return execute(conn, *args)
    except redis.ResponseError as exc:
        return exc


def test_restore_to_an_index_or_a_time_gives_the_state_a_shim_had_there(tmp_path: Path) -> None:
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    m = Memlog(tmp_path, log_args=["--snapshot-retain", "10"])
    try:
        m.start()
        port = m.shim_ports[0]
        shim = client(port)
        points: list[tuple[int, str, int]] = []  # (applied index, digest, a time after it)

        def batch() -> None:
            pipe = shim.pipeline(transaction=False)
            for args in _mixed_writes(rng, 150):
                if args[0] == "SET" and "PX" in args:
                    args = args[:3]  # no short TTLs: a digest counts a key until apply drops it
                execute(pipe, *args)
            pipe.execute(raise_on_error=False)

        for round_ in range(4):
            time.sleep(0.01)
            batch()
            points.append((applied_index(shim), _digest(port), int(time.time() * 1000)))
            time.sleep(0.01)
            if round_ in (1, 2):
                _snapshot_once(m)
        batch()
        assert len({digest for _, digest, _ in points}) == len(points)
        for index, digest, when in points:
            for how in (["--to-index", str(index)], ["--to-time", str(when)]):
                out_path = tmp_path / f"restore-{index}-{how[0][5:]}.rdb"
                out = _memlog_cli("restore", *how, "--rdb", str(out_path), "--log", _addrs(m))
                assert f"at log index {index} " in out, (how, out)
                with out_path.open("rb") as f:
                    got = read_rdb(f).keyspace.digest()
                assert got == digest, (how, index)
    finally:
        m.stop()


def test_save_bgsave_lastsave_and_info_speak_of_the_snapshot_store(tmp_path: Path) -> None:
    m = Memlog(tmp_path)
    snapshotter: subprocess.Popen[bytes] | None = None
    try:
        m.start()
        # Rounds far apart and a high floor: only SAVE/BGSAVE make it write one here.
        snapshotter = _start_snapshotter(m, every_s=600, min_records=1_000_000)
        wait_until(
            lambda: "at index" in (tmp_path / "snapshotter.log").read_text(), 60, "snapshotter"
        )
        shim = client(m.shim_ports[0])
        before = time.time()
        for i in range(50):
            shim.set(f"k{i}", i)
        wanted = applied_index(shim)
        assert execute(shim, "SAVE") is True  # redis-py reads +OK as True
        info = shim.info("persistence")
        assert info["memlog_snapshot_index"] >= wanted
        assert info["rdb_changes_since_last_save"] <= applied_index(shim) - wanted
        assert info["memlog_log_first_index"] == 1
        assert info["memlog_snapshot_bytes"] > 0
        assert 0 <= info["memlog_snapshot_age_sec"] < 30
        lastsave = shim.lastsave().timestamp()  # redis-py makes it a datetime
        assert before - 1 <= lastsave <= time.time() + 1
        assert info["rdb_last_save_time"] == lastsave
        first = info["memlog_snapshot_index"]
        shim.set("after", "save")
        with socket.create_connection(("127.0.0.1", m.shim_ports[0]), timeout=15) as sock:
            sock.sendall(b"BGSAVE\r\n")
            assert sock.recv(100) == b"+Background saving started\r\n"
        wait_until(lambda: _log_state(m)[1] > first, 30, "the snapshot BGSAVE asked for")
        with pytest.raises(redis.ResponseError, match="syntax error"):
            execute(shim, "BGSAVE", "NOW")
    finally:
        if snapshotter is not None:
            stop_process(snapshotter)
        m.stop()


def test_a_shim_whose_records_were_trimmed_without_a_snapshot_says_so_and_never_serves(
    tmp_path: Path,
) -> None:
    m = Memlog(tmp_path)
    proc: subprocess.Popen[bytes] | None = None
    try:
        m.start()
        shim = client(m.shim_ports[0])
        for i in range(30):
            shim.set(f"k{i}", i)

        async def force_trim() -> int:
            async with LogClient(_addrs(m).split(",")) as log:
                return await log.trim(20, force=True)

        first = asyncio.run(force_trim())
        assert first > 1
        wait_until(lambda: _log_state(m)[0] == first, 30, "the trim on every node")
        m.shim_ports.append(free_port())
        log_path = tmp_path / "shim-2.log"
        with log_path.open("ab") as log_file:
            proc = subprocess.Popen(m.shim_command(1), stdout=log_file, stderr=subprocess.STDOUT)
        wait_until(
            lambda: log_path.read_text().count("cannot rebuild the state") >= 2, 60, "the retries"
        )
        text = log_path.read_text()
        assert f"the log keeps records from index {first} on" in text, text
        assert f"records 1 to {first - 1} were trimmed" in text, text
        assert proc.poll() is None
        with pytest.raises(redis.ConnectionError):
            client(m.shim_ports[1]).ping()
    finally:
        if proc is not None:
            stop_process(proc)
        m.stop()
