"""Pub/sub (issue 5): the hub alone, then the shim beside redis-server byte for byte in RESP2 and
RESP3, then messages across two shims.

A command's whole answer (a subscription command answers one frame per name, and messages
may come before it) is read up to the reply of a PING sent right after it, whose shape also
tells whether the connection is in RESP2 subscribed mode (``*2 pong ...``). Nothing waits on
time: socket reads have a deadline (the harness's 15 s socket timeout) and shared state is
awaited with ``wait_until`` on PUBSUB NUMSUB / NUMPAT.

Over 500 lines: the hub, one shim beside redis-server in both protocols, and the cross-shim
cases share the frame-reading helpers.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial

import pytest

from cacheshim.apply import Applier
from cacheshim.commands import COMMANDS, load_all
from cacheshim.hub import CHANNELS, PATTERNS, SHARD_CHANNELS, Hub, Outbox
from cacheshim.protocol.resp import Push, Reply, encode
from cacheshim.server import record_for
from tests.cacheshim.harness import Memlog, RedisServer, wait_until
from tests.cacheshim.rawresp import RawConnection

Args = Sequence[bytes | str | int]
_tokens = itertools.count(1)


# -- the hub alone ------------------------------------------------------------------------------


@dataclass
class FakeClient:
    id: int
    protocol: int = 2
    received: list[Reply] = field(default_factory=list)
    push: Callable[[Reply], None] | None = None

    def __post_init__(self) -> None:
        self.push = self.received.append


def test_hub_subscription_frames_and_counts() -> None:
    hub = Hub()
    a = FakeClient(1)
    assert hub.unsubscribe(a, CHANNELS, []) == [Push([b"unsubscribe", None, 0])]
    assert hub.subscribe(a, CHANNELS, [b"x", b"y", b"x"]) == [
        Push([b"subscribe", b"x", 1]),
        Push([b"subscribe", b"y", 2]),
        Push([b"subscribe", b"x", 2]),
    ]
    assert hub.subscribe(a, PATTERNS, [b"p*"]) == [Push([b"psubscribe", b"p*", 3])]
    # Shard channels count apart.
    assert hub.subscribe(a, SHARD_CHANNELS, [b"s"]) == [Push([b"ssubscribe", b"s", 1])]
    assert hub.counts(1) == (2, 1, 1) and hub.subscribed(1)
    assert hub.unsubscribe(a, CHANNELS, [b"nope", b"x"]) == [
        Push([b"unsubscribe", b"nope", 3]),
        Push([b"unsubscribe", b"x", 2]),
    ]
    assert hub.unsubscribe(a, PATTERNS, []) == [Push([b"punsubscribe", b"p*", 1])]
    assert hub.unsubscribe(a, PATTERNS, []) == [Push([b"punsubscribe", None, 1])]
    assert hub.unsubscribe(a, CHANNELS, []) == [Push([b"unsubscribe", b"y", 0])]
    assert hub.subscribed(1)  # the shard channel is left
    assert hub.unsubscribe(a, SHARD_CHANNELS, []) == [Push([b"sunsubscribe", b"s", 0])]
    assert not hub.subscribed(1) and hub.counts(1) == (0, 0, 0)
    assert (hub.active(CHANNELS), hub.active(PATTERNS), hub.active(SHARD_CHANNELS)) == (0, 0, 0)


def test_hub_delivery_counts_and_order() -> None:
    hub = Hub()
    a, b, c = FakeClient(1), FakeClient(2, protocol=3), FakeClient(3)
    hub.subscribe(a, CHANNELS, [b"news"])
    hub.subscribe(b, CHANNELS, [b"news"])
    hub.subscribe(a, PATTERNS, [b"n*"])
    hub.subscribe(c, PATTERNS, [b"n*", b"[m-o]ews"])
    hub.subscribe(c, SHARD_CHANNELS, [b"news"])
    assert hub.publish(b"news", b"hi") == 5
    assert a.received == [
        Push([b"message", b"news", b"hi"]),
        Push([b"pmessage", b"n*", b"news", b"hi"]),
    ]
    assert b.received == [Push([b"message", b"news", b"hi"])]
    assert c.received == [
        Push([b"pmessage", b"n*", b"news", b"hi"]),
        Push([b"pmessage", b"[m-o]ews", b"news", b"hi"]),
    ]
    assert hub.publish(b"", b"empty") == 0  # "*" and "n*" never match an empty channel
    assert hub.spublish(b"news", b"shard") == 1
    assert c.received[-1] == Push([b"smessage", b"news", b"shard"])
    assert hub.spublish(b"other", b"x") == 0
    assert hub.numsub(CHANNELS, [b"news", b"none", b"news"]) == [b"news", 2, b"none", 0, b"news", 2]
    assert hub.numsub(SHARD_CHANNELS, [b"news"]) == [b"news", 1]
    assert hub.active(PATTERNS) == 2  # distinct patterns, as Redis 7.0 counts NUMPAT
    assert hub.names(CHANNELS) == [b"news"] and hub.names(CHANNELS, b"x*") == []
    # RESET / close: everything of the client goes, nothing is sent.
    before = len(c.received)
    hub.drop(3)
    hub.drop(3)
    assert len(c.received) == before
    assert hub.active(PATTERNS) == 1 and hub.active(SHARD_CHANNELS) == 0
    assert hub.publish(b"news", b"again") == 3


def test_hub_refuses_commands_of_subscribed_resp2_clients_only() -> None:
    hub = Hub()
    resp2, resp3 = FakeClient(1), FakeClient(2, protocol=3)
    assert hub.refusal(resp2, "get") is None
    hub.subscribe(resp2, CHANNELS, [b"c"])
    hub.subscribe(resp3, CHANNELS, [b"c"])
    assert hub.refusal(resp2, "client|id") == (
        "ERR Can't execute 'client|id': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT "
        "/ RESET are allowed in this context"
    )
    for allowed in ("ping", "subscribe", "sunsubscribe", "punsubscribe", "quit", "reset"):
        assert hub.refusal(resp2, allowed) is None
    assert hub.refusal(resp3, "get") is None
    assert hub.restricts(resp2) and not hub.restricts(resp3)


def test_outbox_holds_a_push_behind_replies_resolved_before_it() -> None:
    loop = asyncio.new_event_loop()
    try:
        written: list[Reply] = []
        outbox = Outbox(written.append)
        outbox.push(b"idle")  # nothing awaited: at once
        first, second, third = (loop.create_future() for _ in range(3))
        outbox.expect([first, second, third])
        outbox.push(b"m0")  # nothing resolved yet: before every reply
        first.set_result(b"r1")
        outbox.push(b"m1")  # r1 is applied but not written: m1 waits for it
        second.set_result(b"r2")
        outbox.push(b"m2")  # behind r1 and r2; and behind m1 in any case
        assert written == [b"idle", b"m0"]
        written.append(b"r1")
        outbox.replied()
        assert written == [b"idle", b"m0", b"r1", b"m1"]
        written.append(b"r2")
        outbox.replied()
        third.set_result(b"r3")
        written.append(b"r3")
        outbox.replied()
        outbox.expect([])
        outbox.push(b"after")
        assert written == [b"idle", b"m0", b"r1", b"m1", b"r2", b"m2", b"r3", b"after"]
    finally:
        loop.close()


def _publish_record(command: str, channel: bytes, message: bytes) -> bytes:
    record = record_for(0, [[command.encode(), channel, message]], transaction=False)
    return record.SerializeToString()


def test_apply_delivers_through_the_hub_and_stays_pure_without_one() -> None:
    load_all()
    assert COMMANDS["publish"].is_write and COMMANDS["spublish"].is_write  # through the log
    assert "write" not in COMMANDS["publish"].flags  # while COMMAND shows Redis's flags
    alone = Applier()
    assert alone.apply(1, _publish_record("PUBLISH", b"c", b"m"))[1] == 0
    hub = Hub()
    listener = FakeClient(7)
    hub.subscribe(listener, CHANNELS, [b"c"])
    hub.subscribe(listener, SHARD_CHANNELS, [b"c"])
    shim = Applier(hub)
    assert shim.apply(1, _publish_record("PUBLISH", b"c", b"m"))[1] == 1
    assert shim.apply(2, _publish_record("SPUBLISH", b"c", b"s"))[1] == 1
    assert listener.received == [Push([b"message", b"c", b"m"]), Push([b"smessage", b"c", b"s"])]
    assert shim.keyspace.digest() == alone.keyspace.digest()


# -- one shim beside redis-server ---------------------------------------------------------------


class Peer:
    """A raw connection whose exchange() answers every frame a command brought."""

    def __init__(self, port: int, protocol: int = 2) -> None:
        self.raw = RawConnection(port, protocol)

    def exchange(self, *commands: Args) -> list[bytes]:
        """Send the commands and a PING; every frame received up to PING's reply, then a
        marker of that reply's shape (it shows RESP2 subscribed mode)."""
        token = f"sentinel-{next(_tokens)}".encode()
        self.raw.send(*commands, [b"PING", token])
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

    def close(self) -> None:
        self.raw.close()


@pytest.fixture
def ports(oracle_server: RedisServer, memlog: Memlog) -> tuple[int, int]:
    """(redis-server's port, the first shim's port), with no subscriptions left on either."""
    both_ports = (oracle_server.port, memlog.shim_ports[0])
    _wait_no_subscriptions(*both_ports)
    return both_ports


def _no_subscriptions(port: int) -> bool:
    raw = RawConnection(port)
    try:
        replies = raw.call("PUBSUB", "CHANNELS"), raw.call("PUBSUB", "NUMPAT")
        return (
            replies == (b"*0\r\n", b":0\r\n") and raw.call("PUBSUB", "SHARDCHANNELS") == b"*0\r\n"
        )
    finally:
        raw.close()


def _wait_no_subscriptions(*ports: int) -> None:
    """Subscribers of an earlier test are dropped once their closing reaches the server."""
    for port in ports:
        wait_until(partial(_no_subscriptions, port), 10, f"no subscriptions left on {port}")


@dataclass
class Both:
    """The same client on redis-server and on the shim."""

    oracle: Peer
    subject: Peer

    def check(self, *commands: Args) -> list[bytes]:
        want = self.oracle.exchange(*commands)
        got = self.subject.exchange(*commands)
        assert got == want, f"{commands!r}: redis-server sent {want!r}, memlog sent {got!r}"
        return got

    def check_unordered(self, *commands: Args) -> None:
        """For answers in Redis's hash order (the messages of several patterns that match
        one channel): the same frames, in any order."""
        want = self.oracle.exchange(*commands)
        got = self.subject.exchange(*commands)
        assert sorted(got) == sorted(want), f"{commands!r}: {want!r} != {got!r}"

    def check_elements(self, *command: bytes | str | int) -> None:
        """For one array of bulk strings in hash order (PUBSUB CHANNELS): the same lines."""
        want = self.oracle.exchange(command)
        got = self.subject.exchange(command)
        assert sorted(got[0].split(b"\r\n")) == sorted(want[0].split(b"\r\n")), (want, got)
        assert got[1:] == want[1:]


@pytest.fixture
def both(ports: tuple[int, int]) -> Iterator[Callable[[int], Both]]:
    """Makes clients, each one connection to redis-server and one to the shim."""
    made: list[Peer] = []

    def make(protocol: int) -> Both:
        pair = Both(Peer(ports[0], protocol), Peer(ports[1], protocol))
        made.extend((pair.oracle, pair.subject))
        return pair

    try:
        yield make
    finally:
        for peer in made:
            peer.close()


PROTOCOLS = pytest.mark.parametrize("protocol", [2, 3])


@PROTOCOLS
def test_subscription_commands_match_redis(both: Callable[[int], Both], protocol: int) -> None:
    client = both(protocol)
    for commands in [
        # Nothing to leave: one frame with a nil name; names not subscribed: one frame each.
        [["UNSUBSCRIBE"]], [["PUNSUBSCRIBE"]], [["SUNSUBSCRIBE"]],
        [["UNSUBSCRIBE", "x", "y"]], [["PUNSUBSCRIBE", "p*"]], [["SUNSUBSCRIBE", "s", "s"]],
        # Arity.
        [["SUBSCRIBE"]], [["PSUBSCRIBE"]], [["SSUBSCRIBE"]], [["PUBLISH", "x"]],
        [["SPUBLISH", "x"]], [["PUBLISH", "a", "b", "c"]], [["SPUBLISH", "a", "b", "c"]],
        [["PUBSUB"]], [["PUBSUB", "NUMPAT", "x"]], [["PUBSUB", "HELP", "x"]],
        [["PUBSUB", "CHANNELS", "a", "b"]], [["PUBSUB", "SHARDCHANNELS", "a", "b"]],
        [["PUBSUB", "BOGUS"]], [["pubsub", "numsub", "q1", "q1"]], [["PUBSUB", "NUMSUB"]],
        [["PUBSUB", "SHARDNUMSUB"]], [["PUBSUB", "CHANNELS", "q*"]],
        # Subscribed: RESP2 refuses all but a few commands, after the arity check.
        [["SUBSCRIBE", "c1", "c2", "c1"]],
        [["GET", "pubsub-k"]], [["SET", "pubsub-k", "v"]], [["CLIENT", "GETNAME"]],
        [["MULTI"], ["DISCARD"]],
        [["nosuchcommand", "x"]], [["PING"]], [["PING", "hi"]], [["PING", "a", "b"]],
        [["ECHO", "e"]], [["PUBLISH", "nobody-here", "m"]], [["CLIENT", "SETNAME"]],
        [["PUBSUB", "NUMSUB", "c1", "c2", "c3"]], [["PUBSUB", "NUMPAT"]], [["GET", "pubsub-k"]],
        [["PSUBSCRIBE", "c*", "d?", "c*"]], [["SSUBSCRIBE", "s1", "s2"]],
        [["SUBSCRIBE", "c1"], ["PSUBSCRIBE", "d?"], ["SSUBSCRIBE", "s1"]],
        [["UNSUBSCRIBE", "c2"]], [["UNSUBSCRIBE", "c1", "c1"]], [["GET", "pubsub-k"]],
        # Patterns are left in the order they were subscribed (a list in Redis too).
        [["PUNSUBSCRIBE"]], [["GET", "pubsub-k"]],
        [["SUNSUBSCRIBE", "s2"]], [["SUNSUBSCRIBE"]], [["GET", "pubsub-k"]],
        # RESET leaves everything without a frame.
        [["SUBSCRIBE", "r"], ["PSUBSCRIBE", "r*"]], [["RESET"]], [["GET", "pubsub-k"]],
        [["UNSUBSCRIBE"]], [["DEL", "pubsub-k"]],
    ]:  # fmt: skip
        client.check(*commands)
    # Several channels left at once: Redis's order is its hash table's; the counts go down.
    client.check(["SUBSCRIBE", "u1", "u2", "u3"])
    want, got = (peer.exchange(["UNSUBSCRIBE"]) for peer in (client.oracle, client.subject))
    assert got[-1] == want[-1] == b"<ping>"
    frames = [[_items(frame) for frame in answer[:-1]] for answer in (want, got)]
    for answer in frames:
        assert [f[2] for f in answer] == [2, 1, 0]
    assert sorted(f[1] for f in frames[1]) == sorted(f[1] for f in frames[0])  # type: ignore[type-var]


def test_subscribed_resp2_clients_are_refused_on_the_read_fast_path(
    both: Callable[[int], Both],
) -> None:
    client = both(2)
    client.check(["SUBSCRIBE", "fast"])
    # Plain GETs (the shim's fast path) are refused like any other command.
    client.check(["GET", "a"], ["GET", "b"], ["GET", "c"])


@PROTOCOLS
def test_messages_match_redis(both: Callable[[int], Both], protocol: int) -> None:
    listener, publisher = both(protocol), both(2)
    listener.check(["SUBSCRIBE", "news", "bin\x00\xffary"], ["PSUBSCRIBE", "n*", "h?llo", "[ab]*"])
    listener.check(["SSUBSCRIBE", "shard", "news"])
    for channel, message in [
        ("news", "one"), ("news", ""), ("hello", "h"), ("hallo", "h2"), ("hxllo", "none"),
        ("heello", "none"), ("apple", "a"), ("bee", "b"), ("", "empty channel"),
        ("nope", "n"), ("bin\x00\xffary", "\x00\r\n"), ("shard", "not a shard publish"),
    ]:  # fmt: skip
        publisher.check(["PUBLISH", channel, message])
        listener.check()  # the messages (and nothing else) arrived first
    for channel, message in [("shard", "s1"), ("news", "s2"), ("nobody", "s3")]:
        publisher.check(["SPUBLISH", channel, message])
        listener.check()
    # A channel several patterns match: one pmessage each, in Redis's hash order.
    listener.check(["PSUBSCRIBE", "ne*", "*s"])
    publisher.check(["PUBLISH", "news", "many"])
    listener.check_unordered()
    # Pipelined publishes arrive in order.
    listener.check(["PUNSUBSCRIBE", "ne*", "*s", "n*"])
    publisher.check(*[["PUBLISH", "news", f"p{i}"] for i in range(20)])
    listener.check()


def test_a_resp3_client_hears_its_own_message_before_the_reply(
    both: Callable[[int], Both],
) -> None:
    client = both(3)
    client.check(["SUBSCRIBE", "self"], ["PSUBSCRIBE", "s*"])
    client.check(["PUBLISH", "self", "me"])
    client.check(["SET", "self-k", "v"], ["PUBLISH", "self", "again"], ["GET", "self-k"])
    client.check(["DEL", "self-k"])
    # Inside EXEC, Redis 7.0 writes the push in the middle of EXEC's array; the shim sends
    # it whole, before EXEC's reply.
    frames = client.subject.exchange(["MULTI"], ["PUBLISH", "self", "tx"], ["EXEC"])
    assert frames == [
        b"+OK\r\n", b"+QUEUED\r\n",
        b">3\r\n$7\r\nmessage\r\n$4\r\nself\r\n$2\r\ntx\r\n",
        b">4\r\n$8\r\npmessage\r\n$2\r\ns*\r\n$4\r\nself\r\n$2\r\ntx\r\n",
        b"*1\r\n:2\r\n", b"<ping>",
    ]  # fmt: skip


def test_resp3_messages_still_arrive_while_replies_are_off(both: Callable[[int], Both]) -> None:
    listener, publisher = both(3), both(2)
    listener.check(["SUBSCRIBE", "quiet"])
    listener.oracle.raw.send(["CLIENT", "REPLY", "OFF"])
    listener.subject.raw.send(["CLIENT", "REPLY", "OFF"])
    publisher.check(["PUBLISH", "quiet", "still heard"])
    listener.check(["CLIENT", "REPLY", "ON"])
    # Subscription confirmations are pushes: Redis 7.0 sends them whatever CLIENT REPLY says,
    # and a SKIP is used up by the subscription command all the same.
    listener.check(
        ["CLIENT", "REPLY", "OFF"], ["SUBSCRIBE", "quiet2", "q3"], ["UNSUBSCRIBE", "q3"],
        ["CLIENT", "REPLY", "ON"], ["CLIENT", "REPLY", "SKIP"], ["PSUBSCRIBE", "p*"],
        ["PING", "shown"],
    )  # fmt: skip
    other = both(2)
    other.check(
        ["CLIENT", "REPLY", "SKIP"], ["SUBSCRIBE", "quiet2"], ["PING", "x"],
        ["CLIENT", "REPLY", "OFF"], ["UNSUBSCRIBE"], ["CLIENT", "REPLY", "ON"],
    )  # fmt: skip


def test_transactions_with_pubsub_commands_match_redis(both: Callable[[int], Both]) -> None:
    client, other = both(2), both(2)
    client.check(["MULTI"], ["PUBLISH", "tx", "m"], ["PUBSUB", "NUMSUB", "tx"], ["EXEC"])
    client.check(["MULTI"], ["UNSUBSCRIBE"], ["EXEC"])
    client.check(["MULTI"], ["SSUBSCRIBE", "tx"], ["EXEC"])
    client.check(["MULTI"], ["SUBSCRIBE", "tx"], ["EXEC"])
    other.check(["PUBLISH", "tx", "after exec"])
    client.check()
    client.check(["RESET"])
    client.check(["MULTI"], ["SET", "tx-k", "1"], ["PUBLISH", "tx", "in a write"], ["EXEC"])
    client.check(["DEL", "tx-k"])
    # Several channels subscribed inside EXEC: every frame in the element's place, after
    # EXEC's "*1", as Redis writes them.
    client.check(["MULTI"], ["SUBSCRIBE", "t1", "t2"], ["EXEC"])
    client.check(["RESET"])
    client.check(["MULTI"], ["UNSUBSCRIBE", "t1", "t2"], ["PSUBSCRIBE", "a*", "b*"], ["EXEC"])


@PROTOCOLS
def test_introspection_matches_redis(both: Callable[[int], Both], protocol: int) -> None:
    first, second, asker = both(2), both(3), both(protocol)
    first.check(["SUBSCRIBE", "i1", "i2"], ["PSUBSCRIBE", "i*", "j*"], ["SSUBSCRIBE", "is1"])
    second.check(["SUBSCRIBE", "i2"], ["PSUBSCRIBE", "i*"], ["SSUBSCRIBE", "is1", "is2"])
    asker.check(["PUBSUB", "NUMSUB", "i1", "i2", "i3", "i*"], ["PUBSUB", "NUMPAT"])
    asker.check(["PUBSUB", "SHARDNUMSUB", "is1", "is2", "i1"], ["PUBSUB", "NUMSUB"])
    asker.check(["PUBSUB", "CHANNELS", "*1"], ["PUBSUB", "CHANNELS", "nothing*"])
    asker.check(["PUBSUB", "SHARDCHANNELS", "*2"], ["PUBSUB", "SHARDCHANNELS", "i?1"])
    asker.check_elements("PUBSUB", "CHANNELS", "[h-j]?")
    asker.check_elements("PUBSUB", "CHANNELS")
    asker.check_elements("PUBSUB", "SHARDCHANNELS")
    second.check(["PUNSUBSCRIBE", "i*"])
    asker.check(["PUBSUB", "NUMPAT"])  # still 2: the first client holds i* and j*
    help_text = asker.subject.exchange(["PUBSUB", "HELP"])[0]
    assert help_text.startswith(b"*") and b"+PUBSUB <subcommand>" in help_text
    for sub in (b"CHANNELS", b"NUMPAT", b"NUMSUB", b"SHARDCHANNELS", b"SHARDNUMSUB"):
        assert b"+" + sub in help_text


def _fields(line: bytes) -> dict[str, str]:
    return dict(item.split("=", 1) for item in line.decode().split(" "))


def _client_lines(reply: bytes) -> list[dict[str, str]]:
    body = reply.split(b"\r\n", 1)[1].rsplit(b"\r\n", 1)[0]
    if body.startswith(b"txt:"):
        body = body[4:]
    return [_fields(line) for line in body.split(b"\n") if line]


def _info_stats(peer: Peer) -> dict[str, str]:
    text = peer.exchange(["INFO", "stats"])[0].decode()
    return dict(line.split(":", 1) for line in text.split("\r\n")[1:] if ":" in line)


def test_client_list_info_and_kill_show_subscriptions(
    both: Callable[[int], Both], ports: tuple[int, int]
) -> None:
    first, second, admin = both(2), both(3), both(2)
    first.check(["SUBSCRIBE", "l1", "l2"], ["PSUBSCRIBE", "l*"], ["SSUBSCRIBE", "ls"])
    second.check(["SSUBSCRIBE", "ls"])
    for peer in (admin.oracle, admin.subject):
        lines = _client_lines(peer.exchange(["CLIENT", "LIST", "TYPE", "pubsub"])[0])
        assert sorted((f["flags"], f["sub"], f["psub"], f["ssub"]) for f in lines) == [
            ("P", "0", "0", "1"), ("P", "2", "1", "1"),
        ]  # fmt: skip
        normal = _client_lines(peer.exchange(["CLIENT", "LIST", "TYPE", "normal"])[0])
        assert all(f["flags"] != "P" and f["sub"] == "0" for f in normal)
        stats = _info_stats(peer)
        assert (
            stats["pubsub_channels"],
            stats["pubsub_patterns"],
            stats["pubsubshard_channels"],
        ) == ("2", "1", "1")
    # CLIENT INFO from a subscribed RESP3 client.
    for peer in (second.oracle, second.subject):
        (info,) = _client_lines(peer.exchange(["CLIENT", "INFO"])[0])
        assert (info["flags"], info["ssub"], info["resp"]) == ("P", "1", "3")
    admin.check(["CLIENT", "KILL", "TYPE", "pubsub"])  # :2 on both
    _wait_no_subscriptions(*ports)
    for peer in (first.oracle, first.subject):
        with pytest.raises(ConnectionError):
            peer.exchange()


def test_quit_and_close_drop_subscriptions(
    both: Callable[[int], Both], ports: tuple[int, int]
) -> None:
    client, asker = both(2), both(2)
    client.check(["SUBSCRIBE", "q"])
    for peer in (client.oracle, client.subject):
        peer.raw.send(["QUIT"])
        assert peer.raw.replies(1) == [b"+OK\r\n"]
    closing = both(3)
    closing.check(["PSUBSCRIBE", "gone*"])
    closing.oracle.close()
    closing.subject.close()
    _wait_no_subscriptions(*ports)
    asker.check(["PUBLISH", "q", "nobody"], ["PUBLISH", "gone1", "nobody"])


def test_command_table_entries_match_redis(both: Callable[[int], Both]) -> None:
    client = both(2)
    names = [
        "subscribe", "unsubscribe", "psubscribe", "punsubscribe", "publish", "ssubscribe",
        "sunsubscribe", "spublish", "pubsub", "pubsub|channels", "pubsub|numsub",
        "pubsub|numpat", "pubsub|shardchannels", "pubsub|shardnumsub", "pubsub|help",
    ]  # fmt: skip
    for name in names:
        if name != "pubsub":  # its subcommands come in Redis's (seeded) hash order
            # Everything of COMMAND INFO: flags, keys, ACL categories, tips, key specs.
            client.check(["COMMAND", "INFO", name])
    for name in names:
        docs = [
            peer.exchange(["COMMAND", "DOCS", name])[0] for peer in (client.oracle, client.subject)
        ]
        for field_name in (b"summary", b"since", b"group", b"complexity"):
            want, got = (_doc_field(d, field_name) for d in docs)
            assert got == want, (name, field_name)
    client.check(["COMMAND", "GETKEYS", "PUBLISH", "a", "b"])
    # A shard channel is declared as a key spec flagged not_key: no key arguments.
    client.check(["COMMAND", "GETKEYS", "SPUBLISH", "a", "b"])
    client.check(["COMMAND", "GETKEYSANDFLAGS", "SSUBSCRIBE", "a", "b"])


def _doc_field(docs: bytes, name: bytes) -> bytes:
    """The value after the first `name` in a COMMAND DOCS reply (RESP2)."""
    head = b"$%d\r\n%s\r\n" % (len(name), name)
    rest = docs.split(head, 1)[1]
    size, rest = rest.split(b"\r\n", 1)
    return rest[: int(size[1:])]


# -- across shims -------------------------------------------------------------------------------


def _parse(frame: bytes) -> Reply:
    """One RESP2/RESP3 frame of bulk strings, integers, nulls and arrays/pushes, as values
    (pushes and arrays alike): the protocols' frames compare equal."""
    value, end = _parse_at(frame, 0)
    assert end == len(frame), frame
    return value


def _parse_at(data: bytes, pos: int) -> tuple[Reply, int]:
    kind = data[pos : pos + 1]
    line_end = data.index(b"\r\n", pos)
    head = data[pos + 1 : line_end]
    after = line_end + 2
    if kind == b"$":
        size = int(head)
        if size < 0:
            return None, after
        return data[after : after + size], after + size + 2
    if kind == b":":
        return int(head), after
    if kind == b"_":
        return None, after
    if kind in (b"+", b"-"):
        return head.decode(), after
    assert kind in (b"*", b">"), data
    items: list[Reply] = []
    for _ in range(int(head)):
        item, after = _parse_at(data, after)
        items.append(item)
    return items, after


def _items(frame: bytes) -> list[Reply]:
    value = _parse(frame)
    assert isinstance(value, list), frame
    return value


def _numsub(port: int, command: str, channel: str) -> int:
    raw = RawConnection(port)
    try:
        count = _items(raw.call("PUBSUB", command, channel))[1]
        assert isinstance(count, int)
        return count
    finally:
        raw.close()


def _listeners_ready(port: int) -> bool:
    return _numsub(port, "NUMSUB", "x-news") == 2 and _numsub(port, "SHARDNUMSUB", "x-shard") == 2


def _publish_pipelined(port: int, protocol: int, commands: list[Args]) -> list[bytes]:
    raw = RawConnection(port, protocol)
    try:
        raw.send(*commands)
        return raw.replies(len(commands))
    finally:
        raw.close()


def test_messages_reach_every_shim_in_one_order(two_shims: Memlog) -> None:
    shim_ports = two_shims.shim_ports[:2]
    listeners: list[RawConnection] = []
    try:
        for port in shim_ports:
            for protocol in (2, 3):  # one listener of each protocol on each shim
                listener = RawConnection(port, protocol)
                listener.send(["SUBSCRIBE", "x-news"], ["PSUBSCRIBE", "x-*"])
                listener.send(["SSUBSCRIBE", "x-shard"])
                kinds = [_items(frame)[0] for frame in listener.replies(3)]
                assert kinds == [b"subscribe", b"psubscribe", b"ssubscribe"]
                listeners.append(listener)
        for port in shim_ports:
            wait_until(partial(_listeners_ready, port), 10, f"the listeners of {port}")
        # Four publishers, two on each shim (one RESP2, one RESP3), at once, each pipelining
        # its messages: every fifth one an SPUBLISH.
        per_publisher = 25
        publishers = [(port, protocol) for port in shim_ports for protocol in (2, 3)]
        replies: dict[tuple[int, int], list[bytes]] = {}

        def commands_of(port: int, protocol: int) -> list[Args]:
            return [
                ["SPUBLISH" if i % 5 == 4 else "PUBLISH", "x-shard" if i % 5 == 4 else "x-news",
                 f"{port}/{protocol}/{i}"]
                for i in range(per_publisher)
            ]  # fmt: skip

        def publish(port: int, protocol: int) -> None:
            commands = commands_of(port, protocol)
            replies[(port, protocol)] = _publish_pipelined(port, protocol, commands)

        threads = [threading.Thread(target=publish, args=p) for p in publishers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        # Each publisher hears how many clients of its own shim received each message: two
        # listeners there, by channel and by pattern; an SPUBLISH, by shard channel only.
        assert sorted(replies) == sorted(publishers)
        for got in replies.values():
            assert got == [b":2\r\n" if i % 5 == 4 else b":4\r\n" for i in range(per_publisher)]
        shard_messages = len(publishers) * (per_publisher // 5)
        frames = (len(publishers) * per_publisher - shard_messages) * 2 + shard_messages
        sequences = [[_items(f) for f in listener.replies(frames)] for listener in listeners]
        # Every listener, on either shim, in either protocol: the same messages, same order.
        first = sequences[0]
        assert all(sequence == first for sequence in sequences[1:])
        for i, frame in enumerate(first):
            if frame[0] == b"message":  # its pattern's copy right after it
                assert first[i + 1] == [b"pmessage", b"x-*", b"x-news", frame[2]]
        # Each publisher's messages in the order it sent them.
        for port, protocol in publishers:
            prefix = f"{port}/{protocol}/".encode()
            mine = [
                frame[-1]
                for frame in first
                if frame[0] in (b"message", b"smessage")
                and isinstance(frame[-1], bytes)
                and frame[-1].startswith(prefix)
            ]
            assert mine == [f"{port}/{protocol}/{i}".encode() for i in range(per_publisher)]
    finally:
        for listener in listeners:
            listener.close()


def test_resp3_pushes_never_split_a_reply(two_shims: Memlog) -> None:
    """A RESP3 subscriber that keeps reading big values while messages pour in from the
    other shim: every frame it receives is whole, replies in order."""
    port, other = two_shims.shim_ports[:2]
    value = b"v" * 200_000
    reader = RawConnection(port, 3)
    publisher = RawConnection(other)
    try:
        assert reader.call("SET", "big-value", value) == b"+OK\r\n"
        reader.send(["SUBSCRIBE", "pour"])
        assert _parse(reader.replies(1)[0]) == [b"subscribe", b"pour", 1]
        wait_until(lambda: _numsub(other, "NUMSUB", "pour") == 0 and _numsub(
            port, "NUMSUB", "pour") == 1, 10, "the subscriber on the first shim")  # fmt: skip
        messages = 200
        publisher.send(*[["PUBLISH", "pour", f"m{i}"] for i in range(messages)])
        reader.send(*[["GET", "big-value"] for _ in range(30)])
        got_values = 0
        got_messages: list[bytes] = []
        while got_values < 30 or len(got_messages) < messages:
            frame = reader.replies(1)[0]
            if frame.startswith(b">"):
                parsed = _parse(frame)
                assert isinstance(parsed, list) and parsed[:2] == [b"message", b"pour"]
                assert isinstance(parsed[2], bytes)
                got_messages.append(parsed[2])
            else:
                assert frame == b"$%d\r\n%s\r\n" % (len(value), value)
                got_values += 1
        assert got_messages == [f"m{i}".encode() for i in range(messages)]
        assert publisher.replies(messages) == [b":0\r\n"] * messages  # none on its own shim
        reader.call("UNSUBSCRIBE")
        assert reader.call("DEL", "big-value") == b":1\r\n"
    finally:
        reader.close()
        publisher.close()


def test_encoded_frames_are_redis_shapes() -> None:
    message = Push([b"message", b"c", b"m"])
    assert encode(message, 2) == b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n"
    assert encode(message, 3) == b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n"
    assert encode(Push([b"unsubscribe", None, 0]), 3) == b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n"
