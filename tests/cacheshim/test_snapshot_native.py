"""The C key loader (cacheshim/snapshot/_native.c: load_keys) against rdb.py's own loop, its
specification: on random snapshots and plain RDB files of every type, encoding and TTL the
two build the same state to the last bit; on truncated and corrupted files they fail with
the same error (or both load the same state), and the C code never crashes.

Seeded: NATIVE_SEED=<n> reruns a seed (printed on every run)."""

from __future__ import annotations

import io
import os
import random
import struct

import pytest

from cacheshim.apply import Applier
from cacheshim.snapshot import model
from cacheshim.snapshot.crc64 import crc64
from cacheshim.snapshot.rdb import (
    HAVE_C_LOADER,
    LoadResult,
    RdbError,
    read_rdb,
    restore,
    snapshot_state,
)
from cacheshim.types import keyindex
from cacheshim.types.keyindex import KeyIndex, key_hash
from tests.cacheshim.test_snapshot_rdb import (
    _random_records,
    applier_internals,
    built,
    dataset,
    dump,
    internals,
)

pytestmark = pytest.mark.skipif(not HAVE_C_LOADER, reason="no C loader (MEMLOG_PURE_PYTHON=1)")


def _seed() -> random.Random:
    seed = int(os.environ.get("NATIVE_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun: NATIVE_SEED={seed})")
    return random.Random(seed)


def _load(data: bytes, native: bool, chunk_bytes: int) -> LoadResult:
    return read_rdb(io.BytesIO(data), native=native, chunk_bytes=chunk_bytes)


def _slots(keyspace: model.Keyspace) -> list[object]:
    """Every slot of every set, hash and sorted set, as stored (the C loader fills them
    without __init__), the SCAN tables' counts, and each value's exact class."""
    out: list[object] = []
    for db in keyspace.dbs:
        out.append((db.key_index._count, db.key_index._bits, list(db.key_index.chains())))
        for key, value in db.data.items():
            out.append((key, type(value)))
            if isinstance(value, model.ListValue):
                out.append(list(value))
            elif isinstance(value, (model.SetValue, model.HashValue, model.ZSet)):
                for slot in type(value).__slots__:
                    held = getattr(value, slot)
                    out.append((slot, list(held) if slot == "_order" else held))
    return out


def _same_load(data: bytes, rng: random.Random, memlog: bool) -> None:
    chunk = rng.choice([64, 1000, 4096, 1 << 20])
    fast = _load(data, True, chunk)
    slow = _load(data, False, chunk)
    assert fast.keys == slow.keys and fast.aux == slow.aux and fast.state == slow.state
    assert internals(fast.keyspace) == internals(slow.keyspace)
    assert _slots(fast.keyspace) == _slots(slow.keyspace)
    if memlog:
        a, b = Applier(), Applier()
        restore(a, fast)
        restore(b, slow)
        assert applier_internals(a) == applier_internals(b)


def test_key_hash_is_keyindex_key_hash() -> None:
    from cacheshim.snapshot import _native  # type: ignore[attr-defined]

    rng = _seed()
    for size in [*range(0, 300), 1000, 4096]:
        key = rng.randbytes(size)
        assert _native.key_hash(key) == key_hash(key), size


def test_index_rehash_is_keyindex_resize(monkeypatch: pytest.MonkeyPatch) -> None:
    """The C resize of the SCAN table against KeyIndex._resize's Python loop: the same
    buckets, each with its keys in the same order, through growths and shrinks."""
    from cacheshim.snapshot import _native  # type: ignore[attr-defined]

    rng = _seed()
    for _ in range(30):
        native, python = KeyIndex(), KeyIndex()
        keys = [rng.randbytes(rng.randint(0, 12)) for _ in range(rng.randint(1, 3000))]
        for step in range(rng.randint(100, 4000)):
            key = rng.choice(keys)
            add = rng.random() < rng.choice((0.3, 0.6, 0.9))
            for index, rehash in ((native, _native.index_rehash), (python, None)):
                monkeypatch.setattr(keyindex, "_rehash", rehash)
                monkeypatch.setattr(keyindex, "_rehash_looked_up", True)
                index.add(key) if add else index.discard(key)
            assert native._bits == python._bits and len(native) == len(python), step
            assert native._buckets == python._buckets, step


def _random_keyspace(rng: random.Random, keys: int) -> model.Keyspace:
    """Values of every type straight from model, of random sizes around every encoding
    limit and every RDB length width, some with TTLs, in random databases."""
    keyspace = model.new_keyspace()

    def item() -> bytes:
        roll = rng.random()
        if roll < 0.3:
            return b"%d" % rng.choice([0, -1, 7, 127, 128, -4096, 70000, 2**31, -(2**63)])
        if roll < 0.4:
            return rng.choice([b"", b"-0", b"007", b"+1", b"1e3", b"18446744073709551616"])
        size = rng.choice([1, 10, 63, 64, 65, 200, 5000, 17000] if big else [1, 10, 63, 64, 65])
        return rng.randbytes(size)

    for i in range(keys):
        db = keyspace.dbs[rng.choice([0, 0, 1, 5, 15])]
        key = b"k%d:" % i + rng.randbytes(rng.choice([0, 3, 70]))
        big = rng.random() < 0.1  # a value around the encoding limits, elements up to 17 KB
        count = rng.choice([129, 512, 513, 700] if big else [1, 2, 5, 20, 127, 128])
        kind = rng.randrange(5)
        value: object
        if kind == 0:
            value = model.make_string(item(), rng.randrange(4))
        elif kind == 1:
            value = model.make_list([item() for _ in range(count)])
        elif kind == 2:
            members = list(dict.fromkeys(item() for _ in range(count)))
            value = model.make_set(members, None)
        elif kind == 3:
            pairs = list({item(): item() for _ in range(count)}.items())
            value = model.make_hash(pairs, rng.random() < 0.3 or None, None)
            if value.hashtable and len(pairs) > 3 and rng.random() < 0.5:
                value.delete(pairs[0][0])  # a pick order of its own
        else:
            members = list(dict.fromkeys(item() for _ in range(count)))
            scores = [rng.choice([0.0, -0.0, 1.5, float("inf"), -float("inf"), rng.random()])]
            entries = [(rng.choice([*scores, rng.uniform(-9, 9)]), m) for m in members]
            value = model.make_zset(entries, None)
        if isinstance(value, model.HashValue) and not len(value):
            continue
        db.set(key, value, rng.randint(1, 50))
        if rng.random() < 0.2:
            db.set_expiry(key, 1_900_000_000_000 + rng.randrange(10**6), rng.randint(1, 50))
        if rng.random() < 0.2:
            del db.changed_at[key]
    return keyspace


def test_random_keyspaces_load_alike() -> None:
    rng = _seed()
    for _ in range(20):
        keyspace = _random_keyspace(rng, rng.randint(20, 120))
        applier = Applier()
        applier.keyspace = keyspace
        applier.applied_index = 99
        _same_load(dump(keyspace, snapshot_state(applier)), rng, memlog=True)
        _same_load(dump(keyspace, None, ctime_s=1), rng, memlog=False)


def test_applied_states_load_alike() -> None:
    """Appliers after random records (blocked clients, pieces, flushes, expiries, WATCH
    state) and after the RDB tests' dataset of every Redis encoding."""
    rng = _seed()
    now = 1_800_000_000_000
    applier = built(dataset(rng, now), now)
    _same_load(dump(applier.keyspace, snapshot_state(applier)), rng, memlog=True)
    _same_load(dump(applier.keyspace, None, ctime_s=1), rng, memlog=False)
    applier = Applier()
    for index, payload in enumerate(_random_records(rng, 900, now), 1):
        applier.apply(index, payload)
        if index % 300 == 0:
            _same_load(dump(applier.keyspace, snapshot_state(applier)), rng, memlog=True)


def _outcome(data: bytes, native: bool, chunk: int) -> object:
    try:
        loaded = _load(data, native, chunk)
    except (RdbError, ValueError) as exc:
        return (type(exc), str(exc))
    return ("ok", internals(loaded.keyspace), _slots(loaded.keyspace), loaded.state)


def test_damaged_files_fail_alike() -> None:
    """Truncated files, and files with bytes changed (the checksum then made to match, so
    the damage reaches the value decoders instead of stopping at the CRC): the C loader and
    Python's loop give the same error, or the same state."""
    rng = _seed()
    keyspace = _random_keyspace(rng, 40)
    applier = Applier()
    applier.keyspace = keyspace
    applier.applied_index = 7
    files = [dump(keyspace, snapshot_state(applier)), dump(keyspace, None, ctime_s=1)]
    for round_ in range(250):
        data = bytearray(rng.choice(files))
        if round_ % 4 == 0:
            del data[rng.randrange(len(data)) :]
        else:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(9, len(data) - 9)] = rng.randrange(256)
            data[-8:] = struct.pack("<Q", crc64(0, bytes(data[:-8])))
        chunk = rng.choice([64, 4096, 1 << 20])
        fast = _outcome(bytes(data), True, chunk)
        slow = _outcome(bytes(data), False, chunk)
        assert fast == slow, f"round {round_}"


@pytest.mark.parametrize("kind", ["key", "set member", "hash field"])
def test_duplicates_fail_alike(kind: str) -> None:
    """A key, a set's member or a hash's field twice in a file (the C loader takes each of
    them in one dict lookup, seeing a duplicate by the dict's size): the same outcome as
    Python's loop, the duplicate key refused."""
    keyspace = model.new_keyspace()
    db = keyspace.dbs[0]
    db.set(b"before", b"v", 1)
    many = [b"e%d" % i for i in range(200)]  # past the small encodings: each element alone
    if kind == "key":
        db.set(b"dup-X", b"one", 2)
        db.set(b"dup-Y", b"two", 3)
    elif kind == "set member":
        db.set(b"s", model.make_set([*many, b"dup-X", b"dup-Y"], None), 2)
    else:
        pairs = [(m, b"v") for m in [*many, b"dup-X", b"dup-Y"]]
        db.set(b"h", model.make_hash(pairs, True, None), 2)
    db.set(b"after", b"v", 4)
    applier = Applier()
    applier.keyspace = keyspace
    applier.applied_index = 4
    for state in (snapshot_state(applier), None):
        data = bytearray(dump(keyspace, state, ctime_s=1))
        assert data.count(b"dup-Y") == 1
        data[data.index(b"dup-Y") + 4] = ord("X")
        data[-8:] = struct.pack("<Q", crc64(0, bytes(data[:-8])))
        fast = _outcome(bytes(data), True, 1 << 20)
        assert fast == _outcome(bytes(data), False, 1 << 20)
        assert isinstance(fast, tuple) and fast[0] is RdbError, fast
        assert ("duplicate key b'dup-X'" if kind == "key" else "twice") in fast[1], fast
