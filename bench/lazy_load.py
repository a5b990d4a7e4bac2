"""A snapshot's load with its collections kept packed until first touched, against the eager
load: CPU time and RSS after `read_rdb`, then the CPU time and RSS of touching every key.

    .venv/bin/python bench/lazy_load.py [--keys 1000000] [--rounds 3]

Builds bench/rdb_bench.py's mixed keyspace (seeded), writes it once as a memlog snapshot,
then per round and mode runs a fresh process that reads the file (`read_rdb`, eager or
lazy=True, the C loader on), prints its CPU time and RSS, decodes every packed value
(`Keyspace.unpack_all`, what touching every key does) and prints those again, then writes a
snapshot of what it holds and checks its bytes are the input's (a lazy keyspace writes its
untouched values as they came). Medians of the rounds. Not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHILD = r"""
import gc, io, json, resource, sys, time
sys.path.insert(0, {root!r})
from cacheshim.snapshot.rdb import read_rdb, write_rdb, SnapshotState
from cacheshim.snapshot import model

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 1e6

path, lazy = sys.argv[1], sys.argv[2] == "lazy"
out = {{"rss_start_mb": rss_mb()}}
cpu = time.process_time()
with open(path, "rb") as f:
    result = read_rdb(f, lazy=lazy)
out["load_cpu_s"] = time.process_time() - cpu
out["rss_loaded_mb"] = rss_mb()
out["packed"] = sum(type(v) is model.PackedValue for db in result.keyspace.dbs
                    for v in db.data.values())
started = time.process_time()
write = io.BytesIO()
write_rdb(result.keyspace, write, result.state)
out["write_untouched_cpu_s"] = time.process_time() - started
out["same_bytes_untouched"] = write.getvalue() == open(path, "rb").read()
del write
cpu = time.process_time()
result.keyspace.unpack_all()
out["touch_cpu_s"] = time.process_time() - cpu
gc.collect()
out["rss_touched_mb"] = rss_mb()
print(json.dumps(out))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    from bench.rdb_bench import build
    from cacheshim.snapshot.rdb import SnapshotState, write_rdb

    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="memlog-bench-lazy-") as tmp:
        path = Path(tmp) / "snap.rdb"
        keyspace = build(args.keys, args.seed)
        with open(path, "wb") as out:
            write_rdb(keyspace, out, SnapshotState(1, int(time.time() * 1000)))
        del keyspace
        results: dict[str, list[dict[str, float]]] = {"eager": [], "lazy": []}
        for _ in range(args.rounds):
            for mode in results:
                done = subprocess.run(
                    [sys.executable, "-c", CHILD.format(root=str(root)), str(path), mode],
                    check=True, capture_output=True, text=True,
                )  # fmt: skip
                results[mode].append(json.loads(done.stdout))
        print(f"{args.keys} keys, snapshot {path.stat().st_size / 1e6:.1f} MB, "
              f"{args.rounds} rounds (medians)")  # fmt: skip
        for mode, rows in results.items():
            med = {k: statistics.median(float(r[k]) for r in rows) for k in rows[0]}
            print(mode, json.dumps({k: round(v, 3) for k, v in med.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
