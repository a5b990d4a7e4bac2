"""The memory window of a log node (logsvc/window.py): it answers exactly what a full
in-memory log would, holds no more than its limits, and fetches the rest through its driver.
"""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from logsvc.cli import build_parser, config_from_args
from logsvc.config import ConfigError, NodeConfig
from logsvc.raft import (
    Compacted,
    Entry,
    HardState,
    LogTemporarilyUnavailable,
    MemoryStorage,
    SnapshotMeta,
    StorageError,
    Unavailable,
)
from logsvc.records import PayloadCache
from logsvc.storage import DurableLog
from logsvc.v1 import entry_pb2
from logsvc.window import TermRuns, WindowStorage
from tests.logsvc.cluster import clean_env

SEED = int(os.environ.get("WINDOW_SEED", random.SystemRandom().randrange(1 << 32)))


def entries(first: int, last: int, term: int, size: int = 10) -> list[Entry]:
    return [Entry(term, i, bytes([i % 251]) * size) for i in range(first, last + 1)]


def read(
    window: WindowStorage, disk: MemoryStorage, lo: int, hi: int, bytes_max: int | None
) -> list[Entry]:
    """entries(lo, hi) as the driver makes it work: fetch what is missing, then ask again."""
    for _ in range(1000):
        try:
            return window.entries(lo, hi, bytes_max)
        except LogTemporarilyUnavailable:
            while (want := window.take_fetch()) is not None:
                end = min(window.window_first(), disk.last_index() + 1)
                window.fill(disk.entries(want, end, window.cache_bytes_max // 2))
    raise AssertionError("the fetches never made the entries available")


def test_term_runs_keep_one_pair_per_term_change() -> None:
    runs = TermRuns()
    runs.extend(entries(1, 1000, 1))
    runs.extend(entries(1001, 2000, 3))
    assert len(runs) == 2
    assert (runs.term(1), runs.term(1000), runs.term(1001), runs.term(2000)) == (1, 1, 3, 3)
    runs.truncate_from(1500)
    runs.extend(entries(1500, 1600, 4))
    assert (runs.term(1499), runs.term(1500), runs.term(1600)) == (3, 4, 4)
    runs.drop_through(1200)
    assert len(runs) == 2 and runs.term(1300) == 3
    runs.truncate_from(1)
    assert len(runs) == 0
    with pytest.raises(StorageError):
        runs.term(5)


def test_the_window_holds_its_limits_and_fetches_older_entries() -> None:
    window = WindowStorage(entries_max=100, bytes_max=1 << 20, cache_bytes_max=64 * 34)
    disk = MemoryStorage()
    for first in range(1, 10_001, 500):
        batch = entries(first, first + 499, 1)
        window.append(batch)
        disk.append(batch)
        window.set_pinned(first + 499)
        assert window.window_len() <= 100
    assert window.window_first() == 9_901 and window.last_index() == 10_000
    assert window.term(1) == 1 and len(window.terms) == 1
    with pytest.raises(LogTemporarilyUnavailable):
        window.entries(5, 10)
    assert read(window, disk, 5, 10, None) == disk.entries(5, 10)
    assert window.cache_bytes() <= 64 * 34
    # By bytes: 100-byte entries, a 1 KiB window keeps the newest 9 (size 124 with overhead).
    small = WindowStorage(entries_max=1000, bytes_max=1024)
    small.append(entries(1, 50, 1, size=100))
    small.set_pinned(50)
    assert small.window_first() == 43 and small.window_bytes() <= 1024


def test_entries_not_yet_applied_are_never_dropped() -> None:
    window = WindowStorage(entries_max=10, bytes_max=1 << 20)
    window.append(entries(1, 100, 1))
    assert window.window_first() == 1  # nothing applied: all 100 stay
    window.set_pinned(60)
    assert window.window_first() == 61 and window.window_len() == 40
    window.set_pinned(100)
    assert window.window_len() == 10


def test_an_entry_read_before_a_new_leader_replaced_it_is_never_served() -> None:
    window = WindowStorage(entries_max=5, bytes_max=1 << 20)
    old = entries(1, 20, 1)
    window.append(old)
    window.set_pinned(10)  # 1..10 may leave; 11..20 stay (not applied)
    assert window.window_first() == 11
    with pytest.raises(LogTemporarilyUnavailable):
        window.entries(8, 11)
    assert window.take_fetch() == 8
    stale_read = old[7:10]  # read from disk before the truncation below reached memory
    window.append(entries(9, 12, 2))  # a new leader replaces 9..
    window.fill(stale_read)
    assert window.entries(8, 13) == [old[7]]  # the cached run stops at the window
    assert window.entries(9, 13) == entries(9, 12, 2)
    # Whatever reaches the cache with a term that is not the log's there is dropped.
    window.fill([Entry(7, 5, b"x")])
    assert window.entry_in_memory(5) is None
    with pytest.raises(LogTemporarilyUnavailable):
        window.entries(5, 6)


def test_compaction_and_a_boundary_restart() -> None:
    window = WindowStorage(entries_max=10, bytes_max=1 << 20)
    window.append(entries(1, 30, 1) + entries(31, 40, 2))
    window.set_pinned(40)
    window.compact(35)
    assert window.snapshot() == SnapshotMeta(35, 2)
    assert (window.first_index(), window.window_first(), window.window_len()) == (36, 36, 5)
    with pytest.raises(Compacted):
        window.entries(35, 37)
    with pytest.raises(Compacted):
        window.term(34)
    with pytest.raises(Unavailable):
        window.term(41)
    window.apply_snapshot(SnapshotMeta(100, 3))
    assert (window.first_index(), window.last_index(), window.term(100)) == (101, 100, 3)
    window.append(entries(101, 101, 3))
    assert window.entries(101, 102) == entries(101, 101, 3)


@pytest.mark.parametrize("run", range(4))
def test_the_window_answers_what_a_full_memory_log_answers(run: int) -> None:
    seed = SEED + run
    print(f"seed {seed} (rerun: WINDOW_SEED={SEED} pytest ... -k 'answers and {run}')")
    rng = random.Random(seed)
    window = WindowStorage(
        entries_max=rng.randint(1, 20), bytes_max=rng.randint(50, 600), cache_bytes_max=200
    )
    full = MemoryStorage()
    term = 1
    applied = 0
    for _ in range(400):
        op = rng.random()
        last = full.last_index()
        if op < 0.5 or last == full.snapshot().index:
            first = rng.randint(max(applied, full.snapshot().index) + 1, last + 1)
            if rng.random() < 0.2:
                term += 1
            batch = [
                Entry(term, i, rng.randbytes(rng.randint(0, 40)))
                for i in range(first, first + rng.randint(1, 8))
            ]
            window.append(batch)
            full.append(batch)
        elif op < 0.7:
            applied = rng.randint(applied, last)
            window.set_pinned(applied)
        elif op < 0.75 and applied > full.snapshot().index:
            index = rng.randint(full.snapshot().index + 1, applied)
            window.compact(index)
            full.compact(index)
        elif op < 0.77:
            meta = SnapshotMeta(last + rng.randint(0, 5), term)
            window.apply_snapshot(meta)
            full.apply_snapshot(meta)
            applied = max(applied, meta.index)
        first, last = full.first_index(), full.last_index()
        assert (window.first_index(), window.last_index()) == (first, last)
        assert window.snapshot() == full.snapshot()
        for index in range(first - 1, last + 1):
            assert window.term(index) == full.term(index), index
        if last >= first:
            lo = rng.randint(first, last)
            hi = rng.randint(lo, last) + 1
            bytes_max = rng.choice([None, 1, 60, 200])
            got = read(window, full, lo, hi, bytes_max)
            want = full.entries(lo, hi, bytes_max)
            assert got and got == want[: len(got)], (lo, hi, bytes_max)
        unapplied = last - max(applied, window.snapshot().index)
        assert window.window_len() <= max(window.entries_max, unapplied)
        assert window.cache_bytes() <= window.cache_bytes_max


def test_a_reopened_log_keeps_the_newest_entries_and_every_term(tmp_path: Path) -> None:
    log = DurableLog(tmp_path, window_entries=10, window_bytes=1 << 20)
    log.load()
    log.write(None, entries(1, 500, 1) + entries(501, 1000, 2), HardState(2, None, 960))
    log.close()

    log = DurableLog(tmp_path, window_entries=10, window_bytes=1 << 20)
    log.load()
    memory = log.memory
    # The 40 entries past the commit index stay whatever the window says.
    assert (memory.window_first(), memory.last_index()) == (961, 1000)
    assert (memory.term(1), memory.term(500), memory.term(501)) == (1, 1, 2)
    assert log.read_entries(1, 4, None) == entries(1, 3, 1)
    # Cut by bytes (at least one entry) and at the first missing index.
    assert log.read_entries(499, 600, 1) == entries(499, 499, 1)
    assert len(log.read_entries(990, 2000, None)) == 11
    log.trim(SnapshotMeta(100, 1))
    assert log.read_entries(50, 200, None) == []
    log.close()


def test_an_entry_larger_than_the_cache_is_still_served_once_fetched() -> None:
    # Otherwise a follower that needs it would wait for it forever.
    window = WindowStorage(entries_max=1, bytes_max=1 << 20, cache_bytes_max=100)
    big = [Entry(1, 1, b"x" * 1000), Entry(1, 2, b"y" * 1000), Entry(1, 3)]
    window.append(big)
    window.set_pinned(3)
    with pytest.raises(LogTemporarilyUnavailable):
        window.entries(1, 3)
    window.fill(big[:2])
    assert window.entries(1, 3) == big[:1]
    assert window.cache_bytes() == big[0].size_bytes()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"window_entries": 0}, "--window-entries must be at least 1"),
        ({"window_bytes": 1000}, r"--window-bytes must be at least 1048576 \(1 MiB\)"),
        ({"read_cache_bytes": 1 << 20}, r"--read-cache-bytes must be at least 4194304"),
    ],
)
def test_window_settings_are_validated_with_a_reason(
    tmp_path: Path, setting: dict[str, Any], message: str
) -> None:
    config = dataclasses.replace(
        NodeConfig(id="a", listen="127.0.0.1:1", peers={"a": "127.0.0.1:1"}, data_dir=tmp_path),
        **setting,
    )
    with pytest.raises(ConfigError, match=message):
        config.validate()


def test_window_flags_and_their_environment_variables_reach_the_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = ["serve", "--id", "a", "--listen", "127.0.0.1:1", "--peers", "a=127.0.0.1:1"]
    base += ["--data-dir", "/tmp/x"]
    config = config_from_args(build_parser().parse_args([*base, "--window-entries", "123"]))
    assert (config.window_entries, config.window_bytes, config.read_cache_bytes) == (
        123,
        64 << 20,
        16 << 20,
    )
    monkeypatch.setenv("LOGSVC_WINDOW_BYTES", str(8 << 20))
    monkeypatch.setenv("LOGSVC_READ_CACHE_BYTES", str(32 << 20))
    config = config_from_args(build_parser().parse_args(base))
    assert (config.window_entries, config.window_bytes, config.read_cache_bytes) == (
        10_000,
        8 << 20,
        32 << 20,
    )
    config.validate()


def test_logsvc_serve_refuses_a_bad_window_with_the_reason(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "logsvc.cli", "serve", "--id", "a", "--listen", "127.0.0.1:1",
         "--peers", "a=127.0.0.1:1", "--data-dir", str(tmp_path), "--window-entries", "0"],
        capture_output=True, text=True, timeout=60, check=False, env=clean_env(),
    )  # fmt: skip
    assert result.returncode == 2
    assert "logsvc serve: --window-entries must be at least 1" in result.stderr


def test_the_payload_cache_is_bounded_by_bytes() -> None:
    cache = PayloadCache(bytes_max=10_000, entries_max=100)
    datas = [
        entry_pb2.EntryPayload(
            batch=entry_pb2.RecordBatch(first_index=i, records=[bytes([i]) * 3000])
        ).SerializeToString()
        for i in range(1, 6)
    ]
    for data in datas:
        assert cache(data).batch.records[0][:1] == data[-1:]
    assert cache.bytes_held() <= 10_000
    assert cache(datas[-1]) is cache(datas[-1])  # the newest stay
