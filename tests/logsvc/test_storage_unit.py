"""DurableLog: synced RocksDB batches, recovery after reopen, checksums on every value; the
writer thread that runs its blocking calls off the event loop."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from rocksdict import Options, Rdict

from logsvc.raft import Entry, HardState, SnapshotMeta
from logsvc.storage import CorruptLog, DurableLog, WriterThread, entry_key


def reopen(path: Path) -> DurableLog:
    log = DurableLog(path)
    log.load()
    return log


def test_write_truncate_trim_and_recover(tmp_path: Path) -> None:
    log = reopen(tmp_path)
    log.write(None, [Entry(1, 1, b"a"), Entry(1, 2, b"b"), Entry(1, 3, b"c")], HardState(1, "a", 2))
    # A conflicting suffix from a new leader replaces index 3 and drops nothing before it.
    log.write(None, [Entry(2, 3, b"C"), Entry(2, 4, b"D")], HardState(2, None, 3))
    log.trim(SnapshotMeta(index=1, term=1))
    log.close()

    log = reopen(tmp_path)
    memory = log.memory
    assert memory.initial_state() == HardState(2, None, 3)
    assert (memory.first_index(), memory.last_index()) == (2, 4)
    assert [e.data for e in memory.entries(2, 5)] == [b"b", b"C", b"D"]
    assert memory.snapshot() == SnapshotMeta(index=1, term=1)
    log.close()


def test_boundary_restart_drops_everything_before(tmp_path: Path) -> None:
    log = reopen(tmp_path)
    log.write(None, [Entry(1, 1, b"a"), Entry(1, 2, b"b")], None)
    log.write(SnapshotMeta(index=10, term=3), [Entry(3, 11, b"k")], HardState(3, None, 10))
    log.close()
    log = reopen(tmp_path)
    assert (log.memory.first_index(), log.memory.last_index()) == (11, 11)
    assert log.memory.term(10) == 3
    log.close()


@pytest.mark.parametrize("garbage", [b"", b"\x00\x01", b"\x00\x00\x00\x00not-an-entry"])
def test_a_corrupt_entry_is_detected_never_served(tmp_path: Path, garbage: bytes) -> None:
    log = reopen(tmp_path)
    log.write(None, [Entry(1, 1, b"a"), Entry(1, 2, b"b")], HardState(1, None, 2))
    log.close()
    db = Rdict(str(tmp_path / "rocksdb"), Options(raw_mode=True))
    db.put(entry_key(2), garbage)
    db.close()
    with pytest.raises(CorruptLog, match="entry 2"):
        reopen(tmp_path)


def test_a_hole_in_the_log_is_detected(tmp_path: Path) -> None:
    log = reopen(tmp_path)
    log.write(None, [Entry(1, 1, b"a"), Entry(1, 2, b"b"), Entry(1, 3, b"c")], None)
    log.close()
    db = Rdict(str(tmp_path / "rocksdb"), Options(raw_mode=True))
    db.delete(entry_key(2))
    db.close()
    with pytest.raises(CorruptLog, match="hole"):
        reopen(tmp_path)


def test_the_writer_thread_runs_calls_in_order_off_the_loop_and_answers_each() -> None:
    async def go() -> tuple[list[str], list[int], bool, str]:
        writer = WriterThread("test-writer")
        loop_thread = threading.get_ident()
        done: list[str] = []
        threads: list[int] = []

        def record(name: str) -> str:
            threads.append(threading.get_ident())
            done.append(name)
            return name.upper()

        def fail() -> None:
            raise ValueError("disk on fire")

        writer.submit(record, "trim")  # nobody waits for this one
        first, second = writer.run(record, "one"), writer.run(record, "two")
        failing = writer.run(fail)
        assert (await first, await second) == ("ONE", "TWO")
        with pytest.raises(ValueError, match="disk on fire") as caught:
            await failing
        writer.submit(record, "queued before stop")
        writer.stop()  # runs what is queued first
        return done, threads, loop_thread not in threads, str(caught.value)

    done, threads, off_the_loop, error = asyncio.run(go())
    assert done == ["trim", "one", "two", "queued before stop"]
    assert off_the_loop and len(set(threads)) == 1
    assert error == "disk on fire"


def test_a_failed_call_nobody_waits_for_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def fail() -> None:
        raise OSError("no space left")

    writer = WriterThread("test-writer")
    writer.submit(fail)
    writer.stop()
    assert "a storage call without a caller failed" in caplog.text
    assert "no space left" in caplog.text
