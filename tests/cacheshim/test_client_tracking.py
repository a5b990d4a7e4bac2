"""CLIENT TRACKING (client-side caching): the same command sequences against redis-server and
memlog, the exact bytes of every reply and push compared (RESP3 pushes, RESP2 redirection to
a client subscribed to __redis__:invalidate); then invalidations across two shims: a write
through one shim reaches a client that read the key through the other."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import pytest

from cacheshim.apply import Applier
from cacheshim.commands import load_all
from cacheshim.protocol.resp import Push, Reply
from cacheshim.server import record_for
from cacheshim.tracking import NOBODY, By, ClientTracking, Read, Tracking
from cacheshim.types.keyspace import FLUSHED
from tests.cacheshim.harness import Memlog, RedisServer, wait_until
from tests.cacheshim.rawresp import RawConnection

Args = tuple[bytes | str | int, ...]
_tokens = itertools.count()


class Peer:
    """A raw connection; `exchange` answers every frame its commands brought, up to the
    reply of a PING sent after them (pushes that arrived before included)."""

    def __init__(self, port: int, protocol: int = 2) -> None:
        self.raw = RawConnection(port, protocol)

    def exchange(self, *commands: Args) -> list[bytes]:
        token = f"sentinel-{next(_tokens)}".encode()
        self.raw.send(*commands, (b"PING", token))
        plain = b"$%d\r\n%s\r\n" % (len(token), token)
        subscribed = b"*2\r\n$4\r\npong\r\n" + plain
        frames: list[bytes] = []
        while True:
            frame = self.raw.replies(1)[0]
            if frame == plain:
                return [*frames, b"<ping>"]
            if frame == subscribed:
                return [*frames, b"<subscribed ping>"]
            frames.append(frame)

    def call(self, *args: bytes | str | int) -> bytes:
        return self.raw.call(*args)

    def close(self) -> None:
        self.raw.close()


@dataclass
class Side:
    """The clients of one server in a scenario, by name."""

    port: int
    peers: dict[str, Peer] = field(default_factory=dict)

    def peer(self, name: str, protocol: int) -> Peer:
        if name not in self.peers:
            self.peers[name] = Peer(self.port, protocol)
        return self.peers[name]


class Scenario:
    """The same clients on redis-server and on the shim; `step` runs commands on one client
    of each and compares every frame that client then has (client ids are replaced by the
    client's name, as they differ between the servers)."""

    def __init__(self, oracle_port: int, subject_port: int) -> None:
        self.sides = (Side(oracle_port), Side(subject_port))
        self.ids: tuple[dict[str, int], dict[str, int]] = ({}, {})

    def client(self, name: str, protocol: int = 2) -> None:
        for side, ids in zip(self.sides, self.ids, strict=True):
            reply = side.peer(name, protocol).call("CLIENT", "ID")
            ids[name] = int(reply[1:-2])

    def _args(self, i: int, command: Args) -> Args:
        ids = self.ids[i]
        return tuple(ids[a[1:]] if isinstance(a, str) and a.startswith("@") else a for a in command)

    def _names(self, i: int, frames: list[bytes]) -> list[bytes]:
        out = []
        for frame in frames:
            if b"redir" not in frame:  # (ids appear in TRACKINGINFO and redir-broken only)
                out.append(frame)
                continue
            for name, client_id in self.ids[i].items():
                frame = frame.replace(b":%d\r\n" % client_id, b":<%s>\r\n" % name.encode())
            out.append(frame)
        return out

    def step(self, name: str, *commands: Args) -> list[bytes]:
        got = []
        for i, side in enumerate(self.sides):
            peer = side.peers[name]
            got.append(self._names(i, peer.exchange(*(self._args(i, c) for c in commands))))
        assert got[1] == got[0], f"{name} {commands!r}: redis-server {got[0]!r}, memlog {got[1]!r}"
        return got[0]

    def close(self) -> None:
        for side in self.sides:
            for peer in side.peers.values():
                peer.close()


@pytest.fixture
def scenario(oracle_server: RedisServer, memlog: Memlog) -> Iterator[Scenario]:
    made = Scenario(oracle_server.port, memlog.shim_ports[0])
    made.client("admin")
    made.step("admin", ("FLUSHALL",))
    try:
        yield made
    finally:
        made.close()


def test_resp3_default_mode_invalidations_match_redis(scenario: Scenario) -> None:
    s = scenario
    s.client("c", 3)
    s.client("w")
    s.step("c", ("CLIENT", "TRACKING", "on"))
    s.step("w", ("SET", "k1", "1"), ("SET", "k2", "2"), ("HSET", "h", "f", "v"))
    s.step("c", ("GET", "k1"), ("MGET", "k2", "nokey"), ("HGET", "h", "f"))
    s.step("w", ("SET", "k1", "x"), ("INCR", "k2"), ("SET", "nokey", "y"))
    s.step("c")  # one push per key, in the writes' order
    s.step("w", ("SET", "k1", "again"))
    s.step("c")  # forgotten once invalidated
    # Its own writes: the reply first, then the push (HDEL; a transaction).
    s.step("c", ("HGET", "h", "f"), ("HDEL", "h", "f"))
    s.step("c", ("MSET", "a", "1", "b", "2"), ("GET", "a"))
    s.step("c", ("MULTI",), ("INCR", "a"), ("GET", "b"), ("EXEC",))
    s.step("w", ("SET", "b", "3"))  # read inside the transaction: remembered
    s.step("c")


def test_flushes_send_nil_to_every_tracking_client(scenario: Scenario) -> None:
    s = scenario
    s.client("c", 3)
    s.client("b", 3)
    s.client("w")
    s.step("c", ("CLIENT", "TRACKING", "on"), ("GET", "k"))
    s.step("b", ("CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "zz"))
    s.step("w", ("FLUSHDB",))
    s.step("c")
    s.step("b")
    s.step("w", ("SET", "k", "1"))  # the table was emptied: no push
    s.step("c")
    s.step("c", ("GET", "k"), ("MULTI",), ("FLUSHALL",), ("EXEC",))
    s.step("c", ("INFO", "nothing"))


def test_redirect_to_a_resp2_subscriber_and_broken_redirect(scenario: Scenario) -> None:
    s = scenario
    s.client("sub")
    s.client("c", 3)
    s.client("c2")
    s.client("w")
    s.step("sub", ("SUBSCRIBE", "__redis__:invalidate"))
    s.step("c", ("CLIENT", "TRACKING", "on", "REDIRECT", "@sub"), ("CLIENT", "TRACKINGINFO"))
    s.step("c2", ("CLIENT", "TRACKING", "on", "REDIRECT", "@sub"))
    s.step("c", ("GET", "k1"), ("GET", "k2"))
    s.step("c2", ("GET", "k2"))
    s.step("w", ("MSET", "k1", "1", "k2", "2"))
    s.step("sub")
    s.step("c")  # nothing for it: its messages go to sub
    s.step("c", ("CLIENT", "TRACKINGINFO"), ("CLIENT", "TRACKING", "on", "OPTIN"))
    s.step("c", ("GET", "k1"), ("CLIENT", "CACHING", "yes"), ("GET", "k2"))
    s.step("w", ("MSET", "k1", "1", "k2", "2"))
    s.step("sub")
    s.step("c", ("CLIENT", "TRACKINGINFO"))
    # The client redirected to leaves: the next invalidation says so (RESP3 only).
    s.step("c", ("CLIENT", "TRACKING", "off"), ("CLIENT", "TRACKING", "on", "REDIRECT", "@sub"))
    s.step("c", ("GET", "k1"))
    for side, ids in zip(s.sides, s.ids, strict=True):
        side.peers.pop("sub").close()
        gone = partial(_gone, side.peers["admin"], ids["sub"])
        wait_until(gone, 10, "the subscriber's connection closed")
    s.step("w", ("SET", "k1", "3"))
    s.step("c", ("CLIENT", "TRACKINGINFO"))


def _gone(peer: Peer, client_id: int) -> bool:
    return b"id=%d " % client_id not in peer.call("CLIENT", "LIST")


def test_bcast_prefixes_and_noloop_match_redis(scenario: Scenario) -> None:
    s = scenario
    s.client("sub")
    s.client("c")
    s.client("w")
    s.step("sub", ("SUBSCRIBE", "__redis__:invalidate"))
    s.step("c", ("CLIENT", "TRACKING", "on", "BCAST", "REDIRECT", "@sub", "PREFIX", "a:"))
    s.step("c", ("CLIENT", "TRACKING", "on", "BCAST", "REDIRECT", "@sub", "PREFIX", "b:"))
    s.step(
        "w", ("MULTI",), ("SET", "a:2", "1"), ("SET", "a:1", "1"), ("SET", "c:1", "1"), ("EXEC",)
    )
    s.step("sub")
    s.step("w", ("SET", "b:1", "1"))
    s.step("sub")
    s.step("c", ("CLIENT", "TRACKINGINFO"))
    s.step("c", ("CLIENT", "TRACKING", "off"))
    s.step("c", ("CLIENT", "TRACKING", "on", "BCAST", "REDIRECT", "@sub", "NOLOOP"))
    s.step("c", ("SET", "mine", "1"))
    s.step("w", ("SET", "theirs", "1"))
    s.step("sub")
    s.step("c", ("CLIENT", "TRACKING", "off"))
    s.step("c", ("CLIENT", "TRACKING", "on", "REDIRECT", "@sub", "NOLOOP"))
    s.step("c", ("MGET", "x", "y"))
    s.step("c", ("SET", "x", "1"))
    s.step("w", ("SET", "y", "1"))
    s.step("sub")


ERROR_CASES: list[Args] = [
    ("CLIENT", "TRACKING", "on", "PREFIX", "a"),
    ("CLIENT", "TRACKING", "on", "BCAST", "OPTIN"),
    ("CLIENT", "TRACKING", "on", "OPTIN", "OPTOUT"),
    ("CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "FOOBAR", "PREFIX", "FOO"),
    ("CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "FOO", "PREFIX", "FOOBAR"),
    ("CLIENT", "TRACKING", "on", "REDIRECT", "999999"),
    ("CLIENT", "TRACKING", "on", "REDIRECT", "x"),
    ("CLIENT", "TRACKING", "on", "REDIRECT", "@c", "REDIRECT", "@c"),
    ("CLIENT", "TRACKING", "on", "BOGUS"),
    ("CLIENT", "TRACKING", "maybe"),
    ("CLIENT", "TRACKING", "on", "PREFIX"),
    ("CLIENT", "CACHING", "yes"),
    ("CLIENT", "CACHING", "maybe"),
    ("CLIENT", "GETREDIR"),
    ("CLIENT", "TRACKINGINFO"),
]


def test_errors_match_redis(scenario: Scenario) -> None:
    s = scenario
    s.client("c", 3)
    for case in ERROR_CASES:
        s.step("c", case)
    s.step("c", ("CLIENT", "TRACKING", "on", "OPTIN"))
    s.step("c", ("CLIENT", "CACHING", "no"), ("CLIENT", "CACHING", "maybe"))
    s.step("c", ("CLIENT", "TRACKING", "on", "OPTOUT"), ("CLIENT", "TRACKING", "on", "BCAST"))
    s.step("c", ("CLIENT", "TRACKING", "off"), ("CLIENT", "TRACKING", "on", "OPTOUT"))
    s.step("c", ("CLIENT", "CACHING", "yes"), ("CLIENT", "CACHING", "no"))
    s.step("c", ("CLIENT", "TRACKINGINFO"), ("CLIENT", "TRACKING", "off"))
    s.step("c", ("CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "FOO", "PREFIX", "BAR"))
    s.step("c", ("CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "FO"))
    s.step("c", ("CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "BARB"))
    s.step("c", ("CLIENT", "TRACKING", "on"))
    s.step("c", ("CLIENT", "CACHING", "yes"), ("CLIENT", "CACHING", "no"))  # neither mode
    s.step("c", ("CLIENT", "TRACKINGINFO"))


def test_scripts_track_their_keys_once_they_read(scenario: Scenario) -> None:
    s = scenario
    s.client("c", 3)
    s.client("w")
    s.step("c", ("CLIENT", "TRACKING", "on"))
    s.step("c", ("EVAL", "redis.call('set', 'k3', 'bar')", 2, "k1", "k2"))
    s.step("w", ("MSET", "k1", "1", "k2", "2"))
    s.step("c")
    s.step("c", ("EVAL", "return redis.call('get', 'k3')", 2, "k1", "k2"))
    s.step("w", ("MSET", "k2", "1", "k1", "2"))
    s.step("c")
    s.step("c", ("EVAL_RO", "return redis.call('get', 'k1')", 1, "k2"))
    s.step("w", ("MSET", "k1", "1", "k2", "2"))
    s.step("c")
    # OPTIN: CLIENT CACHING yes counts for the next command only, pipelined or not.
    script = "return redis.call('get', KEYS[1])"
    s.step("c", ("CLIENT", "TRACKING", "off"), ("CLIENT", "TRACKING", "on", "OPTIN"))
    s.step("c", ("CLIENT", "CACHING", "yes"), ("EVAL", script, 1, "p1"), ("EVAL", script, 1, "p2"))
    s.step(
        "c", ("CLIENT", "CACHING", "yes"), ("MULTI",), ("GET", "p3"), ("SET", "x", "1"), ("EXEC",)
    )
    s.step("c", ("GET", "p4"))
    s.step("w", ("MSET", "p1", "1", "p2", "2", "p3", "3", "p4", "4"))
    s.step("c")


def test_client_list_and_info_show_tracking(scenario: Scenario) -> None:
    s = scenario
    s.client("c", 3)
    s.client("b", 3)
    s.step("c", ("CLIENT", "TRACKING", "on"), ("GET", "x"), ("GET", "y"))
    s.step("b", ("CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "p:"))
    for side in s.sides:
        info = side.peers["c"].call("INFO")
        assert b"tracking_clients:2\r\n" in info
        assert b"tracking_total_keys:2\r\n" in info
        assert b"tracking_total_items:2\r\n" in info
        assert b"tracking_total_prefixes:1\r\n" in info
        line = side.peers["b"].call("CLIENT", "INFO")
        assert b" flags=tB " in line and b" redir=0 " in line, line


# -- the change feed and the table, without servers ---------------------------------------------


def _record(commands: list[list[bytes]], *, transaction: bool = False, proposal: int = 1) -> bytes:
    record = record_for(0, commands, transaction=transaction)
    record.shim_id, record.proposal_id = "shim-1", proposal
    return record.SerializeToString()


@dataclass
class FakeClient:
    id: int
    protocol: int = 3
    tracking: ClientTracking = field(default_factory=ClientTracking)
    received: list[Reply] = field(default_factory=list)
    push: Callable[[Reply], None] | None = None

    def __post_init__(self) -> None:
        self.push = self.received.append


class NoSubscriptions:
    def subscribed(self, subscriber_id: int) -> bool:
        return False


def test_apply_feeds_changes_and_reads_and_stays_pure() -> None:
    load_all()
    records = [
        _record([[b"SET", b"a", b"1", b"PX", b"5"], [b"SET", b"b", b"2"]], transaction=True),
        _record([[b"GET", b"b"], [b"INCR", b"b"], [b"GET", b"c"]], transaction=True, proposal=2),
        _record([[b"EVAL", b"return redis.call('get', 'x')", b"1", b"k"]], proposal=3),
        _record([[b"FLUSHALL"]], proposal=4),
    ]
    plain, fed = Applier(), Applier()
    feed: list[object] = []
    fed.keyspace.feed_changes(feed)
    batches = []
    for index, payload in enumerate(records, start=1):
        plain.apply(index, payload)
        fed.apply(index, payload)
        batches.append(list(feed))
        feed.clear()
    assert fed.keyspace.digest() == plain.keyspace.digest()
    assert batches[0] == [NOBODY, By("shim-1", 1), b"a", b"a", b"b"]  # a: value, then TTL
    assert batches[1][1:] == [By("shim-1", 2), Read((b"b",)), b"b", Read((b"c",))]
    assert batches[2][1:] == [By("shim-1", 3), Read((b"k",))]
    assert batches[3] == [NOBODY, By("shim-1", 4), FLUSHED]


def test_the_table_remembers_invalidates_once_and_honours_noloop() -> None:
    reader, looper, redirected, sink = FakeClient(1), FakeClient(2), FakeClient(3), FakeClient(4)
    clients = {c.id: c for c in (reader, looper, redirected, sink)}
    tracking = Tracking(clients, NoSubscriptions(), lambda: 2)
    tracking.enable(reader, 0, False, False, False, False, [])
    tracking.enable(looper, 0, False, False, False, True, [])
    tracking.enable(redirected, 4, False, False, False, False, [])
    for client in (reader, looper, redirected):
        tracking.remember(client, [b"k"])
    by = {By("shim-1", 9): 2}.get
    tracking.deliver(tracking.take(by) if (tracking.feed or []) else [])
    tracking.deliver([(b"k", 2)])  # looper changed k: not told (NOLOOP)
    assert reader.received == [Push([b"invalidate", [b"k"]])]
    assert looper.received == []
    assert sink.received == [Push([b"invalidate", [b"k"]])]  # RESP3: a push, redirected
    tracking.deliver([(b"k", None)])
    assert len(reader.received) == 1  # forgotten once sent
    # tracking-table-max-keys (2 here): the oldest key goes first, as if it had changed.
    tracking.remember(reader, [b"one", b"two", b"three"])
    assert reader.received[1:] == [] and list(tracking.table) == [b"one", b"two", b"three"]
    tracking.enforce_limit()
    assert reader.received[1:] == [Push([b"invalidate", [b"one"]])]
    assert list(tracking.table) == [b"two", b"three"] and tracking.items == 2
    # The client redirected to is gone: its sender hears it once, in RESP3.
    del clients[4]
    tracking.remember(redirected, [b"two"])
    tracking.deliver([(b"two", None)])
    assert redirected.received == [Push([b"tracking-redir-broken", 4])]
    assert redirected.tracking.broken_redirect
    for client in (reader, looper, redirected):
        tracking.disable(client)
    assert tracking.clients == 0 and tracking.feed is None and not tracking.table


# -- across shims ----------------------------------------------------------------------------


def _until_frame(peer: Peer, wanted: Callable[[bytes], bool], timeout_s: float) -> list[bytes]:
    """PING the peer until a frame it receives satisfies `wanted` (another shim applies the
    write on its own schedule); every frame received, in order."""
    seen: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        frames = peer.exchange()
        seen += frames
        if any(wanted(f) for f in frames):
            return seen
        time.sleep(0.01)
    raise AssertionError(f"no such frame within {timeout_s}s: {seen!r}")


def test_a_write_through_one_shim_invalidates_reads_through_the_other(two_shims: Memlog) -> None:
    one, two = two_shims.shim_ports[:2]
    reader = Peer(two, 3)
    sub = Peer(two)
    writer = Peer(one)
    try:
        writer.call("SET", "cross", "1")
        sub_id = int(sub.call("CLIENT", "ID")[1:-2])
        sub.exchange(("SUBSCRIBE", "__redis__:invalidate"))
        redirected = Peer(two)
        redirected.call("CLIENT", "TRACKING", "on", "REDIRECT", sub_id, "BCAST", "PREFIX", "cr")
        assert reader.call("CLIENT", "TRACKING", "on") == b"+OK\r\n"
        wait_until(lambda: reader.call("GET", "cross") == b"$1\r\n1\r\n", 10, "shim two caught up")
        writer.call("SET", "cross", "2")
        push = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$5\r\ncross\r\n"
        assert push in _until_frame(reader, lambda f: f == push, 10)
        message = b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$5\r\ncross\r\n"
        _until_frame(sub, lambda f: f == message, 10)
        # Forgotten once sent: the next write through the first shim sends nothing more.
        writer.call("SET", "cross", "3")
        writer.call("FLUSHALL")
        frames = _until_frame(reader, lambda f: f == b">2\r\n$10\r\ninvalidate\r\n_\r\n", 10)
        assert push not in frames, frames
        redirected.close()
    finally:
        for peer in (reader, sub, writer):
            peer.close()


def test_an_expired_key_is_invalidated_without_another_write(memlog: Memlog) -> None:
    """No write follows the expiry: the shim with a tracking client proposes the record that
    removes the key (MEMLOG EXPIRE), so the invalidation still comes, as Redis's active
    expiry sends it."""
    reader = Peer(memlog.shim_ports[0], 3)
    writer = Peer(memlog.shim_ports[0])
    try:
        reader.call("CLIENT", "TRACKING", "on")
        writer.call("SET", "soon-gone", "1", "PX", "200")
        assert reader.call("GET", "soon-gone") == b"$1\r\n1\r\n"
        push = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$9\r\nsoon-gone\r\n"
        started = time.monotonic()
        _until_frame(reader, lambda f: f == push, 10)
        assert time.monotonic() - started >= 0.1  # not before its time
        assert reader.call("EXISTS", "soon-gone") == b":0\r\n"
    finally:
        reader.close()
        writer.close()
