"""The fast path of the common reads (cacheshim.protocol.fastreads): its replies are byte for
byte the general path's, in RESP2 and RESP3, over random keyspaces of every type (expired
keys, wrong types, big values) and random pipelines mixing fast and other commands; its C
encoder agrees with resp.encode; and a shim using it answers as redis-server does.

Randomized tests print their seed; set FASTREADS_SEED to replay one."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest

from cacheshim.apply import run
from cacheshim.commands import Ctx, load_all
from cacheshim.protocol import fastreads
from cacheshim.protocol import resp as resp_module
from cacheshim.protocol.errors import ProtocolError
from cacheshim.protocol.fastreads import (
    ARG_BYTES_MAX,
    FAST_READS,
    encode_reply_native,
    parse_request_native,
    parse_request_py,
    serve_reads,
)
from cacheshim.protocol.resp import (
    Error,
    ParserLimits,
    Reply,
    RequestParser,
    SetReply,
    encode,
    encode_command,
)
from cacheshim.types.keyspace import Keyspace
from tests.cacheshim.harness import Memlog, RedisServer, wait_until
from tests.cacheshim.rawresp import RawConnection

NOW_MS = 1_700_000_000_000

load_all()


def seeded(name: str) -> random.Random:
    seed = int(os.environ.get("FASTREADS_SEED", random.randrange(1 << 32)))
    print(f"{name}: FASTREADS_SEED={seed}")
    return random.Random(seed)


# -- the C encoder against resp.encode -------------------------------------------------------


def random_reply(rng: random.Random, depth: int = 0) -> Reply:
    pick = rng.randrange(9 if depth < 4 else 4)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([0, -1, 7, -(2**63), 2**63 - 1, rng.randrange(-(10**12), 10**12)])
    if pick in (2, 3):
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 5, 40])))
    if pick == 4:
        return [random_reply(rng, depth + 1) for _ in range(rng.randrange(6))]
    if pick == 5:
        return tuple(random_reply(rng, depth + 1) for _ in range(rng.randrange(4)))
    if pick == 6:
        return {b"f%d" % i: random_reply(rng, depth + 1) for i in range(rng.randrange(5))}
    if pick == 7:
        return SetReply([b"m%d" % i for i in range(rng.randrange(4))])
    # shapes the C encoder leaves to Python: a float, a status, a bool, a set
    return rng.choice([1.5, "OK", True, {b"x"}, [1.5, b"y"]])


def test_the_c_encoder_writes_what_resp_encode_writes() -> None:
    if encode_reply_native is None:
        pytest.skip("installed with MEMLOG_PURE_PYTHON=1: no C extension")
    from cacheshim.protocol.fastreads import encode_reply

    rng = seeded("encoder")
    handled = 0
    for _ in range(3000):
        reply = random_reply(rng)
        for resp3 in (False, True):
            want = encode(reply, 3 if resp3 else 2)
            native = encode_reply_native(reply, resp3)
            assert native is None or native == want, (reply, resp3)
            handled += native is not None
            assert encode_reply(reply, resp3) == want, (reply, resp3)
    assert handled > 1000  # the common shapes are handled in C, not all left to Python
    assert encode_reply_native(2**64, False) is None  # too big: resp.encode's own error
    big = [b"x" * 100_000] * 3  # past the C encoder's stack buffer
    assert encode_reply_native(big, True) == encode(big, 3)


def test_the_c_parser_reads_what_the_python_parser_reads() -> None:
    if parse_request_native is None:
        pytest.skip("installed with MEMLOG_PURE_PYTHON=1: no C extension")
    rng = seeded("parser")
    for _ in range(5000):
        args = [bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 3, 12])))]
        args += [b"a" * rng.choice([0, 1, 10, 17]) for _ in range(rng.randrange(4))]
        data = bytearray(b"".join(encode_command(args) for _ in range(rng.randrange(1, 3))))
        for _ in range(rng.randrange(4)):  # damage: a byte changed, cut, inserted
            at = rng.randrange(len(data) + 1)
            edit = rng.randrange(3)
            if edit == 0 and at < len(data):
                data[at] = rng.choice(b"*$\r\n0123456789x-")
            elif edit == 1:
                del data[at:]
            else:
                data[at:at] = rng.choice([b"0", b"\r\n", b"*", b"1"])
        raw = bytes(data)
        pos = rng.randrange(len(raw) + 1)
        args_max, arg_max = rng.choice([(1024, ARG_BYTES_MAX), (2, 10), (3, 16)])
        want = parse_request_py(raw, pos, args_max, arg_max)
        assert parse_request_native(raw, pos, args_max, arg_max) == want, (raw, pos)


# -- serve_reads against the general path ----------------------------------------------------

KEYS = [b"s1", b"s2", b"big", b"l1", b"l2", b"h1", b"h2", b"set1", b"z1", b"gone", b"hgone"]
KEYS += [b"missing", b""]
EXPIRED_AT = NOW_MS - 5


def apply(keyspace: Keyspace, index: int, *args: bytes) -> None:
    reply = run(Ctx(keyspace, 0, NOW_MS - 100, index), list(args))
    assert not isinstance(reply, Error), (args, reply)


def pairs(first: bytes, second: bytes, count: int) -> list[bytes]:
    return [x for i in range(count) for x in (first % i, second % i)]


def random_keyspace(rng: random.Random) -> Keyspace:
    keyspace = Keyspace()
    writes: list[list[bytes]] = [
        [b"SET", b"s1", b"v"],
        [b"SET", b"s2", b"%d" % rng.randrange(10**6)],
        [b"SET", b"big", b"b" * rng.choice([70_000, 300_000])],
        [b"RPUSH", b"l1", *[b"e%d" % i for i in range(rng.randrange(1, 150))]],
        [b"RPUSH", b"l2", b"x" * 1000, b"", b"y"],
        [b"HSET", b"h1", *pairs(b"f%d", b"v%d", rng.randrange(1, 40))],
        [b"HSET", b"h2", b"a", b"1"],
        [b"SADD", b"set1", *[b"%d" % rng.randrange(50) for _ in range(rng.randrange(1, 20))]],
        [b"ZADD", b"z1", *pairs(b"%d.5", b"m%d", rng.randrange(1, 20))],
        [b"SET", b"gone", b"x"],
        [b"HSET", b"hgone", b"f", b"v"],
        [b"PEXPIREAT", b"gone", b"%d" % EXPIRED_AT],
        [b"PEXPIREAT", b"hgone", b"%d" % EXPIRED_AT],
        [b"PEXPIREAT", b"s2", b"%d" % (NOW_MS + rng.randrange(1, 10**7))],
        [b"PEXPIREAT", b"l1", b"%d" % (NOW_MS + rng.randrange(1, 10**7))],
    ]  # fmt: skip
    for index, args in enumerate(writes, start=1):
        apply(keyspace, index, *args)
    return keyspace


INTS = [b"0", b"1", b"-1", b"5", b"-3", b"99", b"1000", b"-1000", b"x", b"01", b"-0", b"+1",
        b"-140", b"-150", b"999999999999999999", b"-9223372036854775808"]  # fmt: skip


def random_int(rng: random.Random) -> bytes:
    return rng.choice(INTS)


def random_request(rng: random.Random) -> list[bytes]:
    key = rng.choice(KEYS)
    field = rng.choice([b"f0", b"f1", b"a", b"nope", b"m1", b"3", b"e0"])
    choice = rng.randrange(24)
    name: bytes
    if choice < 18:
        name = rng.choice(sorted(FAST_READS))
    else:
        name = rng.choice([b"GET", b"PING", b"TYPE", b"ECHO", b"GETRANGE", b"HEXISTS"])
    shapes: dict[bytes, list[bytes]] = {
        b"mget": [rng.choice(KEYS) for _ in range(rng.randrange(1, 12))],
        b"exists": [rng.choice(KEYS) for _ in range(rng.randrange(1, 5))],
        b"hget": [key, field],
        b"hmget": [key, *[rng.choice([b"f0", b"f2", b"zz"]) for _ in range(rng.randrange(1, 4))]],
        b"lrange": [key, random_int(rng), random_int(rng)],
        b"lindex": [key, random_int(rng)],
        b"sismember": [key, field],
        b"zscore": [key, field],
        b"zrank": [key, field, *([b"WITHSCORE"] if rng.random() < 0.3 else [])],
        b"zrange": [
            key,
            random_int(rng),
            random_int(rng),
            *rng.choice([[], [b"WITHSCORES"], [b"REV"], [b"BYSCORE"], [b"bogus"]]),
        ],
        b"echo": [field],
        b"getrange": [key, random_int(rng), random_int(rng)],
        b"hexists": [key, field],
        b"ping": [],
    }
    args = shapes.get(name.lower(), [key])
    if rng.random() < 0.05:  # a wrong number of arguments
        args = [*args, b"extra"] if rng.random() < 0.5 else []
    spelled = bytes(c ^ 0x20 if chr(c).isalpha() and rng.random() < 0.3 else c for c in name)
    return [spelled, *args]


def general_replies(
    keyspace: Keyspace, requests: list[list[bytes]], resp3: bool, now_ms: int
) -> list[bytes]:
    out = []
    for args in requests:
        reply = run(Ctx(keyspace, 0, now_ms), args)
        out.append(encode(reply, 3 if resp3 else 2))
    return out


@pytest.mark.parametrize("encoder", ["c", "python"])
def test_fast_reads_answer_as_the_general_path(
    encoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each round: a random keyspace and pipeline, answered the way a connection does (the
    fast path, then one request by the general path where it stops, then the fast path
    again, ...), must give the general path's bytes for every request."""
    if encoder == "python":  # as installed with MEMLOG_PURE_PYTHON=1
        monkeypatch.setattr(fastreads, "encode_reply_native", None)
        monkeypatch.setattr(fastreads, "parse_request", parse_request_py)
        monkeypatch.setattr(fastreads, "mget_native", None)
        monkeypatch.setattr(fastreads, "whole_reads_native", {})
    elif fastreads.encode_reply_native is None:
        pytest.skip("installed with MEMLOG_PURE_PYTHON=1: no C extension")
    rng = seeded("serve_reads")
    served_total = 0
    for round_ in range(80):
        keyspace = random_keyspace(rng)
        requests = [random_request(rng) for _ in range(rng.randrange(1, 40))]
        encoded = [encode_command(args) for args in requests]
        data = b"".join(encoded)
        resp3 = rng.random() < 0.5
        want = general_replies(keyspace, requests, resp3, NOW_MS)
        got: list[bytes] = []
        position = 0  # the next request
        pos = 0  # its first byte
        while position < len(requests):
            cut = data if rng.random() < 0.8 else data[: rng.randrange(pos, len(data) + 1)]
            consumed, replies, served, last = serve_reads(cut[pos:], keyspace, 0, NOW_MS, resp3)
            assert consumed == sum(map(len, encoded[position : position + served]))
            assert replies == b"".join(want[position : position + served]), (
                round_, resp3, requests[position : position + served],
            )  # fmt: skip
            if served:
                assert last == requests[position + served - 1][0].decode().lower()
            served_total += served
            position += served
            pos += consumed
            if position == len(requests):
                break
            stopped = requests[position]
            name = stopped[0].lower()
            if name in FAST_READS and len(cut) - pos >= len(encoded[position]):
                # A complete fast read stops the run only if the general path must answer it:
                # an error, or a key expired by this clock.
                error = want[position].startswith(b"-")
                expired = any(k in (b"gone", b"hgone") for k in stopped[1:])
                assert error or expired, (round_, stopped)
            got.append(want[position])  # the general path answers this one
            position += 1
            pos += len(encoded[position - 1])
    assert served_total > 200


def test_a_request_spelled_unusually_is_left_to_the_parser() -> None:
    keyspace = Keyspace()
    apply(keyspace, 1, b"RPUSH", b"l", b"a")
    for data in [
        b"*4\r\n$6\r\nLRANGE\r\n$1\r\nl\r\n$1\r\n0\r\n$2\r\n-1",  # incomplete
        b"*4\r\n$6\r\nLRANGE\r\n$1\r\nl\r\n$01\r\n0\r\n$2\r\n-1\r\n",  # leading zero
        b"*2\r\n$4\r\nLLEN\r\n$1\r\nlx\r\n",  # the length lies
        b"*02\r\n$4\r\nLLEN\r\n$1\r\nl\r\n",
        b"LLEN l\r\n",  # inline
        encode_command([b"MGET", b"k" * (ARG_BYTES_MAX + 1)]),  # an argument too long
        encode_command([b"EXISTS", *[b"k"] * 1025]),  # too many arguments
    ]:
        assert serve_reads(data, keyspace, 0, NOW_MS, False) == (0, b"", 0, ""), data
    # A wrong type is the general path's WRONGTYPE; the reads before it are answered.
    data = encode_command([b"LLEN", b"l"]) + encode_command([b"HGETALL", b"l"])
    assert serve_reads(data, keyspace, 0, NOW_MS, False)[1:3] == (b":1\r\n", 1)


# -- a shim beside redis-server --------------------------------------------------------------


@pytest.fixture(scope="module")
def servers(oracle_server: RedisServer, memlog: Memlog) -> Iterator[tuple[int, int]]:
    yield oracle_server.port, memlog.shim_ports[0]


SETUP: list[list[bytes]] = [
    [b"SET", b"s1", b"v"],
    [b"SET", b"big", b"b" * 100_000],
    [b"RPUSH", b"l1", *[b"e%d" % i for i in range(120)]],
    [b"HSET", b"h1", *[x for i in range(12) for x in (b"f%d" % i, b"v%d" % i)]],
    [b"SADD", b"set1", b"3", b"1", b"2"],
    [b"ZADD", b"z1", b"1", b"m1", b"2.5", b"m2", b"-3", b"m3"],
    [b"SET", b"ttl", b"x", b"EX", b"1000"],
    [b"SET", b"gone", b"x", b"PX", b"1"],
]


def exchange(
    port: int,
    commands: list[list[bytes]],
    protocol: int,
    pieces: int,
    session: list[list[bytes]] | None = None,
) -> bytes:
    """Load SETUP, run the session commands (their replies dropped: CLIENT REPLY SKIP has
    none), then send the commands cut into `pieces` writes; answer their replies' bytes."""
    conn = RawConnection(port, protocol=protocol)
    try:
        conn.call(b"FLUSHALL")
        for args in SETUP:
            conn.call(*args)
        wait_until(lambda: conn.call(b"EXISTS", b"gone") == b":0\r\n", 10, "expiry")
        for args in session or []:
            conn.send(args)
            if args[:2] != [b"CLIENT", b"REPLY"]:
                conn.replies(1)
        payload = b"".join(encode_command(c) for c in commands)
        size = max(1, len(payload) // pieces)
        for start in range(0, len(payload), size):
            conn.sock.sendall(payload[start : start + size])
        skipped = 1 if session and session[-1][:2] == [b"CLIENT", b"REPLY"] else 0
        return b"".join(conn.replies(len(commands) - skipped))
    finally:
        conn.close()


def test_random_pipelines_of_fast_reads_match_redis(servers: tuple[int, int]) -> None:
    oracle, shim = servers
    rng = seeded("beside redis")
    keys = [b"s1", b"big", b"l1", b"h1", b"set1", b"z1", b"ttl", b"gone", b"missing"]
    for _ in range(6):
        commands: list[list[bytes]] = []
        for _ in range(rng.randrange(5, 40)):
            key = rng.choice(keys)
            commands.append(
                rng.choice(
                    [
                        [b"MGET", *rng.sample(keys, rng.randrange(1, 5))],
                        [b"EXISTS", key, rng.choice(keys)],
                        [b"TTL", key],
                        [b"STRLEN", key],
                        [b"HGET", key, b"f3"],
                        [b"HMGET", key, b"f1", b"zz"],
                        [b"HGETALL", key],
                        [b"LRANGE", key, random_int(rng), random_int(rng)],
                        [b"LINDEX", key, random_int(rng)],
                        [b"LLEN", key],
                        [b"SMEMBERS", key],
                        [b"SISMEMBER", key, b"2"],
                        [b"ZSCORE", key, b"m2"],
                        [b"ZRANK", key, b"m3"],
                        [b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"],
                        [b"GET", key],
                        [b"HSET", b"h1", b"f3", b"%d" % rng.randrange(100)],
                        [b"RPUSH", b"l1", b"new"],
                        [b"PING"],
                        [b"lrange", key, b"0"],  # wrong arity
                    ]
                )
            )
        protocol = rng.choice([2, 3])
        pieces = rng.choice([1, 3, 11])
        got = exchange(shim, commands, protocol, pieces)
        assert got == exchange(oracle, commands, protocol, pieces), (protocol, commands)


def test_session_states_that_change_a_read_match_redis(servers: tuple[int, int]) -> None:
    oracle, shim = servers
    for setup, commands in [
        ([[b"MULTI"]], [[b"HGETALL", b"h1"], [b"MGET", b"s1"], [b"EXEC"]]),  # queued
        ([[b"SELECT", b"3"]], [[b"LRANGE", b"l1", b"0", b"2"], [b"MGET", b"s1"]]),
        ([[b"CLIENT", b"REPLY", b"SKIP"]], [[b"MGET", b"s1"], [b"LLEN", b"l1"]]),
        ([[b"HELLO", b"3"]], [[b"HGETALL", b"h1"], [b"SMEMBERS", b"set1"], [b"MGET", b"x"]]),
    ]:
        got = exchange(shim, commands, 2, 1, setup)
        assert got == exchange(oracle, commands, 2, 1, setup), (setup, commands)


# -- RequestParser with its C reader of canonical requests, and without ------------------------


def parse_stream(chunks: list[bytes], limits: ParserLimits, auth: bool) -> list[object]:
    """Every command RequestParser reads from the chunks, then the error it stops at."""
    parser = RequestParser(limits, auth_required=auth)
    out: list[object] = []
    try:
        for chunk in chunks:
            parser.feed(chunk)
            while (command := parser.next_command()) is not None:
                out.append(command)
    except ProtocolError as exc:
        out.append(("error", exc.message))
    out.append(parser.buffered_bytes)
    return out


def test_request_parser_reads_the_same_with_and_without_its_c_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if resp_module._parse_canonical is None:
        pytest.skip("installed with MEMLOG_PURE_PYTHON=1: no C extension")
    rng = seeded("request parser")
    cases = []
    for _ in range(1500):
        data = bytearray()
        for _ in range(rng.randrange(1, 6)):
            args = [rng.choice([b"SET", b"GET", b"x" * 70_000, b""])]
            args += [bytes(rng.randrange(256) for _ in range(rng.choice([0, 2, 30])))
                     for _ in range(rng.randrange(3))]  # fmt: skip
            data += encode_command(args) if rng.random() < 0.9 else b"PING x\r\n"
        for _ in range(rng.randrange(3)):  # damage: a byte changed or inserted
            at = rng.randrange(len(data) + 1)
            if rng.random() < 0.5 and at < len(data):
                data[at] = rng.choice(b"*$\r\n0123456789x-\x00")
            else:
                data[at:at] = rng.choice([b"0", b"\r\n", b"*", b"*0\r\n", b"$-1\r\n"])
        cuts = sorted(rng.sample(range(len(data) + 1), min(3, len(data) + 1)))
        chunks = [bytes(data[a:b]) for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        limits = rng.choice([ParserLimits(), ParserLimits(inline_bytes_max=8),
                             ParserLimits(bulk_bytes_max=20, multibulk_args_max=2)])  # fmt: skip
        cases.append((chunks, limits, rng.random() < 0.1))
    with_c = [parse_stream(*case) for case in cases]
    monkeypatch.setattr(resp_module, "_parse_canonical", None)
    assert [parse_stream(*case) for case in cases] == with_c


def test_big_arrays_encode_the_same_with_or_without_c(monkeypatch: pytest.MonkeyPatch) -> None:
    """resp.encode hands lists and tuples of 64 items and more (a set reply's items too) to
    the C encoder: the bytes are those of its Python loop, for every shape, the ones C leaves
    to Python (a float, a status, a bool, a subclass deep inside) included."""
    if encode_reply_native is None:
        pytest.skip("installed with MEMLOG_PURE_PYTHON=1: no C extension")
    rng = seeded("big arrays")
    replies: list[Reply] = []
    for _ in range(150):
        items = [random_reply(rng) for _ in range(rng.choice([63, 64, 65, 300]))]
        if rng.random() < 0.5:
            items = [bytes(rng.randrange(256) for _ in range(rng.randrange(9))) for _ in items]
        replies += [items, tuple(items), SetReply(items), [items[:10], items], {b"k": items}]
    encoded = [encode(reply, protocol) for reply in replies for protocol in (2, 3)]
    monkeypatch.setattr(resp_module, "_native_encode", None)
    assert [encode(reply, protocol) for reply in replies for protocol in (2, 3)] == encoded
