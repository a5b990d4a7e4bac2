"""The GET fast path: the C function and its Python twin agree byte for byte, and a shim that
uses it answers exactly as redis-server does, whatever else shares the read."""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Iterator

import pytest

from cacheshim.protocol.fastread import KEY_BYTES_MAX, serve_gets_native, serve_gets_py
from cacheshim.protocol.resp import encode_command
from cacheshim.types.keyspace import RawString
from tests.cacheshim.harness import Memlog, RedisServer, wait_until
from tests.cacheshim.rawresp import RawConnection

NOW_MS = 1_700_000_000_000


def get(key: bytes, name: bytes = b"GET") -> bytes:
    return encode_command([name, key])


def test_the_extension_is_built() -> None:
    # `pip install` compiles it (setup.py fails the install when it cannot); a silent fallback
    # to Python would only show up as a slow benchmark. Only an install told to go without it
    # (MEMLOG_PURE_PYTHON=1, also set for the tests) may lack it.
    if os.environ.get("MEMLOG_PURE_PYTHON") == "1":
        pytest.skip("installed with MEMLOG_PURE_PYTHON=1: the C extension was left out on purpose")
    assert serve_gets_native is not None


@pytest.mark.parametrize("serve", [serve_gets_py, serve_gets_native], ids=["python", "c"])
def test_a_run_of_gets_is_answered_and_the_rest_left(serve: object) -> None:
    assert callable(serve)
    values: dict[bytes, object] = {b"a": b"1", b"raw": RawString(b"xy"), b"list": [b"x"]}
    expires = {b"raw": NOW_MS + 1}
    data = get(b"a") + get(b"raw", b"gEt") + get(b"missing") + encode_command([b"SET", b"a", b"2"])
    consumed, replies, served = serve(data, values, expires, NOW_MS, False)
    assert (replies, served) == (b"$1\r\n1\r\n$2\r\nxy\r\n$-1\r\n", 3)
    assert data[consumed:] == encode_command([b"SET", b"a", b"2"])
    # RESP3's null; an expired key reads as absent; another type stops the run before it.
    data = get(b"missing") + get(b"raw") + get(b"list") + get(b"a")
    consumed, replies, served = serve(data, values, expires, NOW_MS + 1, True)
    assert (replies, served) == (b"_\r\n_\r\n", 2)
    assert data[consumed:] == get(b"list") + get(b"a")


@pytest.mark.parametrize("serve", [serve_gets_py, serve_gets_native], ids=["python", "c"])
@pytest.mark.parametrize(
    "data",
    [
        b"*2\r\n$3\r\nGET\r\n$1\r\na",  # incomplete
        b"*2\r\n$3\r\nGET\r\n$01\r\na\r\n",  # a leading zero: the parser's business
        b"*2\r\n$3\r\nGET\r\n$1\r\nab\r\n",  # the length lies
        b"*3\r\n$3\r\nGET\r\n$1\r\na\r\n$1\r\nb\r\n",  # wrong arity: the table's error
        b"GET a\r\n",  # inline
        b"*2\r\n$4\r\nGETX\r\n$1\r\na\r\n",
        b"*2\r\n$3\r\nGE\x00\r\n$1\r\na\r\n",
        b"*2\r\n$3\r\nGET\r\n$-1\r\n",
        b"*2\r\n$3\r\nGET\r\n$%d\r\n" % (KEY_BYTES_MAX + 1),
        b"*2\r\n$3\r\nGET\r\n$1234567890\r\n",
    ],
)
def test_anything_unusual_is_left_to_the_parser(serve: object, data: bytes) -> None:
    assert callable(serve)
    assert serve(data, {b"a": b"1"}, {}, NOW_MS, False) == (0, b"", 0)


def random_stream(rng: random.Random, keys: list[bytes]) -> bytes:
    parts: list[bytes] = []
    for _ in range(rng.randrange(1, 12)):
        roll = rng.random()
        key = rng.choice(keys)
        if roll < 0.7:
            name = bytes(rng.choice((c, c ^ 0x20)) for c in b"GET")
            parts.append(get(key, name))
        elif roll < 0.8:
            parts.append(encode_command([b"SET", key, b"v"]))
        elif roll < 0.9:
            parts.append(
                b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(key) + rng.choice((-1, 1)), key)
            )
        else:
            parts.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12))))
    data = b"".join(parts)
    return data[: rng.randrange(len(data) + 1)] if rng.random() < 0.3 else data


def test_c_and_python_agree_on_random_streams() -> None:
    assert serve_gets_native is not None
    seed = int(os.environ.get("FASTREAD_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun: FASTREAD_SEED={seed})")
    rng = random.Random(seed)
    keys = [b"", b"a", b"bb", b"list", b"exp", b"x" * 300, b"\r\n", b"\x00\xff"]
    values: dict[bytes, object] = {b"a": b"1", b"bb": b"", b"x" * 300: b"y" * 70_000}
    values[b"list"] = [b"x"]
    values[b"exp"] = RawString(b"gone")
    values[b"\r\n"] = b"crlf"
    for _ in range(3000):
        data = random_stream(rng, keys)
        expires = {b"exp": NOW_MS + rng.randrange(-1, 2)} if rng.random() < 0.5 else {}
        resp3 = rng.random() < 0.5
        want = serve_gets_py(data, values, expires, NOW_MS, resp3)
        assert serve_gets_native(data, values, expires, NOW_MS, resp3) == want, data


# -- through a shim ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def servers(oracle_server: RedisServer, memlog: Memlog) -> Iterator[tuple[int, int]]:
    yield oracle_server.port, memlog.shim_ports[0]


def exchange(
    port: int, setup: list[list[bytes]], commands: list[list[bytes]], pieces: int
) -> bytes:
    """Run setup, then send the commands as one pipeline cut into `pieces` writes; answer
    the bytes of all their replies."""
    payload = b"".join(encode_command(c) for c in commands)
    conn = RawConnection(port)
    try:
        conn.call(b"FLUSHALL")
        for args in setup:
            conn.call(*args)
            if args == [b"SET", b"gone", b"x", b"PX", b"1"]:
                wait_until(lambda: conn.call(b"EXISTS", b"gone") == b":0\r\n", 10, "expiry")
        size = max(1, len(payload) // pieces)
        for start in range(0, len(payload), size):
            conn.sock.sendall(payload[start : start + size])
        return b"".join(conn.replies(len(commands)))
    finally:
        conn.close()


SETUP = [
    [b"SET", b"a", b"1"],
    [b"SET", b"b", b"two"],
    [b"RPUSH", b"l", b"x"],
    [b"SET", b"gone", b"x", b"PX", b"1"],
]


@pytest.mark.parametrize("pieces", [1, 3, 17])
def test_pipelines_mixing_gets_and_other_commands_match_redis(
    servers: tuple[int, int], pieces: int
) -> None:
    oracle, shim = servers
    commands = [
        [b"GET", b"a"], [b"get", b"b"], [b"GET", b"nope"], [b"GET", b"l"], [b"GET", b"gone"],
        [b"SET", b"a", b"changed"], [b"GET", b"a"], [b"INCR", b"n"], [b"GET", b"n"],
        [b"GET", b"a", b"extra"], [b"GET"], [b"DEL", b"b"], [b"GET", b"b"], [b"GET", b"a"],
    ]  # fmt: skip
    got = exchange(shim, SETUP, commands, pieces)
    assert got == exchange(oracle, SETUP, commands, pieces)


def test_session_states_that_change_a_get_match_redis(servers: tuple[int, int]) -> None:
    oracle, shim = servers
    for setup, commands in [
        ([[b"MULTI"]], [[b"GET", b"a"], [b"EXEC"]]),  # GET is queued
        ([[b"SELECT", b"3"]], [[b"GET", b"a"]]),  # another database: nil
        ([[b"HELLO", b"3"]], [[b"GET", b"nope"], [b"GET", b"a"]]),  # RESP3's null
    ]:
        got = exchange(shim, SETUP + setup, commands, 1)
        assert got == exchange(oracle, SETUP + setup, commands, 1), (setup, commands)


def test_client_reply_off_drops_fast_replies(memlog: Memlog) -> None:
    with socket.create_connection(("127.0.0.1", memlog.shim_ports[0]), timeout=10) as sock:
        sock.sendall(encode_command([b"CLIENT", b"REPLY", b"OFF"]) + get(b"a") + get(b"b"))
        sock.sendall(encode_command([b"CLIENT", b"REPLY", b"ON"]) + encode_command([b"PING"]))
        received = b""
        deadline = time.monotonic() + 10
        while b"PONG" not in received and time.monotonic() < deadline:
            received += sock.recv(4096)
        assert received == b"+OK\r\n+PONG\r\n"
