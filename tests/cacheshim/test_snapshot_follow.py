"""The resident snapshotter (`memlog snapshot --follow`), on real processes: it restores and
replays once, then writes each snapshot from the applier it keeps by following the log, at
a cadence by records; what it stores has the DEBUG DIGEST of a shim at the same index; a
temp file a killed one left is removed; a cadence it cannot honour is refused."""

from __future__ import annotations

import asyncio
import functools
import io
import subprocess
import sys
from pathlib import Path

import pytest

from cacheshim import launcher
from cacheshim.snapshot.rdb import read_rdb
from cacheshim.snapshot.tools import Snapshotter
from logsvc.client import LogClient, get_snapshot
from tests.cacheshim.harness import Memlog, applied_index, client, execute, stop_process, wait_until
from tests.cacheshim.test_snapshot_restart import _addrs, _digest, _log_state, _snapshot_once


def _start_follower(m: Memlog, *flags: str) -> subprocess.Popen[bytes]:
    with open(m.root / "follower.log", "ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "cacheshim.launcher", "snapshot", "--log", _addrs(m),
             "--follow", *flags, "--temp-dir", str(m.root / "snaptmp")],
            stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _write(port: int, tag: str, count: int) -> None:
    pipe = client(port).pipeline(transaction=False)
    for i in range(count):
        kind = i % 5
        if kind == 0:
            pipe.set(f"{tag}:s{i}", i)
        elif kind == 1:
            pipe.rpush(f"{tag}:list", i, f"x{i}")
        elif kind == 2:
            pipe.hset(f"{tag}:hash{i % 7}", f"f{i}", "v" * (i % 90))
        elif kind == 3:
            pipe.zadd(f"{tag}:zset", {f"m{i}": i / 3})
        else:
            pipe.sadd(f"{tag}:set{i % 3}", i if i % 2 else f"m{i}")
            pipe.pexpire(f"{tag}:set{i % 3}", 10_000_000)
    pipe.execute()


def _snapshot_digest(m: Memlog, index: int) -> str:
    async def fetch() -> bytes:
        async with LogClient(_addrs(m).split(",")) as log:
            info, data = await get_snapshot(log, index)
            assert info.index == index
            return data

    loaded = read_rdb(io.BytesIO(asyncio.run(fetch())))
    assert loaded.state is not None and loaded.state.index == index
    return loaded.keyspace.digest()  # what a shim's DEBUG DIGEST answers


def test_a_resident_snapshotter_bootstraps_once_and_matches_the_shim(tmp_path: Path) -> None:
    m = Memlog(tmp_path)
    follower: subprocess.Popen[bytes] | None = None
    log_path = tmp_path / "follower.log"
    (tmp_path / "snaptmp").mkdir()
    stale = tmp_path / "snaptmp" / "memlog-snapshotter-left-by-a-killed-one"
    stale.write_bytes(b"half a snapshot")
    try:
        m.start()
        port = m.shim_ports[0]
        _write(port, "before", 100)
        follower = _start_follower(
            m, "--every-records", "150", "--min-records", "1", "--min-interval-s", "0"
        )
        wait_until(lambda: "at index" in log_path.read_text(), 60, "the snapshotter's start")
        assert not stale.exists()

        def stored(count: int) -> bool:
            return log_path.read_text().count(" stored: ") >= count

        for round_ in range(3):
            _write(port, f"r{round_}", 170)
            wait_until(functools.partial(stored, round_ + 1), 60, "a snapshot by records")
        text = log_path.read_text()
        # One restore and replay; every snapshot after it from the followed log.
        assert text.count("at index") == 1, text
        assert text.count(" stored: ") >= 3, text
        # BGSAVE: a snapshot at least at the marker's index. No client writes from here on
        # (records the shims append themselves change no key), so the shim's digest is the
        # one of the state at that index.
        shim = client(port)
        assert execute(shim, "BGSAVE") is True  # redis-py reads the status line so
        at = applied_index(shim)
        digest = _digest(port)
        wait_until(lambda: _log_state(m)[1] >= at, 60, "the snapshot BGSAVE asked for")
        assert _snapshot_digest(m, _log_state(m)[1]) == digest != "0" * 40
    finally:
        if follower is not None:
            stop_process(follower)
        m.stop()


def test_a_cadence_it_cannot_honour_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for flags, says in [
        (["--follow"], "--follow needs a cadence"),
        (["--every-records", "10"], "--every-records needs --follow"),
        (["--follow", "--every-s", "0"], "--every-s must be above 0"),
        (["--follow", "--every-records", "0"], "--every-records must be at least 1"),
        (["--follow", "--every-s", "5", "--min-records", "0"], "--min-records must be at least 1"),
        (["--follow", "--every-s", "5", "--min-interval-s", "-1"], "--min-interval-s must be"),
    ]:
        assert launcher.main(["snapshot", "--log", "127.0.0.1:1", *flags]) == 1
        err = capsys.readouterr().err
        assert err.startswith("memlog snapshot: ") and says in err, (flags, err)


def test_a_resident_snapshotter_behind_the_trim_point_starts_again(tmp_path: Path) -> None:
    """Its next record was trimmed (a newer snapshot came from elsewhere and the log trimmed
    below it): it restores the newest snapshot, replays, and what it stores next has the
    shim's digest."""
    m = Memlog(
        tmp_path,
        log_args=["--trim-interval-s", "0.3", "--trim-keep-entries", "20",
                  "--trim-keep-seconds", "0"],
    )  # fmt: skip
    try:
        m.start()
        port = m.shim_ports[0]
        _write(port, "a", 60)

        async def scenario() -> tuple[int, int, str]:
            async with LogClient(_addrs(m).split(",")) as log:
                snapshotter = Snapshotter(log, 1, str(tmp_path))
                await snapshotter.recover()
                behind = snapshotter.applier.applied_index
                # One write at a time: each its own entry of the log, which trims by entries.
                shim = client(port)
                for i in range(60):
                    shim.set(f"b{i}", i)
                newer = _snapshot_once(m)  # one-shot, by another process
                assert newer > behind + 1
                _write(port, "c", 60)  # past the floor: the log trims below `newer`
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 60
                # Until its next record, behind + 1, is gone from every node.
                while min([(await log.status(a)).first_index for a in log.addresses]) <= behind + 1:
                    assert loop.time() < deadline, "the log did not trim on every node"
                    await asyncio.sleep(0.1)
                target = applied_index(client(port))
                follower = asyncio.create_task(snapshotter.follow())
                try:
                    while snapshotter.applier.applied_index < target:
                        assert not follower.done(), follower
                        assert loop.time() < deadline, "it did not catch up"
                        await asyncio.sleep(0.1)
                    assert snapshotter.recoveries == 2  # the start, then once more
                    stored = await snapshotter.take(min_records=1)
                finally:
                    follower.cancel()
                assert stored is not None
                return stored, newer, snapshotter.applier.keyspace.digest()

        stored, newer, digest = asyncio.run(scenario())
        assert stored >= newer
        assert digest == _digest(port) == _snapshot_digest(m, stored)
    finally:
        m.stop()
