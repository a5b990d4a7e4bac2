"""A log node's memory is bounded by its window (--window-entries) plus caches, whatever
the log's length; entries older than the window come from RocksDB when a follower or a
reader needs them. Real `logsvc serve` processes, a small window (2,000 entries).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from logsvc.client import LogClient
from tests.logsvc.cluster import Cluster
from tests.logsvc.conftest import Clusters

WINDOW_ENTRIES = 2_000
WINDOW_ARGS = ("--window-entries", str(WINDOW_ENTRIES))
MIB = 1 << 20


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def payload(index: int, size: int) -> bytes:
    head = f"record-{index}-".encode()
    return head + bytes([index % 251]) * (size - len(head))


async def append_records(
    addresses: list[str], count: int, size: int, workers: int = 32, start: int = 0
) -> list[tuple[int, bytes]]:
    """count one-record appends (one raft entry each), by `workers` concurrent clients;
    returns (index, record) of each."""
    numbers = iter(range(start, start + count))
    acked: list[tuple[int, bytes]] = []

    async def worker() -> None:
        async with LogClient(addresses, timeout_s=60) as client:
            for n in numbers:
                record = payload(n, size)
                result = await client.append([record])
                acked.append((result.first_index, record))

    await asyncio.gather(*(worker() for _ in range(workers)))
    return sorted(acked)


def raft_last(c: Cluster, node_id: str) -> int:
    st = c.status(node_id, timeout=5)
    return int(st.raft_last_index)


def test_rss_stays_within_the_window_while_the_log_grows_past_ten_windows(
    clusters: Clusters,
) -> None:
    # 8 KiB records, one per entry: the window is 16 MiB of entries. Without a window every
    # entry would stay in memory: 14,000 entries after the first measurement, over 110 MiB.
    size = 8 << 10
    c = clusters(extra_args=WINDOW_ARGS)
    leader = c.start_all()
    assert leader is not None
    pids = {n: c.nodes[n].pid for n in c.nodes}

    asyncio.run(append_records(c.addresses, 4 * WINDOW_ENTRIES, size))
    c.wait_last_index(4 * WINDOW_ENTRIES, list(c.nodes), timeout=60)
    # The window is full; RocksDB's memtables (2 x 16 MiB at most) have filled and flushed.
    start = {n: rss_bytes(pid) for n, pid in pids.items()}
    peak = dict(start)
    total = 4 * WINDOW_ENTRIES
    while total < 11 * WINDOW_ENTRIES:
        asyncio.run(append_records(c.addresses, 1_000, size, start=total))
        total += 1_000
        for n, pid in pids.items():
            peak[n] = max(peak[n], rss_bytes(pid))
    c.wait_last_index(total, list(c.nodes), timeout=60)
    assert raft_last(c, leader) > 10 * WINDOW_ENTRIES
    growth = {n: (peak[n] - start[n]) / MIB for n in pids}
    print(
        "RSS at 4 windows, MiB:",
        {n: round(v / MIB, 1) for n, v in start.items()},
        "growth to 11 windows, MiB:",
        {n: round(v, 1) for n, v in growth.items()},
    )
    # Room for the memtables' swing (up to 32 MiB) and the allocator; a node that kept
    # every entry would grow by 110 MiB and more.
    assert all(g < 48 for g in growth.values()), growth


def test_a_restarted_follower_catches_up_through_entries_only_on_disk(
    clusters: Clusters,
) -> None:
    c = clusters(extra_args=WINDOW_ARGS)
    leader = c.start_all()
    assert leader is not None
    follower = next(n for n in c.nodes if n != leader)
    first = asyncio.run(append_records(c.addresses, 200, 100))
    c.wait_last_index(200, list(c.nodes))
    c.stop(follower)

    more = asyncio.run(append_records(c.addresses, 5 * WINDOW_ENTRIES, 100, start=200))
    last = more[-1][0]
    leader = c.leader()
    c.start(follower)
    c.wait_serving(follower)
    c.wait_last_index(last, [follower], timeout=60)
    assert "older than the memory window" in c.log_text(leader)
    assert c.read_all(follower) == first + more


def test_a_read_from_index_1_of_a_log_much_longer_than_the_window(clusters: Clusters) -> None:
    c = clusters(ids=("a",), extra_args=WINDOW_ARGS)
    c.start_all()
    acked = asyncio.run(append_records(c.addresses, 6 * WINDOW_ENTRIES, 64))
    assert [i for i, _ in acked] == list(range(1, 6 * WINDOW_ENTRIES + 1))
    assert c.read_all("a") == acked
    assert c.read_all("a", from_index=3_333) == acked[3_332:]
    # After a restart the node replays the whole log from disk, in steps, and reads it back.
    c.restart("a")
    c.leader()
    assert c.read_all("a") == acked
