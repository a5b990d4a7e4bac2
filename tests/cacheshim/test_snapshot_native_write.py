"""The C key writer (cacheshim/snapshot/_native_write.c: write_keys) against rdb.py's own
loop, its specification: on random keyspaces of every type and encoding, with TTLs, empty
and huge values, snapshots and plain RDB files, the two write the same bytes; a value the C
loop does not know goes through rdb.py for that key, in place.

Seeded: NATIVE_SEED=<n> reruns a seed (printed on every run)."""

from __future__ import annotations

import io
import os
import random

import pytest

from cacheshim.apply import Applier
from cacheshim.snapshot import model
from cacheshim.snapshot.rdb import (
    BIG_VALUE_BYTES,
    HAVE_C_WRITER,
    SnapshotState,
    read_rdb,
    snapshot_state,
    write_rdb,
)
from tests.cacheshim.test_snapshot_native import _random_keyspace
from tests.cacheshim.test_snapshot_rdb import _random_records, built, dataset, internals

pytestmark = pytest.mark.skipif(not HAVE_C_WRITER, reason="no C writer (MEMLOG_PURE_PYTHON=1)")


def _seed() -> random.Random:
    seed = int(os.environ.get("NATIVE_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun: NATIVE_SEED={seed})")
    return random.Random(seed)


def _write(
    keyspace: model.Keyspace, state: SnapshotState | None, native: bool, chunk: int
) -> bytes:
    out = io.BytesIO()
    result = write_rdb(keyspace, out, state, ctime_s=1, chunk_bytes=chunk, native=native)
    data = out.getvalue()
    assert result.bytes_written == len(data)
    return data


def _same(keyspace: model.Keyspace, state: SnapshotState | None, rng: random.Random) -> bytes:
    chunk = rng.choice([64, 1000, 4096, 1 << 20])
    fast = _write(keyspace, state, True, chunk)
    slow = _write(keyspace, state, False, rng.choice([64, 1 << 20]))
    if fast != slow:
        at = next(i for i, (a, b) in enumerate(zip(fast, slow, strict=False)) if a != b)
        pytest.fail(f"first difference at byte {at} of {len(slow)}: {fast[at:at + 24]!r} "
                    f"against {slow[at:at + 24]!r}")  # fmt: skip
    return fast


def _state(keyspace: model.Keyspace) -> SnapshotState:
    applier = Applier()
    applier.keyspace = keyspace
    applier.applied_index = 99
    return snapshot_state(applier)


def test_the_c_writer_is_built() -> None:
    """Without it a snapshot takes several times as long, and nobody would notice."""
    assert HAVE_C_WRITER or os.environ.get("MEMLOG_PURE_PYTHON") == "1"


def test_random_keyspaces_write_alike() -> None:
    rng = _seed()
    for _ in range(8):
        keyspace = _random_keyspace(rng, rng.randint(0, 60))
        _same(keyspace, _state(keyspace), rng)
        _same(keyspace, None, rng)


def test_more_keys_than_one_meta_field() -> None:
    """Batches of KEYS_PER_META keys, each behind its memlog-keys field, in every database."""
    rng = _seed()
    keyspace = model.new_keyspace()
    for i in range(2100):
        db = keyspace.dbs[rng.choice([0, 2])]
        value = rng.choice([b"%d" % i, rng.randbytes(9), model.make_list([b"a", b"%d" % i])])
        db.set(b"k%d" % i, value, i + 1)  # type: ignore[arg-type]
        if rng.random() < 0.3:
            db.set_expiry(b"k%d" % i, 1_900_000_000_000 + i, i + 1)
    data = _same(keyspace, _state(keyspace), rng)
    assert internals(read_rdb(io.BytesIO(data)).keyspace) == internals(keyspace)


def test_empty_huge_and_edge_values() -> None:
    rng = _seed()
    keyspace = model.new_keyspace()
    db = keyspace.dbs[3]
    big = rng.randbytes(BIG_VALUE_BYTES + 5)
    values: list[object] = [
        b"", b"0", b"-0", b"-1", b"127", b"-128", b"128", b"32767", b"-32768", b"2147483647",
        b"-2147483648", b"2147483648", b"99999999999", b"-9223372036854775808",
        b"9223372036854775807", b"9223372036854775808", b"1" * 1023, b"2" * 1024,
        big, model.make_string(big, 1), model.make_string(b"12", 3), model.make_string(b"x", 2),
        model.make_list([b""]), model.make_list([big, b"1", b""]),
        model.make_list([b"%d" % n for n in (0, 127, 128, -4096, 4095, 4096, -32768, 32768,
                                             -8388608, 8388608, 2**31, -(2**63), 2**63 - 1)]),
        model.make_list([b"e" * n for n in (63, 64, 4095, 4096, 8192, 16383, 20000)]),
        model.make_list([b"s"] * 70000),  # more than 65535 entries to a node's worth
        model.make_set([b""], None), model.make_set([b"1", b"2"], None),
        model.make_set([b"%d" % i for i in range(600)], None),
        model.make_hash([(b"", b"")], None, None), model.make_hash([(b"f", big)], None, None),
        model.make_zset([(0.0, b""), (-0.0, b"a"), (float("inf"), b"b")], False),
        model.make_zset([(float("-inf"), big), (1e300, b"1")], None),
    ]  # fmt: skip
    for i, value in enumerate(values):
        key = b"" if i == 0 else b"key%d" % i
        db.set(key, value, i + 1)  # type: ignore[arg-type]
        if i % 3 == 0:
            db.set_expiry(key, 1_900_000_000_000 + i, i + 1)
    db.set_expiry(b"key4", -5, 50)  # a past expiry, negative
    for chunk in (64, 1 << 20):
        for state in (_state(keyspace), None):
            assert _write(keyspace, state, True, chunk) == _write(keyspace, state, False, chunk)


class _OddList(model.ListValue):
    """A value class the C loop does not know (as a packed value will be)."""

    __slots__ = ()


def test_an_unknown_value_goes_through_rdb_py() -> None:
    rng = _seed()
    keyspace = _random_keyspace(rng, 60)
    db = keyspace.dbs[0]
    db.set(b"odd", _OddList([b"a", b"12", rng.randbytes(BIG_VALUE_BYTES)]), 7)
    db.set(b"after", b"v", 8)
    _same(keyspace, _state(keyspace), rng)
    # A string class with no snapshot shape fails alike (model.shape's TypeError).
    db.set(b"bad", type("Odd", (bytes,), {})(b"x"), 9)
    for native in (True, False):
        with pytest.raises(TypeError, match="no snapshot shape"):
            _write(keyspace, _state(keyspace), native, 1 << 20)


def test_applied_states_write_alike() -> None:
    """Appliers after random records (blocked clients, pieces, flushes, expiries, WATCH
    state, hashes with pick orders of their own) and after the RDB tests' dataset."""
    rng = _seed()
    now = 1_800_000_000_000
    applier = built(dataset(rng, now), now)
    _same(applier.keyspace, snapshot_state(applier), rng)
    _same(applier.keyspace, None, rng)
    applier = Applier()
    for index, payload in enumerate(_random_records(rng, 900, now), 1):
        applier.apply(index, payload)
        if index % 300 == 0:
            _same(applier.keyspace, snapshot_state(applier), rng)


def test_scan_positions_is_scan_order_positions() -> None:
    """The C walk of the SCAN table against model's, through growths and the shrinks that
    merge buckets out of insertion order; and the removed keys' pairs."""
    from cacheshim.snapshot.rdb import _writer

    rng = _seed()
    unordered = 0
    for _ in range(12):
        db = model.new_keyspace().dbs[0]
        keys = [b"k%d" % i for i in range(rng.randint(1, 2000))]
        for i, key in enumerate(keys):
            db.set(key, b"v", i + 1)
        # Removing most keys shrinks the table, merging buckets out of insertion order.
        for i, key in enumerate(rng.sample(keys, int(len(keys) * rng.choice((0, 0.5, 0.95))))):
            db.delete(key, len(keys) + i + 1)
        expected = model.scan_order_positions(db)
        unordered += expected is not None
        assert _writer.scan_positions(model.scan_buckets(db), db.data) == expected
        gone = [(k, c) for k, c in db.changed_at.items() if k not in db.data]
        assert _writer.gone_pairs(db.changed_at, db.data) == gone
    print(f"{unordered} of 12 tables out of insertion order")
