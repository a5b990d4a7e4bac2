"""The leader holds an append that only carries a new commit index (--commit-hold-ms).

After a commit the Raft core sends every follower an append with no entries, only to say that
the commit index moved. With one append at a time the next append, which carries the commit
index too, usually comes within a millisecond, so the leader holds such a message for up to
the hold and drops it when another append to that follower goes first. These tests check the
hold in PeerSender against a real gRPC peer, then what a real cluster sends per append.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from logsvc.client import LogClient
from logsvc.config import ConfigError, NodeConfig
from logsvc.raft import Entry, Message, MessageType
from logsvc.transport import PeerSender
from tests.logsvc.cluster import Cluster
from tests.logsvc.conftest import Clusters
from tests.logsvc.fake_peer import FakePeer

TIMEOUT_S = 10.0
HOLD_S = 0.2


def append(commit: int, *entries: Entry) -> Message:
    return Message(
        MessageType.APPEND, to="b", frm="a", term=1, log_term=1, index=5, commit=commit,
        entries=entries,
    )  # fmt: skip


def heartbeat(commit: int) -> Message:
    return Message(MessageType.HEARTBEAT, to="b", frm="a", term=1, commit=commit)


@contextlib.asynccontextmanager
async def sender_to_peer() -> AsyncIterator[tuple[PeerSender, FakePeer]]:
    peer = FakePeer(term=0)
    await peer.start()
    sender = PeerSender("memlog", "a", "b", peer.address, on_unreachable=lambda _: None)
    sender.start()
    try:
        await until(lambda: sender.connected, "the stream to b is open")
        yield sender, peer
    finally:
        await sender.stop()
        await peer.stop()


async def until(predicate: Callable[[], object], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT_S
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.005)


def commits(peer: FakePeer) -> list[tuple[MessageType, int]]:
    return [(m.type, m.commit) for m in peer.received]


def test_a_held_message_goes_out_after_the_hold_when_nothing_else_does() -> None:
    async def go() -> tuple[float, list[tuple[MessageType, int]]]:
        async with sender_to_peer() as (sender, peer):
            loop = asyncio.get_running_loop()
            start = loop.time()
            sender.defer(append(commit=7), HOLD_S)
            sender.defer(append(commit=8), HOLD_S)  # newer: replaces the first, same time
            await until(lambda: peer.received, "the held append arrives")
            return loop.time() - start, commits(peer)

    waited_s, received = asyncio.run(go())
    assert received == [(MessageType.APPEND, 8)]
    assert waited_s >= HOLD_S


def test_an_append_sent_meanwhile_supersedes_the_held_one() -> None:
    async def go() -> list[tuple[MessageType, int]]:
        async with sender_to_peer() as (sender, peer):
            loop = asyncio.get_running_loop()
            sender.defer(append(commit=7), HOLD_S)
            sender.send(append(8, Entry(term=1, index=6, data=b"next")))
            # Once the hold is over (timers run in order of their deadlines), a marker sent
            # then must be the next message: the held append was dropped, not sent late.
            over = asyncio.Event()
            loop.call_later(HOLD_S + 0.01, over.set)
            await over.wait()
            sender.send(heartbeat(commit=8))
            await until(lambda: len(peer.received) >= 2, "the marker arrives")
            return commits(peer)

    assert asyncio.run(go()) == [(MessageType.APPEND, 8), (MessageType.HEARTBEAT, 8)]


def test_after_a_superseded_hold_the_next_held_message_gets_a_whole_hold() -> None:
    async def go() -> tuple[float, list[tuple[MessageType, int]]]:
        async with sender_to_peer() as (sender, peer):
            loop = asyncio.get_running_loop()
            sender.defer(append(commit=7), HOLD_S)
            sender.send(append(8, Entry(term=1, index=6, data=b"next")))
            # Half a hold later the next commit is held: it must wait a whole hold from
            # here, not go out when the first, superseded hold would have ended.
            half = asyncio.Event()
            loop.call_later(HOLD_S / 2, half.set)
            await half.wait()
            start = loop.time()
            sender.defer(append(commit=9), HOLD_S)
            await until(lambda: len(peer.received) >= 2, "the second held append arrives")
            return loop.time() - start, commits(peer)

    waited_s, received = asyncio.run(go())
    assert received == [(MessageType.APPEND, 8), (MessageType.APPEND, 9)]
    assert waited_s >= HOLD_S


def test_a_heartbeat_sent_meanwhile_does_not_supersede_the_held_append() -> None:
    async def go() -> list[tuple[MessageType, int]]:
        async with sender_to_peer() as (sender, peer):
            sender.defer(append(commit=7), HOLD_S)
            sender.send(heartbeat(commit=6))
            await until(lambda: len(peer.received) >= 2, "the held append arrives")
            return commits(peer)

    assert asyncio.run(go()) == [(MessageType.HEARTBEAT, 6), (MessageType.APPEND, 7)]


@pytest.mark.parametrize("hold_ms", [-1.0, 30.0])
def test_the_hold_must_be_shorter_than_a_heartbeat_interval(tmp_path: Path, hold_ms: float) -> None:
    config = NodeConfig(
        id="a", listen="127.0.0.1:1", peers={"a": "127.0.0.1:1"}, data_dir=tmp_path,
        tick_ms=10, heartbeat_ticks=3, commit_hold_ms=hold_ms,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="--commit-hold-ms must be at least 0 and shorter"):
        config.validate()


def messages_per_append(c: Cluster, appends: int) -> dict[str, float]:
    """Append one record at a time; the leader's messages per append to each follower."""
    leader = c.leader()

    def sent() -> dict[str, int]:
        return {p.id: p.messages_sent for p in c.status(leader).peers if p.id != leader}

    before = sent()

    async def go() -> int:
        async with LogClient(c.addresses) as client:
            last = 0
            for i in range(appends):
                last = (await client.append([b"hold-%d" % i])).last_index
            return last

    last = asyncio.run(go())
    after = sent()
    # Whatever was held reaches the followers: each learns the commit of the last append.
    for node_id in after:
        c.wait_until(
            lambda: c.status(node_id).commit_index >= last,  # noqa: B023 (called at once)
            TIMEOUT_S,
            f"{node_id} learns commit index {last}",
        )
    assert c.leader() == leader, "a leader change would spoil the count"
    return {p: (after[p] - before[p]) / appends for p in after}


@pytest.mark.parametrize(("hold_ms", "most", "least"), [("250", 1.3, 0.0), ("0", 99.0, 1.8)])
def test_one_append_at_a_time_costs_one_message_per_follower_with_the_hold(
    clusters: Clusters, hold_ms: str, most: float, least: float
) -> None:
    # Heartbeats every 300 ms and a hold of 250 ms, both far longer than one append takes,
    # so that neither adds more than a few messages to the count on a slow machine (a held
    # message goes out at most one hold after the first deferral, superseded or not).
    # Without the hold (0), every commit is a message of its own.
    c = clusters(
        extra_args=(
            "--election-ticks", "60", "--heartbeat-ticks", "30", "--commit-hold-ms", hold_ms,
        )
    )  # fmt: skip
    c.start_all()
    per_append = messages_per_append(c, appends=150)
    for follower, n in per_append.items():
        assert least <= n <= most, (follower, per_append)
