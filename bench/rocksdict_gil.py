"""Does a synced rocksdict write let other Python threads run (is the GIL released)?

    .venv/bin/python bench/rocksdict_gil.py [--seconds 2]

logsvc runs its synced RocksDB writes on a writer thread so the event loop keeps serving
while the disk syncs. That only works if the write releases the GIL. This script runs a
pure-Python counting loop on the main thread, alone and then next to a thread doing synced
writes of 100-byte records in three ways, and prints the counter's speed relative to alone:
about 1.0 means the syncing thread left the interpreter free; well below 1.0 means the
sync held the GIL and stalled every other thread (in logsvc: the event loop).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

RECORD_BYTES = 100


def spin(seconds: float) -> int:
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        n += 1
    return n


def beside(seconds: float, sync_once: Callable[[int], None]) -> tuple[float, int]:
    """(counter speed next to the syncing thread / alone, syncs done meanwhile)."""
    alone = spin(seconds)
    syncs = [0]
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            syncs[0] += 1
            sync_once(syncs[0])

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        together = spin(seconds)
    finally:
        stop.set()
        thread.join()
    return together / alone, syncs[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--tmp-dir", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rocksdict-gil-", dir=args.tmp_dir))
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    db = Rdict(str(root / "db"), options)
    sync, no_sync = WriteOptions(), WriteOptions()
    sync.sync, no_sync.sync = True, False
    value = os.urandom(RECORD_BYTES)
    plain = (root / "plain").open("wb", buffering=0)

    def batch(key: int) -> WriteBatch:
        wb = WriteBatch(raw_mode=True)
        wb.put(key.to_bytes(8, "big"), value)
        return wb

    def rocks_sync(key: int) -> None:
        db.write(batch(key), sync)

    def rocks_flush_wal(key: int) -> None:
        db.write(batch(key), no_sync)
        db.flush_wal(True)

    def file_fsync(key: int) -> None:
        plain.write(value)
        os.fsync(plain.fileno())

    cases = [
        ("rocksdict write(sync=True)", rocks_sync),
        ("rocksdict write(sync=False) + flush_wal(sync=True)", rocks_flush_wal),
        ("os.write + os.fsync (reference: releases the GIL)", file_fsync),
    ]
    try:
        print("| syncing thread | counter speed vs alone | syncs done |")
        print("| --- | ---: | ---: |")
        for name, fn in cases:
            ratio, syncs = beside(args.seconds, fn)
            print(f"| {name} | {ratio:.2f} | {syncs} |")
    finally:
        plain.close()
        db.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
