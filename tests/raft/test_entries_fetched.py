"""A leader whose storage holds only a window of its log (LogTemporarilyUnavailable): an
append to a lagging follower waits for the driver's fetch, then goes (entries_fetched)."""

from __future__ import annotations

import random
from collections import deque

from logsvc.raft import (
    Config,
    Entry,
    HardState,
    MemoryStorage,
    Message,
    RawNode,
    Role,
    SnapshotMeta,
)
from logsvc.window import TermRuns, WindowStorage

LOG = [Entry(1, i, b"x%d" % i) for i in range(1, 51)]
VOTERS = ("a", "b", "c")


def cluster() -> tuple[dict[str, RawNode], WindowStorage, MemoryStorage, dict[str, MemoryStorage]]:
    """a (a window of 5 over a disk of 50 committed entries), c (the same 50 in memory)
    and b (empty)."""
    disk = MemoryStorage()
    disk.append(LOG)
    disk.set_hard_state(HardState(term=1, vote=None, commit=50))
    terms = TermRuns()
    terms.extend(LOG)
    window = WindowStorage(entries_max=5, bytes_max=1 << 20, cache_bytes_max=200)
    window.restore(SnapshotMeta(), disk.initial_state(), 50, terms, LOG)
    assert window.window_first() == 46
    others = {"b": MemoryStorage(), "c": disk.clone()}
    nodes = {
        "a": RawNode(Config(id="a", voters=VOTERS, applied_index=50), window, random.Random(1)),
        "b": RawNode(Config(id="b", voters=VOTERS), others["b"], random.Random(2)),
        "c": RawNode(Config(id="c", voters=VOTERS), others["c"], random.Random(3)),
    }
    return nodes, window, disk, others


def pump(
    nodes: dict[str, RawNode],
    window: WindowStorage,
    disk: MemoryStorage,
    others: dict[str, MemoryStorage],
    fetch: bool,
    rounds: int = 200,
) -> None:
    """Run Readies and deliver messages (b and c only hear from a) until nothing moves."""
    inbox: deque[Message] = deque()
    for _ in range(rounds):
        moved = False
        if fetch and (lo := window.take_fetch()) is not None:
            # The driver's read, done at once here.
            window.fill(disk.entries(lo, window.window_first(), 100))
            nodes["a"].entries_fetched()
            moved = True
        for node_id, node in nodes.items():
            if not node.has_ready():
                continue
            moved = True
            rd = node.ready()
            storage: WindowStorage | MemoryStorage = window if node_id == "a" else others[node_id]
            if node_id == "a":
                disk.append(rd.entries)
            storage.append(rd.entries)
            if rd.hard_state is not None:
                storage.set_hard_state(rd.hard_state)
            if node_id == "a" and rd.committed_entries:
                window.set_pinned(rd.committed_entries[-1].index)
            inbox.extend(rd.messages)
            inbox.extend(rd.persisted_messages)
            node.advance(rd)
        while inbox:
            m = inbox.popleft()
            nodes[m.to].step(m)
            moved = True
        if not moved:
            return


def test_a_lagging_follower_gets_old_entries_once_they_are_fetched() -> None:
    nodes, window, disk, others = cluster()
    nodes["a"].campaign()
    pump(nodes, window, disk, others, fetch=True)
    assert nodes["a"].raft.role is Role.LEADER
    leader_last = nodes["a"].raft.log.last_index()
    assert leader_last == 51  # its no-op
    assert others["b"].last_index() == leader_last
    assert others["b"].entries(1, 51) == LOG
    assert window.fetches >= 50 * LOG[0].size_bytes() // 100  # 100 bytes per read
    assert window.window_len() <= 5 and window.cache_bytes() <= 200


def test_without_the_fetch_the_append_waits_and_nothing_breaks() -> None:
    nodes, window, disk, others = cluster()
    nodes["a"].campaign()
    pump(nodes, window, disk, others, fetch=False)
    assert nodes["a"].raft.role is Role.LEADER
    # b has nothing older than the window, so nothing at all; it was not sent a wrong entry.
    assert others["b"].last_index() == 0
    assert nodes["a"].raft.awaiting_entries == {"b"}
    # The fetch arrives late: the append that waited goes, and b catches up.
    pump(nodes, window, disk, others, fetch=True)
    assert others["b"].entries(1, 51) == LOG
    assert nodes["a"].raft.awaiting_entries == set()
