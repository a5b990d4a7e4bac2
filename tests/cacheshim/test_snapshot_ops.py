"""Issue 16, operations on real processes: a shim the log was trimmed past rebuilds itself from
the newest snapshot (answering LOADING meanwhile), and SAVE/BGSAVE when no snapshotter runs.

Each test starts its own three log nodes and shims (tests/cacheshim/harness.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

from logsvc.client import LogClient
from tests.cacheshim.harness import (
    Memlog,
    applied_index,
    client,
    same_index,
    stop_process,
    wait_until,
)
from tests.cacheshim.rawresp import RawConnection
from tests.cacheshim.test_snapshot_restart import (
    _Acked,
    _addrs,
    _digest,
    _log_state,
    _snapshot_once,
    _start_snapshotter,
)

LOADING = b"-LOADING Redis is loading the dataset in memory\r\n"


def _first_indexes(m: Memlog) -> list[int]:
    async def ask() -> list[int]:
        async with LogClient(_addrs(m).split(",")) as log:
            return [(await log.status(a)).first_index for a in log.addresses]

    return asyncio.run(ask())


def _force_trim(m: Memlog) -> int:
    """Trim every record up to the commit index (forced: above the newest snapshot)."""

    async def trim() -> int:
        async with LogClient(_addrs(m).split(",")) as log:
            commit = (await log.status(log.addresses[0])).commit_index
            return await log.trim(commit, force=True)

    return asyncio.run(trim())


def _raw(port: int, *args: str) -> bytes:
    """The exact reply (a new connection each time: redis-py takes LOADING for a broken
    connection and retries)."""
    conn = RawConnection(port)
    try:
        return conn.call(*args)
    finally:
        conn.close()


def test_a_shim_the_log_was_trimmed_past_answers_loading_then_rebuilds_from_the_snapshot(
    tmp_path: Path,
) -> None:
    m = Memlog(tmp_path, shims=2)
    snapshotter: subprocess.Popen[bytes] | None = None
    try:
        m.start()
        # Rounds far apart and a high floor: it writes a snapshot only when BGSAVE asks. It
        # follows the log in memory, so it can write one even once the log is trimmed.
        snapshotter = _start_snapshotter(m, every_s=600, min_records=1_000_000)
        wait_until(
            lambda: "at index" in (tmp_path / "snapshotter.log").read_text(), 60, "snapshotter"
        )
        writer, paused = client(m.shim_ports[0]), client(m.shim_ports[1])
        acked = _Acked()
        acked.write(m.shim_ports[0], "a", 200)
        writer.set("moving", "before")
        same_index([writer, paused], timeout_s=30)
        behind = applied_index(paused)
        # A client of the paused shim caches "moving": it must hear that every key is invalid.
        cacher = RawConnection(m.shim_ports[1], 3)
        assert cacher.call("CLIENT", "TRACKING", "on") == b"+OK\r\n"
        assert cacher.call("GET", "moving") == b"$6\r\nbefore\r\n"
        proc = m.shim_procs[1]
        proc.send_signal(signal.SIGSTOP)  # a shim cut off while the others go on
        try:
            # More than the transport buffers toward the paused shim hold, so that its Read
            # stream must come back to the node for records that are gone by then.
            pipe = writer.pipeline(transaction=False)
            for i in range(400):
                pipe.set(f"big:{i}", os.urandom(32 << 10))
            assert all(r is True for r in pipe.execute())
            acked.write(m.shim_ports[0], "b", 200)
            writer.set("moving", "after")
            first = _force_trim(m)
            assert first > behind + 1
            wait_until(lambda: min(_first_indexes(m)) == first, 30, "the trim on every node")
        finally:
            proc.send_signal(signal.SIGCONT)
        # No snapshot covers the trimmed records yet: it must not serve what it holds.
        port = m.shim_ports[1]
        try:
            wait_until(lambda: _raw(port, "GET", "moving") == LOADING, 60, "LOADING")
        except TimeoutError:
            raise AssertionError(
                f"the resumed shim answers {_raw(port, 'GET', 'moving')!r}, not LOADING:\n"
                + m.log_tail("shim-2.log")
            ) from None
        assert _raw(port, "PING") == LOADING
        assert _raw(port, "SET", "x", "y") == LOADING
        assert b"\r\nloading:1\r\n" in _raw(port, "INFO", "persistence")  # runs, as in Redis
        text = (tmp_path / "shim-2.log").read_text()
        assert "the log was trimmed past this shim" in text, m.log_tail("shim-2.log")
        # Writes go on elsewhere; then a snapshot lets it rebuild.
        acked.write(m.shim_ports[0], "c", 200)
        assert _raw(m.shim_ports[0], "BGSAVE") == b"+Background saving started\r\n"
        wait_until(lambda: _log_state(m)[1] >= first, 60, "the snapshot BGSAVE asked for")
        wait_until(
            lambda: _raw(port, "GET", "moving") == b"$5\r\nafter\r\n", 60, "the shim to serve again"
        )
        assert paused.info("persistence")["loading"] == 0
        cacher.send(["PING"])
        frames: list[bytes] = []
        while not frames or frames[-1] != b"+PONG\r\n":
            frames += cacher.replies(1)
        assert b">2\r\n$10\r\ninvalidate\r\n_\r\n" in frames, frames
        cacher.close()
        text = (tmp_path / "shim-2.log").read_text()
        assert "caught up again: restored snapshot" in text, m.log_tail("shim-2.log")
        acked.write(m.shim_ports[1], "d", 50)  # and it takes writes again
        same_index([writer, paused], timeout_s=30)
        acked.check(m.shim_ports[1])
        assert _digest(m.shim_ports[1]) == _digest(m.shim_ports[0])
        assert proc.poll() is None
    finally:
        if snapshotter is not None:
            stop_process(snapshotter)
        m.stop()


def test_a_shim_paused_past_automatic_trims_rebuilds_and_matches_the_others(
    tmp_path: Path,
) -> None:
    # As it happens in production: a snapshotter and automatic trim, one shim paused
    # (SIGSTOP) long enough for the log to trim past it, then resumed.
    m = Memlog(
        tmp_path, shims=2,
        log_args=["--trim-interval-s", "0.5", "--trim-keep-entries", "20",
                  "--trim-keep-seconds", "0"],
    )  # fmt: skip
    snapshotter: subprocess.Popen[bytes] | None = None
    try:
        m.start()
        snapshotter = _start_snapshotter(m, every_s=0.5, min_records=20)
        writer, paused = client(m.shim_ports[0]), client(m.shim_ports[1])
        acked = _Acked()
        acked.write(m.shim_ports[0], "a", 100)
        same_index([writer, paused], timeout_s=30)
        behind = applied_index(paused)
        proc = m.shim_procs[1]
        proc.send_signal(signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 120
            round_ = 0
            while min(_first_indexes(m)) <= behind + 1000:
                assert time.monotonic() < deadline, "no trim past the paused shim"
                pipe = writer.pipeline(transaction=False)
                for i in range(100):
                    pipe.set(f"big:{round_}:{i}", os.urandom(16 << 10))
                pipe.execute()
                acked.write(m.shim_ports[0], f"b{round_}", 20)
                round_ += 1
        finally:
            proc.send_signal(signal.SIGCONT)
        wait_until(
            lambda: "caught up again: restored snapshot" in (tmp_path / "shim-2.log").read_text(),
            90,
            "the paused shim to rebuild from a snapshot",
        )
        acked.write(m.shim_ports[0], "c", 50)
        same_index([writer, paused], timeout_s=60)
        acked.check(m.shim_ports[1])
        assert _digest(m.shim_ports[1]) == _digest(m.shim_ports[0])
    finally:
        if snapshotter is not None:
            stop_process(snapshotter)
        m.stop()


def test_save_and_bgsave_without_a_snapshotter_make_the_snapshot_themselves(
    tmp_path: Path,
) -> None:
    m = Memlog(tmp_path)
    try:
        m.start()
        port = m.shim_ports[0]
        shim = client(port)
        for i in range(100):
            shim.set(f"k{i}", i)
        wanted = applied_index(shim)
        assert _log_state(m)[1] == 0  # no snapshot, and no snapshotter to make one
        started = time.monotonic()
        assert _raw(port, "SAVE") == b"+OK\r\n"
        took = time.monotonic() - started
        info = shim.info("persistence")
        assert info["memlog_snapshot_index"] >= wanted
        assert info["rdb_bgsave_in_progress"] == 0
        assert info["rdb_last_bgsave_status"] == "ok"
        assert _log_state(m)[1] >= wanted
        text = (tmp_path / "shim-1.log").read_text()
        assert f"no snapshot covering index {wanted} came within" in text, m.log_tail("shim-1.log")
        print(f"SAVE without a snapshotter took {took:.1f}s")
        # BGSAVE answers at once; the snapshot follows. While it runs, another save is
        # refused (SAVE and BGSAVE) or scheduled (BGSAVE SCHEDULE), as in Redis.
        shim.set("after", "save")
        second = applied_index(shim)
        assert _raw(port, "BGSAVE") == b"+Background saving started\r\n"
        assert _raw(port, "BGSAVE") == b"-ERR Background save already in progress\r\n"
        assert _raw(port, "SAVE") == b"-ERR Background save already in progress\r\n"
        assert shim.info("persistence")["rdb_bgsave_in_progress"] == 1
        shim.set("after", "bgsave")
        third = applied_index(shim)
        assert _raw(port, "BGSAVE", "SCHEDULE") == b"+Background saving scheduled\r\n"
        wait_until(lambda: _log_state(m)[1] >= second, 120, "the snapshot BGSAVE made")
        wait_until(lambda: _log_state(m)[1] >= third, 120, "the snapshot BGSAVE SCHEDULE made")
        wait_until(
            lambda: shim.info("persistence")["rdb_bgsave_in_progress"] == 0, 60, "the save's end"
        )
        assert shim.info("persistence")["rdb_last_bgsave_status"] == "ok"
        # A new shim starts from that snapshot, with every write.
        m.start_shim(1)
        fresh = client(m.shim_ports[1])
        same_index([shim, fresh], timeout_s=30)
        assert fresh.get("after") == b"bgsave"
        assert f"restored snapshot {_log_state(m)[1]} " in (tmp_path / "shim-2.log").read_text()
    finally:
        m.stop()


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def _raft_last(m: Memlog) -> int:
    async def ask() -> int:
        async with LogClient(_addrs(m).split(",")) as log:
            return max([(await log.status(a)).raft_last_index for a in log.addresses])

    return asyncio.run(ask())


WINDOW_ENTRIES = 200


def test_node_rss_stays_bounded_while_the_log_trims_and_grows_past_ten_windows(
    tmp_path: Path,
) -> None:
    # 64 KiB values, one SET per raft entry (one client, one command at a time): the window
    # holds about 13 MiB of entries; the log grows by ten more windows (125 MiB) while it is
    # measured, trimmed again and again below the snapshots (the keyspace stays at 16 keys,
    # so they are small). This is the bound under trimming, as the issue asks; a trim also
    # drops entries from memory, so the window's own bound, without trims, is proved by
    # tests/logsvc/test_window.py.
    m = Memlog(
        tmp_path, shims=2,
        log_args=["--window-entries", str(WINDOW_ENTRIES), "--trim-interval-s", "0.5",
                  "--trim-keep-entries", "50", "--trim-keep-seconds", "0"],
    )  # fmt: skip
    snapshotter: subprocess.Popen[bytes] | None = None
    try:
        m.start()
        snapshotter = _start_snapshotter(m, every_s=0.5, min_records=100)
        assert m.cluster is not None
        pids = {z: p.pid for z, p in m.cluster.processes.items()}
        writer = client(m.shim_ports[0])
        value = os.urandom(64 << 10)
        i = 0

        def write(count: int) -> None:
            nonlocal i
            for _ in range(count):
                assert writer.set(f"big:{i % 16}", value[i % 1024 :] + b"%d" % i)
                i += 1

        # Past six windows first (77 MiB written): the window is full and RocksDB's two
        # 16 MiB memtables have filled and flushed twice.
        while _raft_last(m) < 6 * WINDOW_ENTRIES:
            write(100)
        start = {z: _rss_mib(pid) for z, pid in pids.items()}
        peak = dict(start)
        firsts = {min(_first_indexes(m))}
        while _raft_last(m) < 16 * WINDOW_ENTRIES:
            write(100)
            firsts.add(min(_first_indexes(m)))
            for z, pid in pids.items():
                peak[z] = max(peak[z], _rss_mib(pid))
        growth = {z: round(peak[z] - start[z], 1) for z in pids}
        print("RSS MiB at 6 windows:", start, "growth over 10 more:", growth, "firsts:", firsts)
        assert len(firsts) >= 4, f"the log trimmed only {len(firsts) - 1} times: {firsts}"
        # Room for the memtables' swing (32 MiB), the block cache (8 MiB) and the allocator;
        # half of what the ten windows written meanwhile would add if they stayed in memory.
        assert all(g < 62 for g in growth.values()), growth
        same_index([writer, client(m.shim_ports[1])], timeout_s=30)
        assert _digest(m.shim_ports[0]) == _digest(m.shim_ports[1])
    finally:
        if snapshotter is not None:
            stop_process(snapshotter)
        m.stop()


def test_a_snapshotter_killed_mid_put_leaves_nothing_and_the_next_one_stores(
    tmp_path: Path,
) -> None:
    # Puts written at 256 KiB/s: a snapshot of a few MiB is in flight for seconds, long
    # enough to kill the snapshotter while the log nodes hold its half-written copy.
    m = Memlog(tmp_path, shims=2, log_args=["--snapshot-bytes-per-s", str(256 << 10)])
    snapshotter: subprocess.Popen[bytes] | None = None
    try:
        m.start()
        acked = _Acked()
        port = m.shim_ports[0]
        pipe = client(port).pipeline(transaction=False)
        for i in range(300):
            pipe.set(f"fill:{i}", os.urandom(8 << 10))
        assert all(r is True for r in pipe.execute())
        acked.write(port, "a", 200)
        snapshotter = _start_snapshotter(m, every_s=0.2, min_records=1)

        def temp_copies() -> list[Path]:
            return [p for p in tmp_path.rglob(".tmp-*") if p.parent.name == "snapshots"]

        wait_until(lambda: bool(temp_copies()), 60, "a put in progress on a log node")
        snapshotter.send_signal(signal.SIGKILL)
        snapshotter.wait()
        snapshotter = None
        acked.write(port, "b", 200)
        # The node drops the half-written copy when the stream breaks: nothing is durable.
        wait_until(lambda: not temp_copies(), 60, "the half-written copies to be removed")
        assert _log_state(m)[1] == 0
        assert "stored" not in (tmp_path / "snapshotter.log").read_text()
        # The next snapshotter stores one; a restarted shim starts from it with every ack.
        stored = _snapshot_once(m)
        assert _log_state(m)[1] == stored
        stop_process(m.shim_procs[1])
        m.start_shim(1)
        assert "restored snapshot" in (tmp_path / "shim-2.log").read_text()
        same_index([client(port), client(m.shim_ports[1])], timeout_s=30)
        acked.check(m.shim_ports[1])
        assert _digest(m.shim_ports[1]) == _digest(port)
    finally:
        if snapshotter is not None:
            stop_process(snapshotter)
        m.stop()
