"""What the batches of fast reads (`cacheshim.protocol.fastreads.serve_reads`) served, so
INFO counts those reads too at a small cost per batch and none per read: during a batch
only plain integers move (GETs and MGETs served, keys found and missed); at its end one
tuple (its time, its GETs, its MGETs, any other reads by name) joins a list that is folded
into the command counters later (`fold`: when the counters are read, and every 100 ms).
Keys found or missed by the C-served GETs and MGETs are read off their replies; the other
fast reads run the table's handlers, whose lookups count in `keyspace.LOOKUPS` (see
`CommandStats.keyspace_hits`)."""

from __future__ import annotations

from time import perf_counter_ns
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cacheshim.observe.commandstats import CommandStats

# (time ns, GETs, MGETs, {other read: count} or None) of one batch.
Batch = tuple[int, int, int, dict[str, int] | None]


class FastTally:
    __slots__ = (
        "batches", "get_misses", "gets", "hits", "mgets", "misses", "others", "resp3",
        "started_ns",
    )  # fmt: skip

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.hits = 0  # of MGETs
        self.misses = 0  # of MGETs
        self.get_misses = 0
        self.gets = 0
        self.mgets = 0
        self.others: dict[str, int] | None = None
        self.resp3 = False
        self.started_ns = 0

    def start(self, resp3: bool) -> None:
        self.resp3 = resp3
        self.started_ns = perf_counter_ns()

    def end(self, served: int) -> int:
        """The batch of served reads is over: the time each took (its share), in µs."""
        elapsed_ns = perf_counter_ns() - self.started_ns
        self.batches.append((elapsed_ns, self.gets, self.mgets, self.others))
        self.gets = self.mgets = 0
        self.others = None
        return elapsed_ns // served // 1000

    def gets_served(self, count: int, replies: bytes) -> None:
        """count GETs answered by `replies` (bulk strings or nils, one each)."""
        self.gets += count
        if (b"_\r\n" if self.resp3 else b"$-1\r\n") in replies:
            self.get_misses += count_nils(replies, 0, count, self.resp3)

    def mget_served(self, reply: bytes) -> None:
        """One MGET answered by reply (an array of bulk strings and nils)."""
        self.mgets += 1
        header_end = reply.index(b"\r\n")
        count = int(reply[1:header_end])
        nils = count_nils(reply, header_end + 2, count, self.resp3)
        self.hits += count - nils
        self.misses += nils

    def other_served(self, name: str) -> None:
        others = self.others
        if others is None:
            others = self.others = {}
        others[name] = others.get(name, 0) + 1

    def fold(self, stats: CommandStats) -> None:
        """Move what was tallied into stats, each batch's time shared equally among its
        reads."""
        batches, self.batches = self.batches, []
        for elapsed_ns, gets, mgets, others in batches:
            served = gets + mgets + (sum(others.values()) if others else 0)
            if not served:
                continue
            share_ns = elapsed_ns // served
            if gets:
                self.hits += gets  # their misses are taken off below
                stats.called_many("get", gets, share_ns * gets)
            if mgets:
                stats.called_many("mget", mgets, share_ns * mgets)
            if others:
                for name, times in others.items():
                    stats.called_many(name, times, share_ns * times)
        stats.replied_hits += self.hits - self.get_misses
        stats.replied_misses += self.misses + self.get_misses
        self.hits = self.misses = self.get_misses = 0


def count_nils(replies: bytes, pos: int, count: int, resp3: bool) -> int:
    """How many of the count bulk-string-or-nil replies from pos are nils.

    A found value's reply has two CRLFs and a nil's one, so with no CRLF inside the values
    the nils are 2 * count minus the CRLFs, and that many nil patterns appear; any CRLF
    inside a value breaks that equality (it adds a CRLF, and a nil pattern at most), and
    then the replies are walked one by one."""
    nil = b"_\r\n" if resp3 else b"$-1\r\n"
    patterns = replies.count(nil, pos)
    if not patterns:
        return 0
    if 2 * count - replies.count(b"\r\n", pos) == patterns:
        return patterns
    nils = 0
    for _ in range(count):
        if replies.startswith(nil, pos):
            nils += 1
            pos += len(nil)
            continue
        eol = replies.index(b"\r\n", pos)
        pos = eol + 2 + int(replies[pos + 1 : eol]) + 2
    return nils
