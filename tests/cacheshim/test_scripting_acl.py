"""Issue 17, ACL inside scripts: the commands a script calls (redis.call, redis.pcall in EVAL,
EVALSHA, FCALL and their _RO forms) are checked against the calling user's command, key and
channel rules, as redis-server 7.0.15 checks them (its error words, redis.acl_check_cmd, the
ACL LOG's "lua" entries), compared byte for byte in RESP2 and RESP3; through two shims a
refused script is refused alike and both end with one digest; and at apply the check uses
the user named in the record, as the users stand at its index (a deleted sender's script is
refused on every shim)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from cacheshim.acl.users import DENIED_KEY
from cacheshim.apply import Applier
from cacheshim.commands import load_all
from cacheshim.protocol.resp import Error
from cacheshim.v1 import record_pb2
from tests.cacheshim.harness import Memlog, RedisServer, client, execute, same_index
from tests.cacheshim.rawresp import RawConnection
from tests.cacheshim.test_acl import _as_user, _clean, _log_entries, _raw_pair, _same

USER = ["ACL", "SETUSER", "alice", "on", ">pw", "~k*", "&ch*", "+@all", "-flushall"]
# A library whose functions call what alice may not (the admin loads it; alice calls them).
LIBRARY = """#!lua name=acllib
redis.register_function('wipe', function(keys, args) return redis.call('flushall') end)
redis.register_function('peek', function(keys, args) return redis.pcall('get', args[1]) end)
redis.register_function{function_name='ro_peek', flags={'no-writes'},
  callback=function(keys, args) return redis.call('get', args[1]) end}
redis.register_function('check', function(keys, args)
  return {redis.acl_check_cmd('get', 'k1'), redis.acl_check_cmd('get', 'secret')} end)
"""


def _reset(conn: redis.Redis) -> None:
    _clean(conn)
    execute(conn, "SCRIPT", "FLUSH")
    execute(conn, "FUNCTION", "FLUSH")


@pytest.fixture
def servers(oracle_server: RedisServer, memlog: Memlog) -> Iterator[tuple[int, int]]:
    admins = [client(oracle_server.port), client(memlog.shim_ports[0])]
    for conn in admins:
        _reset(conn)
    try:
        yield oracle_server.port, memlog.shim_ports[0]
    finally:
        for conn in admins:
            _reset(conn)
            conn.close()


SCRIPT_CASES: list[list[str]] = [
    # forbidden commands, keys and channels; call raises, pcall answers the error
    ["EVAL", "return redis.call('flushall')", "0"],
    ["EVAL", "return redis.pcall('flushall')", "0"],
    ["EVAL", "return redis.call('set', 'secret', 'x')", "0"],
    ["EVAL", "return redis.pcall('get', 'secret')", "0"],
    ["EVAL", "return redis.call('get', 'secret')", "1", "k1"],
    ["EVAL", "return redis.call('publish', 'other', 'm')", "0"],
    ["EVAL", "return redis.pcall('publish', 'other', 'm')", "0"],
    ["EVAL", "local r = redis.pcall('flushall'); return r['err']", "0"],
    ["EVAL", "return {pcall(redis.call, 'get', 'secret')}", "0"],
    # allowed calls still run, and the writes before a refusal stay
    ["EVAL", "return redis.call('set', 'k1', 'v1')", "0"],
    ["EVAL", "return redis.call('publish', 'ch1', 'm')", "0"],
    ["EVAL", "redis.call('set', 'k2', 'before'); return redis.call('del', 'secret')", "0"],
    ["GET", "k2"],
    # redis.acl_check_cmd: true or false, nothing logged; its own errors
    ["EVAL", "return {redis.acl_check_cmd('flushall'), redis.acl_check_cmd('get', 'secret'),"
             " redis.acl_check_cmd('get', 'k1'), redis.acl_check_cmd('publish', 'other', 'x'),"
             " redis.acl_check_cmd('publish', 'ch1', 'x'), redis.acl_check_cmd('ping')}", "0"],
    ["EVAL", "return redis.acl_check_cmd('nosuch')", "0"],
    ["EVAL", "return redis.acl_check_cmd()", "0"],
    # read-only forms and EVALSHA; the EVAL's own declared keys are checked at dispatch
    ["EVAL_RO", "return redis.call('get', 'secret')", "0"],
    ["EVAL_RO", "return redis.pcall('get', 'k1')", "0"],
    ["EVAL", "#!lua flags=no-writes\nreturn redis.call('get', 'secret')", "0"],
    ["SCRIPT", "LOAD", "return redis.call('flushall')"],
    ["EVALSHA", "e3a6ad3e4e2e0e3d8ab2b3eb4fd33da5b2d4f2c0", "0"],
    ["EVAL", "return 1", "1", "secret"],
    # in a transaction (one record at apply, carrying the user)
    ["MULTI"],
    ["EVAL", "return redis.call('flushall')", "0"],
    ["EVAL_RO", "return redis.pcall('get', 'secret')", "0"],
    ["SET", "k5", "v"],
    ["EXEC"],
    # functions
    ["FCALL", "wipe", "0"],
    ["FCALL", "peek", "0", "secret"],
    ["FCALL", "peek", "0", "k1"],
    ["FCALL_RO", "ro_peek", "0", "secret"],
    ["FCALL", "check", "0"],
]  # fmt: skip


@pytest.mark.parametrize("protocol", [2, 3])
def test_script_calls_are_checked_against_the_callers_rules_as_redis_does(
    servers: tuple[int, int], protocol: int
) -> None:
    admin = _raw_pair(servers, 2)
    _same(admin, [USER, ["SET", "secret", "s"], ["FUNCTION", "LOAD", LIBRARY]])
    cases = [list(c) for c in SCRIPT_CASES]
    sha = admin[0].call("SCRIPT", "LOAD", "return redis.call('flushall')")
    for case in cases:  # the sha of the loaded script, as redis-server computes it
        if case[0] == "EVALSHA":
            case[1] = sha.split(b"\r\n")[1].decode()
    users = (_as_user(servers[0], protocol, "alice", "pw"),
             _as_user(servers[1], protocol, "alice", "pw"))  # fmt: skip
    try:
        _same(users, cases)
        # Nothing forbidden happened: the secret is there, k2 was written before the refusal.
        _same(admin, [["GET", "secret"], ["GET", "k2"], ["DBSIZE"]])
        # The refusals in the ACL LOG, context "lua" (acl_check_cmd logs none).
        oracle_log, memlog_log = _log_entries(servers[0]), _log_entries(servers[1])
        assert memlog_log == oracle_log
        assert {e[b"context"] for e in oracle_log} == {b"lua", b"toplevel"}
    finally:
        for conn in (*admin, *users):
            conn.close()


def test_sort_patterns_in_a_script_need_every_key(servers: tuple[int, int]) -> None:
    admin = _raw_pair(servers, 2)
    _same(admin, [["ACL", "SETUSER", "alice", "on", ">pw", "~k*", "+@all"],
                  ["RPUSH", "klist", "1", "2"]])  # fmt: skip
    users = (_as_user(servers[0], 2, "alice", "pw"), _as_user(servers[1], 2, "alice", "pw"))
    try:
        _same(users, [
            ["EVAL", "return redis.pcall('sort', 'klist', 'by', 'x*')", "0"],
            ["EVAL", "return redis.pcall('sort', 'klist', 'get', '#')", "0"],
            ["EVAL", "return redis.call('sort', 'klist')", "0"],
        ])  # fmt: skip
    finally:
        for conn in (*admin, *users):
            conn.close()


def test_a_refused_script_is_refused_alike_through_either_shim(two_shims: Memlog) -> None:
    first, second = (client(port) for port in two_shims.shim_ports[:2])
    users: list[RawConnection] = []
    try:
        for conn in (first, second):
            _reset(conn)
        execute(first, *USER)
        execute(first, "SET", "secret", "s")
        same_index([first, second])
        users = [_as_user(port, 2, "alice", "pw") for port in two_shims.shim_ports[:2]]
        script = "redis.call('incr', 'k:n'); redis.call('flushall'); return 1"
        replies = [u.call("EVAL", script, "0") for u in users]
        assert replies[0] == replies[1], replies
        assert replies[0].startswith(
            b"-ERR The user executing the script can't run this command or subcommand script: "
        ), replies[0]
        # A script over 256 KiB travels in pieces (its record encoded by hand): checked too.
        big = users[1].call("EVAL", "return redis.call('flushall')", "0", "x" * 300_000)
        assert big.startswith(b"-ERR The user executing the script can't run"), big[:200]
        same_index([first, second])
        assert execute(first, "GET", "secret") == b"s"
        assert execute(first, "GET", "k:n") == b"2"
        digests = {execute(c, "DEBUG", "DIGEST") for c in (first, second)}
        assert len(digests) == 1 and digests != {b"0" * 40}, digests
        # Each shim logged the refusal of its own client only.
        for port in two_shims.shim_ports[:2]:
            entries = _log_entries(port)
            assert [(e[b"context"], e[b"object"], e[b"count"]) for e in entries] == [
                (b"lua", b"flushall", 1 if port == two_shims.shim_ports[0] else 2)
            ], entries
    finally:
        for user in users:
            user.close()
        for conn in (first, second):
            _reset(conn)
            conn.close()


# -- at apply: the record's user, as the users stand at its index -------------------------------


def _record(args: list[bytes], user: bytes = b"") -> bytes:
    record = record_pb2.Record(time_ms=1_000, user=user)
    record.commands.add().args.extend(args)
    return record.SerializeToString()


def test_apply_checks_the_records_user_as_of_its_index() -> None:
    load_all()
    script = b"redis.call('set', 'k1', 'v'); return redis.call('set', 'secret', 'x')"
    log = [
        _record([b"ACL", b"SETUSER", b"alice", b"on", b"nopass", b"~k*", b"+@all"]),
        _record([b"EVAL", script, b"0"], b"alice"),  # refused at its second call
        _record([b"EVAL", script, b"0"]),  # no user: a record from before the field
        _record([b"ACL", b"SETUSER", b"alice", b"~*"]),
        _record([b"EVAL", b"return redis.call('set', 'secret', 'y')", b"0"], b"alice"),
        _record([b"ACL", b"DELUSER", b"alice"]),
        _record([b"EVAL", b"return redis.call('set', 'k3', 'z')", b"0"], b"alice"),
        _record([b"GET", b"secret"]),
        _record([b"GET", b"k3"]),
    ]
    appliers = [Applier(), Applier()]
    results = []
    for applier in appliers:
        replies = []
        for index, payload in enumerate(log, start=1):
            _, reply = applier.apply(index, payload)
            replies.append((reply, list(applier.denied)))
        results.append((replies, applier.keyspace.digest()))
    assert results[0] == results[1]  # every shim alike
    replies, _ = results[0]
    refused, denied = replies[1]
    assert isinstance(refused, Error) and refused.message.startswith(
        "ERR The user executing the script can't access at least one of the keys mentioned in "
        "the command arguments script: "
    ), refused
    assert denied == [(DENIED_KEY, b"secret", b"alice")]
    assert not isinstance(replies[2][0], Error) and replies[2][1] == []
    assert not isinstance(replies[4][0], Error) and replies[4][1] == []  # ~* as of its index
    assert replies[6] == (
        Error("NOPERM this user has no permissions to run the 'eval' command"),
        [],
    )
    assert replies[7][0] == b"y" and replies[8][0] is None
