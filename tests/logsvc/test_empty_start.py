"""A node that starts with an empty data directory never votes twice in one term.

It may be a new cluster's node, or one whose data was lost after it had voted; it cannot
tell, so before it takes part in Raft it asks every peer for its durable term (Peer.Probe),
and if the highest, M, is not 0 it syncs a vote for itself in M (LogNode.start). These tests
run one LogNode in this process against peers that are real gRPC servers (fake_peer.py), which
answer Probe with chosen terms and record what the node sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from logsvc.config import NodeConfig
from logsvc.node import LogNode
from logsvc.raft import HardState, Message, MessageType
from logsvc.storage import DurableLog
from tests.logsvc.fake_peer import FakePeer

TIMEOUT_S = 10.0


@contextlib.asynccontextmanager
async def node_among(tmp_path: Path, b: FakePeer, c: FakePeer) -> AsyncIterator[LogNode]:
    """Node a (not started) with peers b and c serving; everything stopped after."""
    await b.start()
    await c.start()
    node = LogNode(node_config(tmp_path, {"b": b, "c": c}))
    try:
        yield node
    finally:
        await node.stop()
        await b.stop()
        await c.stop()


def node_config(tmp_path: Path, peers: dict[str, FakePeer]) -> NodeConfig:
    # Client addresses nobody listens on (the node under test does not serve); the fakes
    # serve the peer ports.
    addresses = {node_id: f"127.0.0.1:{port}" for port, node_id in enumerate("abc", 1)}
    peer_addresses = {"a": "127.0.0.1:9"}
    peer_addresses.update({p: f"127.0.0.1:{fake.port}" for p, fake in peers.items()})
    # A long election timeout: the node must not campaign while a test talks to it.
    return NodeConfig(
        id="a", listen=addresses["a"], peers=addresses, peer_addresses=peer_addresses,
        data_dir=tmp_path, election_ticks=500,
    )  # fmt: skip


def stored_hard_state(tmp_path: Path) -> HardState:
    durable = DurableLog(tmp_path / "a")
    try:
        durable.load()
        return durable.memory.initial_state()
    finally:
        durable.close()


async def vote_reply(node: LogNode, peer: FakePeer, term: int) -> Message:
    """Ask the node for its vote in `term` as peer b, whose log is as long as the node's."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT_S
    while not node.senders["b"].connected:  # a reply before that would be dropped
        assert asyncio.get_running_loop().time() < deadline, "no stream to b"
        await asyncio.sleep(0.01)
    node.deliver(Message(MessageType.VOTE, to="a", frm="b", term=term, log_term=0, index=0))
    while True:
        replies = [m for m in peer.received if m.type is MessageType.VOTE_RESPONSE]
        if replies and replies[-1].term == term:
            return replies[-1]
        assert asyncio.get_running_loop().time() < deadline, peer.received
        await asyncio.sleep(0.01)


def test_an_empty_node_votes_only_after_the_highest_term_of_its_peers(tmp_path: Path) -> None:
    async def go() -> tuple[HardState, Message, Message]:
        b = FakePeer(term=7)
        async with node_among(tmp_path, b, FakePeer(term=3)) as node:
            await asyncio.wait_for(node.start(), TIMEOUT_S)
            state = node.durable.memory.initial_state()
            # Term 7 is the one it may have voted in before: no vote for b there...
            refused = await vote_reply(node, b, 7)
            # ...but the next term is open to b.
            granted = await vote_reply(node, b, 8)
        return state, refused, granted

    state, refused, granted = asyncio.run(go())
    assert state == HardState(term=7, vote="a", commit=0)
    assert refused.reject and not granted.reject
    # What a restart reads back: the vote in term 8, for b.
    assert stored_hard_state(tmp_path) == HardState(term=8, vote="b", commit=0)


def test_in_a_new_cluster_nothing_is_written(tmp_path: Path) -> None:
    async def go() -> tuple[HardState, Message]:
        b = FakePeer(term=0)
        async with node_among(tmp_path, b, FakePeer(term=0)) as node:
            await asyncio.wait_for(node.start(), TIMEOUT_S)
            state = node.durable.memory.initial_state()
            granted = await vote_reply(node, b, 1)
        return state, granted

    state, granted = asyncio.run(go())
    assert state == HardState()
    assert not granted.reject  # term 1 of a new cluster: its vote is free


def test_an_empty_node_waits_for_every_peer(tmp_path: Path) -> None:
    """The peer that does not answer may be the one it voted for: it waits for it."""

    async def go() -> HardState:
        c = FakePeer(term=None)
        async with node_among(tmp_path, FakePeer(term=2), c) as node:
            starting = asyncio.create_task(node.start())
            try:
                done, _ = await asyncio.wait([starting], timeout=1.0)
                assert not done, "started without c's term"
                assert node.node is None
                c.term = 5
                await asyncio.wait_for(starting, TIMEOUT_S)
                return node.durable.memory.initial_state()
            finally:
                starting.cancel()

    assert asyncio.run(go()) == HardState(term=5, vote="a", commit=0)


@pytest.mark.parametrize("stored", [HardState(term=4, vote="b", commit=0), HardState(term=1)])
def test_a_node_with_a_vote_or_term_of_its_own_asks_nobody(
    tmp_path: Path, stored: HardState
) -> None:
    durable = DurableLog(tmp_path / "a")
    durable.load()
    durable.write(None, (), stored)
    durable.close()

    async def go() -> HardState:
        # Nobody would answer a probe.
        async with node_among(tmp_path, FakePeer(term=None), FakePeer(term=None)) as node:
            await asyncio.wait_for(node.start(), TIMEOUT_S)
            return node.durable.memory.initial_state()

    assert asyncio.run(go()) == stored
