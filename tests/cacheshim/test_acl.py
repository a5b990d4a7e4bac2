"""Issue 17, Redis ACL: AUTH, HELLO AUTH, ACL SETUSER & co., requirepass, and the checks of
every command against the user's command, key and channel rules, compared with redis-server
7.0.15 byte for byte (RESP2 and RESP3) where the output can be compared; users replicated
through the log (two shims, a restart from a snapshot, an ACL file's seed); redis-py's own
ACL methods."""

from __future__ import annotations

import os
import re
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
from tests.cacheshim.harness import (
    Memlog,
    RedisServer,
    client,
    execute,
    outcome,
    same_index,
    stop_process,
    wait_until,
)
from tests.cacheshim.rawresp import RawConnection

Pair = tuple[redis.Redis, redis.Redis]
Command = Sequence[bytes | str | int]
# Users the tests create; deleted before and after each test on both servers.
TEST_USERS = ("alice", "bob", "carol", "dave", "sel", "nobody", "first")
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
        want = {n.decode() for n in execute(oracle, "ACL", "CAT", category)}  # type: ignore[union-attr]
        got = {n.decode() for n in execute(subject, "ACL", "CAT", category)}  # type: ignore[union-attr]
        missing = (want & ours) - got
        extra = {n for n in got - want if not n.startswith("memlog")}
        assert not missing and not extra, (category, sorted(missing), sorted(extra))
