"""Geo commands (issue 20) against redis-server 7.0: replies (coordinates, distances, hashes,
result order), errors and stored sets must be identical, in RESP2 and RESP3.

Also the determinism of the new families together: two shims taking turns with a random
workload of bitmap, HyperLogLog and geo writes end at one digest and hold what redis-server
holds; the same log applied in interpreters with different hash seeds gives the same bytes.
Seeds are printed.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence

import pytest
import redis

from tests.cacheshim.applydiff import ApplyDiff
from tests.cacheshim.harness import (
    Memlog,
    RedisServer,
    arity_probes,
    client,
    execute,
    play_beside_redis,
    replay,
)
from tests.cacheshim.rawresp import RawConnection, compare_raw, flushed_pair, without_callbacks

Command = Sequence[bytes | str | int]
RawPair = tuple[RawConnection, RawConnection]


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def raw(
    oracle_server: RedisServer, memlog: Memlog, request: pytest.FixtureRequest
) -> Iterator[RawPair]:
    """(redis-server, memlog) byte-level connections in RESP2 or RESP3, keyspaces flushed."""
    yield from flushed_pair(oracle_server.port, memlog.shim_ports[0], request.param)


SICILY = "GEOADD Sicily 13.361389 38.115556 Palermo 15.087269 37.502669 Catania"


def _commands(text: str) -> list[Command]:
    """One command per line, arguments split at spaces."""
    return [line.split() for line in text.strip().splitlines()]


POINTS: list[Command] = [
    *_commands(
        SICILY
        + """
GEODIST Sicily Palermo Catania
GEODIST Sicily Palermo Catania km
GEODIST Sicily Palermo Catania MI
GEODIST Sicily Palermo Catania ft
GEODIST Sicily Palermo Catania xx
GEODIST Sicily Palermo Catania km x
GEODIST Sicily Palermo nope
GEODIST nokey a b
GEODIST Sicily Palermo Palermo
GEOPOS Sicily Palermo Catania NonExisting
GEOPOS nokey a
GEOHASH Sicily Palermo Catania x
GEOHASH nokey a
GEOADD Sicily 200 100 bad
GEOADD Sicily 13 86 bad
GEOADD Sicily x 1 bad
GEOADD Sicily 1 nan bad
GEOADD Sicily NX XX 1 1 a
GEOADD Sicily 1 1
GEOADD Sicily CH NX CH 1 1 Palermo 2 2 new
GEOADD Sicily XX CH 1 1 Palermo 2 2 new2
GEOADD Sicily GT 1 1 a
GEOADD Sicily 180 85.05112878 corner
GEOADD Sicily -180 -85.05112878 corner2
GEOPOS Sicily corner corner2
GEOHASH Sicily corner corner2
ZRANGE Sicily 0 -1 WITHSCORES
ZADD weird -1 neg 1e20 huge 0.5 half 4503599627370495 top
GEOPOS weird neg huge half top
GEOHASH weird neg huge half top
SET str x
GEOADD str 1 1 a
GEOPOS str a
GEODIST str a b
GEOHASH str a
GEORADIUS str 1 1 1 km
GEOSEARCH str FROMLONLAT 1 1 BYRADIUS 1 km
GEOSEARCHSTORE d str FROMLONLAT 1 1 BYRADIUS 1 km
"""
    ),
    ["GEOADD", "Sicily", "nx\x00junk", "1", "1", "b"],
    ["GEOPOS", "Sicily", "b"],
]

SEARCHES: list[Command] = _commands(
    SICILY
    + """
GEOADD Sicily 12.758489 38.788135 edge1 17.241510 38.788135 edge2
GEORADIUS Sicily 15 37 100 km
GEORADIUS Sicily 15 37 200 km WITHDIST WITHCOORD WITHHASH
GEORADIUS Sicily 15 37 200 km DESC COUNT 1
GEORADIUS Sicily 15 37 0 km
GEORADIUS Sicily 15 37 200 km COUNT 1 ANY
GEORADIUS Sicily 15 37 200 km FROMMEMBER x
GEORADIUS Sicily 15 37 200 km STORE st
ZRANGE st 0 -1 WITHSCORES
GEORADIUS Sicily 15 37 200 km STOREDIST st
ZRANGE st 0 -1 WITHSCORES
GEORADIUS Sicily 15 37 200 km STORE st WITHDIST
GEORADIUS Sicily 15 37 1 m STORE st
EXISTS st
GEORADIUS_RO Sicily 15 37 200 km STORE st
GEORADIUSBYMEMBER Sicily Palermo 200 km WITHDIST
GEORADIUSBYMEMBER Sicily nope 200 km
GEORADIUSBYMEMBER nokey nope -200 km
GEORADIUSBYMEMBER_RO Sicily Palermo 200 km COUNT 1 DESC
GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 200 km ASC
GEOSEARCH Sicily FROMMEMBER Palermo BYBOX 400 400 km ASC WITHCOORD WITHDIST
GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 400 400 km DESC WITHHASH
GEOSEARCH Sicily FROMMEMBER Palermo BYBOX 400 400 km COUNT 1 ANY
GEOSEARCH Sicily FROMMEMBER nope BYRADIUS 1 km
geosearch Sicily BYRADIUS 1 km
geosearch Sicily FROMMEMBER Palermo ASC
GEOSEARCH Sicily FROMMEMBER Palermo BYRADIUS 1 km ANY
GEOSEARCH Sicily FROMMEMBER Palermo BYRADIUS -1 km
GEOSEARCH Sicily FROMMEMBER Palermo BYRADIUS x km
GEOSEARCH Sicily FROMMEMBER Palermo BYRADIUS 1 parsec
GEOSEARCH Sicily FROMMEMBER Palermo BYBOX x 1 km
GEOSEARCH Sicily FROMMEMBER Palermo BYBOX 1 x km
GEOSEARCH Sicily FROMMEMBER Palermo BYBOX -1 1 km
GEOSEARCH Sicily FROMMEMBER Palermo FROMLONLAT 1 1 BYRADIUS 1 km
GEOSEARCH Sicily FROMMEMBER Palermo BYRADIUS 1 km BYBOX 1 1 km
GEOSEARCH Sicily FROMMEMBER Palermo BYRADIUS 1 km COUNT 0
GEOSEARCH Sicily FROMMEMBER Palermo BYRADIUS 1 km COUNT x
GEOSEARCH Sicily FROMMEMBER Palermo BYRADIUS 1 km STORE x
GEOSEARCH Sicily FROMMEMBER Palermo BYRADIUS 1 km STOREDIST
GEOSEARCH nokey FROMMEMBER Palermo BYRADIUS 1 km
GEOSEARCHSTORE dst Sicily FROMLONLAT 15 37 BYRADIUS 200 km
ZRANGE dst 0 -1 WITHSCORES
GEOSEARCHSTORE dst Sicily FROMLONLAT 15 37 BYRADIUS 200 km STOREDIST
ZRANGE dst 0 -1 WITHSCORES
OBJECT ENCODING dst
GEOSEARCHSTORE dst Sicily FROMLONLAT 15 37 BYRADIUS 200 km WITHDIST
GEOSEARCHSTORE dst nokey FROMLONLAT 15 37 BYRADIUS 200 km
EXISTS dst
GEOADD poles 0 85 n 0 -85 s 179.9 0 e -179.9 0 w
GEORADIUS poles 0 84 500 km WITHDIST ASC
GEOSEARCH poles FROMLONLAT 180 0 BYBOX 100 100 km WITHCOORD
GEORADIUS poles 0 0 20000 km ASC
GEORADIUS poles 0 0 40000 km
COMMAND GETKEYS georadius k 1 1 1 km STORE a STOREDIST b
COMMAND GETKEYS georadiusbymember k m 1 km STORE a
COMMAND GETKEYS geosearchstore d s FROMLONLAT 1 1 BYRADIUS 1 km
"""
)


@pytest.mark.parametrize("commands", [POINTS, SEARCHES], ids=["points", "searches"])
def test_geo_commands_match_redis(raw: RawPair, commands: list[Command]) -> None:
    compare_raw(*raw, commands)


def test_geo_arity_matches_redis(raw: RawPair) -> None:
    names = [
        "geoadd", "geodist", "geohash", "geopos", "georadius", "georadius_ro",
        "georadiusbymember", "georadiusbymember_ro", "geosearch", "geosearchstore",
    ]  # fmt: skip
    compare_raw(*raw, arity_probes(names))  # type: ignore[arg-type]


def _random_points(rng: random.Random, count: int) -> list[list[str]]:
    """Mostly clustered around (10, 45), some anywhere, as GEOADD argument triples."""
    points = []
    for i in range(count):
        if rng.random() < 0.8:
            lon = min(180.0, max(-180.0, rng.gauss(10, 1)))
            lat = min(85.0, max(-85.0, rng.gauss(45, 1)))
        else:
            lon, lat = rng.uniform(-180, 180), rng.uniform(-85, 85)
        points.append([f"{lon:.6f}", f"{lat:.6f}", f"p{i}"])
    return points


def _random_search(rng: random.Random, key: str, members: Sequence[str]) -> list[str]:
    unit = rng.choice(["m", "km", "mi", "ft"])
    scale = 1000 if unit in ("m", "ft") else 1
    radius = str(rng.choice([0.5, 1, 10, 50, 100, 300, 1000, 5000, 20000]) * scale)
    options: list[str] = []
    for word in rng.sample(["WITHDIST", "WITHHASH", "WITHCOORD", "ASC", "DESC", "COUNT"], 3):
        if rng.random() < 0.5:
            continue
        options.append(word)
        if word == "COUNT":
            options.append(str(rng.randint(1, 20)))
            if rng.random() < 0.3:
                options.append("ANY")
    lon, lat = f"{rng.uniform(5, 15):.5f}", f"{rng.uniform(40, 50):.5f}"
    member = rng.choice(members)
    height = str(float(radius) * rng.uniform(0.3, 3))
    return rng.choice([
        ["GEORADIUS_RO", key, lon, lat, radius, unit, *options],
        ["GEORADIUSBYMEMBER_RO", key, member, radius, unit, *options],
        ["GEOSEARCH", key, "FROMMEMBER", member, "BYRADIUS", radius, unit, *options],
        ["GEOSEARCH", key, "FROMLONLAT", lon, lat, "BYBOX", radius, height, unit, *options],
        ["GEODIST", key, member, rng.choice(members), unit],
    ])  # fmt: skip


def test_random_searches_in_apply_match_redis(oracle_server: RedisServer) -> None:
    """Hundreds of points and random radius and box searches (rerun: GEO_SEED)."""
    seed = int(os.environ.get("GEO_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun: GEO_SEED={seed})")
    rng = random.Random(seed)
    points = _random_points(rng, 300)
    members = [p[2] for p in points]
    for protocol in (2, 3):
        diff = ApplyDiff(oracle_server.port, protocol)
        try:
            for start in range(0, len(points), 50):
                diff.check("GEOADD", "g", *[x for p in points[start : start + 50] for x in p])
            diff.check("GEOPOS", "g", *members[:50])
            diff.check("GEOHASH", "g", *members[:50])
            for _ in range(300):
                diff.check(*_random_search(rng, "g", members))
            for _ in range(20):
                search = _random_search(rng, "g", members)
                if search[0] == "GEOSEARCH":
                    kept = [a for a in search[2:] if not a.startswith("WITH")]
                    diff.check("GEOSEARCHSTORE", "st", "g", *kept, "STOREDIST")
                    diff.check("ZRANGE", "st", "0", "-1", "WITHSCORES")
        finally:
            diff.close()


def test_random_searches_through_the_log_match_redis(raw: RawPair) -> None:
    """Fewer, through a real deployment (rerun: GEO_SEED)."""
    seed = int(os.environ.get("GEO_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun: GEO_SEED={seed})")
    rng = random.Random(seed)
    points = _random_points(rng, 120)
    members = [p[2] for p in points]
    commands: list[Command] = [["GEOADD", "g", *[x for p in points for x in p]]]
    commands += [_random_search(rng, "g", members) for _ in range(60)]
    compare_raw(*raw, commands)


# -- determinism of the new families together ---------------------------------------------------


def _random_mixed_log(rng: random.Random, length: int) -> list[list[list[str]]]:
    """Records of bitmap, HyperLogLog and geo writes and a few SWAPDBs (some records are
    MULTI/EXEC transactions)."""
    log: list[list[list[str]]] = []
    for _ in range(length):
        r = rng.random()
        if r < 0.3:
            args = rng.choice([
                ["SETBIT", "bits", str(rng.randint(0, 2000)), str(rng.randint(0, 1))],
                ["BITFIELD", "bits", "OVERFLOW", rng.choice(["WRAP", "SAT", "FAIL"]),
                 "INCRBY", f"i{rng.randint(1, 64)}", f"#{rng.randint(0, 40)}",
                 str(rng.randint(-(2**40), 2**40))],
                ["BITOP", rng.choice(["AND", "OR", "XOR"]), "bits2", "bits", "bits2"],
            ])  # fmt: skip
        elif r < 0.65:
            base = rng.randrange(10**6)
            args = rng.choice([
                ["PFADD", rng.choice(["hll1", "hll2"]),
                 *[str(base + i) for i in range(rng.choice([1, 5, 50, 400]))]],
                ["PFMERGE", rng.choice(["hll1", "hll2"]), "hll1", "hll2"],
                ["PFCOUNT", rng.choice(["hll1", "hll2"])],
            ])  # fmt: skip
        else:
            lon, lat = f"{rng.uniform(9, 11):.6f}", f"{rng.uniform(44, 46):.6f}"
            args = rng.choice([
                ["GEOADD", "geo", lon, lat, f"m{rng.randrange(200)}"],
                ["GEOSEARCHSTORE", "near", "geo", "FROMLONLAT", lon, lat, "BYRADIUS",
                 str(rng.choice([5, 50, 200])), "km", rng.choice(["ASC", "DESC"]), "STOREDIST"],
                ["GEORADIUS", "geo", lon, lat, "30", "km", "STORE", "near2"],
            ])  # fmt: skip
        if rng.random() < 0.03:
            args = ["SWAPDB", "0", "1"]  # half the keys go to db 1 and come back later
        if rng.random() < 0.2:
            log.append([args, ["PFCOUNT", "hll1"], ["SETBIT", "bits", "1", "1"]])
        else:
            log.append([args])
    return log


_MIX_KEYS = ["bits", "bits2", "hll1", "hll2", "geo", "near", "near2"]


def _state(conn: redis.Redis) -> list[object]:
    state: list[object] = []
    for key in _MIX_KEYS:
        kind = execute(conn, "TYPE", key)
        if kind == b"zset":
            state.append(execute(conn, "ZRANGE", key, "0", "-1", "WITHSCORES"))
        else:
            value = execute(conn, "GET", key)
            if isinstance(value, bytes) and value.startswith(b"HYLL"):
                value = value[:8] + value[16:]  # the count redis-server's PFCOUNT caches
            state.append(value)
    return state


def test_two_shims_end_equal_after_bitmap_hll_geo_writes(
    two_shims: Memlog, oracle_server: RedisServer
) -> None:
    """Two shims take turns with a random workload over the three families; both end at one
    digest, and every key holds what redis-server holds after the same commands, byte for
    byte (rerun: MIX_SEED)."""
    seed = int(os.environ.get("MIX_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun: MIX_SEED={seed})")
    rng = random.Random(seed)
    first, second = (without_callbacks(client(p)) for p in two_shims.shim_ports[:2])
    oracle = without_callbacks(client(oracle_server.port))
    try:
        play_beside_redis([first, second], oracle, _random_mixed_log(rng, 150), rng.choice)
        want = _state(oracle)
        assert _state(first) == want
        assert _state(second) == want
    finally:
        first.close()
        second.close()
        oracle.close()


def test_apply_is_the_same_in_processes_with_different_hash_seeds() -> None:
    """The same log of bitmap, HLL and geo writes in two interpreters whose bytes hashing
    differs: identical replies and digests after every record (seed printed)."""
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    log = _random_mixed_log(random.Random(seed), 200)
    outputs = [replay(log, hash_seed) for hash_seed in ("1", "4242")]
    assert outputs[0] == outputs[1]
    replies = b"".join(reply for reply, _ in outputs[0])
    assert b"unknown command" not in replies and b"internal error" not in replies
