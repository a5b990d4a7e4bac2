"""Blocking commands (issue 5): waiting, waking through any shim, timeouts, fairness.

Two levels:

- the machinery (`cacheshim.blocking.Blocker`) against an in-process log whose order the test
  decides (`FakeLog`): FIFO per key, a woken client that finds nothing keeps its place, a
  timeout while a record is in flight waits for its result, a client that disconnects takes
  nothing, CLIENT UNBLOCK, a log that refuses the write. No processes, no sleeps beyond
  the timeouts under test.
- a real deployment with two shims beside redis-server: a client blocked on one shim is
  woken by a push through the other, and the bytes it receives (served, timed out,
  unblocked, pipelined after a block) are the bytes redis-server sends in the same scenario.

Nothing sleeps and hopes: the tests wait for conditions (a client shown blocked by CLIENT
LIST, a reply) with deadlines.

Over 500 lines: the machinery and every blocking command, at both levels, share the fake log
and the shim fixtures.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from functools import partial
from typing import Any

import pytest

from cacheshim.apply import Applier
from cacheshim.blocking import (
    DEADLINE_GRACE_MS,
    Blocker,
    WouldBlock,
    parse_timeout,
    timeout_argument,
    unblock_record,
)
from cacheshim.commands import load_all
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError
from cacheshim.protocol.resp import NULL_ARRAY, Error, Reply
from cacheshim.v1 import record_pb2
from tests.cacheshim.harness import Memlog, RedisServer, client, same_index, wait_until
from tests.cacheshim.rawresp import RawConnection
from tests.cacheshim.rawresp import without_callbacks as bare

Args = Sequence[bytes | str | int]


# -- the machinery, against a log the test orders -----------------------------------------------


class FakeLog:
    """An in-process log for one shim's Blocker: submitted records wait in `pending` until
    `commit` applies them in order, the way the shim's apply loop does (the writer's future
    gets the apply result, then `after_apply` runs)."""

    shim_id = "shim-test"

    def __init__(self) -> None:
        load_all()
        self.applier = Applier()
        self.blocker = Blocker(self.applier, self)
        self.blocker.serving = True
        self.pending: list[tuple[record_pb2.Record, asyncio.Future[Reply] | None]] = []
        self._ids = itertools.count(1)

    def submit(self, record: record_pb2.Record) -> asyncio.Future[Reply]:
        record.shim_id = self.shim_id
        record.proposal_id = next(self._ids)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self.pending.append((record, future))
        return future

    def other(self, *args: str, first: bool = False) -> None:
        """A write from another shim, at the end of the log (or before everything pending)."""
        record = record_pb2.Record(db=0, time_ms=1, shim_id="other-shim")
        record.commands.add().args.extend(a.encode() for a in args)
        self.pending.insert(0 if first else len(self.pending), (record, None))

    def block(self, session_id: int, *args: str) -> asyncio.Future[Reply]:
        return self.blocker.execute(session_id, 0, [a.encode() for a in args])

    def commit(self, count: int | None = None) -> None:
        """Apply count pending records (all, and whatever they cause to be proposed)."""
        done = 0
        while self.pending and (count is None or done < count):
            record, future = self.pending.pop(0)
            index = self.applier.applied_index + 1
            applied, reply = self.applier.apply(index, record.SerializeToString())
            if future is not None and not future.done():
                future.set_result(reply)
            self.blocker.after_apply(applied, reply)
            done += 1

    def read(self, *args: str) -> Reply:
        from cacheshim.apply import run
        from cacheshim.commands import Ctx

        ctx = Ctx(self.applier.keyspace, 0, self.applier.time_ms)
        return run(ctx, [a.encode() for a in args])


def run_async(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def test_fifo_one_client_per_element_served_with_the_push() -> None:
    async def scenario() -> None:
        log = FakeLog()
        first, second = log.block(1, "BLPOP", "k", "0"), log.block(2, "BLPOP", "k", "0")
        log.commit()
        assert log.blocker.blocked_clients == 2 and not first.done() and not second.done()
        assert log.blocker.is_blocked(1) and log.blocker.is_blocked(2)
        log.other("RPUSH", "k", "x")
        log.commit(1)  # the push's record alone: the first client is served with it
        assert not log.pending and first.result() == [b"k", b"x"] and not second.done()
        log.other("RPUSH", "k", "y", "z")
        log.commit()
        assert second.result() == [b"k", b"y"]
        assert log.read("LRANGE", "k", "0", "-1") == [b"z"]
        assert log.blocker.blocked_clients == 0 and not log.applier.blocked
        assert not log.applier.keyspace.dbs[0].blocked_keys

    run_async(scenario)


def test_a_command_after_the_push_cannot_take_the_element_first() -> None:
    async def scenario() -> None:
        log = FakeLog()
        waiter = log.block(1, "BLPOP", "k", "0")
        log.commit()
        log.other("RPUSH", "k", "x")
        log.other("LPOP", "k")
        log.commit()
        assert waiter.result() == [b"k", b"x"]
        assert log.applier.keyspace.dbs[0].data.get(b"k") is None

    run_async(scenario)


def test_several_elements_serve_clients_in_order_while_the_key_has_some() -> None:
    async def scenario() -> None:
        log = FakeLog()
        greedy = log.block(1, "BLMPOP", "0", "1", "k", "LEFT", "COUNT", "10")
        modest = log.block(2, "BLPOP", "k", "0")
        log.commit()
        log.other("RPUSH", "k", "a", "b")
        log.commit()
        assert greedy.result() == [b"k", [b"a", b"b"]]
        assert not modest.done() and log.blocker.is_blocked(2)  # nothing left: waits on
        log.other("RPUSH", "k", "c", "d")
        log.commit()
        assert modest.result() == [b"k", b"c"]

    run_async(scenario)


def test_a_client_blocked_on_two_keys_leaves_both_queues_when_served() -> None:
    async def scenario() -> None:
        log = FakeLog()
        a, b = log.block(1, "BLPOP", "k1", "k2", "0"), log.block(2, "BLPOP", "k2", "0")
        log.commit()
        log.other("RPUSH", "k1", "x")
        log.commit()
        assert a.result() == [b"k1", b"x"] and not b.done()
        log.other("RPUSH", "k2", "y")
        log.commit()
        assert b.result() == [b"k2", b"y"]

    run_async(scenario)


def test_linked_and_circular_moves_are_served_within_the_push() -> None:
    """Redis's "Linked LMOVEs" and "Circular BRPOPLPUSH": what a served client pushes
    serves the clients blocked on that key, within the same record."""

    async def scenario() -> None:
        log = FakeLog()
        first = log.block(1, "BLMOVE", "list1", "list2", "RIGHT", "LEFT", "0")
        second = log.block(2, "BLMOVE", "list2", "list3", "LEFT", "RIGHT", "0")
        log.commit()
        log.other("RPUSH", "list1", "foo")
        log.commit()
        assert first.result() == b"foo" and second.result() == b"foo"
        assert log.read("LRANGE", "list3", "0", "-1") == [b"foo"]
        assert log.read("EXISTS", "list1", "list2") == 0

        one = log.block(3, "BRPOPLPUSH", "c1", "c2", "0")
        two = log.block(4, "BRPOPLPUSH", "c2", "c1", "0")
        log.commit()
        log.other("RPUSH", "c1", "foo")
        log.commit()
        assert one.result() == b"foo" and two.result() == b"foo"
        assert log.read("LRANGE", "c1", "0", "-1") == [b"foo"]
        assert log.read("EXISTS", "c2") == 0

    run_async(scenario)


def test_a_key_of_another_type_does_not_serve_a_list_client() -> None:
    """As Redis 7.0: a BLPOP client is served only by a list at its key."""

    async def scenario() -> None:
        log = FakeLog()
        waiter = log.block(1, "BLPOP", "k", "0")
        log.commit()
        log.other("SET", "k", "a string")
        log.commit()
        assert not waiter.done()
        log.other("DEL", "k")
        log.other("RPUSH", "k", "v")
        log.commit()
        assert waiter.result() == [b"k", b"v"]

    run_async(scenario)


async def _settle(log: FakeLog) -> None:
    """Apply everything pending, also what the callbacks that runs propose."""
    for _ in range(5):
        await asyncio.sleep(0)
        log.commit()
    await asyncio.sleep(0)


def test_timeouts_go_through_the_log() -> None:
    async def scenario() -> None:
        log = FakeLog()
        plain = log.block(1, "BLPOP", "k", "0.05")
        log.commit()
        assert log.blocker.clients_in_timeout_table == 1
        await asyncio.sleep(0.1)
        assert not plain.done() and len(log.pending) == 1  # its unblock record
        await _settle(log)
        assert plain.result() is NULL_ARRAY
        assert log.blocker.blocked_clients == 0 and not log.applier.keyspace.dbs[0].blocked_keys

        # the push lands before the unblock record: the client gets the element
        served = log.block(2, "BLPOP", "k", "0.05")
        log.commit()
        await asyncio.sleep(0.1)
        log.other("RPUSH", "k", "x", first=True)
        await _settle(log)
        assert served.result() == [b"k", b"x"]

        # the unblock record lands first: nil, and the element stays
        late = log.block(3, "BLPOP", "k", "0.05")
        log.commit()
        await asyncio.sleep(0.1)
        log.other("RPUSH", "k", "y")
        await _settle(log)
        assert late.result() is NULL_ARRAY and log.read("LRANGE", "k", "0", "-1") == [b"y"]

    run_async(scenario)


def test_a_client_that_disconnects_takes_nothing() -> None:
    async def scenario() -> None:
        log = FakeLog()
        gone = log.block(1, "BLPOP", "k", "0")
        stays = log.block(2, "BLPOP", "other", "0")
        log.commit()
        log.blocker.disconnected(1)
        assert gone.done() and not log.blocker.is_blocked(1)
        await _settle(log)
        assert log.applier.keyspace.dbs[0].blocked_keys == {b"other"}
        log.other("RPUSH", "k", "x")
        log.commit()
        assert log.read("LLEN", "k") == 1 and not stays.done()

        late = log.block(3, "BLPOP", "q", "0")
        log.blocker.disconnected(3)  # before its first record is even applied
        await _settle(log)
        assert late.done() and not log.blocker.is_blocked(3)
        assert log.blocker.blocked_clients == 1 and len(log.applier.blocked) == 1

    run_async(scenario)


def test_client_unblock() -> None:
    async def scenario() -> None:
        log = FakeLog()
        timeout = log.block(1, "BLPOP", "k", "0")
        error = log.block(2, "BLMOVE", "k", "d", "LEFT", "LEFT", "0")
        assert not log.blocker.unblock(1, error=False)  # not blocked yet: its record is pending
        log.commit()
        assert log.blocker.unblock(1, error=False) and log.blocker.unblock(2, error=True)
        assert not log.blocker.unblock(2, error=True) and not log.blocker.unblock(99, False)
        await _settle(log)
        assert timeout.result() is NULL_ARRAY and error.result() == Error(errors.UNBLOCKED)
        assert log.blocker.blocked_clients == 0 and not log.applier.blocked

    run_async(scenario)


def test_an_unblock_record_the_log_did_not_confirm_is_proposed_again() -> None:
    async def scenario() -> None:
        log = FakeLog()
        waiter = log.block(1, "BLPOP", "k", "0")
        log.commit()
        assert log.blocker.unblock(1, error=False)
        _, future = log.pending.pop()  # the unblock record: the log does not confirm it
        assert future is not None
        future.set_result(Error("ERR memlog: the write was not confirmed"))
        await asyncio.sleep(0)
        assert waiter.result() is NULL_ARRAY and len(log.applier.blocked) == 1
        await asyncio.sleep(0.7)
        assert len(log.pending) == 1  # asked again
        await _settle(log)
        assert not log.applier.blocked and not log.pending
        log.other("RPUSH", "k", "x")
        log.commit()
        assert log.read("LLEN", "k") == 1

    run_async(scenario)


def test_a_write_the_log_refused_answers_its_error() -> None:
    async def scenario() -> None:
        log = FakeLog()
        waiter = log.block(1, "BLPOP", "k", "0")
        _, future = log.pending.pop()
        assert future is not None
        future.set_result(Error("ERR memlog: the write was not confirmed"))
        assert await asyncio.wait_for(waiter, 5) == Error("ERR memlog: the write was not confirmed")
        assert not log.blocker.is_blocked(1)

    run_async(scenario)


def _record(shim_id: str, proposal_id: int, time_ms: int, *args: str) -> bytes:
    record = record_pb2.Record(db=0, time_ms=time_ms, shim_id=shim_id, proposal_id=proposal_id)
    record.commands.add().args.extend(a.encode() for a in args)
    return record.SerializeToString()


def test_blocked_clients_are_applied_state_the_same_on_every_replay() -> None:
    """Apply alone decides who is served: two appliers of one log agree, and a blocked
    client whose shim is gone is dropped at its deadline plus the grace, or by its shim's
    unblock_all when it starts again."""
    load_all()
    log = [
        _record("s1", 1, 1_000, "BLPOP", "k", "1"),  # its shim died: dropped at the deadline
        _record("s2", 1, 1_001, "BLPOP", "k", "0"),
        _record("s2", 2, 1_002, "BRPOP", "k", "0"),
        _record("s2", 3, 1_003, "BRPOP", "k", "0"),
        _record("s3", 1, 2_000 + DEADLINE_GRACE_MS, "RPUSH", "k", "a", "b"),
        _record("s3", 2, 2_001 + DEADLINE_GRACE_MS, "RPUSH", "k", "c"),
    ]
    results = []
    for _ in range(2):
        applier = Applier()
        served = []
        for index, payload in enumerate(log, 1):
            applier.apply(index, payload)
            served.append(list(applier.served))
        results.append((served, applier.keyspace.digest()))
    assert results[0] == results[1]
    served = results[0][0]
    assert served[4] == [("s2", 1, [b"k", b"a"]), ("s2", 2, [b"k", b"b"])]
    assert served[5] == [("s2", 3, [b"k", b"c"])]


def test_unblock_all_drops_the_clients_of_one_shim_id() -> None:
    load_all()
    applier = Applier()
    applier.apply(1, _record("s1", 1, 1_000, "BLPOP", "k", "0"))
    applier.apply(2, _record("s2", 1, 1_000, "BLPOP", "k", "0"))
    drop = unblock_record(1_001, every=True)
    drop.shim_id = "s1"
    assert applier.apply(3, drop.SerializeToString())[1] == 1
    applier.apply(4, _record("s3", 1, 1_002, "RPUSH", "k", "x"))
    assert applier.served == [("s2", 1, [b"k", b"x"])]


def test_inside_a_transaction_nothing_blocks() -> None:
    load_all()
    applier = Applier()
    record = record_pb2.Record(db=0, time_ms=1, transaction=True)
    for args in ([b"BLPOP", b"k", b"0"], [b"BLMOVE", b"k", b"d", b"LEFT", b"LEFT", b"0"]):
        record.commands.add().args.extend(args)
    assert applier.apply(1, record.SerializeToString())[1] == [NULL_ARRAY, None]


# -- timeouts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("0", 0), ("1", 1000), ("0.2", 200), ("1.5", 1500), ("0.0001", 1), ("1e-400", 1),
        ("-0.0001", 0), ("-0", 0), ("0x10", 16000), ("1e15", 10**18), ("0.001", 1),
        ("9223372036854775", 9223372036854775000), ("0.0015", 2), ("2.5", 2500),
    ],
)  # fmt: skip
def test_parse_timeout(text: str, millis: int) -> None:
    assert parse_timeout(text.encode()) == millis


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-1", errors.TIMEOUT_IS_NEGATIVE), ("inf", errors.TIMEOUT_IS_NEGATIVE),
        ("-inf", errors.TIMEOUT_IS_NEGATIVE), ("1e30", errors.TIMEOUT_IS_NEGATIVE),
        ("9223372036854776", errors.TIMEOUT_IS_NEGATIVE), ("1e16", errors.TIMEOUT_IS_NEGATIVE),
        ("nan", errors.TIMEOUT_NOT_A_FLOAT), ("abc", errors.TIMEOUT_NOT_A_FLOAT),
        ("", errors.TIMEOUT_NOT_A_FLOAT), (" 1", errors.TIMEOUT_NOT_A_FLOAT),
        ("1 ", errors.TIMEOUT_NOT_A_FLOAT),
    ],
)  # fmt: skip
def test_parse_timeout_errors(text: str, message: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_timeout(text.encode())
    assert caught.value.message == message


def test_timeout_argument_and_would_block() -> None:
    assert timeout_argument([b"BLPOP", b"a", b"b", b"7"]) == b"7"
    assert timeout_argument([b"blmpop", b"7", b"1", b"a", b"LEFT"]) == b"7"
    assert timeout_argument([b"BZMPOP", b"7", b"1", b"a", b"MIN", b"COUNT", b"2"]) == b"7"
    assert timeout_argument([b"BLMOVE", b"a", b"b", b"LEFT", b"LEFT", b"7"]) == b"7"
    assert WouldBlock((b"k",)).kind is None and WouldBlock((b"k",)).timeout_ms is None


# -- a real deployment: two shims beside redis-server ----------------------------------------------


class Server:
    """One server under test: where waiters connect, where pushers connect (another shim
    for memlog, the same server for redis-server), and an admin connection on the waiters'
    server to see who is blocked."""

    def __init__(self, name: str, wait_port: int, push_port: int) -> None:
        self.name = name
        self.wait_port = wait_port
        self.push_port = push_port
        self.admin = RawConnection(wait_port)
        self.pusher = RawConnection(push_port)
        self._opened: list[RawConnection] = [self.admin, self.pusher]

    def waiter(self, protocol: int = 2) -> RawConnection:
        conn = RawConnection(self.wait_port, protocol)
        self._opened.append(conn)
        client_id(conn)  # asked now: a blocked client answers nothing
        return conn

    def blocked(self, conn: RawConnection) -> bool:
        return b" flags=b " in self.admin.call("CLIENT", "LIST", "ID", client_id(conn))

    def blocked_clients(self) -> int:
        info = self.admin.call("INFO", "clients")
        return int(info.split(b"blocked_clients:")[1].split(b"\r\n")[0])

    def wait_blocked(self, conn: RawConnection) -> None:
        wait_until(lambda: self.blocked(conn), 10, f"a client to block on {self.name}")

    def close(self) -> None:
        for conn in self._opened:
            conn.close()


def client_id(conn: RawConnection) -> int:
    cached = getattr(conn, "client_id", None)
    if cached is None:
        cached = int(conn.call("CLIENT", "ID")[1:-2])
        conn.client_id = cached  # type: ignore[attr-defined]
    return int(cached)


@pytest.fixture
def servers(oracle_server: RedisServer, two_shims: Memlog) -> Iterator[tuple[Server, Server]]:
    """(redis-server, memlog with waiters on shim 1 and pushers on shim 2), both empty."""
    oracle = Server("redis-server", oracle_server.port, oracle_server.port)
    subject = Server("memlog", two_shims.shim_ports[0], two_shims.shim_ports[1])
    try:
        for server in (oracle, subject):
            server.pusher.call("FLUSHALL")
        # The waiters' shim has applied the flush once it answers a read after a write of
        # its own (its writes wait for their apply).
        subject.admin.call("SET", "sync", "1")
        subject.admin.call("DEL", "sync")
        yield oracle, subject
    finally:
        oracle.close()
        subject.close()


def both(servers: tuple[Server, Server], scenario: Callable[[Server], list[bytes]]) -> None:
    """Run the scenario on each server; what the clients received must be the same bytes."""
    want = scenario(servers[0])
    got = scenario(servers[1])
    assert got == want, f"redis-server: {want!r}\nmemlog:       {got!r}"


WAKES = [
    (["BLPOP", "nokey", "k", "0"], ["RPUSH", "k", "a", "b"]),
    (["BRPOP", "k", "nokey", "5"], ["LPUSH", "k", "a", "b"]),
    (["BLMOVE", "k", "dst", "RIGHT", "LEFT", "0"], ["RPUSH", "k", "a", "b"]),
    (["BRPOPLPUSH", "k", "dst", "0"], ["RPUSH", "k", "a"]),
    (["BLMPOP", "0", "2", "nokey", "k", "RIGHT", "COUNT", "5"], ["RPUSH", "k", "a", "b", "c"]),
    (["BLPOP", "k", "0"], ["LMOVE", "src", "k", "LEFT", "LEFT"]),
]


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize(("wait", "push"), WAKES, ids=[w[0][0] for w in WAKES])
def test_woken_by_a_push_through_the_other_shim(
    servers: tuple[Server, Server], wait: list[str], push: list[str], protocol: int
) -> None:
    def scenario(server: Server) -> list[bytes]:
        server.pusher.call("RPUSH", "src", "s")
        waiter = server.waiter(protocol)
        waiter.send(wait)
        server.wait_blocked(waiter)
        pushed = server.pusher.call(*push)
        reply = waiter.replies(1)[0]
        # Read where the waiter's record was applied before it was answered.
        state = [server.admin.call("LRANGE", key, "0", "-1") for key in ("k", "dst", "src")]
        server.admin.call("DEL", "k", "dst", "src")
        return [pushed, reply, *state]

    both(servers, scenario)


TIMEOUTS = [
    ["BLPOP", "nokey", "0.1"], ["BRPOP", "nokey", "other", "0.1"],
    ["BLMOVE", "nokey", "dst", "LEFT", "RIGHT", "0.1"], ["BRPOPLPUSH", "nokey", "dst", "0.1"],
    ["BLMPOP", "0.1", "1", "nokey", "LEFT"], ["BLPOP", "nokey", "0.0001"],
]  # fmt: skip


@pytest.mark.parametrize("protocol", [2, 3])
def test_timeouts_answer_redis_nil(servers: tuple[Server, Server], protocol: int) -> None:
    def scenario(server: Server) -> list[bytes]:
        waiter = server.waiter(protocol)
        replies = []
        for command in TIMEOUTS:
            start = time.monotonic()
            replies.append(waiter.call(*command))
            assert time.monotonic() - start >= 0.09 or command[-1] == "0.0001", command
        replies.append(waiter.call("PING"))
        return replies

    both(servers, scenario)


def test_waiting_clients_are_served_first_come_first_served(
    servers: tuple[Server, Server],
) -> None:
    def scenario(server: Server) -> list[bytes]:
        first, second, third = server.waiter(), server.waiter(), server.waiter()
        for conn, command in ((first, "BLPOP"), (second, "BRPOP"), (third, "BLPOP")):
            conn.send([command, "k", "0"])
            server.wait_blocked(conn)
        out = [server.pusher.call("RPUSH", "k", "one")]
        out.append(first.replies(1)[0])
        assert server.blocked(second) and server.blocked(third)
        out.append(server.pusher.call("RPUSH", "k", "two", "three"))
        out += [second.replies(1)[0], third.replies(1)[0]]
        # Asked where the waiters' pops were applied before they were answered: the pushers'
        # shim may not have applied them yet (reads there are not linearizable by default).
        out.append(server.admin.call("EXISTS", "k"))
        return out

    both(servers, scenario)


def test_a_blocked_client_that_disconnects_takes_nothing(servers: tuple[Server, Server]) -> None:
    def scenario(server: Server) -> list[bytes]:
        waiter = server.waiter()
        waiter.send(["BLPOP", "k", "0"])
        server.wait_blocked(waiter)
        gone = client_id(waiter)
        waiter.close()
        wait_until(
            lambda: b"id=%d " % gone not in server.admin.call("CLIENT", "LIST"),
            10,
            "the server to notice the closed connection",
        )
        out = [server.pusher.call("RPUSH", "k", "kept")]
        out.append(server.admin.call("BLPOP", "k", "0"))  # through the waiters' server
        return out

    both(servers, scenario)


def test_commands_pipelined_after_a_blocking_one_wait_for_it(
    servers: tuple[Server, Server],
) -> None:
    """Redis runs nothing of a blocked client's pipeline until it is unblocked: the LPUSH
    sent right after BLPOP does not feed it."""

    def scenario(server: Server) -> list[bytes]:
        waiter = server.waiter()
        waiter.send(["BLPOP", "k", "0.2"], ["LPUSH", "k", "v"], ["LLEN", "k"], ["BLPOP", "k", "0"])
        return waiter.replies(4)

    both(servers, scenario)


def test_client_list_info_and_client_unblock(servers: tuple[Server, Server]) -> None:
    def scenario(server: Server) -> list[bytes]:
        out = []
        for reason in ("TIMEOUT", "ERROR", None):
            waiter = server.waiter()
            waiter.send(["BRPOPLPUSH", "k", "d", "0"])
            server.wait_blocked(waiter)
            line = server.admin.call("CLIENT", "LIST", "ID", client_id(waiter))
            assert b" flags=b " in line and b" cmd=brpoplpush " in line, line
            wait_until(lambda: server.blocked_clients() == 1, 10, "INFO blocked_clients:1")
            if reason is None:
                out.append(server.admin.call("CLIENT", "UNBLOCK", client_id(waiter)))
            else:
                out.append(server.admin.call("CLIENT", "UNBLOCK", client_id(waiter), reason))
            out.append(waiter.replies(1)[0])
            out.append(server.admin.call("CLIENT", "UNBLOCK", client_id(waiter), "ERROR"))
            out.append(waiter.call("PING"))
        wait_until(lambda: server.blocked_clients() == 0, 10, "INFO blocked_clients:0")
        return out

    both(servers, scenario)


def test_a_key_of_another_type_keeps_the_client_waiting(servers: tuple[Server, Server]) -> None:
    def scenario(server: Server) -> list[bytes]:
        waiter = server.waiter()
        waiter.send(["BLPOP", "k", "0"])
        server.wait_blocked(waiter)
        out = [server.pusher.call("SET", "k", "text")]
        # The waiters' server has seen the SET once it reads the string there.
        wait_until(lambda: server.admin.call("TYPE", "k") == b"+string\r\n", 10, "the SET")
        out.append(server.admin.call("TYPE", "k"))
        assert server.blocked(waiter)
        out.append(server.pusher.call("DEL", "k"))
        out.append(server.pusher.call("RPUSH", "k", "v"))
        out.append(waiter.replies(1)[0])
        return out

    both(servers, scenario)


ZSET_WAKES = [
    (["BZPOPMIN", "nokey", "z", "0"], ["ZADD", "z", "1", "a", "2", "b"]),
    (["BZPOPMAX", "z", "5"], ["ZADD", "z", "1", "a", "2", "b"]),
    (["BZMPOP", "0", "1", "z", "MIN", "COUNT", "5"], ["ZADD", "z", "1", "a", "2", "b"]),
    (["BZPOPMIN", "z", "0"], ["ZUNIONSTORE", "z", "1", "src"]),
]


@pytest.mark.parametrize(("wait", "push"), ZSET_WAKES, ids=[w[0][0] for w in ZSET_WAKES])
def test_sorted_set_clients_are_served_before_the_push_replies(
    servers: tuple[Server, Server], wait: list[str], push: list[str]
) -> None:
    def scenario(server: Server) -> list[bytes]:
        server.pusher.call("ZADD", "src", "3", "c")
        waiter = server.waiter()
        waiter.send(wait)
        server.wait_blocked(waiter)
        pushed = server.pusher.call(*push)
        left = server.pusher.call("ZRANGE", "z", "0", "-1", "WITHSCORES")
        reply = waiter.replies(1)[0]
        server.pusher.call("DEL", "z", "src")
        return [pushed, left, reply]

    both(servers, scenario)


def test_linked_lmoves_are_served_before_the_push_replies(servers: tuple[Server, Server]) -> None:
    """Redis's "Linked LMOVEs": right after RPUSH replies, the element has moved on through
    both blocked clients; read on the pushers' server (for memlog another shim than the
    waiters', which applied the push and served the clients of the other shim with it)."""

    def scenario(server: Server) -> list[bytes]:
        first, second = server.waiter(), server.waiter()
        first.send(["BLMOVE", "list1", "list2", "RIGHT", "LEFT", "0"])
        server.wait_blocked(first)
        second.send(["BLMOVE", "list2", "list3", "LEFT", "RIGHT", "0"])
        server.wait_blocked(second)
        out = [server.pusher.call("RPUSH", "list1", "foo")]
        out += [server.pusher.call("LRANGE", key, "0", "-1") for key in ("list1", "list2", "list3")]
        out += [first.replies(1)[0], second.replies(1)[0]]
        if server.name == "memlog":  # both shims served the clients alike
            shims = [bare(client(server.wait_port)), bare(client(server.push_port))]
            try:
                same_index(shims)
            finally:
                for conn in shims:
                    conn.close()
            assert server.admin.call("DEBUG", "DIGEST") == server.pusher.call("DEBUG", "DIGEST")
        return out

    both(servers, scenario)


def test_circular_brpoplpush_is_served_before_the_push_replies(
    servers: tuple[Server, Server],
) -> None:
    def scenario(server: Server) -> list[bytes]:
        first, second = server.waiter(), server.waiter()
        first.send(["BRPOPLPUSH", "list1", "list2", "0"])
        server.wait_blocked(first)
        second.send(["BRPOPLPUSH", "list2", "list1", "0"])
        server.wait_blocked(second)
        out = [server.pusher.call("RPUSH", "list1", "foo")]
        out += [server.pusher.call("LRANGE", key, "0", "-1") for key in ("list1", "list2")]
        return [*out, first.replies(1)[0], second.replies(1)[0]]

    both(servers, scenario)


def test_a_push_served_to_a_blocked_client_touches_a_watched_key(
    servers: tuple[Server, Server],
) -> None:
    """Redis's "PUSH resulting from BRPOPLPUSH affect WATCH": the served BRPOPLPUSH pushes to
    dstlist with the LPUSH, before the watcher's EXEC (on the pushers' server)."""

    def scenario(server: Server) -> list[bytes]:
        server.pusher.call("SET", "somekey", "somevalue")
        blocked = server.waiter()
        blocked.send(["BRPOPLPUSH", "srclist", "dstlist", "0"])
        server.wait_blocked(blocked)
        watcher = RawConnection(server.push_port)
        try:
            out = [watcher.call("WATCH", "dstlist"), watcher.call("MULTI")]
            out.append(watcher.call("GET", "somekey"))
            out.append(server.pusher.call("LPUSH", "srclist", "element"))
            out.append(watcher.call("EXEC"))
        finally:
            watcher.close()
        return [*out, blocked.replies(1)[0]]

    both(servers, scenario)


def test_a_shim_that_starts_again_drops_its_blocked_clients(two_shims: Memlog) -> None:
    """A client blocked on a shim that is killed stays blocked in the applied state (the
    shim could not say otherwise); when the shim starts again it drops it before serving,
    so a later push is not taken by a client that no longer exists."""
    ports = two_shims.shim_ports
    pusher = RawConnection(ports[0])
    try:
        pusher.call("DEL", "ghost")
        waiter = RawConnection(ports[1])
        waiter.send(["BLPOP", "ghost", "0"])
        admin = RawConnection(ports[1])
        wait_until(
            lambda: b" flags=b " in admin.call("CLIENT", "LIST", "TYPE", "normal"), 10, "block"
        )
        admin.close()
        waiter.close()
        proc = two_shims.shim_procs[1]
        proc.kill()
        proc.wait()
        two_shims.start_shim(1)
        assert pusher.call("RPUSH", "ghost", "x") == b":1\r\n"
        assert pusher.call("LRANGE", "ghost", "0", "-1") == b"*1\r\n$1\r\nx\r\n"
        pusher.call("DEL", "ghost")
    finally:
        pusher.close()


def test_many_waiters_on_two_shims_get_every_element_once(two_shims: Memlog) -> None:
    """Clients blocked in loops on both shims while pushes arrive through both: each element
    is delivered to exactly one client, and nothing is left."""
    seed = int(os.environ.get("BLOCKING_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun: BLOCKING_SEED={seed})")
    rng = random.Random(seed)
    ports = two_shims.shim_ports[:2]
    elements = [f"e{i}" for i in range(40)]
    received: list[bytes] = []
    lock = threading.Lock()

    commands = {ports[0]: ["BLPOP", "q", "10"], ports[1]: ["BRPOP", "q", "10"]}

    def consume(port: int) -> None:
        conn = RawConnection(port)
        try:
            while True:
                reply = conn.call(*commands[port])
                if reply.endswith(b"$4\r\nstop\r\n"):
                    return
                if reply != b"*-1\r\n":
                    with lock:
                        received.append(reply)
        finally:
            conn.close()

    pushers = [RawConnection(port) for port in ports]
    pushers[0].call("DEL", "q")
    threads = [threading.Thread(target=consume, args=(ports[i % 2],)) for i in range(6)]
    try:
        for thread in threads:
            thread.start()
        for start in range(0, len(elements), 4):
            batch = elements[start : start + 4]
            rng.choice(pushers).call(rng.choice(["LPUSH", "RPUSH"]), "q", *batch)
        wait_until(lambda: len(received) == len(elements), 20, "every element delivered")
        for _ in threads:
            rng.choice(pushers).call("RPUSH", "q", "stop")
        for thread in threads:
            thread.join(20)
        assert all(not thread.is_alive() for thread in threads)
        got = sorted(reply.split(b"\r\n")[-2].decode() for reply in received)
        assert got == sorted(elements), f"seed {seed}"
        for conn in pushers:
            wait_until(partial(_is_reply, conn, ["EXISTS", "q"], b":0\r\n"), 10, "an empty q")
    finally:
        for conn in pushers:
            conn.close()


def _is_reply(conn: RawConnection, command: Args, reply: bytes) -> bool:
    return conn.call(*command) == reply
