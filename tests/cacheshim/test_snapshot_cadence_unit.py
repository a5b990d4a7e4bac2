"""The resident snapshotter's cadence (Snapshotter.run) with the log, the writer and the put
replaced: only when rounds start is under test."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from cacheshim.snapshot.tools import Cadence, Snapshotter


class Rounds(Snapshotter):
    """Records arrive all the time (every_records is always reached); a snapshot takes
    TAKE_S. Keeps when each round started and ended."""

    TAKE_S = 0.02

    def __init__(self) -> None:
        super().__init__(cast(Any, None))
        self.rounds: list[tuple[float, float]] = []

    async def recover(self) -> None:
        return None

    async def follow(self) -> None:
        while True:
            self.due.set()
            await asyncio.sleep(0.002)

    async def take(self, min_records: int | None = None) -> int | None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(self.TAKE_S)
        self.rounds.append((started, loop.time()))
        return len(self.rounds)


async def run_for(s: Rounds, cadence: Cadence, seconds: float) -> None:
    task = asyncio.create_task(s.run(cadence))
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_snapshots_by_records_keep_the_minimum_interval() -> None:
    s = Rounds()
    asyncio.run(run_for(s, Cadence(every_records=1, min_interval_s=0.2), 1.0))
    gaps = [b[0] - a[1] for a, b in zip(s.rounds, s.rounds[1:], strict=False)]
    assert len(s.rounds) >= 2, s.rounds
    assert min(gaps) >= 0.2, gaps
    # Without it they are back to back.
    s = Rounds()
    asyncio.run(run_for(s, Cadence(every_records=1), 0.5))
    assert len(s.rounds) >= 2 * 3, s.rounds


def test_every_s_counts_from_the_end_of_a_round_and_an_ask_does_not_wait() -> None:
    s = Rounds()
    Rounds.TAKE_S = 0.1
    try:
        asyncio.run(run_for(s, Cadence(every_s=0.05, min_interval_s=60), 0.8))
    finally:
        Rounds.TAKE_S = 0.02
    gaps = [b[0] - a[1] for a, b in zip(s.rounds, s.rounds[1:], strict=False)]
    # Rounds longer than every_s are not back to back (a timed round is not held by
    # min_interval_s, which is for rounds by records).
    assert len(s.rounds) >= 2 and min(gaps) >= 0.05, gaps

    async def ask_after_a_snapshot() -> float:
        task = asyncio.create_task(s2.run(Cadence(every_records=1, min_interval_s=60)))
        while not s2.rounds:
            await asyncio.sleep(0.01)
        asked = asyncio.get_running_loop().time()
        s2.asked.set()  # SAVE/BGSAVE: at once, whatever the interval
        while len(s2.rounds) < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return s2.rounds[1][0] - asked

    s2 = Rounds()
    assert asyncio.run(ask_after_a_snapshot()) < 30
