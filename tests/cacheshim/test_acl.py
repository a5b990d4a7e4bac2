"""Issue 17, Redis ACL: AUTH, HELLO AUTH, ACL SETUSER & co., requirepass, and the checks of
every command against the user's command, key and channel rules, compared with redis-server
7.0.15 byte for byte (RESP2 and RESP3) where the output can be compared; users replicated
through the log (two shims, a restart from a snapshot, an ACL file's seed); redis-py's own
ACL methods."""

from __future__ import annotations

import asyncio
import hashlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis

from cacheshim.acl.state import Users
from cacheshim.acl.users import all_specs
from cacheshim.apply import Applier
from cacheshim.commands import load_all
from cacheshim.snapshot.rdb import read_rdb, restore, snapshot_state, write_rdb
from cacheshim.v1 import record_pb2
from logsvc.client import LogClient
from tests.cacheshim.harness import (
    Memlog,
    RedisServer,
    applied_index,
    client,
    execute,
    same_index,
    stop_process,
    wait_until,
)
from tests.cacheshim.rawresp import RawConnection

Pair = tuple[redis.Redis, redis.Redis]
Command = Sequence[bytes | str | int]
# Users the tests create; deleted before and after each test on both servers.
TEST_USERS = ("alice", "bob", "carol", "dave", "sel", "nobody", "first", "sorter")
DEFAULT_BACK = ["ACL", "SETUSER", "default", "on", "nopass", "allkeys", "allchannels",
                "allcommands", "clearselectors"]  # fmt: skip


def _clean(conn: redis.Redis) -> None:
    execute(conn, "CONFIG", "SET", "requirepass", "")
    execute(conn, *DEFAULT_BACK)
    execute(conn, "ACL", "DELUSER", *TEST_USERS)
    execute(conn, "ACL", "LOG", "RESET")
    execute(conn, "FLUSHALL")


@pytest.fixture
def servers(oracle_server: RedisServer, memlog: Memlog) -> Iterator[tuple[int, int]]:
    """(redis-server port, memlog port), with only the default user (as it starts) on both."""
    admins = [client(oracle_server.port), client(memlog.shim_ports[0])]
    for conn in admins:
        _clean(conn)
    try:
        yield oracle_server.port, memlog.shim_ports[0]
    finally:
        for conn in admins:
            _clean(conn)
            conn.close()


def _raw_pair(ports: tuple[int, int], protocol: int) -> tuple[RawConnection, RawConnection]:
    return RawConnection(ports[0], protocol), RawConnection(ports[1], protocol)


def _same(
    raw: tuple[RawConnection, RawConnection], commands: Sequence[Command], *, mask: bool = False
) -> None:
    oracle, subject = raw
    for args in commands:
        want, got = oracle.call(*args), subject.call(*args)
        if mask:  # values that are random by nature (GENPASS)
            want, got = _masked(want), _masked(got)
        want, got = _rules_sorted(want), _rules_sorted(got)
        # HELLO's client id: the servers number their clients apart.
        want, got = (re.sub(rb"(\$2\r\nid\r\n):\d+", rb"\1:<id>", r) for r in (want, got))
        assert got == want, f"{list(args)!r}: redis-server sent {want!r}, memlog sent {got!r}"


def _rules_sorted(reply: bytes) -> bytes:
    """Command rules with their words sorted: Redis lists single commands in the order of its
    command hash table, which is random per process."""

    def sort(match: re.Match[bytes]) -> bytes:
        words = match.group(2).split()
        return match.group(1) + b"".join(b" " + w for w in sorted(words))

    return re.sub(rb"([+-]@all)((?: [+-][^ \r\n)]+)*)", sort, reply)


def _masked(reply: bytes) -> bytes:
    return re.sub(rb"[0-9a-f]{2,}", b"<hex>", reply)


# -- ACL commands, their replies and errors ----------------------------------------------------


SETUSER_CASES: list[list[str]] = [
    ["alice", "on", ">p1", "~a*", "%R~r*", "%W~w*", "&news.*", "+@read", "-get"],
    ["alice", ">p2", "<p1", "+get"],
    ["bob", "on", "nopass", "allkeys", "allchannels", "+@all", "-@dangerous"],
    ["bob", "resetkeys", "~b:*", "resetchannels", "&x", "&y", "-@all", "+@hash", "+@string"],
    ["carol", "on", "#" + "a" * 64, "!" + "a" * 64, "+config|get", "+select|0", "+select|1"],
    ["carol", "+config", "-config|set"],
    ["dave", "reset", "on", "nocommands", "+ping", "(~x* +get)", "(%R~y* +@read +@write)"],
    ["sel", "(~a", "+get)", "(~b +set)"],
    ["sel", "clearselectors", "skip-sanitize-payload"],
    ["first", "on", "+@all", "-@read", "+get", "~*", "&*"],
]
SETUSER_ERRORS: list[list[str]] = [
    ["nobody", "foo"],
    ["nobody", "%X~a"],
    ["nobody", "%~a"],
    ["nobody", "<nope"],
    ["nobody", "#abc"],
    ["nobody", "!" + "b" * 64],
    ["nobody", "+nosuch"],
    ["nobody", "-@nosuch"],
    ["nobody", "+config|nosub"],
    ["nobody", "(+get"],
    ["nobody", "+get)"],
    ["nobody", "(foo)"],
    ["nobody", "allkeys", "%R~a"],
    ["nobody", "allchannels", "&a"],
    ["nobody", "+@all|x"],
    ["nobody", "+select|"],
    ["nobody", "+get|a|b"],
    ["nobody", "-select|0"],
    ["nobody", ">a", "<b"],
    ["nobody", "on", "(~a +get)", "(foo)"],
    ["nobody", "+config|get|appendonly"],
    ["nobody", "-config|get|appendonly"],
    ["no body", "on"],
]


@pytest.mark.parametrize("protocol", [2, 3])
def test_acl_setuser_getuser_list_and_errors_match_redis(
    servers: tuple[int, int], protocol: int
) -> None:
    raw = _raw_pair(servers, protocol)
    commands: list[Command] = []
    for case in SETUSER_CASES:
        commands += [["ACL", "SETUSER", *case], ["ACL", "GETUSER", case[0]]]
    commands += [["ACL", "SETUSER", *case] for case in SETUSER_ERRORS]
    commands += [
        ["ACL", "GETUSER", "nobody"],  # never created: a refused SETUSER creates nothing
        ["ACL", "LIST"],
        ["ACL", "USERS"],
        ["ACL", "WHOAMI"],
        ["ACL", "GETUSER", "default"],
        ["ACL", "DELUSER", "default"],
        ["ACL", "DELUSER", "bob", "nobody", "carol"],
        ["ACL", "USERS"],
        ["ACL", "SETUSER", "alice"],  # no modifier: as it was
        ["ACL", "GETUSER", "alice"],
        ["ACL"],
        ["ACL", "NOSUCH"],
        ["ACL", "HELP"],
        ["ACL", "CAT"],
        ["ACL", "CAT", "nosuch"],
        ["ACL", "cat", "read", "extra"],
        ["ACL", "GENPASS", "0"],
        ["ACL", "GENPASS", "4097"],
        ["ACL", "GENPASS", "abc"],
        ["ACL", "LOG", "abc"],
        ["ACL", "log", "1", "2"],
        ["ACL", "LOG", "-1"],
        ["ACL", "LOG", "RESET"],
        ["ACL", "LOG"],
        ["ACL", "SAVE"],
        ["ACL", "LOAD"],
        ["ACL", "DRYRUN", "alice", "get", "a1"],
        ["ACL", "DRYRUN", "alice", "get", "zz"],
        ["ACL", "DRYRUN", "alice", "set", "w1", "v"],
        ["ACL", "DRYRUN", "alice", "set", "a1", "v"],
        ["ACL", "DRYRUN", "alice", "publish", "news.1", "m"],
        ["ACL", "DRYRUN", "alice", "publish", "other", "m"],
        ["ACL", "DRYRUN", "alice", "flushall"],
        ["ACL", "DRYRUN", "dave", "get", "x1"],
        ["ACL", "DRYRUN", "dave", "set", "y1", "v"],
        ["ACL", "DRYRUN", "dave", "get", "y1"],
        ["ACL", "DRYRUN", "dave", "ping"],
        ["ACL", "DRYRUN", "nosuchuser", "get", "a"],
        ["ACL", "DRYRUN", "alice", "nosuchcommand"],
        ["ACL", "DRYRUN", "alice", "get"],
    ]
    try:
        _same(raw, commands)
        _same(raw, [["ACL", "GENPASS"], ["ACL", "GENPASS", "5"], ["ACL", "GENPASS", "130"]],
              mask=True)  # fmt: skip
    finally:
        for conn in raw:
            conn.close()


def _names(reply: object) -> set[str]:
    assert isinstance(reply, list)
    return {name.decode() for name in reply}


def test_acl_cat_lists_the_commands_redis_lists(servers: tuple[int, int]) -> None:
    """Every category's commands, for every command memlog has: derived from the command
    table, they must be what redis-server's ACL CAT says."""
    oracle, subject = client(servers[0]), client(servers[1])
    load_all()
    ours = {spec.full_name for spec in all_specs()}
    categories = execute(oracle, "ACL", "CAT")
    assert execute(subject, "ACL", "CAT") == categories
    assert isinstance(categories, list)
    for raw_category in categories:
        category = raw_category.decode()
        want, got = (_names(execute(c, "ACL", "CAT", category)) for c in (oracle, subject))
        missing = (want & ours) - got
        extra = {n for n in got - want if not n.startswith("memlog")}
        assert not missing and not extra, (category, sorted(missing), sorted(extra))


# -- what a user may run: commands, keys, channels, selectors ----------------------------------


def _as_user(port: int, protocol: int, user: str, password: str) -> RawConnection:
    conn = RawConnection(port, protocol)
    reply = conn.call("AUTH", user, password)
    assert reply == b"+OK\r\n", reply
    return conn


@pytest.mark.parametrize("protocol", [2, 3])
def test_permissions_are_enforced_as_redis_enforces_them(
    servers: tuple[int, int], protocol: int
) -> None:
    setup: list[Command] = [
        ["ACL", "SETUSER", "alice", "on", ">pw", "~a*", "%R~r*", "%W~w*", "&news.*",
         "+@read", "+@write", "-del", "+publish", "+subscribe", "+psubscribe", "+multi",
         "+exec", "+discard", "+select|0", "+config|get", "+acl|whoami", "+ping",
         "(~s* +@set)"],
        ["SET", "r1", "v"],
        ["SET", "a1", "v"],
    ]  # fmt: skip
    admin = _raw_pair(servers, 2)
    _same(admin, setup)
    users = (_as_user(servers[0], protocol, "alice", "pw"),
             _as_user(servers[1], protocol, "alice", "pw"))  # fmt: skip
    try:
        _same(
            users,
            [
                ["GET", "a1"], ["GET", "r1"], ["GET", "w1"], ["GET", "zz"],
                ["SET", "w1", "v"], ["SET", "r1", "v"], ["SET", "a2", "v"],
                ["GETSET", "w1", "v"],  # reads and writes: needs both
                ["MGET", "a1", "r1", "zz"], ["DEL", "a1"], ["EXISTS", "w1", "zz"],
                ["COPY", "r1", "w2"], ["COPY", "w1", "r2"], ["LMOVE", "a1", "zz", "LEFT", "LEFT"],
                ["SADD", "s1", "m"], ["SMEMBERS", "s1"], ["SADD", "a5", "m"],
                ["HSET", "s2", "f", "v"],
                ["CONFIG", "GET", "maxclients"], ["CONFIG", "SET", "maxclients", "10"],
                ["SELECT", "0"], ["SELECT", "1"], ["FLUSHALL"], ["ACL", "WHOAMI"],
                ["ACL", "LIST"], ["PING"],
                ["PUBLISH", "news.1", "m"], ["PUBLISH", "sport", "m"],
                ["MULTI"], ["GET", "a1"], ["GET", "zz"], ["EXEC"],
                ["MULTI"], ["GET", "a1"], ["DEL", "a1"], ["EXEC"],
                ["SUBSCRIBE", "news.x", "other"], ["PSUBSCRIBE", "news.*"],
            ],
        )  # fmt: skip
        _same(admin, [["DEL", "a1"]])
        # The refusals in the ACL LOG: the same entries (the client line and age aside).
        assert _log_entries(servers[1]) == _log_entries(servers[0])
    finally:
        for conn in (*admin, *users):
            conn.close()


def test_sort_by_and_get_patterns_need_every_key(servers: tuple[int, int]) -> None:
    raw = _raw_pair(servers, 2)
    users = (RawConnection(servers[0]), RawConnection(servers[1]))
    try:
        _same(raw, [["SET", "v1", "1"], ["LPUSH", "mylist", "1"]])
        for keys in (["~mylist"], ["~mylist", "~v*"], ["~mylist", "%W~*"], ["~mylist", "%R~*"]):
            _same(raw, [["ACL", "SETUSER", "sorter", "reset", "on", "nopass",
                         "(" + " ".join(["+sort", *keys]) + ")"]])  # fmt: skip
            _same(users, [
                ["AUTH", "sorter", "x"], ["SORT", "mylist", "BY", "v*"],
                ["SORT", "mylist", "GET", "v*"], ["SORT", "mylist", "BY", "nosort"],
                ["SORT", "mylist", "LIMIT", "0", "1", "GET", "#"], ["SORT", "mylist"],
            ])  # fmt: skip
    finally:
        _same(raw, [["ACL", "DELUSER", "sorter"]])
        for conn in (*raw, *users):
            conn.close()


def test_subscribers_are_closed_when_their_channel_is_revoked(servers: tuple[int, int]) -> None:
    for port in servers:
        admin = client(port)
        execute(admin, "ACL", "SETUSER", "carol", "on", ">pw", "+@all", "~*", "&news.*", "&x")
        news = _as_user(port, 2, "carol", "pw")
        news.call("SUBSCRIBE", "news.1")
        pattern = _as_user(port, 2, "carol", "pw")
        pattern.call("PSUBSCRIBE", "x")
        idle = _as_user(port, 2, "carol", "pw")
        execute(admin, "ACL", "SETUSER", "carol", "resetchannels", "&x")
        with pytest.raises(ConnectionError):
            for _ in range(50):
                news.call("PING")
                time.sleep(0.05)
        assert pattern.call("PING") == b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
        assert idle.call("PING") == b"+PONG\r\n"
        for conn in (news, pattern, idle):
            conn.close()
        admin.close()


def _log_entries(port: int, password: str | None = None) -> list[dict[bytes, object]]:
    conn = redis.Redis(port=port, password=password, socket_timeout=15)
    conn.response_callbacks.clear()
    try:
        entries = execute(conn, "ACL", "LOG")
    finally:
        conn.close()
    assert isinstance(entries, list)
    found = []
    for entry in entries:
        if not isinstance(entry, dict):
            entry = dict(zip(entry[::2], entry[1::2], strict=True))
        fields = entry
        assert isinstance(fields.pop(b"age-seconds"), (bytes, float))
        info = fields.pop(b"client-info")
        assert isinstance(info, bytes) and b" user=" in info
        found.append(fields)
    return found


@pytest.mark.parametrize("protocol", [2, 3])
def test_auth_hello_and_requirepass_match_redis(servers: tuple[int, int], protocol: int) -> None:
    admin = _raw_pair(servers, protocol)
    _same(
        admin,
        [
            ["AUTH", "secret"],  # no password configured for the default user
            ["AUTH", "a", "b", "c"],
            ["AUTH", "default", "wrong"],
            ["HELLO", str(protocol), "AUTH", "default", "wrong"],
            ["HELLO", str(protocol), "AUTH", "default", "anything", "SETNAME", "c1"],
            ["ACL", "SETUSER", "bob", "on", ">bobpw", "+@all", "~*"],
            ["ACL", "SETUSER", "carol", "off", ">carolpw", "+@all", "~*"],
            ["CONFIG", "SET", "requirepass", "secret"],
            ["CONFIG", "GET", "requirepass"],
            ["ACL", "GETUSER", "default"],
            ["ACL", "WHOAMI"],  # authenticated before the password: still in
        ],
    )
    fresh = _raw_pair(servers, 2)
    try:
        _same(
            fresh,
            [
                ["GET", "k"], ["PING"], ["ACL", "WHOAMI"], ["ACL"], ["NOSUCH"],
                ["HELLO", "3"], ["HELLO", "2", "SETNAME", "x"], ["CLIENT", "GETNAME"],
                ["AUTH", "nope"], ["AUTH", "carol", "carolpw"], ["AUTH", "bob", "nope"],
                ["HELLO", "2", "AUTH", "bob", "bobpw", "SETNAME", "b1"],
                ["ACL", "WHOAMI"], ["CLIENT", "GETNAME"], ["AUTH", "secret"], ["ACL", "WHOAMI"],
                ["RESET"], ["GET", "k"], ["AUTH", "default", "secret"], ["GET", "k"],
            ],
        )  # fmt: skip
        assert _log_entries(servers[1], "secret") == _log_entries(servers[0], "secret")
        _same(admin, [["CONFIG", "SET", "requirepass", ""], ["ACL", "GETUSER", "default"]])
    finally:
        for conn in (*admin, *fresh):
            conn.close()


def test_gets_on_the_fast_path_are_checked_too(servers: tuple[int, int]) -> None:
    """Plain GETs in a pipeline are answered by the GET fast path for the default user; a
    user with key patterns gets them checked, answer by answer, as redis-server does."""
    _same(_raw_pair(servers, 2), [
        ["ACL", "SETUSER", "alice", "on", ">pw", "~a*", "+get", "+set"],
        ["SET", "a1", "one"], ["SET", "b1", "two"],
    ])  # fmt: skip
    replies = []
    for port in servers:
        conn = _as_user(port, 2, "alice", "pw")
        conn.send(["GET", "a1"], ["GET", "b1"], ["GET", "a1"], ["GET", "nope"])
        replies.append(conn.replies(4))
        conn.close()
    assert replies[1] == replies[0]
    assert replies[0][1].startswith(b"-NOPERM")


def test_the_common_reads_on_the_fast_path_are_checked_too(servers: tuple[int, int]) -> None:
    """MGET, HGETALL, LRANGE and the other fast reads (cacheshim.protocol.fastreads) are
    answered by the fast path only for a user who may run anything; a user limited to some
    keys and commands has each of them checked, in a pipeline, as redis-server does."""
    _same(_raw_pair(servers, 2), [
        ["ACL", "SETUSER", "reader", "on", ">pw", "~a*", "+@read", "-hgetall", "-zrange"],
        ["DEL", "a1", "b1", "ah", "bh", "al", "bl", "as", "az"],
        ["SET", "a1", "one"], ["SET", "b1", "two"], ["HSET", "ah", "f", "v"],
        ["HSET", "bh", "f", "v"], ["RPUSH", "al", "x", "y"], ["RPUSH", "bl", "x"],
        ["SADD", "as", "m"], ["ZADD", "az", "1", "m"],
    ])  # fmt: skip
    reads = [
        ["MGET", "a1", "b1"], ["MGET", "a1"], ["EXISTS", "a1", "bh"], ["TTL", "b1"],
        ["PTTL", "a1"], ["STRLEN", "b1"], ["HGET", "ah", "f"], ["HGET", "bh", "f"],
        ["HMGET", "bh", "f"], ["HGETALL", "ah"], ["LRANGE", "al", "0", "-1"],
        ["LRANGE", "bl", "0", "-1"], ["LINDEX", "bl", "0"], ["LLEN", "al"], ["SMEMBERS", "as"],
        ["SISMEMBER", "bs", "m"], ["ZSCORE", "az", "m"], ["ZRANK", "bz", "m"],
        ["ZRANGE", "az", "0", "-1"], ["GET", "a1"], ["GET", "b1"],
    ]  # fmt: skip
    for protocol in (2, 3):
        replies = []
        for port in servers:
            conn = _as_user(port, protocol, "reader", "pw")
            conn.send(*reads)
            replies.append(conn.replies(len(reads)))
            conn.close()
        assert replies[1] == replies[0], protocol
        answers = zip(reads, replies[0], strict=True)
        refused = [args[0] for args, reply in answers if reply.startswith(b"-")]
        want = "MGET EXISTS TTL STRLEN HGET HMGET HGETALL LRANGE LINDEX SISMEMBER ZRANK ZRANGE GET"
        assert refused == want.split(), refused


def _sorted_commands(user: object) -> object:
    assert isinstance(user, dict)
    return {k: sorted(v) if k == "commands" else v for k, v in user.items()}


def test_redis_py_acl_methods(servers: tuple[int, int]) -> None:
    """redis-py's own ACL and AUTH methods, against memlog, give what they give against
    redis-server."""
    results = []
    for port in servers:
        conn = redis.Redis(port=port, socket_timeout=15, decode_responses=True)
        got: list[object] = [
            conn.acl_setuser("alice", enabled=True, passwords=["+pw"], keys=["a*"],
                             channels=["ch*"], commands=["+get", "+set", "+@hash"]),
            # (single commands come in the order of Redis's command hash table: sorted here)
            _sorted_commands(conn.acl_getuser("alice")),
            conn.acl_users(),
            conn.acl_whoami(),
            conn.acl_dryrun("alice", "get", "a1"),
            conn.acl_dryrun("alice", "get", "b1"),
            sorted(conn.acl_cat("hash")),
            len(conn.acl_genpass()),
            conn.acl_log_reset(),
        ]  # fmt: skip
        user = redis.Redis(port=port, socket_timeout=15, username="alice", password="pw",
                           decode_responses=True)  # fmt: skip
        got.append(user.set("a1", "v"))
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.get("b1")
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.flushall()
        got.append(user.get("a1"))
        log = conn.acl_log()
        got.append([(e["reason"], e["object"], e["username"], e["count"]) for e in log])
        got.append(conn.acl_deluser("alice"))
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=port, username="alice", password="pw").ping()
        with pytest.raises(redis.exceptions.AuthenticationError):
            conn.auth("whatever")
        user.close()
        conn.close()
        results.append(got)
    assert results[1] == results[0]


def test_deleting_a_user_closes_its_connections(servers: tuple[int, int]) -> None:
    for port in servers:
        admin = client(port)
        execute(admin, "ACL", "SETUSER", "bob", "on", ">pw", "+@all", "~*")
        bob = _as_user(port, 2, "bob", "pw")
        other = _as_user(port, 2, "default", "x")
        assert execute(admin, "ACL", "DELUSER", "bob") == 1
        # Closed by the server: the next call finds the connection gone.
        with pytest.raises(ConnectionError):
            for _ in range(50):
                bob.call("PING")
                time.sleep(0.05)
        assert other.call("PING") == b"+PONG\r\n"
        bob.close()
        other.close()
        admin.close()


# -- the users travel through the log ----------------------------------------------------------


def test_users_set_on_one_shim_are_enforced_by_the_other(two_shims: Memlog) -> None:
    first, second = (client(port) for port in two_shims.shim_ports[:2])
    try:
        for conn in (first, second):
            _clean(conn)
        execute(first, "ACL", "SETUSER", "alice", "on", ">pw", "~a*", "+get", "+set")
        same_index([first, second])
        assert execute(second, "ACL", "LIST") == execute(first, "ACL", "LIST")
        alice = _as_user(two_shims.shim_ports[1], 2, "alice", "pw")
        assert alice.call("SET", "a1", "v") == b"+OK\r\n"
        assert alice.call("SET", "b1", "v").startswith(b"-NOPERM")
        # requirepass given to the second shim: the first asks new clients for it.
        execute(second, "CONFIG", "SET", "requirepass", "secret")
        same_index([first, second])
        fresh = RawConnection(two_shims.shim_ports[0])
        assert fresh.call("GET", "a1") == b"-NOAUTH Authentication required.\r\n"
        assert fresh.call("AUTH", "secret") == b"+OK\r\n"
        assert execute(first, "CONFIG", "GET", "requirepass") == [b"requirepass", b"secret"]
        # DELUSER on the first shim closes alice's connection on the second.
        execute(first, "ACL", "DELUSER", "alice")
        with pytest.raises(ConnectionError):
            for _ in range(100):
                alice.call("PING")
                time.sleep(0.05)
        fresh.close()
    finally:
        for conn in (first, second):
            _clean(conn)
            conn.close()


def test_users_survive_a_snapshot_round_trip(tmp_path: Path) -> None:
    """The users, requirepass and the seeded mark are in the snapshot (memlog-acl), and a
    fresh applier restored from it answers as the one it was taken from."""
    load_all()
    applier = Applier()
    commands = [
        ["ACL", "SETUSER", "alice", "on", ">pw", "~a*", "&c*", "+@read", "(%W~w* +set)"],
        ["CONFIG", "SET", "requirepass", "secret"],
        ["SET", "k", "v"],
    ]
    for index, args in enumerate(commands, 1):
        record = record_pb2.Record(db=0, time_ms=1_700_000_000_000 + index)
        record.commands.add(args=[a.encode() for a in args])
        _, reply = applier.apply(index, record.SerializeToString())
        assert reply == b"OK" or getattr(reply, "text", "OK") == "OK", reply
    path = tmp_path / "snap.rdb"
    with path.open("wb") as out:
        write_rdb(applier.keyspace, out, snapshot_state(applier))
    with path.open("rb") as inp:
        loaded = read_rdb(inp)
    fresh = Applier()
    restore(fresh, loaded)
    assert fresh.acl.list_lines() == applier.acl.list_lines()
    assert fresh.acl.requirepass == b"secret" and fresh.acl.seeded
    assert fresh.acl.default.check_password(b"secret")
    # Without ACL records the snapshot holds no ACL field (and restores the default user).
    plain = Applier()
    assert snapshot_state(plain).acl == b""
    assert Users().list_lines() == [b"user default on nopass ~* &* +@all"]


def test_acl_file_seeds_the_users_once_and_acl_load_save_use_it(tmp_path: Path) -> None:
    aclfile = tmp_path / "users.acl"
    aclfile.write_text(
        "user default on nopass ~* &* +@all\n"
        "user alice on #" + hashlib.sha256(b"pw").hexdigest() + " ~a* +get\n"
    )
    m = Memlog(tmp_path / "m", shims=2, shim_args=["--aclfile", str(aclfile)])
    try:
        m.start()
        conns = [client(port) for port in m.shim_ports]
        same_index(conns)
        want = [
            b"user alice on #"
            + hashlib.sha256(b"pw").hexdigest().encode()
            + b" ~a* resetchannels -@all +get",
            b"user default on nopass ~* &* +@all",
        ]
        for conn in conns:
            assert execute(conn, "ACL", "LIST") == want
        # Both shims proposed a seed; only the first in the log loaded anything.
        # A change, then a restart: the file does not seed again (the log has users).
        execute(conns[0], "ACL", "SETUSER", "bob", "on", ">x")
        stop_process(m.shim_procs[1])
        m.start_shim(1)
        restarted = client(m.shim_ports[1])
        same_index([conns[0], restarted])
        assert b"bob" in execute(restarted, "ACL", "USERS")  # type: ignore[operator]
        # ACL SAVE writes the file; an edited file comes back with ACL LOAD, on every shim.
        assert execute(conns[0], "ACL", "SAVE") == b"OK"
        assert b"user bob on" in aclfile.read_bytes()
        aclfile.write_text("user carol on nopass +@all ~*\n")
        assert execute(restarted, "ACL", "LOAD") == b"OK"
        same_index([conns[0], restarted])
        for conn in (conns[0], restarted):
            assert execute(conn, "ACL", "USERS") == [b"carol", b"default"]
        aclfile.write_text("user carol on +nosuch\n")
        with pytest.raises(redis.ResponseError, match="Unknown command or category name"):
            execute(conns[0], "ACL", "LOAD")
        assert execute(conns[0], "ACL", "USERS") == [b"carol", b"default"]
    finally:
        m.stop()


def _first_log_index(m: Memlog) -> int:
    """The smallest first index the log nodes report (what a trim left)."""
    assert m.cluster is not None
    addresses = m.cluster.addresses()

    async def ask() -> int:
        async with LogClient(list(addresses)) as log:
            return min([(await log.status(a)).first_index for a in log.addresses])

    return asyncio.run(ask())


def test_a_shim_started_after_the_log_was_trimmed_gets_the_users_from_the_snapshot(
    tmp_path: Path,
) -> None:
    m = Memlog(
        tmp_path, shims=1,
        log_args=["--trim-interval-s", "0.5", "--trim-keep-entries", "5",
                  "--trim-keep-seconds", "0"],
    )  # fmt: skip
    try:
        m.start()
        first = client(m.shim_ports[0])
        execute(first, "ACL", "SETUSER", "alice", "on", ">pw", "~a*", "+get", "(%W~w* +set)")
        acl_index = applied_index(first)
        for i in range(50):  # records after the ACL one, so a trim can drop it
            execute(first, "SET", f"k{i}", "v")
        assert m.cluster is not None
        done = subprocess.run(
            [sys.executable, "-m", "cacheshim.launcher", "snapshot",
             "--log", ",".join(m.cluster.addresses()), "--temp-dir", str(m.root)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        wait_until(
            lambda: _first_log_index(m) > acl_index, 60, "the log trimmed past the ACL record"
        )
        m.start_shim(1)  # a new shim: the ACL record is no longer in the log
        assert "restored snapshot" in (tmp_path / "shim-2.log").read_text(), m.log_tail(
            "shim-2.log"
        )
        second = client(m.shim_ports[1])
        same_index([first, second])
        assert execute(second, "ACL", "LIST") == execute(first, "ACL", "LIST")
        alice = _as_user(m.shim_ports[1], 2, "alice", "pw")
        assert alice.call("GET", "a1") == b"$-1\r\n"
        assert alice.call("GET", "b1").startswith(b"-NOPERM")
        assert alice.call("SET", "w1", "v") == b"+OK\r\n"
        alice.close()
    finally:
        m.stop()
