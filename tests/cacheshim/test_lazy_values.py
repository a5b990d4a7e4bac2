"""Collections kept packed after a snapshot's load until first touched
(cacheshim.types.keyspace.PackedValue, `read_rdb(lazy=True)`): nothing can tell a lazily
loaded keyspace from an eagerly loaded one. The same replies to every read and write, first
touch or not, on the general and the fast read path (random draws, SCAN and iteration
orders included); the same snapshot bytes, untouched values copied as they came; after the
same records, the same DEBUG DIGEST and every bit of state.

Randomized tests print their seed; set LAZY_SEED to replay one."""

from __future__ import annotations

import io
import os
import random

import pytest

from cacheshim.apply import Applier, run
from cacheshim.commands import Ctx, load_all
from cacheshim.protocol.fastreads import serve_reads
from cacheshim.protocol.resp import encode_command
from cacheshim.snapshot import model
from cacheshim.snapshot.rdb import HAVE_C_LOADER, LoadResult, read_rdb, restore, snapshot_state
from tests.cacheshim.test_snapshot_native import _packed, _random_keyspace
from tests.cacheshim.test_snapshot_rdb import (
    _random_records,
    applier_internals,
    dump,
    internals,
)

pytestmark = pytest.mark.skipif(not HAVE_C_LOADER, reason="no C loader (MEMLOG_PURE_PYTHON=1)")

load_all()

NOW_MS = 1_800_000_000_000


def _seed(name: str) -> random.Random:
    seed = int(os.environ.get("LAZY_SEED", random.randrange(2**32)))
    print(f"{name}: LAZY_SEED={seed}")
    return random.Random(seed)


def _loads(data: bytes) -> tuple[LoadResult, LoadResult]:
    eager = read_rdb(io.BytesIO(data))
    lazy = read_rdb(io.BytesIO(data), lazy=True)
    return eager, lazy


def _snapshot(rng: random.Random) -> bytes:
    keyspace = _random_keyspace(rng, 60)
    applier = Applier()
    applier.keyspace = keyspace
    applier.applied_index = 99
    return dump(keyspace, snapshot_state(applier))


def _reads(key: bytes, rng: random.Random) -> list[list[bytes]]:
    count = b"%d" % rng.choice([-7, -1, 1, 3, 40])
    commands = [
        [b"TYPE", key], [b"OBJECT", b"ENCODING", key], [b"OBJECT", b"REFCOUNT", key],
        [b"GET", key], [b"MGET", key, b"nope"], [b"EXISTS", key], [b"PTTL", key],
        [b"DUMP", key], [b"DEBUG", b"DIGEST-VALUE", key], [b"MEMORY", b"USAGE", key],
        [b"SCAN", b"0", b"COUNT", b"1000", b"TYPE", rng.choice([b"hash", b"set", b"zset"])],
        [b"HGETALL", key], [b"HRANDFIELD", key, count, b"WITHVALUES"], [b"HSCAN", key, b"0"],
        [b"LRANGE", key, b"0", b"-1"], [b"LINDEX", key, b"-2"], [b"LLEN", key],
        [b"SMEMBERS", key], [b"SRANDMEMBER", key, count], [b"SSCAN", key, b"0"],
        [b"SISMEMBER", key, b"1"], [b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"],
        [b"ZRANDMEMBER", key, count, b"WITHSCORES"], [b"ZSCAN", key, b"0"],
        [b"SORT", key, b"ALPHA", b"LIMIT", b"0", b"5"], [b"STRLEN", key],
        [b"EVAL", b"return redis.pcall('TYPE', KEYS[1])['ok']", b"1", key],
    ]  # fmt: skip
    return commands


def test_every_read_answers_alike_on_first_touch() -> None:
    """Each read as the first touch of a packed key (every value put back as loaded), and
    again once decoded, against an eager load: the same reply, on the general path and on
    the fast read path."""
    rng = _seed("reads")
    data = _snapshot(rng)
    eager, lazy = _loads(data)
    keys = [(db.index, key) for db in lazy.keyspace.dbs for key in db.data]
    packed = [k for k in keys if type(lazy.keyspace.dbs[k[0]].data[k[1]]) is model.PackedValue]
    others = [k for k in keys if k not in packed]
    chosen = rng.sample(packed, min(len(packed), 10)) + rng.sample(others, min(len(others), 5))
    assert len(packed) >= 10, len(packed)
    # As loaded (a decode makes a new value and leaves the packed one as it was): put back
    # before each read, so that each read is the first touch (SCAN's TYPE decodes them all).
    loaded = {k: lazy.keyspace.dbs[k[0]].data[k[1]] for k in keys}

    def as_loaded() -> None:
        for (number, name), stored in loaded.items():
            lazy.keyspace.dbs[number].data[name] = stored

    packed_keys = 0
    for db_index, key in chosen:
        packed_keys += type(loaded[db_index, key]) is model.PackedValue
        for args in _reads(key, rng):
            as_loaded()
            for _ in range(2):  # the first touch, then decoded
                seed = rng.randrange(2**32)
                replies = []
                for keyspace in (eager.keyspace, lazy.keyspace):
                    ctx = Ctx(keyspace, db_index, NOW_MS, 5)
                    ctx.rng = random.Random(seed)
                    replies.append(run(ctx, list(args)))
                assert replies[1] == replies[0], (key, args)
            as_loaded()
            wire = encode_command(args)
            fast = [serve_reads(wire, ks, db_index, NOW_MS, False) for ks in (eager.keyspace,
                    lazy.keyspace)]  # fmt: skip
            assert fast[1] == fast[0], (key, args)
    assert packed_keys == 10, packed_keys  # the reads met packed values


def test_lazily_restored_applier_goes_on_like_an_eager_one() -> None:
    """Two appliers restored from one snapshot, one lazily: after the same records (writes,
    SPOP/SRANDMEMBER/HRANDFIELD's draws, SCANs, blocking, transactions) the same replies,
    the same snapshot bytes along the way (untouched values copied as they came), and the
    same DEBUG DIGEST and state at the end."""
    rng = _seed("apply")
    records = list(_random_records(rng, 1400, 1_700_000_000_000))
    original = Applier()
    for index, payload in enumerate(records[:500], 1):
        original.apply(index, payload)
    data = dump(original.keyspace, snapshot_state(original))
    eager_load, lazy_load = _loads(data)
    eager, lazy = Applier(), Applier()
    restore(eager, eager_load)
    restore(lazy, lazy_load)
    packed_at_start = _packed(lazy.keyspace)
    assert packed_at_start > 5, packed_at_start
    for index, payload in enumerate(records[500:], 501):
        assert lazy.apply(index, payload) == eager.apply(index, payload), index
        assert lazy.served == eager.served, index
        if index % 150 == 0:
            state = snapshot_state(eager)
            assert dump(lazy.keyspace, snapshot_state(lazy)) == dump(eager.keyspace, state)
    assert _packed(lazy.keyspace) < packed_at_start  # the records touched some, not all
    assert lazy.keyspace.digest() == eager.keyspace.digest()
    assert not _packed(lazy.keyspace)  # the digest decoded the rest
    assert applier_internals(lazy) == applier_internals(eager)
    assert internals(lazy.keyspace) == internals(eager.keyspace)


def test_a_lazy_keyspace_writes_the_eager_bytes_and_digest() -> None:
    """write_rdb of an untouched lazy load is the file it came from; the Redis-compatible
    digest (redisdigest) and export without state agree with an eager load's."""
    from cacheshim.snapshot.redisdigest import redis_digest

    rng = _seed("write")
    data = _snapshot(rng)
    eager, lazy = _loads(data)
    assert _packed(lazy.keyspace)
    assert dump(lazy.keyspace, lazy.state) == data
    assert dump(lazy.keyspace, None, ctime_s=1) == dump(eager.keyspace, None, ctime_s=1)
    assert redis_digest(lazy.keyspace) == redis_digest(eager.keyspace)


def test_packed_values_do_not_keep_the_file() -> None:
    """Each packed value holds a copy of its own bytes, not a view of the load's buffer."""
    rng = _seed("copy")
    _, lazy = _loads(_snapshot(rng))
    for db in lazy.keyspace.dbs:
        for value in db.data.values():
            if type(value) is model.PackedValue:
                assert type(value.payload) is bytes
                assert value.rdb_type in (2, 4, 5, 18) and value.shape in (0, 1)
